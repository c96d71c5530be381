"""Training one fold: AdamW with warm-up and decay, the best epoch chosen on validation speakers.

Each epoch runs the fitting rows in length-grouped batches (in an order drawn
from the seed and the epoch), accumulates micro-batches into optimizer steps,
clips the gradient norm and steps the linear schedule; then it scores the
validation rows (training speakers only) and keeps the weights of the epoch with
the best validation UA. Training stops after ``patience`` epochs without a
better one. A head started from a probe is scored as epoch 0 before any step,
and a later epoch is kept only when it beats it, so the kept model is never
below its starting probe on validation (when epoch 0 wins, the trainer's
``epoch_zero`` puts the probe itself back). The head and the backbone have their
own learning rates (two AdamW parameter groups). The test rows are never seen
here. Every epoch ends with a checkpoint (see :mod:`ssl_ser.finetune.checkpoint`)
from which a killed run resumes; dropout and the SpecAugment time masks are
seeded per micro-batch from (seed, epoch, micro-batch), so a resumed run and
one process or several compute the same thing.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch.nn import functional
from tqdm.auto import tqdm

from ssl_ser.classify.search import ua_of
from ssl_ser.errors import ConfigError
from ssl_ser.extract.runner import is_out_of_memory
from ssl_ser.finetune import checkpoint
from ssl_ser.finetune.checkpoint import TrainState
from ssl_ser.finetune.config import FinetuneConfig
from ssl_ser.finetune.data import Audio, batches, shuffled
from ssl_ser.finetune.distributed import World, barrier, from_main, gather, sum_gradients
from ssl_ser.finetune.model import EmotionModel
from ssl_ser.progress import announce

log = logging.getLogger(__name__)

# Relative validation-loss difference below which two epochs of equal UA tie (float32 noise).
LOSS_TIE = 1e-6


@dataclass
class FoldRows:
    """The rows one fold trains and chooses its epoch on (keys into the run's audio)."""

    fit_keys: list[tuple[str, str]]
    fit_codes: np.ndarray
    val_keys: list[tuple[str, str]]
    val_codes: np.ndarray
    n_classes: int


@dataclass
class Trainer:
    """A fold's model and optimisation state, and how to run it."""

    model: EmotionModel
    config: FinetuneConfig
    audio: Audio
    seed: int
    here: World
    describe: str = ""
    progress: bool = False
    # a frozen backbone's head inputs (states, rows, dim) and the row of each key:
    # the head then trains on them without running the backbone (see use_frozen_features)
    features: np.ndarray | None = None
    feature_rows: dict[tuple[str, str], int] | None = None
    # puts the model of epoch 0 back when no epoch beats it (a probe-started head: the
    # probe fitted on all training rows); None: epoch 0's stored weights are the model
    epoch_zero: Callable[[], None] | None = None
    # when this process started the fold, and the seconds earlier runs spent on it (a resume)
    started: float = field(default_factory=time.perf_counter)
    earlier_seconds: float = 0.0

    def elapsed(self) -> float:
        """Seconds spent on the fold so far, over every run that resumed it."""
        return self.earlier_seconds + time.perf_counter() - self.started

    def __post_init__(self) -> None:
        self.parameters = [p for p in self.model.parameters() if p.requires_grad]
        self.device = self.model.backbone.device
        groups = [
            {"params": self.model.backbone_parameters(), "lr": self.config.learning_rate},
            {"params": self.model.head_parameters(), "lr": self.config.head_learning_rate},
        ]
        self.optimizer = torch.optim.AdamW(
            [group for group in groups if group["params"]],
            weight_decay=self.config.weight_decay,
        )
        fp16 = self.device.type == "cuda" and self.config.dtype == "float16"
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision on CUDA (float16/bfloat16); CPU trains in float32."""
        if self.device.type != "cuda" or self.config.dtype == "float32":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.config.dtype == "float16" else torch.bfloat16
        return torch.autocast("cuda", dtype=dtype)

    def plan(self, keys: Sequence[tuple[str, str]]) -> list[list[int]]:
        """Length-grouped batches of `keys` (positions) within the batch seconds."""
        input_seconds = self.model.backbone.input_seconds
        return batches(keys, self.audio, input_seconds, self.config.batch_seconds)

    def use_frozen_features(self, features: np.ndarray, keys: Sequence[tuple[str, str]]) -> None:
        """Train the head on the backbone's fixed outputs (`features` rows are `keys`).

        For a frozen backbone (``freeze="base"``, no adapter): it is a fixed
        feature extractor, as for the probes, so it runs once, in eval mode (no
        dropout, no time masks), and a head-only run is the probe's own setting.
        """
        self.features = features
        self.feature_rows = {key: row for row, key in enumerate(keys)}

    def logits(self, keys: Sequence[tuple[str, str]]) -> torch.Tensor:
        """Forward one micro-batch; out of memory becomes a message saying what to lower."""
        if self.features is not None:
            rows = [self.feature_rows[key] for key in keys]
            pooled = torch.from_numpy(np.ascontiguousarray(self.features[:, rows]))
            return self.model.logits(pooled.to(self.device))
        with self.out_of_memory(keys), self.autocast():
            return self.model([self.audio.segments[key] for key in keys])

    @contextlib.contextmanager
    def out_of_memory(self, keys: Sequence[tuple[str, str]]) -> Iterator[None]:
        """Running out of memory on `keys` becomes a message saying what to lower.

        Cached GPU memory is returned first (nothing on the CPU).
        """
        try:
            yield
        except RuntimeError as error:
            if not is_out_of_memory(error):
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise ConfigError(self.memory_message(keys)) from error

    def memory_message(self, keys: Sequence[tuple[str, str]]) -> str:
        """What ran out and what to lower: batch seconds, accumulation, checkpointing."""
        seconds = sum(self.audio.seconds[key] for key in keys)
        hints = [
            f"lower --batch-seconds (now {self.config.batch_seconds:g}) and raise "
            f"--accumulation (now {self.config.accumulation}) to keep the step size"
        ]
        if not self.config.gradient_checkpointing:
            hints.append("turn on --gradient-checkpointing")
        if self.config.max_seconds is None or self.config.max_seconds > 10:
            hints.append("or lower --max-seconds")
        return (
            f"out of memory training a batch of {len(keys)} utterance(s) ({seconds:.1f} s of "
            f"audio) on {self.device}: " + ", ".join(hints)
        )


def class_weights(codes: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse class frequency weights, normalised to mean 1 over the classes present."""
    counts = np.bincount(codes, minlength=n_classes).astype(float)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n_classes, 0.0)
    present = weights[counts > 0]
    return weights / present.mean()


