"""Layer-by-layer classifier sweeps: datasets x splits x layers x classifiers -> results.

:func:`run_sweep` joins feature sources with a manifest, makes the folds, reads
every needed (layer, pooling) once, and runs the cells in parallel with joblib.
Cells of one fold that a batched probe can train together (``linear`` and
``mlp`` over single layers) run as one task; ``mlp-weighted`` takes all layers
at once. Every cell is stored as soon as it finishes (see
:mod:`ssl_ser.classify.results`), so a re-run skips finished cells unless
``force`` is set. Hyperparameter search and early stopping use inner splits of
the training speakers only: no task ever receives test labels except to score.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ssl_ser import __version__
from ssl_ser.classify import registry
from ssl_ser.classify.dataset import Dataset, build_datasets
from ssl_ser.classify.features import (
    FeatureBlocks,
    FeatureSource,
    FeatureSpec,
    check_honoured,
    feature_specs,
    load_blocks,
    parse_layers,
    resolve_poolings,
    speaker_znorm,
    stored_poolings,
)
from ssl_ser.classify.metrics import bootstrap_ua, confusion_matrix, scores_from_confusion
from ssl_ser.classify.results import (
    GROUP_COLUMNS,
    SUPERSEDED_DIR,
    WEIGHTED_LAYER,
    CellStore,
    cell_id,
    summary_line,
    write_tables,
)
from ssl_ser.classify.splits import (
    SPEAKER_INDEPENDENT,
    Fold,
    SplitOptions,
    condition_folds,
    drop_unseen_classes,
    fold_digest,
)
from ssl_ser.errors import UnknownChoiceError
from ssl_ser.progress import StepLines
from ssl_ser.workers import exit_with_parent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepConfig:
    """What to sweep; every field that changes results is part of each cell's id.

    ``labels`` is a label set name (basic4, all, sentiment) or a comma list of
    canonical emotions (``angry,happy,sad,neutral,fear,disgust``); results record
    the set's one spelling (see :mod:`ssl_ser.labels`). ``poolings`` (``auto`` by
    default) resolves per extractor (see
    :func:`~ssl_ser.classify.features.resolve_poolings`); cell ids and results
    hold the pooling each extractor actually used, never the word ``auto``.
    """

    labels: str = "basic4"
    layers: str = "all"
    combine: str = "each"
    poolings: str = "auto"
    classifiers: str = "logreg"
    split: str = "speaker-kfold"
    folds: int = 5
    seed: int = 0
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    train_corpora: tuple[str, ...] = ()
    test_corpora: tuple[str, ...] = ()
    shots: int = 10
    train_condition: str | None = None
    test_condition: str | None = None
    search: bool = False
    speaker_norm: bool = False
    batched: bool = True
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    bootstrap: int = 1000
    jobs: int = 1
    threads: int | None = None
    force: bool = False
    allow_incomplete: bool = False

    @property
    def cell_threads(self) -> int:
        """BLAS/OpenMP/torch threads of one cell: ``threads``, else 1 whatever ``jobs`` is.

        The thread count changes a fit's arithmetic in its last digits (reduction
        order), so it is part of every cell's id; a fixed default keeps ``--jobs 1``
        and ``--jobs 2`` computing, and reusing, the same cells.
        """
        return self.threads or 1

    def split_options(self) -> SplitOptions:
        """The settings the split methods read."""
        return SplitOptions(
            folds=self.folds,
            seed=self.seed,
            ratios=tuple(self.ratios),
            train_corpora=tuple(self.train_corpora),
            test_corpora=tuple(self.test_corpora),
            shots=self.shots,
        )


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
class Task:
    """One unit of parallel work: one or more cells sharing a fold, classifier and pooling."""

    kind: str  # "single", "batched" or "weighted"
    classifier: str
    specs: list[FeatureSpec]
    cells: list[str]
    fold: Fold
    n_dropped: int
    meta: dict[str, Any]
    params: dict[str, Any]


@dataclass
class Rows:
    """Per-row arrays the tasks need (small; the features travel separately)."""

    codes: np.ndarray
    groups: np.ndarray
    utt_ids: np.ndarray
    corpora: np.ndarray
    classes: tuple[str, ...]


def run_sweep(
    sources: Sequence[FeatureSource],
    manifest: pd.DataFrame,
    config: SweepConfig,
    output: str | Path,
    *,
    model: str | None = None,
    condition: str | None = None,
    progress: bool = False,
    tables: bool = True,
) -> SweepResult:
    """Run every cell of the sweep not already stored in `output`; write the tables.

    Args:
        sources: feature sources (caches or in-memory), possibly of several corpora,
            conditions or extractors.
        manifest: manifest rows of the sources' utterances (labels, speakers...).
        config: what to sweep.
        output: results directory; finished cells there are reused unless ``force``.
        model: refuse sources computed by another model.
        condition: refuse sources of another condition.
        progress: show progress bars.
        tables: rebuild the folder's tables (results, predictions, summary) after the
            sweep. A caller that runs several sweeps into one folder passes False and
            calls :func:`~ssl_ser.classify.results.write_tables` once at the end; the
            result then holds the counts only.
    """
    start = time.perf_counter()
    names = registry.parse_classifiers(config.classifiers)
    datasets = build_datasets(
        sources,
        manifest,
        config.labels,
        model=model,
        condition=condition,
        allow_incomplete=config.allow_incomplete,
    )
    poolings = sweep_poolings(datasets, config.poolings)  # refuses before anything is written
    store = CellStore(output)
    ran = skipped = 0
    for dataset, chosen in zip(datasets, poolings, strict=True):
        r, s = _sweep_dataset(dataset, names, config, store, progress, chosen)
        ran, skipped = ran + r, skipped + s
    if not tables:
        empty = pd.DataFrame()
        return SweepResult(empty, empty, {}, ran, skipped, time.perf_counter() - start)
    paths = write_tables(store, n_boot=config.bootstrap, seed=config.seed)
    results = pd.read_parquet(paths["results"])
    summary = pd.read_csv(paths["summary"])
    return SweepResult(results, summary, paths, ran, skipped, time.perf_counter() - start)


def sweep_poolings(datasets: Sequence[Dataset], spec: str) -> list[list[str]]:
    """Each dataset's pooling choices, resolved before any cell runs (warnings logged).

    Raises:
        ConfigError: an explicit choice that no dataset's extractor stores.
        UnknownChoiceError: a choice that is not a pooling.
    """
    choices = [
        resolve_poolings(spec, dataset.extractor, stored_poolings(dataset.sources))
        for dataset in datasets
    ]
    check_honoured(choices, "the sweep")
    for choice in choices:
        for note in choice.notes:
            log.warning("%s", note)
    return [list(choice.poolings) for choice in choices]


def _sweep_dataset(
    dataset: Dataset,
    names: list[str],
    config: SweepConfig,
    store: CellStore,
    progress: bool,
    poolings: list[str],
) -> tuple[int, int]:
    layers = parse_layers(config.layers, dataset.layers)
    specs = feature_specs(layers, config.combine, poolings)
    rows = Rows(
        codes=dataset.table["label"].map({c: i for i, c in enumerate(dataset.classes)}).to_numpy(),
        groups=(dataset.table["group"] + "|" + dataset.table["condition"]).to_numpy(),
        utt_ids=dataset.table["utt_id"].to_numpy(),
        corpora=dataset.table["corpus"].to_numpy(),
        classes=dataset.classes,
    )
    tasks = []
    total = 0
    digest = dataset.digest()
    described: dict[str, Mapping[str, Any]] = {}
    for train_condition, test_condition in _scenarios(dataset, config):
        folds = condition_folds(
            dataset.table, train_condition, test_condition, config.split, config.split_options()
        )
        log.info(
            "%s %s -> %s, %s folds (train/test rows): %s",
            dataset.extractor,
            train_condition,
            test_condition,
            config.split,
            describe_folds(folds),
        )
        for fold in folds:
            fold, n_dropped = drop_unseen_classes(fold, dataset.table["label"].to_numpy())
            meta = _fold_meta(dataset, fold, config, train_condition, test_condition, digest)
            for name in names:
                new, count = _tasks_for(
                    name, specs, layers, poolings, fold, n_dropped, meta, config, store, described
                )
                tasks += new
                total += count
    _supersede_other_cells(dataset, described, store)
    pending = sum(len(t.cells) for t in tasks)
    if not tasks:
        log.info("%s: all %d cell(s) already done in %s", dataset.extractor, total, store.output)
        return 0, total
    needed = _needed_layers(tasks, layers)
    blocks = load_blocks(
        dataset.sources,
        dataset.table["source"].to_numpy(),
        dataset.table["position"].to_numpy(),
        needed,
        poolings,
        progress=progress,
    )
    if config.speaker_norm:
        blocks = FeatureBlocks(
            blocks.layers, {p: speaker_znorm(b, rows.groups) for p, b in blocks.blocks.items()}
        )
    _run_tasks(tasks, blocks, rows, config, store, progress)
    return pending, total - pending


def setting_key(row: Mapping[str, Any]) -> tuple[str, ...]:
    """What a cell measures, whatever options computed it: its summary group."""
    return tuple(str(row.get(column)) for column in GROUP_COLUMNS)


def _supersede_other_cells(
    dataset: Dataset, described: Mapping[str, Mapping[str, Any]], store: CellStore
) -> None:
    """Move aside stored cells that would sit beside this sweep's in the tables.

    Two kinds, found in one pass over the stored cells:

    - stale features: cells of this dataset's cache keys computed from other
      features (the caches were rebuilt or re-extracted from other audio since, or
      the cell predates features digests);
    - other runs: cells that measure what this sweep measures under other ids
      (another thread count, fold count, cache list or data); kept, a fold would
      count twice and the spread would narrow.
    """
    keys = json.dumps(dataset.keys(), sort_keys=True, default=str)
    features = dataset.features_digest()
    mine = set(described)
    settings = {setting_key(description) for description in described.values()}
    moved: Counter[str] = Counter()

    def superseded(row: Mapping[str, Any]) -> bool:
        if row.get("cache_keys") == keys and row.get("features_digest") != features:
            moved["stale"] += 1
        elif row.get("cell_id") not in mine and setting_key(row) in settings:
            moved["other"] += 1
        else:
            return False
        return True

    store.supersede(superseded)
    where = f"moved them to {store.cells / SUPERSEDED_DIR}"
    if moved["stale"]:
        log.warning(
            "%s: %d cell(s) in %s were computed from other features of the same cache key(s) "
            "(a cache rebuilt or re-extracted since, or results of an older ssl-ser); %s and "
            "computing them again",
            dataset.extractor,
            moved["stale"],
            store.output,
            where,
        )
    if moved["other"]:
        log.warning(
            "%s: %d cell(s) in %s measured the same settings with other options or data "
            "(threads, folds, caches); %s so that no fold counts twice",
            dataset.extractor,
            moved["other"],
            store.output,
            where,
        )


def _scenarios(dataset: Dataset, config: SweepConfig) -> list[tuple[str, str]]:
    """(train condition, test condition) pairs: the requested one, else each matched."""
    present = dataset.conditions
    if config.train_condition is None and config.test_condition is None:
        return [(c, c) for c in present]
    train = config.train_condition or config.test_condition
    test = config.test_condition or config.train_condition
    for value in (train, test):
        if value not in present:
            raise UnknownChoiceError("condition", value, present, where="the feature sources")
    return [(train, test)]


def _fold_corpora(dataset: Dataset, fold: Fold) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Corpus labels of a fold: the split's own for cross-corpus, else the whole pool.

    Labelling a pooled fold by the corpora its test speakers happen to come from
    would give folds of one cell different labels; per-corpus rows come separately.
    """
    if fold.test_corpora:
        return tuple(sorted(fold.train_corpora)), tuple(sorted(fold.test_corpora))
    pool = tuple(sorted(dataset.table["corpus"].unique()))
    return pool, pool


