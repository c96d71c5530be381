"""The extraction runner: manifest in, one resumable cache file per corpus out.

For each corpus of the manifest: open (or create) its cache, register every
utterance, and run the model over those not yet complete, in duration-bucketed
batches. Audio decoding, resampling, the condition and the model's own
preprocessing run in ``torch.utils.data.DataLoader`` worker processes, a few
batches ahead, so the model does not wait for I/O. Every batch is committed to
the cache before the next one starts, so a killed run loses at most one batch;
re-running finishes the rest. A file that cannot be read is recorded as failed
(id and reason) in the cache and in the summary, and the corpus goes on.

The workers fingerprint each file they read (:mod:`ssl_ser.fingerprint`), and the
fingerprint is committed with the row; before extracting, rows whose audio
changed are extracted again (:meth:`_Job._check_audio`; the rules users see:
``docs/extract.md``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import operator
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ssl_ser import audio, cache, fingerprint, manifest
from ssl_ser.cache import shards
from ssl_ser.cache.shards import check_shard
from ssl_ser.errors import AudioError, CacheError, ConfigError, SerError
from ssl_ser.extract.backbones import Backbone, library_progress_bars, load_backbone
from ssl_ser.extract.batching import plan_batches, segment_seconds
from ssl_ser.extract.config import (
    DEFAULT_BATCH_SECONDS,
    RETRY_FAILED,
    ExtractorConfig,
    check_run_options,
)
from ssl_ser.extract.pooling import FrameStats, combine, finalize
from ssl_ser.extract.preprocess import Preprocessor, Segment
from ssl_ser.extract.sharding import BALANCE_RULE, assign_shards
from ssl_ser.extract.summary import ExtractSummary
from ssl_ser.fingerprint import Fingerprint
from ssl_ser.progress import StepLines, announce
from ssl_ser.workers import exit_with_parent

log = logging.getLogger(__name__)

PREFETCH_BATCHES = 4
SHOWN_IDS = 5
# With progress bars off, at most one extraction line per this many seconds.
QUIET_LINE_SECONDS = 10.0
# Decoded length against the manifest's duration: 20 ms plus 1 % (resampling rounds).
DURATION_TOLERANCE_S = 0.02
DURATION_TOLERANCE = 0.01


@dataclass
class Prepared:
    """One utterance after loading and preprocessing (what a worker hands back)."""

    utt_id: str
    segments: list[Segment]
    seconds: float
    error: str | None = None
    fingerprint: Fingerprint | None = None


class UtteranceDataset(Dataset):
    """Manifest rows -> :class:`Prepared` utterances; failures become reasons, not exceptions.

    With `verify` (extraction, fine-tuning) each file is fingerprinted and its
    decoded length checked against the manifest's duration; prediction on new
    files, which have no manifest duration, turns that off.
    """

    def __init__(
        self,
        rows: Sequence[dict[str, Any]],
        preprocessor: Preprocessor,
        condition: str,
        telephone_source: str,
        verify: bool = True,
    ):
        self.rows = list(rows)
        self.preprocessor = preprocessor
        self.condition = condition
        self.telephone_source = telephone_source
        self.verify = verify

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Prepared:
        row = self.rows[index]
        source = None
        try:
            path = audio.utterance_path(row, self.condition, self.telephone_source)
            # a FIFO would block both the hash and the decoder: refuse it first
            fingerprint.check_regular(path)
            source = _fingerprint(path) if self.verify else None
            wave, rate = self._load(row)
            if self.verify:
                self._check_unchanged(row, source)
                self._check_length(row, wave.shape[0] / (rate or self.preprocessor.sample_rate))
            segments = self.preprocessor(wave, rate) if rate else self.preprocessor(wave)
        except (SerError, OSError, ValueError, RuntimeError) as error:
            reason = f"{type(error).__name__}: {error}"
            return Prepared(row["utt_id"], [], 0.0, reason, source)
        seconds = wave.shape[0] / (rate or self.preprocessor.sample_rate)
        if any(segment.frames < 1 for segment in segments):
            needed = self.preprocessor.min_seconds()
            reason = f"audio too short ({seconds:.4f} s); the model needs {needed:.4f} s"
            return Prepared(row["utt_id"], [], seconds, reason, source)
        return Prepared(row["utt_id"], segments, seconds, fingerprint=source)

    def _check_length(self, row: dict[str, Any], seconds: float) -> None:
        """Refuse audio whose decoded length is not the manifest's duration.

        A file truncated (or rewritten) since ``ser prepare`` read its header would
        otherwise give features of a fragment. Ready telephone copies have lengths
        of their own and are not compared.
        """
        if self.condition != "clean" and self.telephone_source != "derived":
            return
        expected = float(row["duration"])
        if abs(seconds - expected) > DURATION_TOLERANCE_S + DURATION_TOLERANCE * expected:
            raise AudioError(
                row["path"],
                f"decodes to {seconds:.3f} s but the manifest says {expected:.3f} s: the file "
                "is truncated or changed since `ser prepare`; check it and prepare again",
            )

    def _check_unchanged(self, row: dict[str, Any], source: Fingerprint | None) -> None:
        """Refuse a row whose file changed between fingerprinting and decoding."""
        path = audio.utterance_path(row, self.condition, self.telephone_source)
        if source is None or not source.same_stat(fingerprint.stat_of(path)):
            raise OSError(f"{path} changed while it was being read; run again")

    def _load(self, row: dict[str, Any]) -> tuple[np.ndarray, int | None]:
        """The row's waveform and its rate (None: the preprocessor's own rate)."""
        if self.preprocessor.native_rate:
            return audio.load_utterance_native(row, self.condition, self.telephone_source)
        rate = self.preprocessor.sample_rate
        return audio.load_utterance(row, self.condition, rate, self.telephone_source), None


def init_worker(worker_id: int) -> None:
    """Set up a DataLoader worker: one thread, and it exits when its parent dies.

    A worker orphaned by a killed run can block forever on a full result pipe;
    it stops as a sweep's workers do (:func:`ssl_ser.workers.exit_with_parent`).
    (Inherited copies of the cache lock are closed by the at-fork hook of
    :mod:`ssl_ser.cache.lock`, so a worker never keeps the lock.)
    """
    torch.set_num_threads(1)
    exit_with_parent(os.getppid())


def extract(
    manifest_df: pd.DataFrame,
    config: ExtractorConfig,
    cache_dir: str | Path,
    condition: str | Sequence[str] = "clean",
    *,
    device: str = "auto",
    batch_seconds: float = DEFAULT_BATCH_SECONDS,
    workers: int | None = None,
    telephone_source: str = "derived",
    storage_dtype: str = "auto",
    retry_failed: bool = RETRY_FAILED,
    verify_cache: bool = True,
    progress: bool = False,
    shard: tuple[int, int] | None = None,
    rehash: bool = False,
) -> list[ExtractSummary]:
    """Extract pooled features of every hidden layer into one cache file per corpus.

    Each corpus of `manifest_df` gets its own file per condition,
    ``cache_dir/<config slug>/<corpus>/<condition>.h5``; with several conditions
    the model loads once. The keyword options are the fields of
    :class:`~ssl_ser.extract.settings.ExtractSettings` of the same name (see
    their help); `shard` is ``(K, N)`` (see :mod:`ssl_ser.cache.shards`), and
    `progress` draws a bar of audio seconds.

    Returns:
        One summary per condition and corpus, in that order (corpora by name);
        with `shard`, their paths are the shard files.

    Raises:
        ManifestError: the manifest breaks the schema.
        ConfigError, UnknownChoiceError: bad options, a model that cannot load,
            memory exhausted by a batch (the message says what to lower).
        CacheKeyMismatchError: a cache file exists with another key.
        CacheLockedError: another process is writing the same cache file.
    """
    manifest_df = manifest.validate(manifest_df)
    conditions = [condition] if isinstance(condition, str) else list(condition)
    workers = check_run_options(  # before the model loads
        config,
        conditions,
        device=device,
        batch_seconds=batch_seconds,
        workers=workers,
        telephone_source=telephone_source,
        storage_dtype=storage_dtype,
    )
    assignment = None
    if shard is not None:
        shard = check_shard(*shard)
        assignment = assign_shards(manifest_df, shard[1])
    config = config.with_absolute_model_path()
    started = time.perf_counter()
    with library_progress_bars(progress):
        backbone = load_backbone(config, device)
    log.info("model ready in %.1f s", time.perf_counter() - started)
    summaries = []
    for name in conditions:
        job = _Job(
            backbone,
            config,
            name,
            telephone_source,
            batch_seconds,
            int(workers),
            progress,
            verify_cache,
            rehash,
        )
        for corpus, rows in manifest_df.groupby("corpus", sort=True):
            path = cache.cache_path(cache_dir, config.slug(), str(corpus), name)
            on_locked = None
            if shard is not None and assignment is not None:
                _warn_merged(path, shard)
                rows, path, record = _shard_rows(rows, path, assignment, shard)
                on_locked = functools.partial(record.write, shards.record_path(path))
            summaries.append(
                job.run_corpus(str(corpus), rows, path, storage_dtype, retry_failed, on_locked)
            )
    return summaries


def _shard_rows(
    rows: pd.DataFrame, path: Path, assignment: pd.Series, shard: tuple[int, int]
) -> tuple[pd.DataFrame, Path, shards.ShardRecord]:
    """One corpus's rows of shard K of N, its shard file and the shard's record.

    The record is written only once the shard file's writer lock is held: a second
    launch of a running shard must not replace its record before it finds the shard locked.
    """
    number, count = shard
    mine = (assignment.loc[rows.index] == number).to_numpy()
    own = rows.loc[mine]
    shard_file = shards.shard_path(path, number, count)
    record = shards.ShardRecord(
        shard=number,
        shards=count,
        ids=own["utt_id"].astype(str).tolist(),
        positions=np.flatnonzero(mine).tolist(),
        corpus_rows=len(rows),
        manifest_digest=manifest.rows_digest(rows),
        seconds=float(own["duration"].astype(float).sum()),
        balance=BALANCE_RULE,
        order_digest=shards.order_digest(rows["utt_id"].astype(str).tolist()),
        rows_digest=manifest.rows_digest(own),
    )
    return own, shard_file, record


def _warn_merged(path: Path, shard: tuple[int, int]) -> None:
    """Warn that a shard starts beside a cache file that exists (merged before, or a single run).

    Shards never read it: a shard recomputes all its rows, and the merge then finds
    the cache already merged (same rows) or refuses it (other rows).
    """
    if path.exists():
        log.warning(
            "%s already exists; shard %d/%d does not read it and recomputes all its rows. "
            "To add utterances to a merged cache, run `ser extract` without --shard (it "
            "resumes the cache); to redo it as shards, move it away first",
            path,
            *shard,
        )


def prepared_batches(dataset: Dataset, workers: int, batch_size: int = 16) -> DataLoader:
    """Batches (lists) of a dataset's prepared items, loaded `workers` processes ahead.

    For loading all of a dataset in order (fine-tuning, prediction); extraction
    plans its own length-grouped batches.
    """
    return DataLoader(
        dataset,
        batch_size=batch_size,
        collate_fn=list,  # a batch stays a list of Prepared utterances
        num_workers=workers,
        worker_init_fn=init_worker,
    )


def utterance_stats(stats: FrameStats, segments_per_utterance: Sequence[int]) -> FrameStats:
    """Segment statistics merged into one row per utterance (windows pooled over all frames)."""
    per_utterance, start = [], 0
    for count in segments_per_utterance:
        parts = stats.take(slice(start, start + count))
        per_utterance.append(parts if count == 1 else combine(parts))
        start += count
    return FrameStats.concat(per_utterance)


def cache_key(
    identity: Mapping[str, Any], config: ExtractorConfig, condition: str, telephone_source: str
) -> dict[str, Any]:
    """The flat key that identifies the features of one cache file.

    It holds what the numbers depend on: the model and its revision (a backbone's
    ``identity``, see :func:`backbones.identity_of`), the config, the rate
    (``native`` for eGeMAPS), the condition's chain, the poolings and the family's
    feature version (see :mod:`ssl_ser.extract.config`), not the toolkit's version,
    which the file records beside the key.
    """
    condition_params = dict(audio.condition_params(condition))
    if condition == "telephone":
        condition_params["telephone_source"] = telephone_source
    return {
        "model": str(identity["model"]),
        "model_type": str(identity["model_type"]),
        "revision": str(identity["revision"]),
        "config_digest": config.digest(),
        "config": json.dumps(config.to_dict(), sort_keys=True),
        "sample_rate": "native" if config.native_rate else int(config.sample_rate),
        "condition": condition,
        "condition_params": json.dumps(condition_params, sort_keys=True),
        "pooling": ",".join(config.poolings),
        "dtype": config.dtype,
        "feature_version": config.feature_version,
    }


def storage_dtype_for(requested: str, config: ExtractorConfig, path: Path) -> tuple[str, bool]:
    """The storage dtype of a run, and whether an existing file must be converted to it.

    ``auto`` keeps an existing file's dtype (a file that cannot be read is left to
    the writer's checks) and picks float32 for classic baselines (eGeMAPS values
    reach beyond float16's +-65504), float16 for models (half the disk, ample
    precision); an explicit dtype converts a file stored in the other.
    """
    if requested != "auto":
        return requested, True
    if path.exists():
        with contextlib.suppress(CacheError):
            return cache.read_header(path).storage_dtype, False
    return ("float32" if config.is_classic else "float16"), False


@dataclass
class _Job:
    """Settings shared by the corpora of one :func:`extract` call."""

    backbone: Backbone
    config: ExtractorConfig
    condition: str
    telephone_source: str
    batch_seconds: float
    workers: int
    progress: bool
    verify_cache: bool = True
    rehash: bool = False

    def run_corpus(
        self,
        corpus: str,
        rows: pd.DataFrame,
        path: Path,
        storage_dtype: str,
        retry_failed: bool,
        on_locked: Callable[[], None] | None = None,
    ) -> ExtractSummary:
        """Bring one corpus's cache file up to date with `rows`.

        `on_locked` runs once the file's writer lock is held (a shard writes its
        record there), before anything is read or written.
        """
        backbone = self.backbone
        key = cache_key(backbone.identity, self.config, self.condition, self.telephone_source)
        layers = [str(i) for i in range(backbone.states)]
        model = Path(str(backbone.identity["model"])).name
        summary = ExtractSummary(corpus, self.condition, path, model, layers=backbone.states)
        started = time.perf_counter()
        dtype, convert = storage_dtype_for(storage_dtype, self.config, path)
        with cache.CacheWriter(
            path,
            key,
            layers,
            backbone.dim,
            self.config.poolings,
            dtype,
            convert_dtype=convert,
        ) as writer:
            if on_locked is not None:
                on_locked()
            ids = rows["utt_id"].tolist()
            if self.verify_cache:
                self._repair(writer, corpus)
            writer.add_ids(ids)
            writer.set_manifest_digest(manifest.rows_digest(rows))
            self._check_audio(corpus, rows, writer, summary)
            todo = set(writer.missing(ids, retry=retry_failed))
            summary.already_done = len(ids) - len(todo)
            pending = rows[rows["utt_id"].isin(todo)]
            log.info(
                "%s: %d of %d utterance(s) to extract into %s", corpus, len(pending), len(ids), path
            )
            if summary.already_done:
                announce(
                    f"{corpus}/{self.condition}: {summary.already_done} of {len(ids)} "
                    f"utterance(s) already cached in {path}; extracting {len(pending)}"
                )
            if len(pending):
                self._extract_rows(pending, writer, summary)
        summary.seconds = time.perf_counter() - started
        return summary

    def _repair(self, writer: cache.CacheWriter, corpus: str) -> None:
        """Send stored rows that fail their checksum or hold NaN/inf back to extraction.

        Runs before new rows are added, since adding rows copies the stored ones.
        """
        redo = writer.repair(progress=self.progress)
        if redo:
            announce(
                f"{corpus}/{self.condition}: {len(redo)} cached row(s) of {writer.path} were "
                f"damaged (bad checksum or NaN/inf), e.g. {', '.join(redo[:SHOWN_IDS])}; "
                "extracting them again"
            )

    def _check_audio(
        self, corpus: str, rows: pd.DataFrame, writer: cache.CacheWriter, summary: ExtractSummary
    ) -> None:
        """Re-extract committed rows whose audio changed; fingerprint rows that have none.

        Stat first; only files whose size or modification time differ from the
        record are hashed. Changed audio turns the row missing; a touched file
        with the same content gets its new time recorded. Complete rows without a
        fingerprint (a cache of an older ssl-ser) are fingerprinted from their
        current files, trusted as their source, with a warning. A file that is
        gone or unreadable cannot be checked: its row is kept, with a warning
        (its features are not known to be wrong, and re-extracting could only fail).
        """
        ids = rows["utt_id"].tolist()
        recorded = writer.fingerprints(ids, failed=True)
        if not recorded or (writer.read_only and all(f is None for f in recorded.values())):
            return  # nothing recorded that a read-only cache could be checked against
        complete = set(writer.fingerprints(ids))
        paths = self._paths(rows, recorded)
        checked = {
            u: f for u, f in recorded.items() if u in paths and (f is not None or u in complete)
        }
        to_hash = {
            u: paths[u]
            for u, stored in checked.items()
            if self.rehash or _needs_hash(stored, paths[u])
        }
        outcome = compare_audio(checked, _hash_files(to_hash, max(self.workers, 1)))
        if writer.read_only and outcome.keep and not outcome.changed:
            log.warning(
                "%s/%s: %d utterance(s) were touched since extraction (same content); the "
                "read-only cache cannot record their new times, so classify will ask again",
                corpus,
                self.condition,
                len(outcome.keep),
            )
        elif outcome.keep:
            writer.record_fingerprints(outcome.keep)
        summary.fingerprinted = len(outcome.adopted)
        # a failure recorded without a fingerprint had no file to read; if one is there now,
        # the utterance is tried again (its audio is new to the cache)
        appeared = [
            u
            for u, stored in recorded.items()
            if stored is None and u not in complete and u in paths and os.path.isfile(paths[u])
        ]
        summary.changed = writer.invalidate([*outcome.changed, *appeared])
        where = f"{corpus}/{self.condition}"
        if outcome.adopted:
            log.warning(
                "%s: %d cached utterance(s) were extracted before ssl-ser recorded audio "
                "fingerprints; fingerprinted their current audio files and kept their features "
                "as computed from them. If the audio changed since, delete %s to rebuild it",
                where,
                len(outcome.adopted),
                writer.path,
            )
        if outcome.unreadable:
            log.warning(
                "%s: the audio of %d cached utterance(s) is gone or unreadable (e.g. %s); "
                "their features are kept but cannot be checked against their audio",
                where,
                len(outcome.unreadable),
                ", ".join(outcome.unreadable[:SHOWN_IDS]),
            )
        if summary.changed:
            shown = ", ".join([*outcome.changed, *appeared][:SHOWN_IDS])
            announce(
                f"{where}: {summary.changed} utterance(s) changed since they were extracted; "
                f"re-extracting (e.g. {shown})"
            )

    def _paths(self, rows: pd.DataFrame, wanted: Mapping[str, Any]) -> dict[str, str]:
        """The file each wanted row reads under this job's condition (rows without one left out)."""
        out = {}
        for row in rows.loc[rows["utt_id"].isin(set(wanted))].to_dict("records"):
            with contextlib.suppress(SerError):
                out[row["utt_id"]] = audio.utterance_path(
                    row, self.condition, self.telephone_source
                )
        return out

    def _extract_rows(
        self, rows: pd.DataFrame, writer: cache.CacheWriter, summary: ExtractSummary
    ) -> None:
        """Run the model over `rows` batch by batch, committing each batch."""
        preprocessor = self.backbone.preprocessor
        batches = plan_batches([self._cost(float(d)) for d in rows["duration"]], self.batch_seconds)
        dataset = UtteranceDataset(
            rows.to_dict("records"), preprocessor, self.condition, self.telephone_source
        )
        loader = DataLoader(
            dataset,
            batch_sampler=batches,
            collate_fn=list,
            num_workers=self.workers,
            prefetch_factor=PREFETCH_BATCHES if self.workers else None,
            worker_init_fn=init_worker,
        )
        durations = rows["duration"].to_numpy(dtype=float)
        steps = [float(durations[indices].sum()) for indices in batches]
        bar = tqdm(
            total=progress_total(steps),
            desc=f"extract {summary.corpus}/{summary.condition}",
            unit="s",
            unit_scale=True,
            disable=not self.progress,
        )
        where = f"extract {summary.corpus}/{summary.condition}"
        lines = StepLines(where, progress_total(steps), "audio s", every=QUIET_LINE_SECONDS)
        with bar:
            for number, (batch, step) in enumerate(zip(loader, steps, strict=True), 1):
                self._process(batch, writer, summary)
                writer.flush()
                log.debug("committed batch %d/%d (%d utterances)", number, len(batches), len(batch))
                bar.update(step)
                if not self.progress:
                    lines.step(step, Path(str(self.backbone.identity["model"])).name)

    def _cost(self, duration: float) -> float:
        """Seconds of model input an utterance of `duration` seconds costs, over its pieces."""
        preprocessor = self.backbone.preprocessor
        pieces = segment_seconds(
            duration, preprocessor.sample_rate, preprocessor.max_seconds, preprocessor.long_audio
        )
        return sum(self.backbone.input_seconds(seconds) for seconds in pieces)

    def _process(
        self, batch: list[Prepared], writer: cache.CacheWriter, summary: ExtractSummary
    ) -> None:
        """Pool one loader batch and hand its rows (and failures) to the writer."""
        good = [item for item in batch if item.error is None]
        for item in batch:
            if item.error is not None:
                writer.fail(item.utt_id, item.error, item.fingerprint)
                summary.failed.append((item.utt_id, item.error))
        if not good:
            return
        stats = self._segment_stats(good)
        per_utterance = utterance_stats(stats, [len(item.segments) for item in good])
        pooled = finalize(per_utterance, self.config.poolings)
        writer.write([item.utt_id for item in good], pooled, [item.fingerprint for item in good])
        summary.extracted += len(good)
        summary.audio_seconds += sum(item.seconds for item in good)

    def _segment_stats(self, good: list[Prepared]) -> FrameStats:
        """Statistics of every segment of the batch, in order, in forward passes of bounded size."""
        segments = [segment for item in good for segment in item.segments]
        owners = [item.utt_id for item in good for _ in item.segments]
        costs = [self.backbone.input_seconds(s.seconds) for s in segments]
        chunks = plan_batches(costs, self.batch_seconds)
        stats = FrameStats.concat(
            [
                self._run_guarded([segments[i] for i in chunk], [owners[i] for i in chunk])
                for chunk in chunks
            ]
        )
        return stats.take(np.argsort(np.concatenate(chunks)))

    def _run_guarded(self, segments: list[Segment], owners: list[str]) -> FrameStats:
        """Run one forward pass; running out of memory becomes an error that says what to lower."""
        try:
            return self.backbone.run(segments)
        except RuntimeError as error:  # torch.OutOfMemoryError is a RuntimeError
            if not is_out_of_memory(error):
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise ConfigError(_memory_message(segments, owners, self)) from error