def train_fold(trainer: Trainer, rows: FoldRows, folder: Path) -> TrainState:
    """Train to the last epoch or an early stop, resuming from `folder`'s newest checkpoint.

    Returns the final state; the model then holds the best epoch's weights.
    """
    config = trainer.config
    plan = trainer.plan(rows.fit_keys)
    per_step = config.accumulation * trainer.here.size
    steps_per_epoch = math.ceil(len(plan) / per_step)
    scheduler = _schedule(trainer.optimizer, config, steps_per_epoch)
    weights = (
        class_weights(rows.fit_codes, rows.n_classes)
        if config.class_weights
        else np.ones(rows.n_classes)
    )
    state = _resume(trainer, scheduler, folder)
    if state.epoch == 0 and config.init == "probe":  # the starting probe competes as epoch 0
        val_ua, val_loss = _validate(trainer, rows, weights)
        _record(trainer, state, None, val_ua, val_loss, scheduler, folder)
    with tqdm(
        total=config.epochs * steps_per_epoch,
        initial=state.epoch * steps_per_epoch,
        desc=trainer.describe,
        unit="step",
        disable=not (trainer.progress and trainer.here.main),
    ) as bar:
        while state.epoch < config.epochs and not state.stopped:
            state.epoch += 1
            loss = _epoch(trainer, scheduler, plan, rows, weights, state, bar)
            val_ua, val_loss = _validate(trainer, rows, weights)
            _record(trainer, state, loss, val_ua, val_loss, scheduler, folder)
            bar.set_postfix(loss=f"{loss:.3f}", val_ua=f"{val_ua:.3f}", best=state.best_epoch)
    trainer.model.load_trainable_state(load_file(str(folder / state.best_file)))
    if state.best_epoch == 0 and trainer.epoch_zero is not None:
        trainer.epoch_zero()
    return state