def _fold_meta(
    dataset: Dataset,
    fold: Fold,
    config: SweepConfig,
    train_condition: str,
    test_condition: str,
    digest: str,
) -> dict[str, Any]:
    """Columns shared by every cell of a fold (and, with layer/classifier, its id)."""
    train_corpora, test_corpora = _fold_corpora(dataset, fold)
    return {
        "extractor": dataset.extractor,
        "train_corpus": "+".join(train_corpora),
        "train_condition": train_condition,
        "test_corpus": "+".join(test_corpora),
        "test_condition": test_condition,
        "split": config.split,
        "fold": fold.name,
        "seed": config.seed,
        "labels": dataset.label_set,
        "speaker_norm": config.speaker_norm,
        "search": config.search,
        "speaker_independent": fold.speaker_independent and config.split in SPEAKER_INDEPENDENT,
        "grouping": ",".join(f"{k}:{v}" for k, v in sorted(dataset.grouping.items())),
        "cache_keys": json.dumps(dataset.keys(), sort_keys=True, default=str),
        "data_digest": digest,
        "features_digest": dataset.features_digest(),
        "split_options": asdict(config.split_options()),
        "threads": config.cell_threads,
        "shots": config.shots if config.split == "few-shot" else None,
        "fold_digest": fold_digest(dataset.table["utt_id"].to_numpy(), fold),
    }


