"""Running a sweep's tasks: fitting and predicting, here, in joblib workers or on Dask.

Locally, each task's cells are scored and stored as soon as they are fitted; on
Dask (:mod:`~ssl_ser.classify.sweep.cluster`) a worker fits and scores a task
(:func:`scored_cells`) and the driver stores its cells as it comes back. Either
way an interrupted sweep keeps every finished cell.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ssl_ser.classify import registry, search
from ssl_ser.classify.features import FeatureBlocks, FeatureSpec
from ssl_ser.classify.results import CellStore
from ssl_ser.classify.sweep.cluster import dask_outcomes
from ssl_ser.classify.sweep.codelength import task_codelengths
from ssl_ser.classify.sweep.plan import (
    DASK_BACKEND,
    BatchedTask,
    SingleTask,
    SweepConfig,
    Task,
    WeightedTask,
    describe_task,
)
from ssl_ser.classify.sweep.score import CellInfo, Outcome, Rows, ScoredCell, score_cell
from ssl_ser.progress import StepLines
from ssl_ser.workers import exit_with_parent


def run_tasks(
    tasks: list[Task],
    blocks: FeatureBlocks,
    rows: Rows,
    config: SweepConfig,
    store: CellStore,
    progress: bool,
) -> None:
    """Run tasks (largest first) on the config's backend; every cell is stored as it finishes."""
    from tqdm.auto import tqdm

    tasks = sorted(tasks, key=lambda t: -len(t.cells))
    n_cells = sum(len(t.cells) for t in tasks)
    lines = StepLines("classify", n_cells, "cells")
    with (
        _outcomes(tasks, blocks, rows, config, store) as outcomes,
        tqdm(total=n_cells, desc="classify", unit="cell", disable=not progress) as bar,
    ):
        for index, done in outcomes:
            bar.update(done)
            if not progress:
                lines.step(done, describe_task(tasks[index]))


@contextlib.contextmanager
def _outcomes(
    tasks: list[Task],
    blocks: FeatureBlocks,
    rows: Rows,
    config: SweepConfig,
    store: CellStore,
) -> Iterator[Iterator[tuple[int, int]]]:
    """``(task index, cells stored)`` as tasks finish, on the config's backend."""
    if config.backend == DASK_BACKEND:
        with dask_outcomes(tasks, blocks, rows, config, store, scored_cells) as outcomes:
            yield outcomes
        return
    from joblib import Parallel, delayed

    jobs = max(1, min(config.jobs, len(tasks)))
    threads = config.cell_threads
    with shared_blocks(blocks, jobs, store.output) as shared:
        if jobs == 1:
            yield (
                (i, run_task(t, shared, rows, config, store, threads)) for i, t in enumerate(tasks)
            )
            return
        parent = os.getpid()
        yield Parallel(n_jobs=jobs, return_as="generator_unordered")(
            delayed(_in_worker)(i, parent, run_task, t, shared, rows, config, store, threads)
            for i, t in enumerate(tasks)
        )


def _in_worker(
    index: int, parent: int, function: Callable[..., int], *args: Any
) -> tuple[int, int]:
    """Run `function` in a worker that dies with `parent`; ``(index, result)`` names the task."""
    exit_with_parent(parent)
    return index, function(*args)


@contextlib.contextmanager
def shared_blocks(blocks: FeatureBlocks, jobs: int, output: Path) -> Iterator[FeatureBlocks]:
    """Feature blocks as read-only memory maps for worker processes (as they are for one job).

    The maps live in a temporary folder inside `output` (on its disk, not in
    memory), removed when the block ends, whatever ends it.
    """
    if jobs == 1:
        yield blocks
        return
    folder = Path(tempfile.mkdtemp(prefix=".features-", dir=output))
    try:
        mapped = {}
        for pooling, block in blocks.blocks.items():
            path = folder / f"{pooling}.npy"
            np.save(path, block)
            mapped[pooling] = np.load(path, mmap_mode="r")
        yield FeatureBlocks(blocks.layers, mapped)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_task(
    task: Task,
    blocks: FeatureBlocks,
    rows: Rows,
    config: SweepConfig,
    store: CellStore,
    threads: int,
) -> int:
    """Fit and score the cells of one task, store each as it is done; returns the number."""
    for scored in scored_cells(task, blocks, rows, config, threads):
        store.save(scored.cell, scored.rows, scored.predictions)
    return len(task.cells)


