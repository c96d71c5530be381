"""Batched probes: a linear or MLP head for every layer at once, and the weighted-layer head.

:class:`BatchedProbe` trains, for inputs (layers, rows, dim), one head per layer
in a single stacked torch computation. Each layer's head is the model that
``Pipeline([StandardScaler(), MLPClassifier(...)])`` trains on that layer alone
with the same settings and seed (same scaler statistics, initialisation,
minibatch order, dropout masks and validation speakers), so a layer sweep can
use it in place of per-layer fits. :class:`WeightedLayerProbe` is the
SUPERB-style ``mlp-weighted`` head: a learnable softmax-weighted sum of layers
feeding one MLP.

This module imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ssl_ser.classify.heads import (
    StackedMLP,
    TrainSettings,
    WeightedLayerMLP,
    predict_logits,
    train_heads,
)
from ssl_ser.classify.mlp import (
    MLPClassifier,
    heads_validation_ua,
    train_settings,
    validation_rows,
)
from ssl_ser.errors import ConfigError, UnknownChoiceError

HEADS: tuple[str, ...] = ("linear", "mlp")


def layer_standardiser(
    x: np.ndarray, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-layer, per-feature mean and scale of (layers, rows, dim), as StandardScaler.

    Only `rows` (all when None) count. Means are accumulated in float64, one layer
    at a time (no float64 copy of the whole stack); constant features get scale 1.
    """
    mean = np.empty((x.shape[0], 1, x.shape[2]), dtype=np.float32)
    scale = np.empty_like(mean)
    for layer in range(x.shape[0]):
        values = x[layer] if rows is None else np.take(x[layer], rows, axis=0)
        mean[layer, 0] = values.mean(axis=0, dtype=np.float64)
        centred = values - mean[layer]
        scale[layer, 0] = np.sqrt(np.einsum("nd,nd->d", centred, centred) / len(values))
    scale[scale < 10 * np.finfo(np.float32).eps] = 1.0
    return mean, scale


class _StackedProbeBase:
    """Shared fitting logic: label coding, scaler, validation speakers, settings."""

    def __init__(self, **settings):
        # One source of names and defaults: MLPClassifier's signature (unknown names fail).
        for name, value in MLPClassifier(**settings).get_params().items():
            setattr(self, name, value)
        self.hidden_layer_sizes = tuple(self.hidden_layer_sizes)

    def _prepare(self, x: np.ndarray, y: Sequence, groups, rows: np.ndarray | None) -> tuple:
        """Coded labels, scaler statistics and standardised (fit, validation) tensors.

        Rows are selected before standardising, in place on the selected copies,
        so fitting holds about one extra copy of the training features.
        """
        if x.ndim != 3:
            raise ConfigError(f"probe inputs must be (layers, rows, dim); got shape {x.shape}")
        self.classes_, codes = np.unique(np.asarray(y), return_inverse=True)
        if len(self.classes_) < 2:
            raise ConfigError(f"a probe needs at least 2 classes; got {list(self.classes_)}")
        rows = np.arange(x.shape[1]) if rows is None else np.asarray(rows)
        if len(rows) != len(codes):
            raise ConfigError(f"{len(codes)} labels for {len(rows)} training rows")
        self.mean_, self.scale_ = layer_standardiser(x, rows)
        fit, val = validation_rows(codes, groups, self.validation_fraction, self.seed)
        target = torch.from_numpy(codes.astype(np.int64))
        x_fit = self._select(x, rows[fit])
        if len(val) == 0:
            return x_fit, target[fit], None, None
        return x_fit, target[fit], self._select(x, rows[val]), target[val]

    def _select(self, x: np.ndarray, rows: np.ndarray) -> torch.Tensor:
        """Standardised copy of some rows of every layer."""
        part = np.take(x, rows, axis=1).astype(np.float32, copy=False)
        part -= self.mean_
        part /= self.scale_
        return torch.from_numpy(part)

    @property
    def seed(self) -> int:
        return 0 if self.random_state is None else int(self.random_state)

    def _settings(self) -> TrainSettings:
        return train_settings(self, self.seed)

    def _validation_ua(self, x_val, y_val, n_heads: int) -> np.ndarray:
        """UA of each head on the validation speakers (NaN without validation)."""
        if x_val is None:
            return np.full(n_heads, np.nan)
        return heads_validation_ua(self.model_, x_val, y_val.numpy(), self.classes_)

    def _logits(self, x: np.ndarray) -> torch.Tensor:
        standardised = np.subtract(x, self.mean_, dtype=np.float32)  # a copy: `x` is kept
        standardised /= self.scale_
        return predict_logits(self.model_, torch.from_numpy(standardised))


