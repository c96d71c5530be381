"""Fitting one cell, with optional hyperparameter search on training speakers only.

Every function here receives the training rows of a fold and nothing else, so
no choice (hyperparameters, epoch, boosting round) can depend on the test fold.
With ``search=True`` the training speakers are split once more (whole speakers,
seeded): each candidate of the classifier's grid is fit on one part and scored
(UA) on the other, the best is refit on all training rows, and the chosen values
are returned for the results table.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.model_selection import ParameterGrid

from ssl_ser.classify import registry
from ssl_ser.classify.metrics import confusion_matrix, scores_from_confusion
from ssl_ser.classify.splits import inner_split
from ssl_ser.errors import ConfigError

log = logging.getLogger(__name__)

SEARCH_VALIDATION_FRACTION = 0.2


def ua_of(true: np.ndarray, predicted: np.ndarray) -> float:
    """UA of integer-coded predictions."""
    n_classes = int(max(true.max(initial=0), predicted.max(initial=0))) + 1
    confusion = confusion_matrix(true, predicted, n_classes)
    return scores_from_confusion(confusion, [str(i) for i in range(n_classes)]).ua


def candidates(grid: Mapping[str, list]) -> list[dict[str, Any]]:
    """Every combination of a search grid, in a fixed order (an empty grid gives one)."""
    return [dict(c) for c in ParameterGrid(dict(grid))] if grid else [{}]


def _fitted_choices(model) -> dict[str, Any]:
    """Values a fit chose by itself on training speakers (epoch, boosting rounds)."""
    estimator = model[-1] if hasattr(model, "steps") else model
    chosen = {}
    for name in ("best_epoch_", "best_iteration_"):
        if hasattr(estimator, name):
            chosen[name.rstrip("_")] = int(getattr(estimator, name))
    return chosen


def fit_single(
    name: str,
    params: Mapping[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    search: bool,
    seed: int,
    threads: int = 1,
):
    """Fit classifier `name` on training rows; returns (pipeline, chosen values, val UA).

    The validation UA is the inner-split score of the chosen candidate with
    ``search``, else the estimator's own early-stopping score when it has one.
    """
    spec = registry.get(name)
    chosen: dict[str, Any] = {}
    val_ua = float("nan")
    if search and spec.grid:
        fit_rows, val_rows = inner_split(groups, y, SEARCH_VALIDATION_FRACTION, seed)
        inner = (x[fit_rows], y[fit_rows], groups[fit_rows], x[val_rows], y[val_rows])
        scores = [
            _inner_score(name, {**params, **candidate}, inner, seed, threads)
            for candidate in candidates(spec.grid)
        ]
        if not np.isfinite(scores).any():
            raise ConfigError(
                f"--search: no {name} setting of {dict(spec.grid)} can be fit on the inner "
                f"split of a fold's training speakers ({len(fit_rows)} rows); use fewer folds "
                "or another classifier"
            )
        best = int(np.nanargmax(scores))
        chosen = candidates(spec.grid)[best]
        val_ua = float(scores[best])
        log.debug("%s search: %s -> %s", name, scores, chosen)
    model = registry.build_pipeline(name, {**params, **chosen}, seed=seed, threads=threads)
    registry.fit_pipeline(model, name, x, y, groups)
    if not search:
        val_ua = float(getattr(model[-1], "validation_ua_", float("nan")))
    return model, {**chosen, **_fitted_choices(model)}, val_ua


def _inner_score(
    name: str, params: Mapping[str, Any], inner: tuple[np.ndarray, ...], seed: int, threads: int
) -> float:
    """Validation UA of one candidate on the inner split, NaN when it cannot be fit there.

    `inner` holds (x, y, groups) of the fitting part, then (x, y) of the validation
    part. A small inner split can be too small for a candidate (k nearest
    neighbours with more neighbours than rows); that candidate is skipped, not the sweep.
    """
    x_fit, y_fit, groups_fit, x_val, y_val = inner
    model = registry.build_pipeline(name, params, seed=seed, threads=threads)
    try:
        registry.fit_pipeline(model, name, x_fit, y_fit, groups_fit)
        return ua_of(y_val, model.predict(x_val))
    except ValueError as error:
        log.warning("%s search: %s skipped on the inner split: %s", name, params, error)
        return float("nan")


def fit_batched(
    head: str,
    params: Mapping[str, Any],
    x: np.ndarray,
    rows: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    search: bool,
    seed: int,
    grid: Mapping[str, list] | None = None,
) -> list[tuple[Any, list[int], list[dict[str, Any]]]]:
    """Fit a batched probe over layers of x (layers, all rows, dim) on training `rows`.

    `y` and `groups` are those of the training rows. With search, each layer
    picks its own candidate.

    Returns (probe, layer positions it covers, chosen values per position) groups:
    without search one probe covers every layer; with search each layer takes the
    candidate best on its inner validation speakers, and layers that chose the
    same candidate are refit together.
    """
    from ssl_ser.classify.probe import BatchedProbe

    grid = grid if grid is not None else registry.get("mlp" if head == "mlp" else "linear").grid
    plan: dict[int, list[int]] = {0: list(range(x.shape[0]))}
    options = [{}]
    inner: dict[int, np.ndarray] = {}
    if search and grid:
        options = candidates(grid)
        fit_rows, val_rows = inner_split(groups, y, SEARCH_VALIDATION_FRACTION, seed)
        scores = np.empty((len(options), x.shape[0]))
        for c, candidate in enumerate(options):
            probe = BatchedProbe(head, **{**params, **candidate}, random_state=seed)
            probe.fit(x, y[fit_rows], groups[fit_rows], rows=rows[fit_rows])
            predicted = probe.predict(np.take(x, rows[val_rows], axis=1))
            scores[c] = [ua_of(y[val_rows], p) for p in predicted]
        best = scores.argmax(axis=0)
        plan = {c: np.flatnonzero(best == c).tolist() for c in np.unique(best)}
        inner = {layer: scores[best[layer], layer] for layer in range(x.shape[0])}
    fitted = []
    for c, positions in plan.items():
        probe = BatchedProbe(head, **{**params, **options[c]}, random_state=seed)
        layers_x = x if len(positions) == x.shape[0] else np.take(x, positions, axis=0)
        probe.fit(layers_x, y, groups, rows=rows)
        if inner:
            probe.validation_ua_ = np.array([inner[p] for p in positions])
        chosen = [{**options[c], "best_epoch": int(epoch)} for epoch in probe.best_epoch_]
        fitted.append((probe, positions, chosen))
    return fitted


def fit_weighted(
    params: Mapping[str, Any],
    x: np.ndarray,
    rows: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    search: bool,
    seed: int,
):
    """Fit ``mlp-weighted`` on training `rows` of x (layers, all rows, dim).

    Returns the probe and the chosen values.
    """
    from ssl_ser.classify.probe import WeightedLayerProbe

    grid = registry.get("mlp-weighted").grid
    chosen: dict[str, Any] = {}
    val_ua = None
    if search and grid:
        fit_rows, val_rows = inner_split(groups, y, SEARCH_VALIDATION_FRACTION, seed)
        scores = []
        for candidate in candidates(grid):
            probe = WeightedLayerProbe(**{**params, **candidate}, random_state=seed)
            probe.fit(x, y[fit_rows], groups[fit_rows], rows=rows[fit_rows])
            scores.append(ua_of(y[val_rows], probe.predict(np.take(x, rows[val_rows], axis=1))))
        best = int(np.argmax(scores))
        chosen = candidates(grid)[best]
        val_ua = float(scores[best])
    probe = WeightedLayerProbe(**{**params, **chosen}, random_state=seed)
    probe.fit(x, y, groups, rows=rows)
    if val_ua is not None:
        probe.validation_ua_ = val_ua
    return probe, {**chosen, "best_epoch": probe.best_epoch_}
