"""Torch heads that train many independent classifiers in one computation.

A :class:`StackedMLP` holds S independent MLP heads as stacked weight tensors
(S, d_in, d_out) and maps inputs (S, batch, d_in) to logits (S, batch, classes)
with batched matrix products. :func:`train_heads` trains such a stack with one
Adam step for all heads per minibatch. The summed loss separates over heads and
Adam updates every parameter element on its own, so head s follows the
trajectory it would follow if trained alone with the same seed: batching changes
the speed, not the model. Early stopping is tracked per head; a head that stops
is dropped from the stack (no more compute spent on it) and every head ends with
the weights of its own best epoch.

This module imports torch; import it only where torch is needed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

DROPOUT_SEED_OFFSET = 7919  # dropout streams differ from the initialisation streams
# The softmax layer weights of the weighted head are few and start uniform; a larger
# step lets them move within the epochs early stopping allows.
SHARED_LR_FACTOR = 10.0


class StackedMLP(nn.Module):
    """S independent MLPs (ReLU, dropout) evaluated together on S inputs.

    Head s is initialised from its own seed like ``nn.Linear`` layers (uniform in
    +-1/sqrt(fan_in)) and draws dropout masks from its own generator, so a head
    does not depend on how many heads share the stack. ``active`` lists the
    original heads still in the stack; inputs are always given for all of them.
    """

    def __init__(
        self,
        n_heads: int,
        n_in: int,
        hidden: Sequence[int],
        n_out: int,
        dropout: float,
        seeds: Sequence[int],
    ):
        super().__init__()
        dims = [n_in, *hidden, n_out]
        self.dropout = float(dropout)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for d_in, d_out in zip(dims[:-1], dims[1:], strict=True):
            self.weights.append(nn.Parameter(torch.empty(n_heads, d_in, d_out)))
            self.biases.append(nn.Parameter(torch.empty(n_heads, d_out)))
        self.register_buffer("active", torch.arange(n_heads))
        self._initialise(seeds)

    @torch.no_grad()
    def _initialise(self, seeds: Sequence[int]) -> None:
        for s, seed in enumerate(seeds):
            generator = torch.Generator().manual_seed(int(seed))
            for weight, bias in zip(self.weights, self.biases, strict=True):
                bound = 1.0 / math.sqrt(weight.shape[1])
                weight[s].uniform_(-bound, bound, generator=generator)
                bias[s].uniform_(-bound, bound, generator=generator)

    def head_parameters(self) -> list[nn.Parameter]:
        """Parameters whose first axis is the head."""
        return [*self.weights, *self.biases]

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters common to all heads (none)."""
        return []

    def forward(self, x: torch.Tensor, streams: Sequence[MaskStream] = ()) -> torch.Tensor:
        """Logits (active heads, batch, n_out) of inputs (all heads, batch, n_in).

        In training, head s draws its dropout masks from ``streams[s]``.
        """
        if x.shape[0] != len(self.active):
            x = x.index_select(0, self.active)
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(bias.unsqueeze(1), x, weight)
            if i < last:
                x = torch.relu(x)
                if self.training and self.dropout > 0:
                    x = x * torch.stack([s.take(x.shape[1:]) for s in streams]).to(x.dtype)
        return x

    @torch.no_grad()
    def keep_heads(self, keep: torch.Tensor) -> None:
        """Drop all heads but the stack positions `keep` (their parameters are replaced)."""
        for plist in (self.weights, self.biases):
            for i, param in enumerate(plist):
                plist[i] = nn.Parameter(param.detach()[keep].clone())
        self.active = self.active[keep]


class MaskStream:
    """Inverted-dropout masks of one head, drawn from its generator in large chunks.

    The CPU generator fills tensors serially, so one large draw holds the same
    numbers as many small ones in a row: the masks equal those drawn batch by
    batch (the model does not change), with one call instead of one per batch.
    """

    CHUNK = 1 << 17  # values drawn at a time

    def __init__(self, generator: torch.Generator, rate: float):
        self.generator = generator
        self.keep = 1.0 - float(rate)
        # the value a kept unit is scaled by, as (mask.to(float32) / keep) computes it
        self.scale = float(torch.ones(1) / self.keep)
        self.buffer = torch.empty(0)
        self.offset = 0

    def take(self, shape: torch.Size) -> torch.Tensor:
        """The next mask of `shape` (float32: 0 or 1/keep)."""
        count = math.prod(shape)
        end = self.offset + count
        if end <= len(self.buffer):
            mask = self.buffer[self.offset : end]
            self.offset = end
            return mask.view(shape)
        rest = self.buffer[self.offset :]
        self.buffer = self._draw(max(count, self.CHUNK))
        self.offset = count - len(rest)
        return torch.cat([rest, self.buffer[: self.offset]]).view(shape)

    def _draw(self, count: int) -> torch.Tensor:
        """`count` mask values: uniform draws below keep become 1/keep, the others 0."""
        values = torch.rand(count, generator=self.generator)
        return values.lt_(self.keep).mul_(self.scale)


