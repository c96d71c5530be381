"""Which stored rows ``--from-probe`` takes as the emotion probes."""

from __future__ import annotations

import pandas as pd

from ssl_ser.finetune.probe_init import probe_rows
from ssl_ser.results import RESULTS_PARQUET


def test_control_and_speaker_rows_are_not_the_emotion_probes(tmp_path):
    # a folder swept with --control beside --target speaker rows, and a row of a folder
    # written before the target column existed (read as emotion)
    rows = pd.DataFrame(
        {
            "classifier": "logreg",
            "extractor": "wav2vec2-base",
            "pooling": "mean",
            "train_condition": "clean",
            "test_condition": "clean",
            "search": False,
            "speaker_norm": False,
            "layer": "1",
            "target": ["emotion", "control", "speaker", None],
            "cell_id": ["emotion", "control", "speaker", "old"],
        }
    )
    rows.to_parquet(tmp_path / RESULTS_PARQUET)
    found = probe_rows(tmp_path, "wav2vec2-base", [("clean", "clean")])
    assert found["cell_id"].tolist() == ["emotion", "old"]