def _cell_description(
    meta: Mapping[str, Any], layer: str, pooling: str, classifier: str, params, batched: bool
) -> dict:
    described = {**meta, "layer": layer, "pooling": pooling, "classifier": classifier}
    # all-layer batched torch heads train what per-layer ones do, but not bit for bit
    return {**described, "params": params, **({"batched": True} if batched else {})}


def _tasks_for(
    name: str,
    specs: list[FeatureSpec],
    layers: list[str],
    poolings: list[str],
    fold: Fold,
    n_dropped: int,
    meta: dict[str, Any],
    config: SweepConfig,
    store: CellStore,
    described: dict[str, Mapping[str, Any]],
) -> tuple[list[Task], int]:
    """Tasks of one classifier on one fold (finished cells left out) and the cell count.

    Every cell's description is added to `described` (cell id -> description).
    """
    spec = registry.get(name)
    params = {**spec.defaults, **config.params.get(name, {})}
    batch = (
        config.batched and spec.batched is not None and config.combine == "each" and len(layers) > 1
    )

    def pending(layer: str, pooling: str) -> tuple[str, bool]:
        description = _cell_description(meta, layer, pooling, name, params, batch)
        cell = cell_id(description)
        described[cell] = description
        return cell, config.force or not store.done(cell)

    tasks: list[Task] = []
    if not spec.per_layer:
        count = len(poolings)
        for pooling in poolings:
            weighted = FeatureSpec(tuple(layers), "each", pooling)
            cell, todo = pending(WEIGHTED_LAYER, pooling)
            if todo:
                tasks.append(
                    Task("weighted", name, [weighted], [cell], fold, n_dropped, meta, params)
                )
        return tasks, count
    by_pooling: dict[str, Task] = {}
    for feature in specs:
        cell, todo = pending(feature.label, feature.pooling)
        if not todo:
            continue
        if batch:
            task = by_pooling.setdefault(
                feature.pooling, Task("batched", name, [], [], fold, n_dropped, meta, params)
            )
            task.specs.append(feature)
            task.cells.append(cell)
        else:
            tasks.append(Task("single", name, [feature], [cell], fold, n_dropped, meta, params))
    return tasks + list(by_pooling.values()), len(specs)


