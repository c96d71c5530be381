"""A small synthetic `ser classify` output folder: results table and predictions.

The columns follow ``ssl_ser.classify.results``: results rows carry a
``cell_id`` per cell and fold; predictions carry that id, the utterance's
corpus, ``label`` and ``predicted``. Predictions are drawn per (cell, fold)
with an accuracy that peaks at a middle layer; the metrics in the results table
are computed from them with scikit-learn, so table and predictions agree as a
real sweep's do.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import precision_recall_fscore_support

CLASSES = ["angry", "happy", "neutral", "sad"]
ALL_CLASSES = ["angry", "boredom", "disgust", "fear", "happy", "neutral", "sad"]
PER_CLASS = 6  # test utterances per class and fold
EXTRACTORS = {
    # name: (layers, base accuracy, model_type)
    "facebook/wav2vec2-base": (7, 0.55, "wav2vec2"),
    "/tmp/demo/random-wav2vec2-tiny": (5, 0.35, "wav2vec2"),
    "mfcc": (1, 0.45, "classic"),
    "egemaps": (1, 0.5, "classic"),
}
# What extraction records as each model's revision: a hub commit, a builtin baseline,
# and a local folder of random weights (the toolkit's marker was in it).
REVISIONS = {
    "facebook/wav2vec2-base": "0123456789abcdef",
    "/tmp/demo/random-wav2vec2-tiny": "untrained:local:" + "ab" * 32,
    "mfcc": "builtin",
    "egemaps": "opensmile-2.5.1-eGeMAPSv02",
}
COLLAPSED_TO = "neutral"
CLASSIFIERS = {"logreg": 0.0, "mlp": 0.05}
IN_CORPUS = [
    ("emodb", "clean", "emodb", "clean"),
    ("emodb", "clean", "emodb", "telephone"),
    ("emodb", "telephone", "emodb", "telephone"),
    ("emodb", "telephone", "emodb", "clean"),
    ("emovo", "clean", "emovo", "clean"),
]
CROSS = [("emodb", "clean", "emovo", "clean"), ("emovo", "clean", "emodb", "clean")]


@dataclass(frozen=True)
class Spec:
    """What the synthetic sweep contains."""

    conditions: bool = True
    cross: bool = True
    ssl: bool = True
    untrained: bool = True
    predictions: bool = True
    folds: int = 3
    split: str = "speaker-kfold"
    fmt: str = "parquet"
    labels: str = "basic4"
    speaker_norm: bool = False
    search: bool = True
    seed: int = 0
    # a subset of EXTRACTORS (None: all), to keep a test's report small
    extractors: tuple[str, ...] | None = None
    # (train condition, test condition) whose classifiers predict one class on every fold
    collapse: tuple[str, str] | None = None

    @property
    def classes(self) -> list[str]:
        """The classes the label set scores."""
        return ALL_CLASSES if self.labels == "all" else CLASSES


def _accuracy(extractor: str, layer: int, classifier: str, setting: tuple) -> float:
    n_layers, base, _ = EXTRACTORS[extractor]
    bump = 0.0 if n_layers == 1 else 0.2 * np.exp(-((((layer / (n_layers - 1)) - 0.6) / 0.3) ** 2))
    penalty = 0.1 * (setting[1] != setting[3]) + 0.12 * (setting[0] != setting[2])
    return float(np.clip(base + bump + CLASSIFIERS[classifier] - penalty, 0.3, 0.95))


def _fold_predictions(
    accuracy: float, rng: np.random.Generator, classes: list[str], collapsed: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    true = np.repeat(classes, PER_CLASS)
    hit = rng.random(len(true)) < accuracy
    other = rng.choice(classes, size=len(true))
    if collapsed:
        return true, np.full(len(true), COLLAPSED_TO)
    return true, np.where(hit, true, other)


def _row(true: np.ndarray, pred: np.ndarray, classes: list[str]) -> dict:
    # one scikit-learn call: every class is in `true`, so UA is the mean recall
    _, recall, f1, _ = precision_recall_fscore_support(true, pred, labels=classes, zero_division=0)
    row = {
        "ua": float(np.mean(recall)),
        "wa": float(np.mean(true == pred)),
        "macro_f1": float(np.mean(f1)),
        "n_test": len(true),
    }
    row.update({f"recall_{c}": r for c, r in zip(classes, recall, strict=True)})
    return row


def _cells(spec: Spec):
    """(extractor, setting, split, layer, classifier, fold) of every cell and fold."""
    settings = IN_CORPUS if spec.conditions else [IN_CORPUS[0], IN_CORPUS[4]]
    runs = [(s, spec.split, [str(f) for f in range(spec.folds)]) for s in settings]
    if spec.cross:
        runs += [(s, "cross-corpus", [f"{s[0]}->{s[2]}"]) for s in CROSS]
    for extractor, (n_layers, _, model_type) in EXTRACTORS.items():
        wanted = spec.untrained or "random" not in extractor
        wanted &= spec.extractors is None or extractor in spec.extractors
        if (spec.ssl or model_type == "classic") and wanted:
            for (setting, split, folds), layer, classifier in itertools.product(
                runs, range(n_layers), CLASSIFIERS
            ):
                for fold in folds:
                    yield extractor, setting, split, layer, classifier, fold


def _result_row(cell: dict, true: np.ndarray, pred: np.ndarray, ident: str, spec: Spec) -> dict:
    searched = spec.search
    _, _, model_type = EXTRACTORS[cell["extractor"]]
    key = {
        "model": cell["extractor"],
        "model_type": model_type,
        "revision": REVISIONS[cell["extractor"]],
        "toolkit_version": "0.1.0",
    }
    return {
        **cell,
        **_row(true, pred, spec.classes),
        "cell_id": ident,
        "seed": spec.seed,
        "labels": spec.labels,
        "speaker_norm": spec.speaker_norm,
        "search": searched,
        "speaker_independent": cell["split"] != "random",
        "cache_keys": json.dumps([key]),
        "params": json.dumps({"C": 1.0 + int(cell["layer"])}) if searched else "{}",
    }


def build(spec: Spec, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The results table and predictions of `spec`: copies, built once per session."""
    table, predictions = _build(spec, seed)
    return table.copy(), predictions.copy()


