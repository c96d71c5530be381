"""Audio and rows of a fine-tune run: the same loading path and the same table as the probes.

Audio goes through extraction's own per-utterance path
(:class:`~ssl_ser.extract.runner.UtteranceDataset`: decoding, resampling, the
condition, the model's preprocessor, length checks, fingerprints) in DataLoader
workers, once per condition. The prepared segments are then either written to
a file of the run's output folder and read back per batch
(:class:`~ssl_ser.finetune.segment_store.SegmentStore`, the default), or held in
memory for all epochs and folds (4 bytes a sample: an hour of 16 kHz audio is
230 MB); both give the same arrays. A file that cannot be used is skipped and
reported, as extraction reports it.

The rows the splits see are built as ``ser classify`` builds them (manifest
metadata, the label set, the speaker grouping), so that with the same manifest,
split options and seed every fold holds the same speakers.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ssl_ser.classify.dataset import apply_labels
from ssl_ser.classify.splits import speaker_groups
from ssl_ser.extract.batching import plan_batches
from ssl_ser.extract.preprocess import Preprocessor, Segment
from ssl_ser.extract.runner import UtteranceDataset, prepared_batches
from ssl_ser.finetune.segment_store import SegmentStore
from ssl_ser.labels import get_label_set

log = logging.getLogger(__name__)

TABLE_COLUMNS: tuple[str, ...] = ("utt_id", "corpus", "speaker", "gender", "split", "emotion")


@dataclass
class Audio:
    """Prepared utterances of one run: (utt_id, condition) -> segments, plus what failed.

    ``segments`` is a dict (in memory) or a :class:`SegmentStore` (on disk, read per batch).
    """

    segments: dict[tuple[str, str], list[Segment]] | SegmentStore = field(default_factory=dict)
    seconds: dict[tuple[str, str], float] = field(default_factory=dict)
    fingerprints: dict[tuple[str, str], str] = field(default_factory=dict)
    failed: list[tuple[str, str, str]] = field(default_factory=list)

    def digest(self, keys: Sequence[tuple[str, str]]) -> str:
        """SHA-256 over the content digests of the given rows' audio files (what was trained on)."""
        digest = hashlib.sha256()
        for key in keys:
            digest.update(f"{key[0]}\t{key[1]}\t{self.fingerprints.get(key, '')}\n".encode())
        return digest.hexdigest()

    def segment_seconds(self, key: tuple[str, str]) -> list[float]:
        """Audio seconds of each segment of `key`, without reading stored audio."""
        if isinstance(self.segments, SegmentStore):
            return self.segments.segment_seconds(key)
        return [segment.seconds for segment in self.segments[key]]

    def close(self) -> None:
        """Remove the stored audio file, if any (the run is over)."""
        if isinstance(self.segments, SegmentStore):
            self.segments.close()


def load_audio(
    manifest: pd.DataFrame,
    preprocessor: Preprocessor,
    conditions: Sequence[str],
    telephone_source: str,
    workers: int,
    progress: bool,
    store: SegmentStore | None = None,
) -> Audio:
    """Decode and preprocess every manifest row under every condition (failures recorded).

    With `store` the segments go to that file, read back per batch; else they stay in memory.
    """
    out = Audio() if store is None else Audio(segments=store)
    rows = manifest.to_dict("records")
    for condition in conditions:
        dataset = UtteranceDataset(rows, preprocessor, condition, telephone_source)
        loader = prepared_batches(dataset, workers)
        desc = f"load {condition} audio"
        with tqdm(total=len(rows), desc=desc, unit="utt", disable=not progress) as bar:
            for batch in loader:
                for item in batch:
                    key = (item.utt_id, condition)
                    if item.error is not None:
                        out.failed.append((item.utt_id, condition, item.error))
                        continue
                    out.segments[key] = item.segments
                    out.seconds[key] = item.seconds
                    out.fingerprints[key] = item.fingerprint.blake2b if item.fingerprint else ""
                bar.update(len(batch))
    return out


@dataclass
class RunTable:
    """The rows a fine-tune run splits: one per (utterance, condition), as ``ser classify``'s."""

    table: pd.DataFrame
    classes: tuple[str, ...]
    label_set: str
    grouping: dict[str, str]


def run_table(
    manifest: pd.DataFrame, label_set: str | Sequence[str], conditions: Sequence[str], audio: Audio
) -> RunTable:
    """Per condition, the manifest rows with usable audio, labelled and grouped by speaker.

    A row whose audio failed in a condition is left out of that condition only
    (it is in ``audio.failed``, reported by the run), as each condition's cache
    leaves out its own failed rows; cross-condition folds keep the utterances
    present in both (:func:`~ssl_ser.classify.splits.condition_folds`).
    """
    label_set_obj = get_label_set(label_set)
    parts = []
    for condition in conditions:
        failed = {utt_id for utt_id, where, _ in audio.failed if where == condition}
        part = manifest.loc[~manifest["utt_id"].isin(failed), list(TABLE_COLUMNS)].copy()
        part["condition"] = condition
        parts.append(part)
    table = pd.concat(parts, ignore_index=True)
    table, _ = apply_labels(table, label_set_obj)
    groups, grouping = speaker_groups(table)
    table["group"] = groups.to_numpy()
    classes = tuple(c for c in label_set_obj.classes if c in set(table["label"]))
    return RunTable(table, classes, label_set_obj.name, grouping)


def batches(
    keys: Sequence[tuple[str, str]],
    audio: Audio,
    input_seconds,
    batch_seconds: float,
) -> list[list[int]]:
    """Length-grouped batches of positions into `keys` within `batch_seconds` of padded input.

    Extraction's planner (:func:`~ssl_ser.extract.batching.plan_batches`): an
    utterance costs the model-input seconds of all its segments.
    """
    costs = [sum(input_seconds(seconds) for seconds in audio.segment_seconds(key)) for key in keys]
    return plan_batches(costs, batch_seconds)


def shuffled(plan: list[list[int]], seed: int, epoch: int) -> list[list[int]]:
    """The batches of `plan` in an order drawn from (seed, epoch): the same after a restart."""
    order = np.random.default_rng([seed, epoch]).permutation(len(plan))
    return [plan[i] for i in order]
