"""Extraction on a Dask cluster: the shards of ``--shard K/N`` as tasks, then one merge.

``ser extract ... --dask ADDRESS`` connects to a running scheduler, ``--dask local``
starts a ``LocalCluster`` here. Each shard K of N is one task that runs exactly
what ``ser extract --shard K/N`` runs; when every shard is done, the client merges
them (:func:`ssl_ser.cache.shards.merge`), so the files are those the manual path
gives. Tasks get the manifest and the extractor configuration as plain values:
audio, a local model folder and the cache folder must be on a file system the
workers and the client share. With CUDA every task asks for the Dask resource
``GPU=1`` and runs on ``cuda``, the one GPU its worker sees. A re-run resumes the
shard files already there, with their N; :func:`check_targets` refuses, before
anything is submitted, what the merge would refuse. Setting up workers (one per
GPU, daemonic processes): ``docs/scale-out.md``.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ssl_ser import cache, fingerprint, manifest
from ssl_ser.cache import shards
from ssl_ser.errors import CacheError, ConfigError, SerError
from ssl_ser.extract.config import RETRY_FAILED, ExtractorConfig, check_run_options
from ssl_ser.extract.summary import ExtractSummary
from ssl_ser.progress import StepLines, announce

log = logging.getLogger(__name__)

LOCAL = "local"
# Options of extract() checked before a cluster starts (see check_run_options).
RUN_OPTIONS = ("batch_seconds", "workers", "telephone_source", "storage_dtype")
GPU_RESOURCE = "GPU"


@dataclass(frozen=True)
class ShardTask:
    """Everything one shard task needs besides the manifest, as plain values."""

    config: dict[str, Any]
    cache_dir: str
    conditions: tuple[str, ...]
    shard: int
    shards: int
    options: dict[str, Any]


def run_shard(task: ShardTask, table: pd.DataFrame) -> list[ExtractSummary]:
    """Run one shard on a worker (what ``ser extract --shard K/N`` runs); its summaries.

    In a daemonic worker process (Dask's default), audio is loaded in this process
    (``workers=0``): daemonic processes cannot start DataLoader workers.
    """
    from ssl_ser.extract.runner import extract

    options = dict(task.options)
    if multiprocessing.current_process().daemon and options.get("workers") != 0:
        log.info(
            "shard %d/%d: daemonic Dask worker, loading audio in-process", task.shard, task.shards
        )
        options["workers"] = 0
    return extract(
        table,
        ExtractorConfig.from_dict(task.config),
        task.cache_dir,
        list(task.conditions),
        shard=(task.shard, task.shards),
        **options,
    )


def extract_on_dask(
    manifest_df: pd.DataFrame,
    config: ExtractorConfig,
    cache_dir: str | Path,
    condition: str | Sequence[str] = "clean",
    *,
    address: str = LOCAL,
    shards_count: int | None = None,
    device: str = "auto",
    progress: bool = False,
    keep_shards: bool = False,
    local_processes: bool = True,
    **options: Any,
) -> list[ExtractSummary]:
    """Extract on a Dask cluster as N shards, then merge: the files of a single process.

    `address`, `shards_count` and `keep_shards` are ``--dask``, ``--shards`` and
    ``--keep-shards`` (see their help); N defaults first to that of the shard files
    already there (a re-run resumes them). ``--device auto`` with ``local`` is
    ``cuda`` when this machine has a GPU. `local_processes` (``local`` only): False
    runs workers in threads of this process, quick to start, for tests and small
    runs. The other options are those of :func:`ssl_ser.extract.extract`.

    Returns:
        One summary per condition and corpus, for the merged cache files.

    Raises:
        ConfigError: bad options (before any cluster is reached), no cluster at
            `address`, no GPU worker for a CUDA run, a `shards_count` other than
            the shards on disk, a shard that failed (named, with its error).
        CacheError: shard files of several counts (before any work), or caches
            that could not be merged (all named, after every shard ran).
    """
    manifest_df = manifest.validate(manifest_df)
    conditions = (condition,) if isinstance(condition, str) else tuple(condition)
    checked = {k: options[k] for k in RUN_OPTIONS if k in options}
    check_run_options(config, list(conditions), device=device, **checked)  # before any cluster
    if options.get("shard") is not None:
        raise ConfigError("shard= does not apply to a Dask run: it runs every shard itself")
    config = config.with_absolute_model_path()
    cache_dir = Path(cache_dir).resolve()
    existing = check_targets(manifest_df, config, cache_dir, conditions, shards_count)
    finished = (
        None if existing else finished_caches(manifest_df, config, cache_dir, conditions, options)
    )
    if finished is not None:
        announce(
            f"nothing to do: {len(finished)} merged cache file(s) in {cache_dir} already hold "
            "every utterance of the manifest; no shard started"
        )
        return finished
    if address == LOCAL and device == "auto":  # cuda (a worker per GPU) if one is visible
        import torch

        device = "cuda" if torch.cuda.is_available() else "auto"
    started = time.perf_counter()
    with _client(address, device, local_processes) as client:
        declared = _declared_gpus(client)
        gpu = use_gpus(device, declared)
        count = shards_count or existing or _default_shards(client, gpu, declared)
        shards.check_shard(1, count)
        if gpu and not declared:
            raise ConfigError(
                f"--device cuda asks each shard for a GPU, but no worker of {address} declares "
                f"one; start workers with `--resources {GPU_RESOURCE}=1` (one per GPU, each with "
                "its own CUDA_VISIBLE_DEVICES), or use --device cpu"
            )
        sent = task_device(device, gpu)
        if sent != device:
            log.warning(
                "--device %s with --dask: each shard asks for a GPU worker (resource %s=1) and "
                "runs on %r there, the GPU that worker sees (its CUDA_VISIBLE_DEVICES)",
                device,
                GPU_RESOURCE,
                sent,
            )
        announce(f"extract on dask ({_describe(client)}): {count} shard(s)")
        tasks = [
            ShardTask(
                config.to_dict(),
                str(cache_dir),
                conditions,
                number,
                count,
                {**options, "device": sent, "progress": False},
            )
            for number in range(1, count + 1)
        ]
        results = _run_tasks(client, manifest_df, tasks, gpu, progress)
    summaries = _merge(manifest_df, config, cache_dir, conditions, results, keep_shards, progress)
    log.info("dask extraction of %d shard(s) took %.1f s", count, time.perf_counter() - started)
    return summaries


def check_targets(
    table: pd.DataFrame,
    config: ExtractorConfig,
    cache_dir: Path,
    conditions: Sequence[str],
    requested: int | None,
) -> int | None:
    """Before any GPU work: the N of shards already on disk, refusing what a merge would.

    A re-run (after a failed shard, or on a cluster of another size) must resume the
    shards it finds rather than start N others and fail at the merge. Refuses shard
    files of several counts, a `requested` N other than the one on disk, and an
    existing cache file without shards whose rows differ from the manifest's.

    Returns:
        The N of the shard files beside the cache files, None where there are none.
    """
    found: dict[int, list[Path]] = {}
    for name in conditions:
        for corpus, rows in table.groupby("corpus", sort=True):
            target = cache.cache_path(cache_dir, config.slug(), str(corpus), name)
            counts = shards.shard_counts(target)
            shards.refuse_mixed_counts(target, counts)
            for count, files in counts.items():
                found.setdefault(count, []).extend(files.values())
            if not counts and target.exists():
                ids = rows["utt_id"].astype(str).tolist()
                stored = shards.CacheRows.read(target)
                detail = stored.differences(ids, manifest.rows_digest(rows))
                if detail:
                    raise ConfigError(
                        f"{target} already exists and its rows are not this manifest's "
                        f"({detail}); the merge would refuse it after every shard ran. Move it "
                        "away (or delete it), or extend it with `ser extract` without --dask"
                    )
    if len(found) > 1:
        described = "; ".join(
            f"{count} shards: {', '.join(sorted(str(p) for p in paths)[:3])}"
            for count, paths in sorted(found.items())
        )
        raise ConfigError(
            f"shard files of different shard counts lie in {cache_dir} ({described}); "
            "remove the shards of the run you abandoned, then run again"
        )
    if not found:
        return None
    ((count, paths),) = found.items()
    if requested is not None and requested != count:
        raise ConfigError(
            f"--shards {requested}, but shard files of {count} shards are already there "
            f"(e.g. {sorted(paths)[0]}); give --shards {count} (or leave it out) to resume "
            f"them, or remove them to start {requested} new shards"
        )
    log.info("resuming the %d shard(s) found in %s", count, cache_dir)
    return count


def finished_caches(
    table: pd.DataFrame,
    config: ExtractorConfig,
    cache_dir: Path,
    conditions: Sequence[str],
    options: Mapping[str, Any],
) -> list[ExtractSummary] | None:
    """Summaries of the merged cache files when a re-run has nothing to do in any; else None.

    A cache is done when it exists without shard files, holds the manifest's rows
    in order under its digest, carries the key this run would write (the model's
    revision read from its configuration), has every row finished (complete, or
    failed and not retried), every recorded audio file has its recorded size and
    time, and (with ``verify_cache``, the default) every chunk passes its checksum.
    Anything else, or anything that cannot be checked, returns None: the shards run.
    """
    from ssl_ser.cache import inspection
    from ssl_ser.extract.backbones import identity_of

    try:
        identity = identity_of(config)
    except SerError:
        return None
    out = []
    for name in conditions:
        for corpus, rows in table.groupby("corpus", sort=True):
            target = cache.cache_path(cache_dir, config.slug(), str(corpus), name)
            if shards.shard_counts(target) or not _finished(
                target, rows, identity, config, name, options
            ):
                return None
            if options.get("verify_cache", True) and inspection.verify(target):
                return None
            model = Path(str(identity["model"])).name
            out.append(ExtractSummary(str(corpus), name, target, model, already_done=len(rows)))
    return out


def _finished(
    target: Path,
    rows: pd.DataFrame,
    identity: Mapping[str, Any],
    config: ExtractorConfig,
    condition: str,
    options: Mapping[str, Any],
) -> bool:
    """Whether cache `target` holds this run's result for every row (:func:`finished_caches`)."""
    from ssl_ser.cache import layout
    from ssl_ser.extract.runner import cache_key

    if not target.exists():
        return False
    stored = shards.CacheRows.read(target)
    ids = rows["utt_id"].astype(str).tolist()
    if stored.differences(ids, manifest.rows_digest(rows)):
        return False
    source = options.get("telephone_source", "derived")
    key = layout.normalize_key(cache_key(identity, config, condition, source))
    states = stored.states
    retry = options.get("retry_failed", RETRY_FAILED)
    if layout.key_differences(stored.header.key, key) or (states == layout.MISSING).any():
        return False
    if retry and (states == layout.FAILED).any():
        return False
    return stored.prints is not None and _same_audio(rows, stored.prints, condition, source)


def _same_audio(rows: pd.DataFrame, prints: np.ndarray, condition: str, source: str) -> bool:
    """Whether every row's audio file has the size and time recorded in `prints` (row order)."""
    from ssl_ser import audio

    for row, recorded in zip(rows.to_dict("records"), prints, strict=True):
        if not recorded["blake2b"]:
            return False
        try:
            now = fingerprint.stat_of(audio.utterance_path(row, condition, source))
        except (OSError, SerError):
            return False
        if (int(recorded["size"]), int(recorded["mtime_ns"])) != now:
            return False
    return True


@contextlib.contextmanager
def _client(address: str, device: str, processes: bool) -> Iterator[Any]:
    """A Client on `address`, or on a LocalCluster started (and stopped) here."""
    import dask
    import distributed  # noqa: F401 (its config defaults must exist before the set below)

    from ssl_ser.scheduler import cluster_client

    remote = None if address == LOCAL else address
    with (
        dask.config.set({"distributed.worker.daemon": False}),
        cluster_client(
            remote, "--dask", lambda: _local_cluster(device, processes), set_as_default=True
        ) as client,
    ):
        yield client


def _local_cluster(device: str, processes: bool) -> Any:
    """One worker per visible GPU (each its own CUDA_VISIBLE_DEVICES) for CUDA, else one."""
    from ssl_ser.scheduler import LOOPBACK, loopback_cluster

    if not device.startswith("cuda"):
        return loopback_cluster(1, processes=processes)
    import torch

    count = torch.cuda.device_count()
    if count == 0:
        raise ConfigError(f"--device {device} with --dask local, but no CUDA GPU is visible")
    if not processes:
        return loopback_cluster(1, processes=False, resources={GPU_RESOURCE: 1})
    from distributed import Nanny, Scheduler, SpecCluster

    workers = {
        f"gpu-{index}": {
            "cls": Nanny,
            "options": {
                "nthreads": 1,
                "host": LOOPBACK,
                "resources": {GPU_RESOURCE: 1},
                "env": {"CUDA_VISIBLE_DEVICES": str(index)},
            },
        }
        for index in range(count)
    }
    scheduler = {"cls": Scheduler, "options": {"host": LOOPBACK, "dashboard_address": None}}
    return SpecCluster(workers=workers, scheduler=scheduler)


def use_gpus(device: str, declared: int) -> bool:
    """Whether shard tasks ask for a GPU worker: a CUDA `device`, or ``auto`` with GPUs declared."""
    return device.startswith("cuda") or (device == "auto" and declared > 0)


def task_device(device: str, gpu: bool) -> str:
    """The device a shard task runs on: plain ``cuda`` on a GPU worker, else `device`.

    A GPU worker sees only its own GPU (``CUDA_VISIBLE_DEVICES``), as ``cuda:0``; the
    index of ``--device cuda:N`` names a GPU of this machine, which a worker does not see.
    """
    return "cuda" if gpu else device


def task_resources(gpu: bool) -> dict[str, int] | None:
    """The Dask resources a shard task asks for: one GPU on GPU runs, none otherwise."""
    return {GPU_RESOURCE: 1} if gpu else None


def _declared_gpus(client: Any) -> int:
    """How many ``GPU`` resources the cluster's workers declare, all together."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    return sum(int(w.get("resources", {}).get(GPU_RESOURCE, 0)) for w in workers)


def _default_shards(client: Any, gpu: bool, declared: int) -> int:
    """One shard per declared GPU (CUDA runs), else one per worker thread."""
    if gpu:
        return max(declared, 1)
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    return max(sum(int(w.get("nthreads", 1)) for w in workers), 1)


def _describe(client: Any) -> str:
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return f"{len(workers)} worker(s) at {client.scheduler.address}"


def _run_tasks(
    client: Any, table: pd.DataFrame, tasks: list[ShardTask], gpu: bool, progress: bool
) -> list[ExtractSummary]:
    """Submit every shard, wait for all, and raise for the ones that failed (named)."""
    from ssl_ser.scheduler import as_finished

    summaries: list[ExtractSummary] = []
    failures: list[str] = []
    lines = StepLines("extract on dask", len(tasks), "shards")
    bar = tqdm(total=len(tasks), desc="extract shards", unit="shard", disable=not progress)
    resources = task_resources(gpu)
    with (
        bar,
        as_finished(
            client, run_shard, tasks, [table], name="extract-shard", resources=resources
        ) as finished,
    ):
        for index, future in finished:
            task = tasks[index]
            try:
                summaries.extend(future.result())
            except SerError as error:
                failures.append(f"shard {task.shard}/{task.shards}: {error}")
            except Exception as error:  # a worker's own error, shown as it is
                failures.append(
                    f"shard {task.shard}/{task.shards}: {type(error).__name__}: {error}"
                )
            bar.update()
            if not progress:
                lines.step(1)
    if failures:
        raise ConfigError(
            f"{len(failures)} of {len(tasks)} shard(s) failed; finished ones are kept, so a "
            "re-run resumes:\n  " + "\n  ".join(failures)
        )
    return summaries


def _merge(
    table: pd.DataFrame,
    config: ExtractorConfig,
    cache_dir: Path,
    conditions: Sequence[str],
    results: list[ExtractSummary],
    keep: bool,
    progress: bool,
) -> list[ExtractSummary]:
    """Merge the shards of every (condition, corpus), summing their summaries per merged file."""
    out = []
    refused: list[str] = []
    for name in conditions:
        for corpus in sorted(table["corpus"].astype(str).unique()):
            target = cache.cache_path(cache_dir, config.slug(), corpus, name)
            try:
                merged = shards.merge(target, keep=keep, progress=progress)
            except CacheError as error:
                refused.append(str(error))
                continue
            parts = [s for s in results if s.corpus == corpus and s.condition == name]
            out.append(_combined(parts, target, merged.seconds))
    if refused:
        raise CacheError(
            f"every shard finished, but {len(refused)} of {len(refused) + len(out)} cache "
            "file(s) could not be merged (their shard files are kept; fix the cause, then "
            f"`ser cache merge {cache_dir}`):\n  " + "\n  ".join(refused)
        )
    return out


def _combined(parts: list[ExtractSummary], path: Path, merge_seconds: float) -> ExtractSummary:
    """One summary of a merged file from its shards' summaries (wall time: the longest shard)."""
    return replace(
        parts[0],
        path=path,
        extracted=sum(part.extracted for part in parts),
        already_done=sum(part.already_done for part in parts),
        changed=sum(part.changed for part in parts),
        fingerprinted=sum(part.fingerprinted for part in parts),
        failed=[failure for part in parts for failure in part.failed],
        audio_seconds=sum(part.audio_seconds for part in parts),
        seconds=max(part.seconds for part in parts) + merge_seconds,
    )
