"""A small torch MLP classifier that follows the scikit-learn estimator contract.

``MLPClassifier`` has hidden ReLU layers with dropout, trains with Adam and stops
early on a validation split taken from the training speakers (pass ``groups=`` to
``fit``; without groups the split is stratified over rows). It is the one-head
case of :mod:`ssl_ser.classify.heads`, so the batched all-layer probe trains
exactly this model for every layer at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ssl_ser.classify.heads import StackedMLP, TrainSettings, predict_logits, train_heads
from ssl_ser.classify.metrics import confusion_matrix, scores_from_confusion
from ssl_ser.classify.splits import inner_split

MIN_VALIDATION_ROWS = 10


def validation_rows(
    codes: np.ndarray, groups: np.ndarray | None, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(fit, validation) row positions for early stopping, whole speakers when grouped.

    Returns no validation rows when the validation part would be too small to be
    useful (fewer than 10 rows or than one per class); training then runs for
    ``max_epochs``.
    """
    everything = np.arange(len(codes))
    n_classes = len(np.unique(codes))
    if fraction <= 0 or len(codes) * fraction < max(MIN_VALIDATION_ROWS, n_classes):
        return everything, everything[:0]
    groups = np.asarray(groups) if groups is not None else np.zeros(len(codes))
    fit_rows, val_rows = inner_split(groups, codes, fraction, seed)
    if len(fit_rows) == 0 or len(val_rows) == 0:
        return everything, everything[:0]
    return fit_rows, val_rows


def heads_validation_ua(
    model: torch.nn.Module, x_val: torch.Tensor, codes: np.ndarray, classes: np.ndarray
) -> np.ndarray:
    """UA of each head of `model` on validation inputs and their class codes (m,)."""
    predicted = predict_logits(model, x_val).argmax(dim=2).numpy()
    return np.array(
        [
            scores_from_confusion(confusion_matrix(codes, p, len(classes)), classes).ua
            for p in predicted
        ]
    )


def train_settings(estimator: MLPClassifier, seed: int) -> TrainSettings:
    """The optimiser settings of an MLP estimator (or a probe with the same parameters)."""
    names = [field.name for field in dataclasses.fields(TrainSettings) if field.name != "seed"]
    return TrainSettings(**{name: getattr(estimator, name) for name in names}, seed=seed)


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """Torch MLP head with early stopping on training speakers.

    Args:
        hidden_layer_sizes: widths of the hidden layers (empty: a linear softmax head).
        dropout: dropout rate after each hidden layer.
        lr: Adam learning rate.
        weight_decay: L2 penalty added by Adam.
        batch_size: minibatch size.
        max_epochs: upper bound on epochs.
        patience: epochs without validation improvement before stopping.
        validation_fraction: share of training rows (whole speakers when grouped)
            held out for early stopping; 0 trains for ``max_epochs``.
        random_state: seed of initialisation, minibatch order, dropout and the
            validation split; global random state is never touched.
    """

    def __init__(
        self,
        hidden_layer_sizes: Sequence[int] = (256,),
        dropout: float = 0.2,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 128,
        max_epochs: int = 100,
        patience: int = 8,
        validation_fraction: float = 0.15,
        random_state: int | None = 0,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    def fit(self, X, y, groups=None) -> MLPClassifier:  # noqa: N803 (scikit-learn naming)
        """Train on (X, y); `groups` (speakers) keep validation speakers unseen."""
        x, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        seed = 0 if self.random_state is None else int(self.random_state)
        fit_rows, val_rows = validation_rows(codes, groups, self.validation_fraction, seed)
        self.model_ = StackedMLP(
            1, x.shape[1], tuple(self.hidden_layer_sizes), len(self.classes_), self.dropout, [seed]
        )
        x = torch.from_numpy(x).unsqueeze(0)
        target = torch.from_numpy(codes.astype(np.int64))
        has_val = len(val_rows) > 0
        log = train_heads(
            self.model_,
            x[:, fit_rows],
            target[fit_rows],
            x[:, val_rows] if has_val else None,
            target[val_rows] if has_val else None,
            train_settings(self, seed),
            [seed],
        )
        self.best_epoch_ = int(log.best_epoch[0])
        self.n_iter_ = log.n_epochs
        self.loss_curve_ = log.train_loss
        self.validation_loss_curve_ = [float(v[0]) for v in log.val_loss]
        # UA on the early-stopping speakers (NaN without validation); used to pick layers.
        self.validation_ua_ = (
            float(
                heads_validation_ua(self.model_, x[:, val_rows], codes[val_rows], self.classes_)[0]
            )
            if has_val
            else float("nan")
        )
        return self

    def _logits(self, X) -> np.ndarray:  # noqa: N803
        check_is_fitted(self)
        x = validate_data(self, X, dtype=np.float32, reset=False)
        # Float64 inference keeps every row's output independent of the batch it is in.
        x = torch.from_numpy(x).unsqueeze(0).double()
        return predict_logits(self.model_, x)[0].numpy()

    def decision_function(self, X) -> np.ndarray:  # noqa: N803
        """Logits (n, classes); for two classes the margin of ``classes_[1]`` (n,)."""
        logits = self._logits(X)
        return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits

    def predict_proba(self, X) -> np.ndarray:  # noqa: N803
        """Class probabilities (n, classes), columns in the order of ``classes_``."""
        return torch.softmax(torch.from_numpy(self._logits(X)), dim=1).numpy()

    def predict(self, X) -> np.ndarray:  # noqa: N803
        """Most probable class of each row."""
        logits = self._logits(X)
        return self.classes_[np.argmax(logits, axis=1)]