def _needed_layers(tasks: list[Task], layers: list[str]) -> list[str]:
    wanted = {layer for task in tasks for spec in task.specs for layer in spec.layers}
    return [layer for layer in layers if layer in wanted]


def _run_tasks(
    tasks: list[Task],
    blocks: FeatureBlocks,
    rows: Rows,
    config: SweepConfig,
    store: CellStore,
    progress: bool,
) -> None:
    """Run tasks (largest first) with joblib; features are shared through memory maps."""
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    jobs = max(1, min(config.jobs, len(tasks)))
    threads = config.cell_threads
    tasks = sorted(tasks, key=lambda t: -len(t.cells))
    n_cells = sum(len(t.cells) for t in tasks)
    lines = StepLines("classify", n_cells, "cells")
    with (
        _shared(blocks, jobs, store.output) as shared,
        tqdm(total=n_cells, desc="classify", unit="cell", disable=not progress) as bar,
    ):
        if jobs == 1:
            outcomes: Iterator[tuple[int, int]] = (
                (i, run_task(t, shared, rows, config, store, threads)) for i, t in enumerate(tasks)
            )
        else:
            parent = os.getpid()
            outcomes = Parallel(n_jobs=jobs, return_as="generator_unordered")(
                delayed(_in_worker)(i, parent, run_task, t, shared, rows, config, store, threads)
                for i, t in enumerate(tasks)
            )
        for index, done in outcomes:
            bar.update(done)
            if not progress:
                lines.step(done, describe_task(tasks[index]))


