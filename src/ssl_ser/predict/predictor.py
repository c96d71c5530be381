"""Predictions on new audio: load, preprocess and batch as extraction does, then classify.

A :class:`Predictor` knows its classes, the model's preprocessor and how to turn
a batch of utterances (lists of segments) into class probabilities. Audio goes
through extraction's own loading path (decoding, resampling, the condition,
the model's preprocessor) in DataLoader workers, batches are planned by
padded seconds with masked pooling, so batching never changes a prediction,
and a file that cannot be used gets a row with its error while the rest go on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ssl_ser.extract.batching import plan_batches
from ssl_ser.extract.preprocess import Preprocessor, Segment
from ssl_ser.extract.runner import Prepared, UtteranceDataset, init_worker, keep_list
from ssl_ser.predict.inputs import gather

DEFAULT_BATCH_SECONDS = 60.0
LOAD_BATCH = 16


class Predictor(ABC):
    """A trained model ready to label audio (see :func:`ssl_ser.predict.load`)."""

    classes: tuple[str, ...]
    preprocessor: Preprocessor

    @abstractmethod
    def probabilities(self, utterances: Sequence[Sequence[Segment]]) -> np.ndarray:
        """Class probabilities (utterances, classes) of one batch."""

    @abstractmethod
    def input_seconds(self, seconds: float) -> float:
        """Model input seconds a segment of `seconds` costs (for batch plans)."""

    def predict(
        self,
        inputs: Sequence[str | Path] | str | Path,
        *,
        condition: str = "clean",
        telephone_source: str = "derived",
        batch_seconds: float = DEFAULT_BATCH_SECONDS,
        workers: int = 0,
        progress: bool = False,
    ) -> pd.DataFrame:
        """One row per audio file: path, duration, predicted class, a probability per class.

        `inputs` are files, folders (searched recursively) or manifests. Rows of
        files that could not be used hold their ``error`` and no prediction.
        """
        if isinstance(inputs, (str, Path)):
            inputs = [inputs]
        rows = gather(inputs)
        usable = rows[rows["error"].isna()]
        prepared = self._prepare(usable, condition, telephone_source, workers, progress)
        good = [item for item in prepared if item.error is None]
        probabilities = self._classify(good, batch_seconds)
        return self._table(rows, prepared, good, probabilities)

    def _prepare(
        self,
        rows: pd.DataFrame,
        condition: str,
        telephone_source: str,
        workers: int,
        progress: bool,
    ) -> list[Prepared]:
        dataset = UtteranceDataset(
            rows.to_dict("records"), self.preprocessor, condition, telephone_source, verify=False
        )
        loader = DataLoader(
            dataset,
            batch_size=LOAD_BATCH,
            collate_fn=keep_list,
            num_workers=workers,
            worker_init_fn=init_worker,
        )
        out: list[Prepared] = []
        with tqdm(total=len(dataset), desc="load audio", unit="file", disable=not progress) as bar:
            for batch in loader:
                out += batch
                bar.update(len(batch))
        return out

    def _classify(self, good: list[Prepared], batch_seconds: float) -> np.ndarray:
        """Probabilities of every usable utterance, in length-grouped batches."""
        costs = [sum(self.input_seconds(s.seconds) for s in item.segments) for item in good]
        out = np.zeros((len(good), len(self.classes)))
        for batch in plan_batches(costs, batch_seconds):
            out[batch] = self.probabilities([good[i].segments for i in batch])
        return out

    def _table(
        self,
        rows: pd.DataFrame,
        prepared: list[Prepared],
        good: list[Prepared],
        probabilities: np.ndarray,
    ) -> pd.DataFrame:
        errors = dict(zip(rows["utt_id"], rows["error"], strict=True))
        seconds = {item.utt_id: item.seconds for item in prepared}
        errors.update({item.utt_id: item.error for item in prepared if item.error is not None})
        position = {item.utt_id: i for i, item in enumerate(good)}
        table = pd.DataFrame({"utt_id": rows["utt_id"], "path": rows["path"]})
        table["duration"] = [seconds.get(u, np.nan) for u in rows["utt_id"]]
        found = [position.get(u) for u in rows["utt_id"]]
        classes = np.array(self.classes)
        table["predicted"] = [
            None if i is None else classes[probabilities[i].argmax()] for i in found
        ]
        for c, name in enumerate(self.classes):
            table[f"prob_{name}"] = [np.nan if i is None else probabilities[i, c] for i in found]
        table["error"] = [errors.get(u) for u in rows["utt_id"]]
        return table
