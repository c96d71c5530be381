"""Predictions on new audio: load, preprocess and batch as extraction does, then classify.

A :class:`Predictor` knows its classes, the model's preprocessor and how to turn
a batch of utterances (lists of segments) into class probabilities. Audio goes
through extraction's own loading path (decoding, resampling, the condition,
the model's preprocessor) in DataLoader workers, batches are planned by
padded seconds with masked pooling, so batching never changes a prediction,
and a file that cannot be used gets a row with its error while the rest go on.

With a window (``window``/``hop`` seconds) each file is cut into windows that
are labelled one by one: a row per window, then the file's row with the mean
of its windows' probabilities.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ssl_ser import audio
from ssl_ser.errors import ConfigError, SerError
from ssl_ser.extract.batching import plan_batches
from ssl_ser.extract.preprocess import Preprocessor, Segment
from ssl_ser.extract.runner import Prepared, UtteranceDataset, prepared_batches
from ssl_ser.manifest import DOWNMIX
from ssl_ser.predict import integrity
from ssl_ser.predict.inputs import gather

log = logging.getLogger(__name__)

DEFAULT_BATCH_SECONDS = 60.0
WHOLE_FILE = "all"
Waveform = np.ndarray | tuple[np.ndarray, int]


@dataclass
class Piece:
    """One labelled stretch of an input: a whole file, or one window of it.

    ``position`` is the input's row in the output (inputs may share an id).
    """

    position: int
    window: str
    start: float
    end: float
    prepared: Prepared


class WindowedDataset(UtteranceDataset):
    """Rows -> the pieces of each (whole, or cut into windows), prepared for the model."""

    def __init__(self, rows, preprocessor, condition, telephone_source, window, hop):
        super().__init__(rows, preprocessor, condition, telephone_source, verify=False)
        self.window = window
        self.hop = hop

    def _load(self, row: dict[str, Any]) -> tuple[np.ndarray, int | None]:
        """As extraction loads it, after refusing a truncated file (new files have no duration)."""
        audio.check_complete(audio.utterance_path(row, self.condition, self.telephone_source))
        return super()._load(row)

    def __getitem__(self, index: int) -> list[Piece]:
        row = self.rows[index]
        if self.window is None:
            item = super().__getitem__(index)
            return [Piece(row["position"], WHOLE_FILE, 0.0, item.seconds, item)]
        try:
            wave, rate = self._load(row)
        except (SerError, OSError, ValueError, RuntimeError) as error:
            failed = Prepared(row["utt_id"], [], 0.0, f"{type(error).__name__}: {error}")
            return [Piece(row["position"], WHOLE_FILE, 0.0, 0.0, failed)]
        rate = rate or self.preprocessor.sample_rate
        return [
            Piece(
                row["position"],
                str(i),
                start / rate,
                stop / rate,
                prepare(self.preprocessor, row["utt_id"], wave[start:stop], rate),
            )
            for i, (start, stop) in enumerate(windows(len(wave), rate, self.window, self.hop))
        ]


def windows(samples: int, rate: int, window: float, hop: float) -> list[tuple[int, int]]:
    """(start, stop) samples of windows of `window` s every `hop` s, the last one ending at the end.

    A file no longer than a window is one window.
    """
    size, step = round(window * rate), round(hop * rate)
    if samples <= size:
        return [(0, samples)]
    spans = [(start, start + size) for start in range(0, samples - size + 1, step)]
    if spans[-1][1] < samples:
        spans.append((samples - size, samples))
    return spans


def prepare(preprocessor: Preprocessor, utt_id: str, wave: np.ndarray, rate: int) -> Prepared:
    """One waveform through the model's preprocessor (too short: an error, not an exception)."""
    seconds = wave.shape[0] / rate
    try:
        if preprocessor.native_rate:
            segments = preprocessor(wave, rate)
        else:
            resampled = audio.resample(wave, rate, preprocessor.sample_rate)
            segments = preprocessor(resampled)
    except (SerError, ValueError, RuntimeError) as error:
        return Prepared(utt_id, [], seconds, f"{type(error).__name__}: {error}")
    if any(segment.frames < 1 for segment in segments):
        needed = preprocessor.min_seconds()
        return Prepared(
            utt_id, [], seconds, f"audio too short ({seconds:.4f} s); needs {needed:.4f} s"
        )
    return Prepared(utt_id, segments, seconds)


