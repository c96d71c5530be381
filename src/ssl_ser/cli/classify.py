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
    from ssl_ser.predict.export import check_sweep_export, export_sweep_probe

    run = ClassifyRun.from_cli(values)
    configs = sweep_configs(values)  # refused before any file is read
    table = manifest.validate(
        pd.concat([manifest.read(p) for p in run.manifests], ignore_index=True)
    )
    sources = [CacheFeatures(path) for path in run.caches]
    if run.save_probe:  # refused before the sweep, not after it
        check_sweep_export(configs[0], sources, run.save_probe, run.output)
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
        saved = export_sweep_probe(sources, table, configs[0], run.save_probe, run.model)
        click.echo(saved.line)


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