def _in_worker(
    index: int, parent: int, function: Callable[..., int], *args: Any
) -> tuple[int, int]:
    """Run `function` in a worker that dies with `parent`; ``(index, result)`` names the task."""
    exit_with_parent(parent)
    return index, function(*args)


def describe_task(task: Task) -> str:
    """What a finished task was, for a progress line: ``logreg mean, layers 0..12 (13), fold 2``."""
    labels = [spec.label for spec in task.specs]
    where = f"layer {labels[0]}" if len(labels) == 1 else f"layers {labels[0]}..{labels[-1]}"
    if len(labels) > 1:
        where += f" ({len(labels)})"
    pooling = task.specs[0].pooling if task.specs else "?"
    return f"{task.classifier} {pooling}, {where}, fold {task.fold.name}"


class _shared:  # noqa: N801 (used as a context manager)
    """Feature blocks as read-only memory maps for worker processes (or as they are for one)."""

    def __init__(self, blocks: FeatureBlocks, jobs: int, output: Path):
        self.blocks = blocks
        self.jobs = jobs
        self.folder: Path | None = None
        self.output = output

    def __enter__(self) -> FeatureBlocks:
        if self.jobs == 1:
            return self.blocks
        self.folder = Path(tempfile.mkdtemp(prefix=".features-", dir=self.output))
        mapped = {}
        for pooling, block in self.blocks.blocks.items():
            path = self.folder / f"{pooling}.npy"
            np.save(path, block)
            mapped[pooling] = np.load(path, mmap_mode="r")
        return FeatureBlocks(self.blocks.layers, mapped)

    def __exit__(self, *exc) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def run_task(
    task: Task,
    blocks: FeatureBlocks,
    rows: Rows,
    config: SweepConfig,
    store: CellStore,
    threads: int,
) -> int:
    """Fit and score the cells of one task, store each; returns the number of cells."""
    from threadpoolctl import threadpool_limits

    runner = {"single": _run_single, "batched": _run_batched, "weighted": _run_weighted}
    with threadpool_limits(threads), _torch_threads(task, threads):
        for cell, spec, outcome in runner[task.kind](task, blocks, rows, config, threads):
            _store_cell(store, cell, task, spec, outcome, rows, config)
    return len(task.cells)