def scored_cells(
    task: Task, blocks: FeatureBlocks, rows: Rows, config: SweepConfig, threads: int
) -> Iterator[ScoredCell]:
    """The scored cells of one task, one by one, fitted under its BLAS/torch thread limits.

    Locally and on a Dask worker alike, so a cell's numbers do not depend on where it ran.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(threads), _torch_threads(task, threads):
        measured = task_codelengths(task, blocks, rows, config.seed, threads) if config.mdl else {}
        for cell, spec, outcome in fit_task(task, blocks, rows, config, threads):
            info = CellInfo(
                meta=task.meta,
                layer=task.layer_label(spec),
                pooling=spec.pooling,
                classifier=task.classifier,
                params=task.params,
                n_dropped=task.n_dropped,
                extra=measured.get(cell, {}),
            )
            result_rows, predictions = score_cell(
                cell,
                info,
                task.fold,
                outcome,
                rows,
                bootstrap=config.bootstrap,
                seed=config.seed,
            )
            yield ScoredCell(cell, result_rows, predictions)


@contextlib.contextmanager
def _torch_threads(task: Task, threads: int) -> Iterator[None]:
    """Torch's thread count for a task's torch heads, restored afterwards."""
    if not task.uses_torch:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@functools.singledispatch
def fit_task(
    task: Task, blocks: FeatureBlocks, rows: Rows, config: SweepConfig, threads: int
) -> Iterator[tuple[str, FeatureSpec, Outcome]]:
    """Fit a task's cells and predict their test rows: ``(cell id, spec, outcome)`` each.

    Dispatched on the task's type; only training rows reach the fit.
    """
    raise TypeError(f"no fit for a {type(task).__name__}")


@fit_task.register
def _run_single(
    task: SingleTask, blocks: FeatureBlocks, rows: Rows, config: SweepConfig, threads: int
):
    spec = task.specs[0]
    start = time.perf_counter()
    x = blocks.matrix(spec)
    fold = task.fold
    model, chosen, val_ua = search.fit_single(
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
    if hasattr(model, "predict_proba"):
        probabilities = model.predict_proba(x_test)
        seconds = time.perf_counter() - start
        outcome = _outcome(model.classes_, probabilities, chosen, val_ua, seconds)
    else:
        predicted = model.predict(x_test)
        seconds = time.perf_counter() - start
        outcome = Outcome(predicted, None, model.classes_, chosen, val_ua, seconds)
    yield task.cells[0], spec, outcome


@fit_task.register
def _run_batched(
    task: BatchedTask, blocks: FeatureBlocks, rows: Rows, config: SweepConfig, threads: int
):
    start = time.perf_counter()
    fold = task.fold
    layers = [spec.layers[0] for spec in task.specs]
    stacked = blocks.stack(task.specs[0].pooling, layers)
    probes = search.fit_batched(
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
            val_ua = float(probe.validation_ua_[i])
            outcome = _outcome(probe.classes_, probabilities[i], chosen[i], val_ua, seconds)
            yield task.cells[position], task.specs[position], outcome


@fit_task.register
def _run_weighted(
    task: WeightedTask, blocks: FeatureBlocks, rows: Rows, config: SweepConfig, threads: int
):
    start = time.perf_counter()
    fold = task.fold
    spec = task.specs[0]
    stacked = blocks.stack(spec.pooling, list(spec.layers))
    probe, chosen = search.fit_weighted(
        task.params,
        stacked,
        fold.train,
        rows.codes[fold.train],
        rows.groups[fold.train],
        search=config.search,
        seed=config.seed,
    )
    weights = probe.layer_weights_.round(4).tolist()
    chosen = {**chosen, "layer_weights": dict(zip(spec.layers, weights, strict=True))}
    probabilities = probe.predict_proba(np.take(stacked, fold.test, axis=1))
    seconds = time.perf_counter() - start
    val_ua = float(probe.validation_ua_)
    yield task.cells[0], spec, _outcome(probe.classes_, probabilities, chosen, val_ua, seconds)


def _outcome(
    classes: np.ndarray, probabilities: np.ndarray, chosen: dict, val_ua: float, seconds: float
) -> Outcome:
    """A cell's test outcome from its class probabilities: the most probable class predicted."""
    predicted = classes[np.argmax(probabilities, axis=1)]
    return Outcome(predicted, probabilities, classes, chosen, val_ua, seconds)