class WeightedLayerMLP(nn.Module):
    """SUPERB-style head: a learnable softmax-weighted sum of layers feeding one MLP."""

    def __init__(
        self,
        n_layers: int,
        n_in: int,
        hidden: Sequence[int],
        n_out: int,
        dropout: float,
        seed: int,
    ):
        super().__init__()
        self.layer_logits = nn.Parameter(torch.zeros(n_layers))
        self.head = StackedMLP(1, n_in, hidden, n_out, dropout, [seed])

    def head_parameters(self) -> list[nn.Parameter]:
        """The MLP's parameters (one head)."""
        return self.head.head_parameters()

    def shared_parameters(self) -> list[nn.Parameter]:
        """The layer weights."""
        return [self.layer_logits]

    def layer_weights(self) -> torch.Tensor:
        """Softmax weights over layers, summing to one."""
        return torch.softmax(self.layer_logits, dim=0)

    def forward(self, x: torch.Tensor, streams: Sequence[MaskStream] = ()) -> torch.Tensor:
        """Logits (1, batch, n_out) of per-layer inputs (layers, batch, n_in)."""
        mixed = torch.einsum("l,lbd->bd", self.layer_weights().to(x.dtype), x)
        return self.head(mixed.unsqueeze(0), streams)


@dataclass
class TrainSettings:
    """Optimisation settings shared by the MLP estimator and the batched probes."""

    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    max_epochs: int = 100
    patience: int = 10
    seed: int = 0


@dataclass
class TrainLog:
    """What training did, per head: best epoch and the loss curves."""

    best_epoch: np.ndarray
    train_loss: list[float]
    val_loss: list[np.ndarray]
    n_epochs: int
    head_epochs: int


def train_heads(
    model: nn.Module,
    x_fit: torch.Tensor,
    y_fit: torch.Tensor,
    x_val: torch.Tensor | None,
    y_val: torch.Tensor | None,
    settings: TrainSettings,
    dropout_seeds: Sequence[int],
) -> TrainLog:
    """Train a stack of heads with Adam and per-head early stopping; keep each head's best.

    Args:
        model: a :class:`StackedMLP` or :class:`WeightedLayerMLP`; maps
            (layers, batch, dim) to logits (heads, batch, classes).
        x_fit: training inputs (layers, n, dim).
        y_fit: class indices of the training rows (n,).
        x_val: validation inputs (layers, m, dim), or None to train for
            ``max_epochs`` without early stopping.
        y_val: class indices of the validation rows (m,), or None.
        settings: optimiser and stopping settings; ``seed`` orders the minibatches.
        dropout_seeds: one seed per head for its dropout masks.
    """
    order = torch.Generator().manual_seed(int(settings.seed))
    rate = model.head.dropout if isinstance(model, WeightedLayerMLP) else model.dropout
    streams = [
        MaskStream(torch.Generator().manual_seed(int(s) + DROPOUT_SEED_OFFSET), rate)
        for s in dropout_seeds
    ]
    tracker = _BestTracker(model, len(dropout_seeds), settings.patience)
    optimiser = _adam(model, settings)
    train_curve: list[float] = []
    epoch = head_epochs = 0
    for epoch in range(1, settings.max_epochs + 1):
        head_epochs += len(streams)
        train_curve.append(_epoch(model, optimiser, x_fit, y_fit, settings, order, streams))
        if x_val is None:
            continue
        tracker.update(epoch, validation_loss(model, x_val, y_val))
        if tracker.stopped.all():
            break
        keep = tracker.running_positions()
        if len(keep) < len(streams) and isinstance(model, StackedMLP):
            optimiser = _keep_heads(model, optimiser, keep, settings)
            streams = [streams[i] for i in keep.tolist()]
    if x_val is not None:
        tracker.restore()
    return TrainLog(
        best_epoch=tracker.best_epoch if x_val is not None else np.full(len(dropout_seeds), epoch),
        train_loss=train_curve,
        val_loss=tracker.curve,
        n_epochs=epoch,
        head_epochs=head_epochs,
    )


def _adam(model: nn.Module, settings: TrainSettings) -> torch.optim.Adam:
    """Adam over the heads; shared layer weights learn faster and without weight decay."""
    groups = [{"params": model.head_parameters()}]
    if model.shared_parameters():
        groups.append(
            {
                "params": model.shared_parameters(),
                "lr": settings.lr * SHARED_LR_FACTOR,
                "weight_decay": 0.0,
            }
        )
    return torch.optim.Adam(groups, lr=settings.lr, weight_decay=settings.weight_decay, fused=True)