@functools.cache
def _build(spec: Spec, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    rows, predictions = [], []
    for extractor, setting, split, layer, classifier, fold in _cells(spec):
        accuracy = _accuracy(extractor, layer, classifier, setting)
        collapsed = spec.collapse == (setting[1], setting[3]) and setting[0] == setting[2]
        true, pred = _fold_predictions(accuracy, rng, spec.classes, collapsed)
        cell = {
            "extractor": extractor,
            "train_corpus": setting[0],
            "train_condition": setting[1],
            "test_corpus": setting[2],
            "test_condition": setting[3],
            "layer": str(layer),
            "pooling": "mean",
            "classifier": classifier,
            "split": split,
            "fold": fold,
        }
        described = {
            **cell,
            "labels": spec.labels,
            "norm": spec.speaker_norm,
            "search": spec.search,
            "seed": spec.seed,
        }
        ident = hashlib.sha256(json.dumps(described).encode()).hexdigest()[:16]
        rows.append(_result_row(cell, true, pred, ident, spec))
        predictions.append(
            pd.DataFrame(
                {
                    "cell_id": ident,
                    "utt_id": [f"{setting[2]}/u{fold}_{i}" for i in range(len(true))],
                    "corpus": setting[2],
                    "fold": fold,
                    "layer": str(layer),
                    "classifier": classifier,
                    "label": true,
                    "predicted": pred,
                }
            )
        )
    return pd.DataFrame(rows), pd.concat(predictions, ignore_index=True)


def write(folder: Path, spec: Spec) -> tuple[pd.DataFrame, pd.DataFrame]:
    table, predictions = build(spec)
    folder.mkdir(parents=True, exist_ok=True)
    if spec.fmt == "parquet":
        table.to_parquet(folder / "results.parquet", index=False)
    else:
        table.to_csv(folder / "results.csv", index=False)
    if spec.predictions:
        predictions.to_parquet(folder / "predictions.parquet", index=False)
    return table, predictions


@pytest.fixture
def results_folder(tmp_path: Path) -> Callable[..., tuple[Path, pd.DataFrame, pd.DataFrame]]:
    """Factory: ``make(**Spec fields)`` -> (folder, results table, predictions)."""

    def make(name: str = "results", **fields) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
        folder = tmp_path / name
        table, predictions = write(folder, Spec(**fields))
        return folder, table, predictions

    return make