def _schedule(optimizer: torch.optim.Optimizer, config: FinetuneConfig, steps_per_epoch: int):
    from transformers import get_linear_schedule_with_warmup

    steps = max(1, config.epochs * steps_per_epoch)
    return get_linear_schedule_with_warmup(optimizer, int(round(config.warmup * steps)), steps)


def _resume(trainer: Trainer, scheduler: Any, folder: Path) -> TrainState:
    """Load the newest checkpoint of `folder` into model, optimizer and schedule (if any)."""
    epoch = from_main(checkpoint.latest_epoch(folder), trainer.here)  # one decision for all
    if epoch == 0:
        return TrainState()
    state, weights, saved = checkpoint.load(folder, epoch)
    trainer.model.load_trainable_state(weights)
    trainer.earlier_seconds = state.seconds
    trainer.optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    trainer.scaler.load_state_dict(saved["scaler"])
    torch.set_rng_state(saved["torch_rng"])
    if trainer.here.main:
        announce(f"{trainer.describe}: resuming after epoch {state.epoch} from {folder}")
    return state


def micro_seed(seed: int, epoch: int, index: int, stream: int = 0) -> int:
    """The dropout (stream 0) or time-mask (stream 1) seed of one micro-batch.

    The same in any process and after a restart.
    """
    key = [seed, epoch, index] if stream == 0 else [seed, epoch, index, stream]
    return int(np.random.default_rng(key).integers(2**62))


def _epoch(
    trainer: Trainer,
    scheduler: Any,
    plan: list[list[int]],
    rows: FoldRows,
    weights: np.ndarray,
    state: TrainState,
    bar: tqdm,
) -> float:
    """One pass over the fitting rows; returns the mean (class-weighted) training loss."""
    model, here, config = trainer.model, trainer.here, trainer.config
    model.train()
    order = shuffled(plan, trainer.seed, state.epoch)
    per_step = config.accumulation * here.size
    weight = torch.as_tensor(weights, dtype=torch.float32, device=trainer.device)
    loss_sum = 0.0
    for start in range(0, len(order), per_step):
        step_batches = order[start : start + per_step]
        norm = float(sum(weights[rows.fit_codes[i]].sum() for i in map(np.array, step_batches)))
        for index in range(here.rank, len(step_batches), here.size):
            batch = step_batches[index]
            loss_sum += _backward(trainer, batch, rows, weight, norm, state, start + index)
        _step(trainer, scheduler)
        state.step += 1
        bar.update(1)
    return float(sum(gather(loss_sum, here))) / float(weights[rows.fit_codes].sum())


def _backward(
    trainer: Trainer,
    batch: list[int],
    rows: FoldRows,
    weight: torch.Tensor,
    norm: float,
    state: TrainState,
    index: int,
) -> float:
    """Forward and backward one micro-batch; returns its summed (weighted) loss."""
    torch.manual_seed(micro_seed(trainer.seed, state.epoch, index))
    keys = [rows.fit_keys[i] for i in batch]
    targets = torch.as_tensor(rows.fit_codes[batch], device=trainer.device)
    trainer.model.mask_seed = micro_seed(trainer.seed, state.epoch, index, stream=1)
    try:
        logits = trainer.logits(keys)
    finally:
        trainer.model.mask_seed = None
    loss = functional.cross_entropy(logits, targets, weight=weight, reduction="sum")
    with trainer.out_of_memory(keys):  # backward is where activation memory peaks
        trainer.scaler.scale(loss / norm).backward()
    return float(loss.detach())


def _step(trainer: Trainer, scheduler: Any) -> None:
    """Sum gradients over processes, clip, step optimizer, scaler and schedule."""
    sum_gradients(trainer.parameters, trainer.here)
    trainer.scaler.unscale_(trainer.optimizer)
    if trainer.config.clip is not None:
        torch.nn.utils.clip_grad_norm_(trainer.parameters, trainer.config.clip)
    trainer.scaler.step(trainer.optimizer)
    trainer.scaler.update()
    scheduler.step()
    trainer.optimizer.zero_grad(set_to_none=True)


