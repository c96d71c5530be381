"""Prepared audio read per batch from disk: the same arrays and the same results as in memory."""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd
import pytest

from ssl_ser.classify.splits import SplitOptions
from ssl_ser.extract.preprocess import Segment
from ssl_ser.finetune.config import FinetuneConfig
from ssl_ser.finetune.run import RunOptions, run_finetune
from ssl_ser.finetune.segment_store import STORE_DIR, SegmentStore
from ssl_ser.finetune.validation import METHOD


def test_segments_come_back_bit_for_bit_and_the_file_goes(tmp_path):
    rng = np.random.default_rng(0)
    written = {
        ("a", "clean"): [Segment(rng.normal(size=16000).astype(np.float32), 49, 1.0)],
        ("b", "telephone"): [
            Segment(rng.normal(size=(80, 300)).astype(np.float32), 150, 3.0),
            Segment(rng.normal(size=(80, 120)).astype(np.float64)[:, ::2], 30, 1.2),
        ],
    }
    store = SegmentStore(tmp_path)
    for key, segments in written.items():
        store[key] = segments
    assert store.nbytes == os.path.getsize(store.path) == 16000 * 4 + 80 * 300 * 4 + 80 * 60 * 8
    assert sorted(store) == sorted(written) and len(store) == 2
    for key, segments in written.items():
        back = store[key]
        assert store.segment_seconds(key) == [s.seconds for s in segments]
        for original, read in zip(segments, back, strict=True):
            assert read.values.dtype == original.values.dtype
            np.testing.assert_array_equal(read.values, original.values)
            assert (read.frames, read.seconds) == (original.frames, original.seconds)
            read.values[...] = 0  # a fresh, writable array: the store is not changed
    np.testing.assert_array_equal(
        store[("a", "clean")][0].values, written[("a", "clean")][0].values
    )
    store.close()
    assert not store.path.exists() and not (tmp_path / STORE_DIR).exists()


def test_files_of_killed_runs_are_removed_when_a_run_starts(tmp_path):
    folder = tmp_path / STORE_DIR
    folder.mkdir()
    dead = folder / "segments-999999999.bin"  # no such process
    alive = folder / f"segments-{os.getppid()}.bin"
    dead.write_bytes(b"x")
    alive.write_bytes(b"x")
    store = SegmentStore(tmp_path)
    assert not dead.exists() and alive.exists()
    store.close()
    assert alive.exists()


FAST = {"epochs": 2, "learning_rate": 1e-3, "batch_seconds": 8.0, "patience": None}


@pytest.mark.slow
def test_rows_are_equal_with_audio_on_disk_and_in_memory(
    corpus_manifest, tiny_model, tmp_path, monkeypatch, caplog
):
    caplog.set_level(logging.INFO, logger="ssl_ser.progress")
    # one epoch: every batch of it, validation and test are read from the store
    config = FinetuneConfig(model=str(tiny_model), head="mlp", dropout=0.3, **{**FAST, "epochs": 1})
    outcomes, reads = [], []
    read = SegmentStore._read

    def counted(self, item):
        reads.append(item)
        return read(self, item)

    monkeypatch.setattr(SegmentStore, "_read", counted)
    for in_memory in (False, True):
        before = len(reads)
        settings = RunOptions(
            split_options=SplitOptions(folds=2),
            conditions=("clean", "telephone"),
            device="cpu",
            workers=0,
            bootstrap=20,
            save_models=False,
            audio_in_memory=in_memory,
        )
        output = tmp_path / f"memory-{in_memory}"
        run_finetune(corpus_manifest, config, settings, output)
        assert not (output / STORE_DIR).exists()  # the stored audio is gone after the run
        # read from disk per batch (every epoch, validation and test), or never
        assert (len(reads) > before) != in_memory
        rows = pd.read_parquet(output / "results.parquet").sort_values("cell_id")
        predictions = pd.read_parquet(output / "predictions.parquet")
        predictions = predictions.sort_values(["cell_id", "utt_id"]).reset_index(drop=True)
        outcomes.append((rows.drop(columns=["fit_seconds"]).reset_index(drop=True), predictions))
    assert len(outcomes[0][0]) == 4  # 2 conditions x 2 folds
    # how validation speakers were drawn is recorded, and part of each fold's cell id
    assert set(outcomes[0][0]["validation"]) == {METHOD}
    # each fold says which share of its training rows validates (1 of 2 speakers here)
    shares = [r.getMessage() for r in caplog.records if "validation on" in r.getMessage()]
    assert len(shares) == 8 and all("1 of 2 speakers" in line for line in shares)
    assert "(50.0%; --val-fraction 0.1)" in shares[0]
    pd.testing.assert_frame_equal(outcomes[0][0], outcomes[1][0], check_exact=True)
    pd.testing.assert_frame_equal(outcomes[0][1], outcomes[1][1], check_exact=True)


def test_a_failed_run_removes_its_stored_audio(corpus_manifest, tiny_model, tmp_path):
    config = FinetuneConfig(model=str(tiny_model), **FAST)
    settings = RunOptions(
        split="speaker-kfold", split_options=SplitOptions(folds=99), device="cpu", workers=0
    )
    with pytest.raises(Exception, match="99"):
        run_finetune(corpus_manifest, config, settings, tmp_path)
    assert not (tmp_path / STORE_DIR).exists()
