"""Several processes (GPUs or nodes) under ``torchrun``: one process group, summed gradients.

``torchrun --nproc-per-node N -m ssl_ser.cli.main finetune ...`` (or ``accelerate
launch``) sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; :func:`init` then joins
the process group (NCCL on GPUs, gloo on CPUs). Each optimizer step's
micro-batches are dealt to the processes in turn; each process scales its loss
by the step's global utterance count, and the gradients are summed with one
``all_reduce``, so N processes compute the gradient one process computes with
N times the accumulation (up to float summation order). Gradients are reduced
by hand rather than by ``DistributedDataParallel``, because the last step of an
epoch can give some processes no micro-batch: DDP would hang waiting for their
backward pass, while a process with nothing adds zeros here. Dropout is seeded
per micro-batch, not per process, so it too is the same under any process count.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ssl_ser.errors import ConfigError


@dataclass(frozen=True)
class World:
    """This process's place: rank, number of processes, and the device it computes on."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes files and prints (rank 0)."""
        return self.rank == 0

    def device(self, requested: str) -> str:
        """The device of this process: its own GPU under torchrun, else the requested one.

        Raises:
            ConfigError: a GPU named by index under several processes (all would share it).
        """
        if self.size > 1 and requested.startswith("cuda:"):
            raise ConfigError(
                f"--device {requested} under {self.size} processes would put them all on one "
                "GPU; use --device cuda (or auto): each process takes cuda:LOCAL_RANK"
            )
        if self.size > 1 and requested in ("auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank}"
        return requested


def launched() -> bool:
    """Whether this process was started by torchrun (or accelerate launch) with several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextlib.contextmanager
def world(device: str) -> Iterator[World]:
    """Join the process group when launched with several ranks; leave it afterwards."""
    if not launched():
        yield World()
        return
    backend = "nccl" if device != "cpu" and torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    here = World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    if backend == "nccl":
        torch.cuda.set_device(here.local_rank)
    try:
        yield here
    finally:
        dist.destroy_process_group()


def sum_gradients(parameters: Sequence[torch.nn.Parameter], here: World) -> None:
    """Sum the gradients of `parameters` over all processes (one flat all_reduce)."""
    if here.size == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    start = 0
    for parameter, grad in zip(parameters, grads, strict=True):
        size = grad.numel()
        parameter.grad = flat[start : start + size].view_as(grad).clone()
        start += size


def gather(value: Any, here: World) -> list[Any]:
    """Every process's `value`, in rank order (just ``[value]`` alone)."""
    if here.size == 1:
        return [value]
    out: list[Any] = [None] * here.size
    dist.all_gather_object(out, value)
    return out


def from_main(value: Any, here: World) -> Any:
    """Rank 0's `value` in every process: one decision for all (what to skip, resume...)."""
    if here.size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(here: World) -> None:
    """Wait for every process (no-op alone)."""
    if here.size > 1:
        dist.barrier()