class Predictor(ABC):
    """A trained model ready to label audio (see :func:`ssl_ser.predict.load`).

    ``reading`` is how its training audio was read (the seal's ``audio``:
    channels per corpus, rate, condition, telephone source); new audio is read
    the same way unless told otherwise.
    """

    classes: tuple[str, ...]
    backbone: Any  # the extraction backbone: batches are planned in its input seconds
    preprocessor: Preprocessor
    reading: dict[str, Any]

    def check_reading(self, folder: Path) -> None:
        """Refuse a model that now reads audio at another rate than its training audio was read."""
        recorded = self.reading.get("sample_rate")
        mine = integrity.model_rate(self.preprocessor)
        if recorded is not None and recorded != mine:
            raise ConfigError(
                f"{folder}: its training audio was read at {recorded} Hz, but its model now "
                f"reads audio at {mine} Hz; its predictions would not be the trained model's"
            )

    @abstractmethod
    def probabilities(self, utterances: Sequence[Sequence[Segment]]) -> np.ndarray:
        """Class probabilities (utterances, classes) of one batch."""

    def predict(
        self,
        inputs: Sequence[str | Path | Waveform] | str | Path,
        *,
        condition: str | None = None,
        telephone_source: str | None = None,
        window: float | None = None,
        hop: float | None = None,
        batch_seconds: float = DEFAULT_BATCH_SECONDS,
        workers: int = 0,
        progress: bool = False,
    ) -> pd.DataFrame:
        """One row per input (and per window): predicted class and a probability per class.

        `inputs` are files, folders (searched recursively), manifests, or
        waveforms: arrays at the model's rate or ``(array, rate)`` pairs. Files
        are read as the training audio was (its channel, condition and
        telephone source) unless `condition` or a manifest's ``channel`` says
        otherwise. Rows of inputs that could not be used hold their ``error``
        and no prediction.
        """
        condition, telephone_source = self.audio_options(condition, telephone_source)
        hop = _check_window(window, hop)
        if isinstance(inputs, (str, Path)):
            inputs = [inputs]
        files = [item for item in inputs if isinstance(item, (str, Path))]
        waves = [item for item in inputs if not isinstance(item, (str, Path))]
        if files and waves:
            raise ConfigError("give paths or waveforms, not both in one call")
        if waves:
            rows, pieces = _waveform_pieces(self.preprocessor, waves, condition, window, hop)
        else:
            rows = self.with_channels(gather(files))
            usable = rows[rows["error"].isna()].to_dict("records")
            dataset = WindowedDataset(
                usable, self.preprocessor, condition, telephone_source, window, hop
            )
            pieces = self._load(dataset, workers, progress)
        good = [piece for piece in pieces if piece.prepared.error is None]
        probabilities = self._classify([p.prepared for p in good], batch_seconds)
        return _table(self.classes, rows, pieces, good, probabilities, window is not None)

    def audio_options(self, condition: str | None, telephone_source: str | None) -> tuple[str, str]:
        """The condition and telephone source to read with: the training audio's unless given.

        A condition other than the training audio's is allowed (audio already
        recorded over a telephone line, say), with a warning naming both.
        """
        trained = self.reading.get("condition")
        if condition is None:
            condition = trained or "clean"
        elif trained and condition != trained:
            log.warning(
                "the model was trained on %s audio; reading the new audio as %s, as asked",
                trained,
                condition,
            )
        audio.check_condition(condition)
        if telephone_source is None:
            telephone_source = self.reading.get("telephone_source") or "derived"
        audio.check_telephone_source(telephone_source)
        return condition, telephone_source

    def with_channels(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Rows whose channel is not given get the training audio's channel (or an error).

        When training read corpora differently (channel 0 of one, a downmix of
        another), a file with more than one channel cannot be read "the same
        way": its row gets an error saying so; a mono file reads alike either way.
        """
        rows = rows.copy()
        channel = integrity.reading_channel(self.reading)
        unset = rows["channel"].isna() & rows["error"].isna()
        if channel is not None:
            rows.loc[unset, "channel"] = channel
            return rows
        for index in rows.index[unset]:
            count = _channel_count(rows.at[index, "path"])
            if count == 1:
                rows.at[index, "channel"] = DOWNMIX
            elif count is not None:
                rows.at[index, "error"] = (
                    f"the model's training audio was read per corpus as "
                    f"({integrity.describe_channels(self.reading)}); which applies to this "
                    f"{count}-channel file is unknown: list it in a manifest with a channel column"
                )
        return rows

    def _load(self, dataset: WindowedDataset, workers: int, progress: bool) -> list[Piece]:
        loader = prepared_batches(dataset, workers)
        out: list[Piece] = []
        with tqdm(total=len(dataset), desc="load audio", unit="file", disable=not progress) as bar:
            for batch in loader:
                out += [piece for pieces in batch for piece in pieces]
                bar.update(len(batch))
        return out

    def _classify(self, good: list[Prepared], batch_seconds: float) -> np.ndarray:
        """Probabilities of every usable piece, in length-grouped batches."""
        cost = self.backbone.input_seconds
        costs = [sum(cost(s.seconds) for s in item.segments) for item in good]
        out = np.zeros((len(good), len(self.classes)))
        for batch in plan_batches(costs, batch_seconds):
            out[batch] = self.probabilities([good[i].segments for i in batch])
        return out


def _channel_count(path: str) -> int | None:
    """Channels of an audio file (None when unreadable: loading says why)."""
    import soundfile

    try:
        return int(soundfile.info(path).channels)
    except Exception:  # libsndfile reports bad files with several types
        return None


def _check_window(window: float | None, hop: float | None) -> float | None:
    if window is None:
        if hop is not None:
            raise ConfigError("--hop needs --window")
        return None
    check_seconds(window, "--window")
    if hop is not None:
        check_seconds(hop, "--hop")
    return window if hop is None else hop


def check_seconds(value: float, option: str) -> float:
    """`value` if it is a positive, finite number of seconds."""
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{option} {value!r} must be a positive, finite number of seconds")
    return value


def _waveform_pieces(
    preprocessor: Preprocessor,
    waves: Sequence[Waveform],
    condition: str,
    window: float | None,
    hop: float | None,
) -> tuple[pd.DataFrame, list[Piece]]:
    """Rows and pieces of in-memory waveforms (named ``waveform-0``, ...)."""
    rows, pieces = [], []
    for i, item in enumerate(waves):
        wave, rate = item if isinstance(item, tuple) else (item, preprocessor.sample_rate)
        utt_id = f"waveform-{i}"
        rows.append({"position": i, "utt_id": utt_id, "path": "", "error": None})
        try:
            wave, rate = conditioned(
                preprocessor, np.asarray(wave, np.float32), int(rate), condition
            )
        except (SerError, ValueError) as error:
            failed = Prepared(utt_id, [], 0.0, f"{type(error).__name__}: {error}")
            pieces.append(Piece(i, WHOLE_FILE, 0.0, 0.0, failed))
            continue
        spans = [(0, len(wave))] if window is None else windows(len(wave), rate, window, hop)
        for w, (start, stop) in enumerate(spans):
            name = WHOLE_FILE if window is None else str(w)
            prepared = prepare(preprocessor, utt_id, wave[start:stop], rate)
            pieces.append(Piece(i, name, start / rate, stop / rate, prepared))
    return pd.DataFrame(rows), pieces


def conditioned(
    preprocessor: Preprocessor, wave: np.ndarray, rate: int, condition: str
) -> tuple[np.ndarray, int]:
    """A waveform as a file under `condition` would be read: (wave, its rate).

    As :func:`ssl_ser.audio.load`: resampled to the model's rate, then the
    condition; for native-rate models as :func:`ssl_ser.audio.load_native`: the
    recording's own rate, or the telephone chain's 8 kHz narrow band.
    """
    if preprocessor.native_rate:
        if condition == "clean":
            return wave, rate
        return audio.telephone_narrowband(wave, rate), audio.TELEPHONE.rate
    target = preprocessor.sample_rate
    return audio.apply_condition(audio.resample(wave, rate, target), target, condition), target


def _table(
    classes: Sequence[str],
    rows: pd.DataFrame,
    pieces: list[Piece],
    good: list[Piece],
    probabilities: np.ndarray,
    windowed: bool,
) -> pd.DataFrame:
    """The output table: per input its window rows (when windowed), then its own row.

    An input's row holds the mean of its pieces' probabilities when every piece
    was labelled, else the first error.
    """
    at = {id(piece): i for i, piece in enumerate(good)}
    by_input: dict[int, list[Piece]] = {}
    for piece in pieces:
        by_input.setdefault(piece.position, []).append(piece)
    records = []
    for row in rows.to_dict("records"):
        mine = by_input.get(row["position"], [])
        if windowed:
            records += [_record(row, p, _probs(p, at, probabilities), classes) for p in mine]
        given = row.get("error") if isinstance(row.get("error"), str) else None
        errors = [p.prepared.error for p in mine if p.prepared.error] or [given]
        error = errors[0] if errors[0] or not mine else None
        mean = None if error else np.mean([probabilities[at[id(p)]] for p in mine], axis=0)
        seconds = max((p.end for p in mine), default=np.nan) if windowed else None
        empty = Prepared(row["utt_id"], [], 0.0, error)
        whole = Piece(row["position"], WHOLE_FILE, 0.0, 0.0, empty)
        if mine:
            whole.end = seconds if windowed else mine[0].prepared.seconds
            whole.prepared.seconds = whole.end
        records.append(_record(row, whole, mean, classes))
    return pd.DataFrame(records)


def _probs(piece: Piece, at: dict[int, int], probabilities: np.ndarray) -> np.ndarray | None:
    return probabilities[at[id(piece)]] if id(piece) in at else None


def _record(
    row: dict[str, Any], piece: Piece, probabilities: np.ndarray | None, classes: Sequence[str]
) -> dict[str, Any]:
    """One output row: the input, its piece, the prediction and a probability per class."""
    out: dict[str, Any] = {
        "utt_id": row["utt_id"],
        "path": row["path"],
        "window": piece.window,
        "start": piece.start,
        "end": piece.end,
        "duration": piece.prepared.seconds,
        "predicted": None if probabilities is None else classes[int(np.argmax(probabilities))],
    }
    for c, name in enumerate(classes):
        out[f"prob_{name}"] = np.nan if probabilities is None else float(probabilities[c])
    out["error"] = piece.prepared.error
    return out
