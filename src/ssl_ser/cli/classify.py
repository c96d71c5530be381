"""`ser classify`: layer-by-layer classifier sweeps over cached features."""

from __future__ import annotations

import click

from ssl_ser.classify.features import COMBINES
from ssl_ser.classify.measures import REQUESTED_TARGETS
from ssl_ser.classify.names import CLASSIFIER_NAMES
from ssl_ser.classify.sweep.plan import BACKENDS, dask_placement
from ssl_ser.cli.options import (
    parse_labels,
    parse_names,
    parse_paths,
    split_options,
    split_settings,
)

# The registries own the choices; the options list exactly theirs.


@click.command()
@click.option("--cache", "caches", required=True, help="Feature cache(s), comma-separated.")
@click.option(
    "--manifest",
    "manifests",
    required=True,
    help="Manifest(s) of the cached corpora (CSV/parquet).",
)
@split_options
@click.option(
    "--layers", default="all", show_default=True, help="all, a range 0-6, or a list 3,6,9."
)
@click.option(
    "--combine",
    type=click.Choice(COMBINES),
    default="each",
    show_default=True,
    help="Sweep layers one by one, or concatenate/average the selected layers.",
)
@click.option(
    "--pooling",
    "poolings",
    default="auto",
    show_default=True,
    help="auto (per extractor: mean+std for mfcc/logmel, the functionals for egemaps, "
    "mean for SSL models), mean, std, mean+std; a comma list sweeps several.",
)
@click.option(
    "--classifiers",
    default="logreg",
    show_default=True,
    help=f"Comma list of: {', '.join(CLASSIFIER_NAMES)}.",
)
@click.option("--model", default=None, help="Refuse caches of any other model.")
@click.option("--condition", default=None, help="Refuse caches of any other condition.")
@click.option(
    "--target",
    type=click.Choice(REQUESTED_TARGETS),
    default="emotion",
    show_default=True,
    help="What the probes predict. speaker: speaker identity per layer, on folds of "
    "utterances (speaker-dependent by construction; --split speaker-kfold or random).",
)
@click.option(
    "--control",
    is_flag=True,
    help="Also run the sweep on a control labelling (emotion labels permuted within each "
    "speaker, seeded by --seed): selectivity = UA - control UA. Doubles the sweep.",
)
@click.option(
    "--mdl",
    is_flag=True,
    help="Also compute each cell's online codelength (MDL, Voita & Titov 2020) of its "
    "training labels given the layer, and the compression against the uniform code.",
)
@click.option("--search/--no-search", default=False, help="Grid search on training speakers.")
@click.option("--speaker-norm/--no-speaker-norm", default=False, help="Per-speaker z-norm.")
@click.option(
    "--batched/--no-batched",
    default=True,
    show_default=True,
    help="All-layer probes (linear, mlp).",
)
@click.option(
    "--jobs",
    type=int,
    default=1,
    show_default=True,
    help="Parallel cells (processes); with --dask local, the local cluster's worker processes.",
)
@click.option(
    "--dask",
    default=None,
    metavar="ADDRESS|local",
    help="Run the cells on the workers of a Dask cluster: its scheduler address "
    "(tcp://host:8786), or 'local' for a cluster on the loopback interface. Results are the "
    "same as without.",
)
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="local",
    hidden=True,
    help="Deprecated: --backend dask is --dask local (or --dask ADDRESS with --scheduler).",
)
@click.option(
    "--scheduler",
    default=None,
    hidden=True,
    help="Deprecated: --backend dask --scheduler ADDRESS is --dask ADDRESS.",
)
@click.option(
    "--threads",
    type=int,
    default=None,
    help="BLAS/torch threads per cell [default: 1]. Part of each cell id: thread counts "
    "change the last digits of a fit.",
)
@click.option("--output", required=True, type=click.Path(file_okay=False), help="Results folder.")
@click.option("--force", is_flag=True, help="Redo cells already in the output folder.")
@click.option(
    "--allow-incomplete",
    is_flag=True,
    help="Classify the complete rows of a cache that lacks some of the manifest's utterances "
    "(refused by default).",
)
@click.option(
    "--save-probe",
    type=click.Path(file_okay=False),
    default=None,
    help="Also save a probe for `ser predict` here: the first classifier and pooling on the "
    "layer chosen on held-out training speakers among --layers (or the --combine of them), "
    "refit on all training rows (a cross-corpus split's --train corpora).",
)
@click.option("--progress/--no-progress", default=True, show_default=True)
def classify(**options) -> None:
    """Sweep classifiers over layers with speaker-independent cross-validation.

    Reads the caches once per layer, runs every (split fold, layer, pooling,
    classifier) cell not already in OUTPUT, and writes results.parquet/.csv,
    predictions.parquet and summary.csv there.
    """
    import dataclasses

    import pandas as pd

    from ssl_ser import manifest
    from ssl_ser.classify.features import CacheFeatures
    from ssl_ser.classify.sweep import SweepConfig, run_sweep

    parsed = {  # refused before any file is read
        "labels": parse_labels(options["labels"]),
        "layers": parse_names(options["layers"]),
        "poolings": parse_names(options["poolings"]),
        "classifiers": parse_names(options["classifiers"]),
        "split_options": split_settings(options),
    }
    backend, scheduler = dask_placement(options["dask"], options["backend"], options["scheduler"])
    parsed |= {"backend": backend, "scheduler": scheduler}
    table = manifest.validate(
        pd.concat([manifest.read(p) for p in parse_paths(options["manifests"])], ignore_index=True)
    )
    sources = [CacheFeatures(path) for path in parse_paths(options["caches"])]
    names = {f.name for f in dataclasses.fields(SweepConfig)}
    config = SweepConfig(**{k: v for k, v in options.items() if k in names} | parsed)
    if options["save_probe"]:
        _check_probe_export(config, sources)  # before the sweep, not after it
        from ssl_ser.predict.integrity import check_replaceable

        check_replaceable(options["save_probe"], options["output"])
    result = run_sweep(
        sources,
        table,
        config,
        options["output"],
        model=options["model"],
        condition=options["condition"],
        progress=options["progress"],
    )
    click.echo(
        f"{result.cells_run} cell(s) run, {result.cells_skipped} already done, "
        f"{result.seconds:.1f} s; results in {options['output']}"
    )
    click.echo(result.line)
    if options["save_probe"]:
        click.echo(_save_probe(sources, table, config, options).line)


