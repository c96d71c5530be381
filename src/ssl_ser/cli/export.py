"""`ser export`: fit a probe on all training rows of cached features and save it as a bundle."""

from __future__ import annotations

from pathlib import Path

import click

from ssl_ser.predict.settings import ExportSettings
from ssl_ser.settings import options


@click.command()
@options(ExportSettings)
def export(**values) -> None:
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

    settings = ExportSettings.from_cli(values)
    check_replaceable(settings.output)  # before anything is read or fitted

    table = manifest.validate(
        pd.concat([manifest.read(Path(p)) for p in settings.manifests], ignore_index=True)
    )
    sources = [CacheFeatures(Path(path)) for path in settings.caches]
    chosen = {"classifier": "logreg", "labels": "basic4", "pooling": "auto", "seed": 0}
    if settings.results:
        chosen.update(settings_from_results(settings.results, sources))
    chosen.update({k: getattr(settings, k) for k in chosen if getattr(settings, k) is not None})
    result = export_probe(sources, table, **settings.fields_of(export_probe, **chosen))
    click.echo(result.line)
