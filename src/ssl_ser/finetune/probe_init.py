"""Probe-informed fine-tuning: the layer a probe found, and each fold's head started as its probe.

``ser finetune --from-probe RESULTS_DIR`` reads the logistic-regression probe
rows of a ``ser classify``/``ser probe`` results folder. Its folds must be the
fine-tune's (same fold digests, i.e. the same utterances in every fold),
otherwise the run is refused. The layer is chosen on training speakers only:
for every probed layer, each fold's probe is fitted on the fine-tune's fitting
rows and scored on its validation speakers, and the layer with the best mean
validation UA is read (:func:`choose_layer`). Each fold's head then starts as
that fold's probe, refitted on the fold's training rows with the stored
probe's settings and seed (:func:`fit_probe`: the same scikit-learn pipeline,
``StandardScaler`` + ``LogisticRegression``, that ``ser classify`` fits, on
the features the fine-tune model computes, rounded to the cache's storage
precision), which is checked against the stored probe's test predictions
(:func:`stored_gap`, :func:`check_gap`): features that are not the cache's
(another extraction setting) are refused, never used. The head then reads its
input at that precision (``probe_dtype``), so epoch 0 is the stored probe.

Probes store no fitted model per fold (``ser classify --save-probe`` saves one
model fitted on all rows), so refitting is how each fold's probe is had; the
fit is deterministic.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ssl_ser.classify import registry
from ssl_ser.classify.measures import EMOTION_TARGET, TARGET_COLUMN, full_proba
from ssl_ser.errors import ConfigError
from ssl_ser.results import PREDICTIONS_PARQUET, RESULTS_PARQUET

PROBE_CLASSIFIER = "logreg"
# How caches store features (ssl_ser.cache.STORAGE_DTYPES): the probes were fitted on these.
STORAGE_DTYPES: tuple[str, ...] = ("float16", "float32")
# Largest difference of a class probability between the refitted and the stored probe
# accepted as "the same probe". Float32 features batched differently differ by ~1e-6,
# but a float16 cache rounds ~0.1% of values the other way on such a difference
# (measured: up to 1.3e-3 in a probability on the synthetic corpus); features of other
# extraction settings differ by far more.
PROBABILITY_TOLERANCE = 1e-2


class ProbeMismatchError(ConfigError):
    """Probes that cannot start this fine-tune: other folds, other features, none stored."""


@dataclass(frozen=True)
class ProbeHead:
    """A fitted probe as head parameters: standardisation, then a linear map to logits."""

    mean: np.ndarray  # (dim,)
    scale: np.ndarray  # (dim,)
    weight: np.ndarray  # (classes, dim)
    bias: np.ndarray  # (classes,)


def results_folder(path: str | Path) -> Path:
    """The folder holding ``results.parquet``: `path` itself, or its ``results/`` (``ser probe``).

    Raises:
        ConfigError: neither holds a results table.
    """
    path = Path(path)
    for folder in (path, path / "results"):
        if (folder / RESULTS_PARQUET).is_file():
            return folder
    raise ProbeMismatchError(
        f"--from-probe {path}: holds no {RESULTS_PARQUET} (nor does {path / 'results'}); "
        "give the output folder of ser classify or ser probe"
    )


def probe_rows(folder: Path, extractor: str, pairs: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """The emotion logreg rows of `extractor` (mean pooling) for the pairs: one per layer and fold.

    Control (``--control``) and speaker (``--target speaker``) rows beside them are
    not the emotion probes; folders from before those existed hold emotion rows only.

    Raises:
        ConfigError: no such rows, or rows the refit cannot reproduce (search, speaker norm).
    """
    rows = pd.read_parquet(folder / RESULTS_PARQUET)
    if TARGET_COLUMN in rows:
        rows = rows[rows[TARGET_COLUMN].fillna(EMOTION_TARGET) == EMOTION_TARGET]
    mine = rows[
        (rows["classifier"] == PROBE_CLASSIFIER)
        & (rows["extractor"].astype(str) == extractor)
        & (rows["pooling"] == "mean")
    ]
    wanted = {tuple(p) for p in pairs}
    pair = zip(mine["train_condition"], mine["test_condition"], strict=True)
    mine = mine[[(a, b) in wanted for a, b in pair]]
    if mine.empty:
        found = sorted(set(zip(rows["classifier"], rows["extractor"].astype(str), strict=True)))[:5]
        raise ProbeMismatchError(
            f"--from-probe {folder}: no {PROBE_CLASSIFIER} probe of {extractor} (mean pooling) "
            f"for conditions {sorted(wanted)}; it holds (classifier, extractor) {found}"
        )
    for flag in ("search", "speaker_norm"):
        if mine[flag].astype(bool).any():
            raise ProbeMismatchError(
                f"--from-probe {folder}: its {PROBE_CLASSIFIER} probes were run with {flag} on; "
                "a fold's probe can only be refitted exactly from a plain run (no --search, "
                "no --speaker-norm)"
            )
    return mine[mine["layer"].astype(str).str.isdigit()]


def check_same_folds(rows: pd.DataFrame, digests: Mapping[tuple[str, str, str], str]) -> None:
    """Refuse probe `rows` of other folds than the fine-tune's (a fold missing, other utterances).

    `digests` holds the fine-tune's fold digest per (train condition, test condition, fold).
    """
    for (train, test, fold), digest in digests.items():
        theirs = rows[
            (rows["train_condition"] == train)
            & (rows["test_condition"] == test)
            & (rows["fold"].astype(str) == str(fold))
        ]
        stored = set(theirs["fold_digest"].astype(str))
        if digest not in stored:
            raise ProbeMismatchError(
                f"--from-probe: the probes were run on other folds: fold {fold} ({train}->{test}) "
                f"has digest {digest} here but {sorted(stored) or 'no row'} in the probe results; "
                "run both with the same manifest, labels, --split, --folds and --seed"
            )


def probe_params(rows: pd.DataFrame) -> dict[str, Any]:
    """The logreg settings the probes were fitted with (one set; several are refused)."""
    found = {str(p) for p in rows["params"]}
    if len(found) != 1:
        raise ProbeMismatchError(
            f"--from-probe: the {PROBE_CLASSIFIER} probes hold several settings {sorted(found)}; "
            "keep one run's probes in the folder"
        )
    return json.loads(found.pop())


def fit_probe(x: np.ndarray, codes: np.ndarray, params: Mapping[str, Any], seed: int):
    """The pipeline ``ser classify`` fits for a logreg cell (scaler + LogisticRegression)."""
    model = registry.build_pipeline(PROBE_CLASSIFIER, dict(params), seed=seed, threads=1)
    return registry.fit_pipeline(model, PROBE_CLASSIFIER, x, codes, None)


def probabilities(model: Any, x: np.ndarray, n_classes: int) -> np.ndarray:
    """Class probabilities (rows, n_classes) of a fitted probe (classes absent in fitting: 0)."""
    return full_proba(model.predict_proba(x), model.classes_, n_classes)


def choose_layer(scores: Mapping[int, Sequence[float]]) -> int:
    """The layer with the best mean validation UA over folds (ties: the lower layer)."""
    means = {layer: float(np.mean(values)) for layer, values in scores.items()}
    return max(sorted(means), key=lambda layer: means[layer])


def head_of(model: Any, n_classes: int) -> ProbeHead:
    """The probe as head parameters whose softmax equals its ``predict_proba``.

    Multinomial logistic regression is softmax(coef x' + intercept) over the
    standardised x'; a binary one is sigmoid(coef x' + b), i.e. softmax over
    logits (0, coef x' + b). Classes the fold's training lacks get a logit far
    below the others (probability ~1e-26).
    """
    scaler, classifier = model[0], model[-1]
    coef, intercept = classifier.coef_, classifier.intercept_
    if len(classifier.classes_) == 2 and coef.shape[0] == 1:
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    weight = np.zeros((n_classes, coef.shape[1]))
    bias = np.full(n_classes, -60.0)
    weight[classifier.classes_] = coef
    bias[classifier.classes_] = intercept
    scale = np.asarray(scaler.scale_ if scaler.scale_ is not None else np.ones(coef.shape[1]))
    return ProbeHead(np.asarray(scaler.mean_), scale, weight, bias)


def stored_precision(x: np.ndarray, dtype: str) -> np.ndarray:
    """`x` as a cache stores it: rounded to `dtype` (float16 or float32), back in float32."""
    return np.asarray(x, dtype=dtype).astype(np.float32)


def stored_gap(
    folder: Path,
    rows: pd.DataFrame,
    utt_ids: Sequence[str],
    mine: np.ndarray,
    classes: Sequence[str],
) -> float:
    """The largest class-probability difference between a refitted probe and the stored one.

    Args:
        folder: the probe results folder.
        rows: the stored probe's rows of the layer and fold.
        utt_ids: the fold's test utterances, in the order of `mine`.
        mine: the refitted probe's test probabilities (rows, classes).
        classes: class names of the columns of `mine`.

    Raises:
        ConfigError: the stored probe tested other utterances.
    """
    chosen = [("cell_id", "in", sorted(set(rows["cell_id"])))]
    stored = pd.read_parquet(folder / PREDICTIONS_PARQUET, filters=chosen)
    stored = stored.drop_duplicates("utt_id").set_index("utt_id")
    missing = [u for u in utt_ids if u not in stored.index]
    if missing or len(stored) != len(utt_ids):
        raise ProbeMismatchError(
            f"--from-probe: a stored probe tested other utterances than the fold "
            f"({len(stored)} stored, {len(utt_ids)} here; e.g. {missing[:2]})"
        )
    theirs = stored.loc[list(utt_ids), [f"prob_{c}" for c in classes]].to_numpy(float)
    return float(np.abs(theirs - mine).max())


def check_gap(gap: float, fold: str, meta: Mapping[str, Any], layer: int | None) -> None:
    """Refuse a refitted probe further than :data:`PROBABILITY_TOLERANCE` from the stored one.

    Raises:
        ConfigError: the features are not the cache's (other extraction settings or audio).
    """
    if gap <= PROBABILITY_TOLERANCE:
        return
    where = f"layer {layer}, fold {fold} ({meta['train_condition']}->{meta['test_condition']})"
    raise ProbeMismatchError(
        f"--from-probe: refitted on the fine-tune model's features, the probe of {where} "
        f"differs from the stored one by up to {gap:.3g} in a class probability (more than "
        f"{PROBABILITY_TOLERANCE:g}): its cache was extracted with other settings (dtype, "
        "--max-seconds, --long-audio, --whisper-trim, model revision) or from other audio; "
        "fine-tune with the extraction's settings, or run the probes again"
    )