@dataclass
class AudioCheck:
    """What :func:`compare_audio` found, as utterance ids (sorted).

    Attributes:
        changed: audio that differs from the record (to extract again).
        keep: new fingerprints of rows kept (touched files, adopted rows).
        adopted: rows that had no fingerprint and were given their current one.
        unreadable: rows whose file is gone or unreadable (kept, unchecked).
    """

    changed: list[str]
    keep: dict[str, Fingerprint]
    adopted: list[str]
    unreadable: list[str]


def compare_audio(
    recorded: Mapping[str, Fingerprint | None], current: Mapping[str, Fingerprint | None]
) -> AudioCheck:
    """Compare recorded fingerprints with those just taken of the files that needed hashing.

    `current` holds only files whose stat differed (or that had no record); a
    recorded row absent from it has the same size and time, so the same audio.
    None in `current`: the file could not be read.
    """
    check = AudioCheck([], {}, [], [])
    for utt_id in sorted(recorded.keys() & current.keys()):
        stored, now = recorded[utt_id], current[utt_id]
        if now is None:
            check.unreadable.append(utt_id)
        elif stored is None:
            check.keep[utt_id] = now
            check.adopted.append(utt_id)
        elif now.same_content(stored):
            check.keep[utt_id] = now
        else:
            check.changed.append(utt_id)
    return check