@contextlib.contextmanager
def _torch_threads(task: Task, threads: int) -> Iterator[None]:
    """Torch's thread count for a task's torch heads, restored afterwards."""
    uses_torch = task.kind != "single" or registry.get(task.classifier).batched is not None
    if not uses_torch:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class Outcome:
    """A fitted cell's test output: predicted codes, probabilities, chosen values."""

    predicted: np.ndarray
    probabilities: np.ndarray | None
    class_codes: np.ndarray
    chosen: dict[str, Any]
    val_ua: float
    seconds: float


def _run_single(task: Task, blocks: FeatureBlocks, rows: Rows, config: SweepConfig, threads: int):
    from ssl_ser.classify.search import fit_single

    spec = task.specs[0]
    start = time.perf_counter()
    x = blocks.matrix(spec)
    fold = task.fold
    model, chosen, val_ua = fit_single(
        task.classifier,
        task.params,
        np.asarray(x[fold.train]),
        rows.codes[fold.train],
        rows.groups[fold.train],
        search=config.search,
        seed=config.seed,
        threads=threads,
    )
    x_test = np.asarray(x[fold.test])
    classes = model.classes_
    probabilities = model.predict_proba(x_test) if hasattr(model, "predict_proba") else None
    predicted = (
        classes[np.argmax(probabilities, axis=1)]
        if probabilities is not None
        else model.predict(x_test)
    )
    yield (
        task.cells[0],
        spec,
        Outcome(predicted, probabilities, classes, chosen, val_ua, time.perf_counter() - start),
    )


def _run_batched(task: Task, blocks: FeatureBlocks, rows: Rows, config: SweepConfig, threads: int):
    from ssl_ser.classify.search import fit_batched

    start = time.perf_counter()
    fold = task.fold
    layers = [spec.layers[0] for spec in task.specs]
    stacked = blocks.stack(task.specs[0].pooling, layers)
    probes = fit_batched(
        registry.get(task.classifier).batched,
        task.params,
        stacked,
        fold.train,
        rows.codes[fold.train],
        rows.groups[fold.train],
        search=config.search,
        seed=config.seed,
    )
    test_x = np.take(stacked, fold.test, axis=1)
    seconds = (time.perf_counter() - start) / len(layers)
    for probe, positions, chosen in probes:
        probabilities = probe.predict_proba(np.take(test_x, positions, axis=0))
        for i, position in enumerate(positions):
            p = probabilities[i]
            yield (
                task.cells[position],
                task.specs[position],
                Outcome(
                    probe.classes_[np.argmax(p, axis=1)],
                    p,
                    probe.classes_,
                    chosen[i],
                    float(probe.validation_ua_[i]),
                    seconds,
                ),
            )


def _run_weighted(task: Task, blocks: FeatureBlocks, rows: Rows, config: SweepConfig, threads: int):
    from ssl_ser.classify.search import fit_weighted

    start = time.perf_counter()
    fold = task.fold
    spec = task.specs[0]
    stacked = blocks.stack(spec.pooling, list(spec.layers))
    probe, chosen = fit_weighted(
        task.params,
        stacked,
        fold.train,
        rows.codes[fold.train],
        rows.groups[fold.train],
        search=config.search,
        seed=config.seed,
    )
    chosen = {
        **chosen,
        "layer_weights": dict(
            zip(spec.layers, probe.layer_weights_.round(4).tolist(), strict=True)
        ),
    }
    probabilities = probe.predict_proba(np.take(stacked, fold.test, axis=1))
    yield (
        task.cells[0],
        spec,
        Outcome(
            probe.classes_[np.argmax(probabilities, axis=1)],
            probabilities,
            probe.classes_,
            chosen,
            float(probe.validation_ua_),
            time.perf_counter() - start,
        ),
    )


