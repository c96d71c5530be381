"""`ser classify`: layer-by-layer classifier sweeps over cached features."""

from __future__ import annotations

from typing import Any

import click

from ssl_ser.classify.settings import ClassifyRun, SplitSettings, SweepGrid, SweepSettings
from ssl_ser.errors import ConfigError
from ssl_ser.settings import Feedback, options


@click.command()
@options(ClassifyRun, only=("caches", "manifests"))
@options(SweepGrid)
@options(SplitSettings)
@options(ClassifyRun, only=("train_condition", "test_condition", "model", "condition"))
@options(SweepSettings)
@options(ClassifyRun, only=("output", "force", "allow_incomplete", "save_probe"))
@options(Feedback)
def classify(**values: Any) -> None:
    """Sweep classifiers over layers with speaker-independent cross-validation.

    Reads the caches once per layer, runs every (split fold, layer, pooling,
    classifier) cell not already in OUTPUT, and writes results.parquet/.csv,
    predictions.parquet and summary.csv there. Several --seed values, and with
    --split few-shot several --shots, run one sweep each into OUTPUT (results
    keep them apart by their seed and shots columns).
    """
    import pandas as pd

    from ssl_ser import manifest
    from ssl_ser.classify.features import CacheFeatures
    from ssl_ser.classify.sweep import run_sweep

    run = ClassifyRun.from_cli(values)
    configs = sweep_configs(values)  # refused before any file is read
    table = manifest.validate(
        pd.concat([manifest.read(p) for p in run.manifests], ignore_index=True)
    )
    sources = [CacheFeatures(path) for path in run.caches]
    if run.save_probe:
        _check_probe_export(configs[0], sources)  # before the sweep, not after it
        from ssl_ser.predict.integrity import check_replaceable

        check_replaceable(run.save_probe, run.output)
    result = run_sweep(
        sources,
        table,
        configs,
        run.output,
        model=run.model,
        condition=run.condition,
        progress=values["progress"],
    )
    click.echo(
        f"{result.cells_run} cell(s) run, {result.cells_skipped} already done, "
        f"{result.seconds:.1f} s; results in {run.output}"
    )
    click.echo(result.line)
    if run.save_probe:
        click.echo(_save_probe(sources, table, configs[0], values).line)


def sweep_configs(values: dict[str, Any]) -> list[Any]:
    """One SweepConfig per --seed and, with --split few-shot, per --shots value.

    Raises:
        ConfigError: an option the split does not read (see SplitSettings), both
            Dask spellings (see SweepSettings), or --save-probe with several runs.
    """
    from ssl_ser.classify.settings import sweep_config
    from ssl_ser.classify.sweep import SweepConfig

    grid, split = SweepGrid.from_cli(values), SplitSettings.from_cli(values)
    sweep, run = SweepSettings.from_cli(values), ClassifyRun.from_cli(values)
    shots = split.shots if split.method == "few-shot" else (None,)
    runs = [(seed, count) for seed in grid.seeds for count in shots]
    if run.save_probe and len(runs) > 1:
        raise ConfigError("--save-probe saves one probe; give one --seed (and one --shots)")
    fields = run.fields_of(SweepConfig)
    return [sweep_config(grid, split, sweep, seed=s, shots=n, **fields) for s, n in runs]


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
