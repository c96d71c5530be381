"""Online codelength (MDL) of a task's cells, on the training rows of its fold.

Which data: the training rows of each fold (never its test rows), in an order
shuffled by the sweep's seed (the first row of each class first, see
:func:`~ssl_ser.classify.measures.mdl_order`); a cell's codelength is
therefore one number per fold, averaged over folds like its UA. Each block is
coded by a probe of the cell's classifier and parameters fit on the rows before
it, without ``--search`` (a grid search per block would multiply the cost by the
grid's size); batched probes code all their layers at once. The recipe and its
constants are :mod:`ssl_ser.classify.measures`'.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ssl_ser.classify import registry
from ssl_ser.classify.features import FeatureBlocks
from ssl_ser.classify.measures import (
    block_ends,
    full_proba,
    mdl_columns,
    mdl_order,
    online_codelength,
    prior_proba,
)
from ssl_ser.classify.sweep.plan import BatchedTask, SingleTask, Task
from ssl_ser.classify.sweep.score import Rows
from ssl_ser.errors import ConfigError


def check_mdl(names: list[str]) -> None:
    """Refuse ``--mdl`` with a classifier that gives no class probabilities per layer.

    Raises:
        ConfigError: naming the classifier and those that can.
    """
    able = [n for n in registry.CLASSIFIERS if _codes(n)]
    for name in names:
        if not _codes(name):
            raise ConfigError(
                f"--mdl needs class probabilities from a per-layer classifier; {name!r} gives "
                f"none. Use one of: {', '.join(able)}"
            )


def _codes(name: str) -> bool:
    """Whether classifier `name` can code labels (per layer, with predict_proba)."""
    spec = registry.get(name)
    return spec.per_layer and hasattr(registry.build_pipeline(name), "predict_proba")


def task_codelengths(
    task: Task, blocks: FeatureBlocks, rows: Rows, seed: int, threads: int
) -> dict[str, dict[str, Any]]:
    """Codelength columns of every cell of `task` (cell id -> columns)."""
    order = mdl_order(task.fold.train, rows.codes[task.fold.train], seed)
    codes = rows.codes[order]
    n_classes = len(rows.classes)
    ends = block_ends(len(order), n_classes)
    if isinstance(task, BatchedTask):
        fit = _batched_fit(task, blocks, rows.groups, order, codes, n_classes, seed)
    elif isinstance(task, SingleTask):
        fit = _single_fit(task, blocks, rows.groups, order, codes, n_classes, seed, threads)
    else:
        raise ConfigError(f"--mdl: no codelength for a {type(task).__name__}")
    bits, uniform = online_codelength(fit, codes, n_classes, ends)
    per_cell = np.atleast_1d(bits)
    return {
        cell: mdl_columns(b, uniform, len(order))
        for cell, b in zip(task.cells, per_cell, strict=True)
    }


def _single_fit(task, blocks, groups, order, codes, n_classes, seed, threads):
    """fit_proba of one pipeline on one feature matrix."""
    x = np.asarray(blocks.matrix(task.specs[0]))[order]
    ordered_groups = groups[order]

    def fit_proba(prefix: np.ndarray, block: np.ndarray) -> np.ndarray:
        y = codes[prefix]
        if len(np.unique(y)) < 2:
            return prior_proba(y, n_classes, len(block))
        model = registry.build_pipeline(task.classifier, task.params, seed=seed, threads=threads)
        registry.fit_pipeline(model, task.classifier, x[prefix], y, ordered_groups[prefix])
        return full_proba(model.predict_proba(x[block]), model.classes_, n_classes)

    return fit_proba


def _batched_fit(task, blocks, groups, order, codes, n_classes, seed):
    """fit_proba of a batched probe: all the task's layers at once, (layers, rows, K)."""
    from ssl_ser.classify.batched import BatchedProbe

    layers = [spec.layers[0] for spec in task.specs]
    stacked = blocks.stack(task.specs[0].pooling, layers)
    head = registry.get(task.classifier).batched
    ordered_groups = groups[order]

    def fit_proba(prefix: np.ndarray, block: np.ndarray) -> np.ndarray:
        y = codes[prefix]
        if len(np.unique(y)) < 2:
            prior = prior_proba(y, n_classes, len(block))
            return np.broadcast_to(prior, (len(layers), *prior.shape))
        probe = BatchedProbe(head, **task.params, random_state=seed)
        probe.fit(stacked, y, ordered_groups[prefix], rows=order[prefix])
        probabilities = probe.predict_proba(np.take(stacked, order[block], axis=1))
        return full_proba(probabilities, probe.classes_, n_classes)

    return fit_proba