def _needs_hash(stored: Fingerprint | None, path: str) -> bool:
    """Whether a row's file must be hashed: no fingerprint, another path, other size or time.

    A record without a path (an older cache) counts as another path: hashed once.
    """
    if stored is None or not stored.same_path(path):
        return True
    try:
        return not stored.same_stat(fingerprint.stat_of(path))
    except OSError:
        return True


def _hash_files(paths: Mapping[str, str], threads: int) -> dict[str, Fingerprint | None]:
    """Fingerprint files in a few threads (hashing releases the GIL); None: unreadable."""
    if not paths:
        return {}
    with ThreadPoolExecutor(max_workers=min(threads, os.cpu_count() or 1)) as pool:
        return dict(zip(paths, pool.map(_fingerprint, paths.values()), strict=True))


def _fingerprint(path: str | Path) -> Fingerprint | None:
    """The fingerprint of the file at `path`, or None if it cannot be read (loading says why)."""
    try:
        return fingerprint.of_file(path)
    except OSError:
        return None


def progress_total(steps: Sequence[float]) -> float:
    """The bar's total: the steps added one by one, in order, as the bar adds them.

    Summed another way (``np.sum``), the float total can come out below what the
    bar reaches, and tqdm warns "clamping frac to range [0, 1]".
    """
    return functools.reduce(operator.add, steps, 0.0)