def _check_probe_export(config, sources) -> None:
    """Refuse a --save-probe that cannot be made, before any cell runs.

    Raises:
        ConfigError: a target other than emotion, a classifier a bundle cannot hold,
            several conditions without --train-condition, or a cross-corpus split
            without named training corpora.
    """
    from ssl_ser.classify import registry
    from ssl_ser.errors import ConfigError
    from ssl_ser.predict.probe import check_savable

    if config.target != "emotion":
        raise ConfigError(
            f"--save-probe exports an emotion probe; --target {config.target} probes predict "
            "something else"
        )
    check_savable(registry.parse_classifiers(config.classifiers)[0])
    conditions = {str(s.key.get("condition", "clean")) for s in sources}
    if len(conditions) > 1 and config.train_condition is None:
        raise ConfigError(
            f"--save-probe: the caches hold conditions {sorted(conditions)}; pass "
            "--train-condition to say which the probe is fitted on"
        )
    crossed = config.split in ("cross-corpus", "few-shot")
    split = config.split_options
    if crossed and not (split.train_corpora or split.test_corpora):
        raise ConfigError(
            f"--save-probe with --split {config.split}: each held-out corpus has its own training "
            "set; name the training corpora with --train (or the test ones with --test)"
        )


def _save_probe(sources, table, config, options: dict):
    """Export the sweep's first classifier and pooling, fitted on its training rows."""
    from ssl_ser.classify import registry
    from ssl_ser.predict.export import SELECTED, export_probe

    classifier = registry.parse_classifiers(config.classifiers)[0]
    each = config.combine == "each"
    split = config.split_options
    train = split.train_corpora
    if config.split in ("cross-corpus", "few-shot") and not train:
        present = sorted(table["corpus"].unique())
        train = tuple(c for c in present if c not in split.test_corpora)
    return export_probe(
        sources,
        table,
        options["save_probe"],
        classifier=classifier,
        labels=config.labels,
        pooling=config.poolings[0],
        layers=SELECTED if each else config.layers,
        choose_from=config.layers if each else "all",
        combine=config.combine,
        condition=config.train_condition,
        params=config.params.get(classifier),
        seed=config.seed,
        model=options["model"],
        train_corpora=train if config.split in ("cross-corpus", "few-shot") else (),
    )
