"""A hand-made results folder holding probe cells and `ser finetune` cells, written by CellStore.

The rows follow the fine-tune data contract: one row per fold and test corpus
with every column a probe row has, classifier ``finetune``, layer ``all`` or
``weighted``, pooling ``mean``, search and speaker norm off, the same
extractor string and fold names as the probes, a ``fold_digest`` per fold,
params (head, freeze, top_layers, adapter, lora_rank, epochs, learning_rate)
as JSON text like a probe's params, ``best_epoch``, ``epochs_run``, the
``training_curve`` as a JSON list of epochs and, for ``weighted``, the
``layer_weights`` as a JSON list of softmax weights. Metrics are computed from
the stored predictions with scikit-learn, so table and predictions agree.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_fscore_support

from ssl_ser.classify.results import CellStore, write_tables
from ssl_ser.results import cell_id

CLASSES = ["angry", "happy", "neutral", "sad"]
PER_CLASS = 6
EXTRACTOR = "facebook/wav2vec2-base"
N_LAYERS = 5  # hidden states 0..4
FOLDS = ("0", "1", "2")
SETTINGS = (("emodb", "clean", "emodb", "clean"), ("emodb", "clean", "emodb", "telephone"))
PROBES = ("logreg", "mlp")
PARAMS = {
    "head": "linear",
    "freeze": "feature-encoder",
    "top_layers": None,
    "adapter": "none",
    "lora_rank": None,
    "epochs": 4,
    "learning_rate": 1e-05,
}


@dataclass
class FinetuneSpec:
    """What the hand-made folder holds."""

    finetune: bool = True
    probes: bool = True
    weighted: bool = True
    probe_digest: bool = True
    # folds whose fine-tune digest differs from the probe's (other speakers)
    other_speakers: tuple[str, ...] = ()
    # folds on which the fine-tuned model predicts one class for every utterance
    collapsed: tuple[str, ...] = ()
    val_ua: bool = True
    # a speaker-normalised probe that scores far better on test (must not be compared)
    normed_probe: bool = True
    # probes run with a hyperparameter search (their own group; still compared)
    probe_search: bool = False
    seed: int = 0
    settings: tuple[tuple[str, str, str, str], ...] = SETTINGS
    extra: dict = field(default_factory=dict)


def digest(setting: tuple[str, ...], fold: str, salt: str = "") -> str:
    """A stand-in for the fold membership digest: equal for equal (setting, fold)."""
    return hashlib.sha256(f"{setting[0]}|{fold}|{salt}".encode()).hexdigest()[:16]


def _scores(true: np.ndarray, pred: np.ndarray) -> dict:
    # one scikit-learn call: every class is in `true`, so UA is the mean recall
    _, recall, f1, _ = precision_recall_fscore_support(true, pred, labels=CLASSES, zero_division=0)
    confusion = pd.crosstab(
        pd.Categorical(true, CLASSES), pd.Categorical(pred, CLASSES), dropna=False
    )
    return {
        "ua": float(np.mean(recall)),
        "wa": float(np.mean(true == pred)),
        "macro_f1": float(np.mean(f1)),
        "n_test": len(true),
        "confusion": json.dumps(confusion.to_numpy().tolist()),
        **{f"recall_{c}": r for c, r in zip(CLASSES, recall, strict=True)},
    }


def _predict(rng: np.random.Generator, accuracy: float) -> tuple[np.ndarray, np.ndarray]:
    true = np.repeat(CLASSES, PER_CLASS)
    hit = rng.random(len(true)) < accuracy
    return true, np.where(hit, true, rng.choice(CLASSES, size=len(true)))


def _base(setting: tuple[str, ...], fold: str, spec: FinetuneSpec) -> dict:
    return {
        "extractor": EXTRACTOR,
        "train_corpus": setting[0],
        "train_condition": setting[1],
        "test_corpus": setting[2],
        "test_condition": setting[3],
        "split": "speaker-kfold",
        "fold": fold,
        "seed": spec.seed,
        "labels": "basic4",
        "speaker_norm": False,
        "search": False,
        "speaker_independent": True,
        "shots": None,
        "pooling": "mean",
        "toolkit_version": "0.1.0",
    }


def _store(store: CellStore, row: dict, true: np.ndarray, pred: np.ndarray) -> None:
    ident = cell_id({k: v for k, v in row.items() if k not in ("val_ua",)})
    row = {**row, "cell_id": ident, **_scores(true, pred)}
    predictions = pd.DataFrame(
        {
            "cell_id": ident,
            "utt_id": [f"{row['test_corpus']}/f{row['fold']}_{i}" for i in range(len(true))],
            "corpus": row["test_corpus"],
            "condition": row["test_condition"],
            "fold": row["fold"],
            "layer": row["layer"],
            "pooling": row["pooling"],
            "classifier": row["classifier"],
            "label": true,
            "predicted": pred,
        }
    )
    store.save(ident, [row], predictions)


def _probe_cells(store: CellStore, spec: FinetuneSpec, rng: np.random.Generator) -> None:
    for setting in spec.settings:
        penalty = 0.1 * (setting[1] != setting[3])
        for fold in FOLDS:
            for classifier in PROBES:
                for layer in range(N_LAYERS):
                    accuracy = 0.4 + 0.08 * layer - 0.1 * (layer == 4) - penalty
                    accuracy += 0.05 * (classifier == "mlp")
                    true, pred = _predict(rng, accuracy)
                    row = {
                        **_base(setting, fold, spec),
                        "layer": str(layer),
                        "classifier": classifier,
                        "search": spec.probe_search,
                        "params": json.dumps({"C": 1.0}),
                        "val_ua": float(rng.uniform(0.3, 0.7)) if spec.val_ua else None,
                    }
                    if spec.probe_digest:
                        row["fold_digest"] = digest(setting, fold)
                    _store(store, row, true, pred)
            if spec.normed_probe:
                true, pred = _predict(rng, 0.97)
                row = {
                    **_base(setting, fold, spec),
                    "speaker_norm": True,
                    "layer": "3",
                    "classifier": "logreg",
                    "params": json.dumps({"C": 1.0}),
                    "val_ua": 0.99 if spec.val_ua else None,
                }
                _store(store, row, true, pred)


def _curve(rng: np.random.Generator, epochs: int) -> tuple[list[dict], int]:
    loss = 1.4 * np.exp(-0.4 * np.arange(epochs)) + rng.uniform(0, 0.05, epochs)
    val = np.clip(0.35 + 0.1 * np.arange(epochs) - 0.04 * np.arange(epochs) ** 1.5, 0, 1)
    val = val + rng.uniform(0, 0.03, epochs)
    curve = [
        {
            "epoch": i + 1,
            "train_loss": float(loss[i]),
            "val_ua": float(val[i]),
            "val_loss": float(loss[i] + 0.2),
            "lr": 1e-5 * (1 - i / epochs),
        }
        for i in range(epochs)
    ]
    return curve, int(np.argmax(val)) + 1


def _finetune_cells(store: CellStore, spec: FinetuneSpec, rng: np.random.Generator) -> None:
    layers = ("all", "weighted") if spec.weighted else ("all",)
    for setting in spec.settings:
        for layer in layers:
            for fold in FOLDS:
                true, pred = _predict(rng, 0.8 if layer == "weighted" else 0.7)
                if fold in spec.collapsed:
                    pred = np.full(len(true), CLASSES[0])
                curve, best = _curve(rng, PARAMS["epochs"])
                logits = rng.normal(0, 1, N_LAYERS) + np.linspace(0, 1.5, N_LAYERS)
                weights = np.exp(logits) / np.exp(logits).sum()
                salt = "other" if fold in spec.other_speakers else ""
                row = {
                    **_base(setting, fold, spec),
                    "layer": layer,
                    "classifier": "finetune",
                    "params": json.dumps(PARAMS, sort_keys=True),
                    "val_ua": curve[best - 1]["val_ua"],
                    "fold_digest": digest(setting, fold, salt),
                    "best_epoch": best,
                    "epochs_run": len(curve),
                    "training_curve": json.dumps(curve),
                    "layer_weights": json.dumps(weights.tolist()) if layer == "weighted" else None,
                    **spec.extra,
                }
                _store(store, row, true, pred)


def write_folder(folder: Path, spec: FinetuneSpec | None = None) -> Path:
    """Write probe (and fine-tune) cells into `folder` and build its tables; return it."""
    spec = spec or FinetuneSpec()
    rng = np.random.default_rng(spec.seed)
    store = CellStore(folder)
    if spec.probes:
        _probe_cells(store, spec, rng)
    if spec.finetune:
        _finetune_cells(store, spec, rng)
    write_tables(store, n_boot=50, seed=0)
    return folder