@torch.no_grad()
def pooled_features(trainer: Trainer, keys: Sequence[tuple[str, str]]) -> np.ndarray:
    """The head's unstandardised inputs (states, rows, dim) of `keys`, in eval mode.

    What the probes of these states are fitted on, and what the head's
    standardisation statistics come from.
    """
    trainer.model.eval()
    plan = trainer.plan(keys)
    mine = []
    for batch in plan[trainer.here.rank :: trainer.here.size]:
        with trainer.autocast():
            pooled = trainer.model.pooled([trainer.audio.segments[keys[i]] for i in batch])
        mine.append((batch, pooled.float().cpu().numpy()))
    out: np.ndarray | None = None
    for part in gather(mine, trainer.here):
        for batch, pooled in part:
            if out is None:
                out = np.zeros((pooled.shape[0], len(keys), pooled.shape[2]), dtype=np.float32)
            out[:, batch] = pooled
    if out is None:
        raise ConfigError("no rows to compute features of")
    return out


@torch.no_grad()
def predict(trainer: Trainer, keys: Sequence[tuple[str, str]]) -> np.ndarray:
    """Class probabilities (rows, classes) of `keys`, batches shared among processes."""
    trainer.model.eval()
    plan = trainer.plan(keys)
    mine = []
    for batch in plan[trainer.here.rank :: trainer.here.size]:
        logits = trainer.logits([keys[i] for i in batch])
        mine.append((batch, torch.softmax(logits.float(), 1).cpu().numpy()))
    out = np.zeros((len(keys), trainer.model.n_classes), dtype=np.float64)
    for part in gather(mine, trainer.here):
        for batch, probabilities in part:
            out[batch] = probabilities
    return out


def _validate(trainer: Trainer, rows: FoldRows, weights: np.ndarray) -> tuple[float, float]:
    """Validation UA and (class-weighted) loss of the current weights."""
    probabilities = predict(trainer, rows.val_keys)
    predicted = probabilities.argmax(1)
    ua = ua_of(rows.val_codes, predicted)
    picked = np.clip(probabilities[np.arange(len(predicted)), rows.val_codes], 1e-12, None)
    w = weights[rows.val_codes]
    return float(ua), float(-(w * np.log(picked)).sum() / w.sum())


def _record(
    trainer: Trainer,
    state: TrainState,
    loss: float | None,
    val_ua: float,
    val_loss: float,
    scheduler: Any,
    folder: Path,
) -> None:
    """Add the epoch to the curve, keep the best weights, early-stop, checkpoint."""
    lr = float(scheduler.get_last_lr()[0])
    state.curve.append(
        {"epoch": state.epoch, "train_loss": loss, "val_ua": val_ua, "val_loss": val_loss, "lr": lr}
    )
    weights = trainer.model.trainable_state()
    if better(val_ua, val_loss, state):
        state.best_val_ua, state.best_epoch, state.bad_epochs = val_ua, state.epoch, 0
        state.best_val_loss = val_loss
        if trainer.here.main:
            checkpoint.save_weights(weights, folder / state.best_file)
    else:
        state.bad_epochs += 1
    patience = trainer.config.patience
    state.stopped = patience is not None and state.bad_epochs >= patience
    state.seconds = trainer.elapsed()
    if trainer.here.main:
        checkpoint.save(folder, state, weights, _trainer_states(trainer, scheduler))
        trained = "starting probe" if loss is None else f"train loss {loss:.4f}"
        line = (
            f"{trainer.describe}: epoch {state.epoch}/{trainer.config.epochs} {trained}, "
            f"validation UA {val_ua:.3f} (best {state.best_val_ua:.3f} at epoch "
            f"{state.best_epoch})"
        )
        (log.info if trainer.progress else announce)(line)
    barrier(trainer.here)


def better(val_ua: float, val_loss: float, state: TrainState) -> bool:
    """Whether an epoch beats the best so far: higher validation UA, or equal UA at a lower loss.

    A few validation speakers give UA few distinct values, so ties are common;
    the loss tells them apart. An epoch that only equals the best (loss within
    float32 noise, :data:`LOSS_TIE`) is not kept.
    """
    if val_ua != state.best_val_ua:
        return val_ua > state.best_val_ua
    return val_loss < state.best_val_loss - LOSS_TIE * abs(state.best_val_loss)


def _trainer_states(trainer: Trainer, scheduler: Any) -> dict[str, Any]:
    return {
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": trainer.scaler.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