class BatchedProbe(_StackedProbeBase):
    """One linear or MLP head per layer, all trained in one stacked computation.

    Args:
        head: ``mlp`` (hidden layers, dropout) or ``linear`` (softmax regression).
        Other arguments as :class:`ssl_ser.classify.mlp.MLPClassifier`.
    """

    def __init__(self, head: str = "mlp", **settings):
        if head not in HEADS:
            raise UnknownChoiceError("probe head", head, HEADS)
        if head == "linear" and settings.get("hidden_layer_sizes"):
            raise ConfigError("a linear probe has no hidden layers; use head='mlp'")
        super().__init__(**settings)
        self.head = head

    def fit(self, x: np.ndarray, y: Sequence, groups=None, rows=None) -> BatchedProbe:
        """Train every layer's head on inputs (layers, rows, dim) and labels.

        `rows` picks the training rows of `x` (labels and groups follow them),
        which avoids copying the training part of a large feature stack first.
        """
        x_fit, y_fit, x_val, y_val = self._prepare(x, y, groups, rows)
        hidden = self.hidden_layer_sizes if self.head == "mlp" else ()
        n_layers = x.shape[0]
        self.model_ = StackedMLP(
            n_layers, x.shape[2], hidden, len(self.classes_), self.dropout, [self.seed] * n_layers
        )
        log = train_heads(
            self.model_, x_fit, y_fit, x_val, y_val, self._settings(), [self.seed] * n_layers
        )
        self.best_epoch_ = log.best_epoch
        self.n_iter_ = log.n_epochs
        self.head_epochs_ = log.head_epochs  # epochs summed over heads (work done)
        self.n_fit_rows_ = int(x_fit.shape[1])
        self.n_val_rows_ = 0 if x_val is None else int(x_val.shape[1])
        self.validation_ua_ = self._validation_ua(x_val, y_val, n_layers)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (layers, rows, classes)."""
        return torch.softmax(self._logits(x).double(), dim=2).numpy()

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted class of every row for every layer, (layers, rows)."""
        return self.classes_[self._logits(x).argmax(dim=2).numpy()]


class WeightedLayerProbe(_StackedProbeBase):
    """``mlp-weighted``: softmax weights over layers learned jointly with one MLP head."""

    def fit(self, x: np.ndarray, y: Sequence, groups=None, rows=None) -> WeightedLayerProbe:
        """Train on inputs (layers, rows, dim); ``layer_weights_`` holds the learned mix.

        `rows` picks the training rows of `x`, as for :meth:`BatchedProbe.fit`.
        """
        x_fit, y_fit, x_val, y_val = self._prepare(x, y, groups, rows)
        self.model_ = WeightedLayerMLP(
            x.shape[0],
            x.shape[2],
            self.hidden_layer_sizes,
            len(self.classes_),
            self.dropout,
            self.seed,
        )
        log = train_heads(self.model_, x_fit, y_fit, x_val, y_val, self._settings(), [self.seed])
        self.best_epoch_ = int(log.best_epoch[0])
        self.n_iter_ = log.n_epochs
        self.layer_weights_ = self.model_.layer_weights().detach().numpy()
        self.validation_ua_ = float(self._validation_ua(x_val, y_val, 1)[0])
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (rows, classes)."""
        return torch.softmax(self._logits(x)[0].double(), dim=1).numpy()

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted class of every row."""
        return self.classes_[self._logits(x)[0].argmax(dim=1).numpy()]