def _store_cell(
    store: CellStore,
    cell: str,
    task: Task,
    spec: FeatureSpec,
    outcome: Outcome,
    rows: Rows,
    config: SweepConfig,
) -> None:
    """Score one probe cell and store it (see :func:`store_cell`)."""
    store_cell(
        store,
        cell,
        CellInfo(
            meta=task.meta,
            layer=WEIGHTED_LAYER if task.kind == "weighted" else spec.label,
            pooling=spec.pooling,
            classifier=task.classifier,
            params=task.params,
            n_dropped=task.n_dropped,
        ),
        task.fold,
        outcome,
        rows,
        bootstrap=config.bootstrap,
        seed=config.seed,
    )


@dataclass
class CellInfo:
    """What names a stored cell besides its fold: shared columns, layer, pooling, classifier."""

    meta: Mapping[str, Any]
    layer: str
    pooling: str
    classifier: str
    params: Mapping[str, Any]
    n_dropped: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)


def store_cell(
    store: CellStore,
    cell: str,
    info: CellInfo,
    fold: Fold,
    outcome: Outcome,
    rows: Rows,
    *,
    bootstrap: int,
    seed: int,
) -> None:
    """Score a cell (pooled and per test corpus) and store its rows and predictions.

    Probe cells and fine-tune cells are stored here alike, so both land in the
    same results schema.
    """
    classes = rows.classes
    true = rows.codes[fold.test]
    predicted = np.asarray(outcome.predicted, dtype=np.int64)
    base = {
        **{k: v for k, v in info.meta.items() if k not in ("split_options", "data_digest")},
        "layer": info.layer,
        "pooling": info.pooling,
        "classifier": info.classifier,
        "cell_id": cell,
        "n_train": len(fold.train),
        "n_dropped": info.n_dropped,
        "params": json.dumps({**info.params, **outcome.chosen}, sort_keys=True, default=str),
        "val_ua": outcome.val_ua,
        "fit_seconds": round(outcome.seconds, 3),
        "toolkit_version": __version__,  # recorded, not part of the cell id
        **info.extra,
    }
    corpora = rows.corpora[fold.test]
    scopes = [(base["test_corpus"], np.ones(len(true), dtype=bool))]
    present = np.unique(corpora)
    if len(present) > 1 or present[0] != base["test_corpus"]:  # a pooled fold: per corpus too
        scopes += [(c, corpora == c) for c in present]
    result_rows = []
    for scope, mask in scopes:
        confusion = confusion_matrix(true[mask], predicted[mask], len(classes))
        scores = scores_from_confusion(confusion, classes)
        low, high = bootstrap_ua(
            true[mask], predicted[mask], len(classes), n_boot=bootstrap, seed=seed
        )
        result_rows.append(
            {
                **base,
                "test_corpus": scope,
                **scores.as_row(),
                "ua_low": low,
                "ua_high": high,
                "confusion": json.dumps(confusion.tolist()),
            }
        )
    store.save(cell, result_rows, _predictions(cell, base, fold, outcome, rows))


def _predictions(
    cell: str, base: Mapping[str, Any], fold: Fold, outcome: Outcome, rows: Rows
) -> pd.DataFrame:
    classes = np.array(rows.classes)
    table = pd.DataFrame(
        {
            "cell_id": cell,
            "utt_id": rows.utt_ids[fold.test],
            "corpus": rows.corpora[fold.test],
            "condition": base["test_condition"],
            "fold": base["fold"],
            "layer": base["layer"],
            "pooling": base["pooling"],
            "classifier": base["classifier"],
            "label": classes[rows.codes[fold.test]],
            "predicted": classes[np.asarray(outcome.predicted, dtype=np.int64)],
        }
    )
    for i, name in enumerate(classes):
        column = np.full(len(table), np.nan)
        if outcome.probabilities is not None:
            where = np.flatnonzero(outcome.class_codes == i)
            if len(where):
                column = outcome.probabilities[:, where[0]]
        table[f"prob_{name}"] = column
    return table


def describe_folds(folds: Sequence[Fold]) -> str:
    """Fold sizes for logs: ``0: 5953/1489, 1: ...``."""
    return ", ".join(f"{f.name}: {len(f.train)}/{len(f.test)}" for f in folds)