def _keep_heads(
    model: StackedMLP, optimiser: torch.optim.Adam, keep: torch.Tensor, settings: TrainSettings
) -> torch.optim.Adam:
    """Shrink the stack to the running heads, carrying their Adam state over."""
    old = [optimiser.state.get(p, {}) for p in model.head_parameters()]
    model.keep_heads(keep)
    fresh = _adam(model, settings)
    for param, state in zip(model.head_parameters(), old, strict=True):
        if state:
            fresh.state[param] = {
                name: value if name == "step" else value[keep].clone()
                for name, value in state.items()
            }
    return fresh


def _epoch(
    model: nn.Module,
    optimiser: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: TrainSettings,
    order: torch.Generator,
    streams: Sequence[MaskStream],
) -> float:
    """One pass over shuffled minibatches; returns the mean per-head training loss."""
    model.train()
    n = x.shape[1]
    permutation = torch.randperm(n, generator=order)
    total = 0.0
    for start in range(0, n, settings.batch_size):
        index = permutation[start : start + settings.batch_size]
        logits = model(torch.index_select(x, 1, index), streams)
        n_heads, batch, n_classes = logits.shape
        # Sum over heads of each head's mean loss: the gradient of head s is its own.
        if n_heads == 1:
            loss = F.cross_entropy(logits[0], y.index_select(0, index))
        else:
            target = y.index_select(0, index).repeat(n_heads)
            loss = F.cross_entropy(logits.reshape(-1, n_classes), target)
            loss = loss * n_heads
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        total += loss.item() * batch / n_heads
    return total / n


@torch.no_grad()
def validation_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Mean cross-entropy per (running) head on a validation set."""
    logits = predict_logits(model, x)
    n_heads, n, n_classes = logits.shape
    losses = F.cross_entropy(logits.reshape(-1, n_classes), y.repeat(n_heads), reduction="none")
    return losses.reshape(n_heads, n).mean(dim=1).numpy()


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """Logits (heads, n, classes) in evaluation mode, in row chunks to bound memory.

    Float64 inputs run through a float64 copy of the model.
    """
    if x.dtype == torch.float64:
        model = copy.deepcopy(model).double()
    model.eval()
    chunks = [model(x[:, i : i + batch_size]) for i in range(0, x.shape[1], batch_size)]
    return torch.cat(chunks, dim=1)


class _BestTracker:
    """Per-head early stopping: each head's best epoch, loss and weights, by original id.

    A head that has gone `patience` epochs without improving is stopped and later
    improvements are ignored, so it ends where training it alone would end.
    """

    def __init__(self, model: nn.Module, n_heads: int, patience: int):
        self.model = model
        self.patience = patience
        self.best_loss = np.full(n_heads, np.inf)
        self.best_epoch = np.zeros(n_heads, dtype=np.int64)
        self.stopped = np.zeros(n_heads, dtype=bool)
        self.running = np.arange(n_heads)  # original ids of the heads in the stack
        self.curve: list[np.ndarray] = []
        self.saved_heads = [p.detach().clone() for p in model.head_parameters()]
        self.saved_shared = [p.detach().clone() for p in model.shared_parameters()]

    def update(self, epoch: int, losses: np.ndarray) -> None:
        full = np.full(len(self.best_loss), np.nan)
        full[self.running] = losses
        self.curve.append(full)
        improved = np.zeros(len(full), dtype=bool)
        improved[self.running] = (losses < self.best_loss[self.running] - 1e-7) & ~self.stopped[
            self.running
        ]
        self.best_loss = np.where(improved, full, self.best_loss)
        self.best_epoch = np.where(improved, epoch, self.best_epoch)
        self.stopped |= (epoch - self.best_epoch) >= self.patience
        if improved.any():
            self._save(improved)

    @torch.no_grad()
    def _save(self, improved: np.ndarray) -> None:
        positions = torch.from_numpy(np.flatnonzero(improved[self.running]))
        heads = torch.from_numpy(self.running[positions.numpy()])
        for saved, param in zip(self.saved_heads, self.model.head_parameters(), strict=True):
            saved[heads] = param.detach()[positions]
        for saved, param in zip(self.saved_shared, self.model.shared_parameters(), strict=True):
            saved.copy_(param.detach())

    def running_positions(self) -> torch.Tensor:
        """Stack positions of the heads still running; updates the running ids."""
        keep = ~self.stopped[self.running]
        self.running = self.running[keep]
        return torch.from_numpy(np.flatnonzero(keep))

    @torch.no_grad()
    def restore(self) -> None:
        """Put every head's best weights back (the full stack, in original order)."""
        model = self.model
        if isinstance(model, StackedMLP):
            n_heads = len(self.best_loss)
            for plist, saved in (
                (model.weights, self.saved_heads[: len(model.weights)]),
                (model.biases, self.saved_heads[len(model.weights) :]),
            ):
                for i, values in enumerate(saved):
                    plist[i] = nn.Parameter(values.clone())
            model.active = torch.arange(n_heads)
            return
        for saved, param in zip(self.saved_heads, model.head_parameters(), strict=True):
            param.copy_(saved)
        for saved, param in zip(self.saved_shared, model.shared_parameters(), strict=True):
            param.copy_(saved)
