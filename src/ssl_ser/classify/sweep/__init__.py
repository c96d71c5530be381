"""Layer-by-layer classifier sweeps: datasets x splits x layers x classifiers -> results.

:func:`run_sweep` joins feature sources with a manifest, makes the folds, reads
every needed (layer, pooling) once, and runs the cells in parallel: joblib
processes on this machine, or the workers of a Dask cluster (``backend="dask"``,
see :mod:`~ssl_ser.classify.sweep.cluster`).
Cells of one fold that a batched probe can train together (``linear`` and
``mlp`` over single layers) run as one task; ``mlp-weighted`` takes all layers
at once. Every cell is stored as soon as it finishes (see
:mod:`ssl_ser.classify.results`), so a re-run skips finished cells unless
``force`` is set. Hyperparameter search and early stopping use inner splits of
the training speakers only: no task ever receives test labels except to score.

The work is split by job: :mod:`~ssl_ser.classify.sweep.plan` (settings, folds,
tasks and cell ids), :mod:`~ssl_ser.classify.sweep.run` (fitting),
:mod:`~ssl_ser.classify.sweep.score` (metrics and predictions) and
:mod:`~ssl_ser.classify.sweep.store` (saving cells, moving superseded ones aside);
:mod:`~ssl_ser.classify.sweep.cluster` runs tasks on Dask.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ssl_ser.classify import registry
from ssl_ser.classify.dataset import Dataset, build_datasets
from ssl_ser.classify.features import (
    FeatureBlocks,
    FeatureSource,
    load_blocks,
    speaker_znorm,
)
from ssl_ser.classify.measures import retarget
from ssl_ser.classify.results import CellStore, removed_if_refused, summary_line, write_tables
from ssl_ser.classify.sweep.codelength import check_mdl
from ssl_ser.classify.sweep.plan import SweepConfig, plan_dataset, sweep_poolings
from ssl_ser.classify.sweep.run import run_tasks
from ssl_ser.classify.sweep.score import CellInfo, Outcome, Rows, score_cell
from ssl_ser.classify.sweep.store import supersede_other_cells

__all__ = [
    "CellInfo",
    "Outcome",
    "Rows",
    "SweepConfig",
    "SweepCounts",
    "SweepResult",
    "run_sweep",
    "run_sweep_cells",
    "score_cell",
    "supersede_other_cells",
    "sweep_poolings",
]

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    """What a sweep produced: tables, counts and the one-line summary."""

    results: pd.DataFrame
    summary: pd.DataFrame
    paths: dict[str, Path]
    cells_run: int
    cells_skipped: int
    seconds: float

    @property
    def line(self) -> str:
        """Best layer and UA per classifier."""
        return summary_line(self.summary)


@dataclass
class SweepCounts:
    """What :func:`run_sweep_cells` did: cells run, cells already stored, seconds."""

    cells_run: int
    cells_skipped: int
    seconds: float


def run_sweep_cells(
    sources: Sequence[FeatureSource],
    manifest: pd.DataFrame,
    config: SweepConfig,
    output: str | Path,
    *,
    model: str | None = None,
    condition: str | None = None,
    progress: bool = False,
) -> SweepCounts:
    """Run and store every cell of the sweep not already stored in `output`; no tables.

    A caller that runs several sweeps into one folder calls this for each and
    :func:`~ssl_ser.classify.results.write_tables` once at the end.

    `sources` (caches or in-memory) may be of several corpora, conditions or
    extractors; `manifest` holds their utterances' labels and speakers. Finished
    cells in `output` are reused unless ``force``; `model` and `condition` refuse
    sources of another one.
    """
    start = time.perf_counter()
    names = registry.parse_classifiers(config.classifiers)
    if config.mdl:
        check_mdl(names)
    datasets = build_datasets(
        sources,
        manifest,
        config.labels,
        model=model,
        condition=condition,
        allow_incomplete=config.allow_incomplete,
    )
    poolings = sweep_poolings(datasets, config.poolings)  # refuses before anything is written
    ran = skipped = 0
    with removed_if_refused(output):  # a refused plan leaves no empty folder
        store = CellStore(output)
        for dataset, chosen in zip(datasets, poolings, strict=True):
            for target in config.targets:  # the emotion (or speaker) sweep, then its control
                settings = dataclasses.replace(config, target=target, control=False)
                relabelled = retarget(dataset, target, config.seed, config.split)
                r, s = _sweep_dataset(relabelled, names, settings, store, progress, chosen)
                ran, skipped = ran + r, skipped + s
    return SweepCounts(ran, skipped, time.perf_counter() - start)


def run_sweep(
    sources: Sequence[FeatureSource],
    manifest: pd.DataFrame,
    config: SweepConfig | Sequence[SweepConfig],
    output: str | Path,
    *,
    model: str | None = None,
    condition: str | None = None,
    progress: bool = False,
) -> SweepResult:
    """Run the sweep's pending cells (:func:`run_sweep_cells`), then rebuild `output`'s tables.

    Several configs (one per seed or shot count) run one after another into
    `output`, and the tables are built once, with the first one's bootstrap. The
    tables (results, predictions, summary) cover every cell stored in `output`,
    these sweeps' and earlier ones'.
    """
    start = time.perf_counter()
    configs = [config] if isinstance(config, SweepConfig) else list(config)
    counts = [
        run_sweep_cells(sources, manifest, c, output, model=model, condition=condition,
                        progress=progress)
        for c in configs
    ]  # fmt: skip
    paths = write_tables(CellStore(output), n_boot=configs[0].bootstrap, seed=configs[0].seed)
    results = pd.read_parquet(paths["results"])
    summary = pd.read_csv(paths["summary"])
    ran, skipped = sum(c.cells_run for c in counts), sum(c.cells_skipped for c in counts)
    return SweepResult(results, summary, paths, ran, skipped, time.perf_counter() - start)


def _sweep_dataset(
    dataset: Dataset,
    names: list[str],
    config: SweepConfig,
    store: CellStore,
    progress: bool,
    poolings: list[str],
) -> tuple[int, int]:
    """Run one dataset's pending cells: (cells run, cells already stored)."""
    plan = plan_dataset(dataset, names, config, store, poolings)
    if not plan.tasks:
        log.info(
            "%s: all %d cell(s) already done in %s", dataset.extractor, plan.total, store.output
        )
        return 0, plan.total
    blocks = load_blocks(
        dataset.sources,
        dataset.table["source"].to_numpy(),
        dataset.table["position"].to_numpy(),
        plan.needed_layers(),
        poolings,
        progress=progress,
    )
    if config.speaker_norm:
        blocks = FeatureBlocks(
            blocks.layers,
            {p: speaker_znorm(b, plan.rows.groups) for p, b in blocks.blocks.items()},
        )
    run_tasks(plan.tasks, blocks, plan.rows, config, store, progress)
    return plan.pending, plan.total - plan.pending