def is_out_of_memory(error: RuntimeError) -> bool:
    """Whether `error` is torch running out of (GPU or host) memory.

    Besides ``torch.OutOfMemoryError``, a plain ``RuntimeError`` (or torch's
    ``AcceleratorError``) can say so: "CUDA error: out of memory" from a kernel
    launch or a library, "CUDA out of memory" from older code paths, and the CPU
    allocator's "can't allocate memory".
    """
    out_of_memory = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    message = str(error)
    return (
        isinstance(error, out_of_memory)
        or "out of memory" in message
        or "can't allocate memory" in message
    )


def _memory_message(segments: list[Segment], owners: list[str], job: _Job) -> str:
    ids = sorted(set(owners))
    shown = ", ".join(ids[:SHOWN_IDS]) + (
        f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else ""
    )
    seconds = float(np.sum([s.seconds for s in segments]))
    padded = len(segments) * max(job.backbone.input_seconds(s.seconds) for s in segments)
    return (
        f"out of memory on {job.backbone.device} in a batch of {len(segments)} segment(s), "
        f"{seconds:.1f} s of audio ({padded:.1f} s padded) from {shown}. Lower --batch-seconds "
        f"(now {job.batch_seconds:g}); for long files set --max-seconds; or use --dtype "
        "bfloat16/float16. Finished batches are saved: re-run to resume."
    )
