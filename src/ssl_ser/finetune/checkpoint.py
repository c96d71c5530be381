"""Per-epoch checkpoints that survive SIGKILL: written aside, committed by one rename.

A fold's folder holds ``epoch-NNN/`` checkpoints: the trainable weights
(safetensors), the optimizer, scheduler, gradient scaler and RNG states
(``torch.save``, read back with ``weights_only=True``: tensors and plain values
only, never arbitrary pickles), and ``state.json`` (epoch, step, curve, best
epoch so far). Each is written to a temporary folder and renamed into place, so
a checkpoint either exists whole or not at all; the newest one is resumed. The
best epoch's weights sit beside them in ``best-epoch-NNN.safetensors``, named by
the state that chose them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ssl_ser.atomic import make_folder, write_file
from ssl_ser.errors import OutputError

STATE_FILE = "state.json"
WEIGHTS_FILE = "weights.safetensors"
TRAINER_FILE = "trainer.pt"
EPOCH_PATTERN = re.compile(r"epoch-(\d{3,})")


@dataclass
class TrainState:
    """Where training stands after an epoch (what ``state.json`` holds)."""

    epoch: int = 0
    step: int = 0
    best_epoch: int = 0
    best_val_ua: float = -1.0
    best_val_loss: float = float("inf")
    bad_epochs: int = 0
    stopped: bool = False
    curve: list[dict[str, float]] = field(default_factory=list)
    # seconds the fold has run up to this checkpoint, over every run that resumed it
    seconds: float = 0.0

    @property
    def best_file(self) -> str:
        """File name of the best epoch's weights."""
        return f"best-epoch-{self.best_epoch:03d}.safetensors"


def save_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write tensors as safetensors through a temporary file and a rename.

    Raises:
        OutputError: the disk is full or read-only (the old file is kept).
    """
    tensors = {k: v.contiguous() for k, v in state.items()}
    try:
        write_file(path, lambda p: save_file(tensors, str(p)))
    except SafetensorError as error:  # an I/O error inside safetensors' own writer
        raise OutputError(f"cannot write {path}: {_first_line(error)}") from error


def save(
    folder: Path, state: TrainState, weights: dict[str, torch.Tensor], trainer: dict[str, Any]
) -> None:
    """Commit the checkpoint of ``state.epoch``; older checkpoints and best files are removed.

    Raises:
        OutputError: the checkpoint could not be written (disk full, read-only);
            the partial one is removed and the last whole checkpoint kept.
    """
    make_folder(folder)
    final = folder / f"epoch-{state.epoch:03d}"
    temporary = folder / f".epoch-{state.epoch:03d}.{os.getpid()}.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        _write_checkpoint(temporary, state, weights, trainer)
    except (OSError, RuntimeError, SafetensorError) as error:  # torch.save: RuntimeError
        shutil.rmtree(temporary, ignore_errors=True)
        kept = latest_epoch(folder)
        last = f"the last whole checkpoint (epoch {kept}) is kept" if kept else "none was kept"
        raise OutputError(
            f"cannot write the checkpoint of epoch {state.epoch} in {folder}: "
            f"{_reason(error)}; {last}"
        ) from error
    shutil.rmtree(final, ignore_errors=True)
    os.replace(temporary, final)
    _remove_older(folder, state)


def _write_checkpoint(
    temporary: Path, state: TrainState, weights: dict[str, torch.Tensor], trainer: dict[str, Any]
) -> None:
    """The checkpoint's three files, in a new folder that :func:`save` renames into place."""
    temporary.mkdir()
    save_file({k: v.contiguous() for k, v in weights.items()}, str(temporary / WEIGHTS_FILE))
    with open(temporary / TRAINER_FILE, "wb") as handle:  # OS errors reach Python this way
        torch.save(trainer, handle)
    (temporary / STATE_FILE).write_text(json.dumps(asdict(state), indent=1))


def _reason(error: BaseException) -> str:
    """The operating system's reason behind `error` (torch.save hides it in the context)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    return _first_line(error)


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _remove_older(folder: Path, state: TrainState) -> None:
    for path in folder.iterdir():
        match = EPOCH_PATTERN.fullmatch(path.name)
        if match and int(match.group(1)) < state.epoch:
            shutil.rmtree(path, ignore_errors=True)
        elif path.name.startswith("best-epoch-") and path.name != state.best_file:
            path.unlink(missing_ok=True)
        elif path.name.startswith(".") and path.name.endswith(".tmp"):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(True)


def latest_epoch(folder: Path) -> int:
    """The epoch of the newest whole checkpoint in `folder` (0: none)."""
    if not folder.is_dir():
        return 0
    epochs = [
        int(m.group(1))
        for path in folder.iterdir()
        if (m := EPOCH_PATTERN.fullmatch(path.name)) and (path / STATE_FILE).is_file()
    ]
    return max(epochs, default=0)


def load(folder: Path, epoch: int) -> tuple[TrainState, dict[str, torch.Tensor], dict[str, Any]]:
    """The checkpoint of `epoch`: (state, trainable weights, trainer states)."""
    path = folder / f"epoch-{epoch:03d}"
    state = TrainState(**json.loads((path / STATE_FILE).read_text()))
    trainer = torch.load(path / TRAINER_FILE, map_location="cpu", weights_only=True)
    return state, load_file(str(path / WEIGHTS_FILE)), trainer
