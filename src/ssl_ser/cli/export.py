"""`ser export`: fit a probe on all training rows of cached features and save it as a bundle."""

from __future__ import annotations

import click

from ssl_ser.classify.features import COMBINES
from ssl_ser.cli.options import check_seeds, parse_paths


@click.command()
@click.option("--cache", "caches", required=True, help="Feature cache(s), comma-separated.")
@click.option("--manifest", "manifests", required=True, help="Manifest(s) of the cached corpora.")
@click.option("--output", required=True, type=click.Path(file_okay=False), help="Bundle folder.")
@click.option(
    "--results",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="A `ser classify` results folder to take the label set, seed and best savable "
    "classifier and pooling from (its caches must be the ones given).",
)
@click.option(
    "--classifier",
    default=None,
    help="logreg, rf, knn, xgb, xgb-fast, linear or mlp [default: logreg, or RESULTS' best].",
)
@click.option("--labels", default=None, help="Label set [default: basic4, or RESULTS'].")
@click.option("--pooling", default=None, help="Pooling [default: auto, or RESULTS'].")
@click.option(
    "--layer",
    "layers",
    default="selected",
    show_default=True,
    help="selected (chosen on held-out training speakers), a layer, or a range with --combine.",
)
@click.option("--combine", type=click.Choice(COMBINES), default="each", show_default=True)
@click.option("--condition", default=None, help="Condition of the rows to fit on.")
@click.option("--model", default=None, help="Use only caches of this model.")
@click.option(
    "--seed",
    type=int,
    default=None,
    callback=check_seeds,
    help="Seed [default: 0, or RESULTS'].",
)
def export(**options) -> None:
    """Fit a probe on every labelled row of the caches and save it for `ser predict`.

    The bundle holds the extractor configuration and cache key, the label set,
    the layer, pooling, scaler and classifier (skops; xgboost as JSON) and the
    library versions. `ser predict BUNDLE audio/` then labels new recordings.
    """
    import pandas as pd

    from ssl_ser import manifest
    from ssl_ser.classify.features import CacheFeatures
    from ssl_ser.predict.export import export_probe, settings_from_results
    from ssl_ser.predict.integrity import check_replaceable

    check_replaceable(options["output"])  # before anything is read or fitted

    table = manifest.validate(
        pd.concat([manifest.read(p) for p in parse_paths(options["manifests"])], ignore_index=True)
    )
    sources = [CacheFeatures(path) for path in parse_paths(options["caches"])]
    chosen = {"classifier": "logreg", "labels": "basic4", "pooling": "auto", "seed": 0}
    if options["results"]:
        chosen.update(settings_from_results(options["results"], sources))
    chosen.update({k: options[k] for k in chosen if options[k] is not None})
    result = export_probe(
        sources,
        table,
        options["output"],
        layers=options["layers"],
        combine=options["combine"],
        condition=options["condition"],
        model=options["model"],
        **chosen,
    )
    click.echo(result.line)
