"""Fitting one cell, with optional hyperparameter search on training speakers only.

Every function here receives the training rows of a fold and nothing else, so
no choice (hyperparameters, epoch, boosting round) can depend on the test fold.
With ``search=True`` the training speakers are split once more (whole speakers,
seeded): each candidate of the classifier's grid is fit on one part and scored
(UA) on the other, the best is refit on all training rows, and the chosen values
are returned for the results table. For per-layer pipelines this is
scikit-learn's ``GridSearchCV(scoring="balanced_accuracy", refit=True)`` with
``cv=`` :class:`~ssl_ser.classify.splits.InnerSpeakerSplit` (balanced accuracy is
UA: the mean recall over the classes present in the validation rows); a
candidate that cannot be fit there scores NaN and is skipped. The batched and
weighted probes fit all layers at once and keep their own loop over the same split.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.exceptions import FitFailedWarning
from sklearn.model_selection import GridSearchCV, ParameterGrid

from ssl_ser.classify import registry
from ssl_ser.classify.metrics import confusion_matrix, scores_from_confusion
from ssl_ser.classify.splits import InnerSpeakerSplit, inner_split
from ssl_ser.errors import ConfigError

log = logging.getLogger(__name__)

SEARCH_VALIDATION_FRACTION = 0.2
_SHOWN: dict = {}  # warnings re-emitted after a search, shown once per place as by default


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
    model = registry.build_pipeline(name, params, seed=seed, threads=threads)
    if search and spec.grid:
        grid = GridSearchCV(
            model,
            [_step_params(model, candidate) for candidate in candidates(spec.grid)],
            scoring="balanced_accuracy",
            cv=InnerSpeakerSplit(SEARCH_VALIDATION_FRACTION, seed),
            refit=True,
            error_score=np.nan,
        )
        fit_params = {"clf__groups": groups} if spec.uses_groups else {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                grid.fit(x, y, groups=groups, **fit_params)
            except ValueError as error:  # every candidate failed to fit
                if "fits failed" not in str(error):
                    raise
                raise _nothing_fits(name, spec.grid, len(x)) from error
        if not np.isfinite(grid.cv_results_["mean_test_score"]).any():  # none could predict
            raise _nothing_fits(name, spec.grid, len(x))
        _report_failures(name, candidates(spec.grid), grid.cv_results_["mean_test_score"], caught)
        model = grid.best_estimator_
        chosen = candidates(spec.grid)[grid.best_index_]
        val_ua = float(grid.best_score_)
        log.debug("%s search: %s -> %s", name, list(grid.cv_results_["mean_test_score"]), chosen)
    else:
        registry.fit_pipeline(model, name, x, y, groups)
    if not search:
        val_ua = float(getattr(model[-1], "validation_ua_", float("nan")))
    return model, {**chosen, **_fitted_choices(model)}, val_ua


def _nothing_fits(name: str, grid: Mapping[str, list], rows: int) -> ConfigError:
    """The error of a search where no candidate could be fit and scored on the inner split."""
    return ConfigError(
        f"--search: no {name} setting of {dict(grid)} can be fit on the inner split of a "
        f"fold's training speakers ({rows} rows); use fewer folds or another classifier"
    )


def _is_candidate_failure(caught: warnings.WarningMessage) -> bool:
    """Whether a warning is GridSearchCV's note of a candidate it could not fit or score."""
    text = str(caught.message)
    return caught.category is FitFailedWarning or text.startswith(
        ("Scoring failed", "One or more of the test scores are non-finite")
    )


def _report_failures(name: str, tried: list[dict], scores: np.ndarray, caught: list) -> None:
    """Log the candidates the inner split could not fit; re-emit other warnings as usual.

    GridSearchCV scores such a candidate NaN and says why in a FitFailedWarning
    (fit) or a "Scoring failed" warning (predict); the sweep logs it as a skipped
    candidate instead (the last line names the error).
    """
    handled = [w for w in caught if _is_candidate_failure(w)]
    reasons = list(
        dict.fromkeys(
            str(w.message).strip().splitlines()[-1]
            for w in handled
            if not str(w.message).startswith("One or more")
        )
    )
    skipped = [c for c, score in zip(tried, scores, strict=True) if not np.isfinite(score)]
    for candidate in skipped:
        log.warning("%s search: %s skipped on the inner split", name, candidate)
    if skipped and reasons:
        log.warning("%s search: why: %s", name, "; ".join(reasons))
    for w in caught:
        if not _is_candidate_failure(w):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, registry=_SHOWN)


def _step_params(pipeline, candidate: Mapping[str, Any]) -> dict[str, list]:
    """One search candidate as a one-point grid; each key goes to the first step that has it.

    One grid per candidate keeps the order of :func:`candidates`, so ties go to the
    same candidate as before.
    """
    grid = {}
    for key, value in candidate.items():
        steps = [step for step, estimator in pipeline.steps if key in estimator.get_params()]
        if not steps:
            raise ConfigError(f"no step of {pipeline.steps} takes the search parameter {key!r}")
        grid[f"{steps[0]}__{key}"] = [value]
    return grid


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
) -> list[tuple[Any, list[int], list[dict[str, Any]]]]:
    """Fit a batched probe over layers of x (layers, all rows, dim) on training `rows`.

    `y` and `groups` are those of the training rows. With search, each layer
    picks its own candidate.

    Returns (probe, layer positions it covers, chosen values per position) groups:
    without search one probe covers every layer; with search each layer takes the
    candidate best on its inner validation speakers, and layers that chose the
    same candidate are refit together.
    """
    from ssl_ser.classify.batched import BatchedProbe

    grid = registry.get(head).grid
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
    from ssl_ser.classify.batched import WeightedLayerProbe

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
