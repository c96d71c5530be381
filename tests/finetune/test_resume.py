"""Killed with SIGKILL at any point and run again, ser finetune ends with identical results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).with_name("run_script.py")
CONFIG = {
    "epochs": 3,
    "learning_rate": 1e-3,
    "batch_seconds": 8.0,
    "patience": None,
    "head": "mlp",
    "dropout": 0.3,
    "weighted_layers": True,
    "spec_augment": True,  # time masks drawn per micro-batch: a resumed run draws the same
    "mask_time_prob": 0.2,
}
SETTINGS = {"split_options": {"folds": 2}, "device": "cpu", "workers": 0, "bootstrap": 20}
# When to kill: a checkpoint written, the first fold stored, or a moment into training.
TRIGGERS = {
    "after-first-checkpoint": lambda out: any(out.glob("checkpoints/*/epoch-*")),
    "after-first-fold": lambda out: any(out.glob("cells/*.json")),
    "mid-epoch": lambda out: any(out.glob("checkpoints/*/best-epoch-*")),
}


def spec_file(folder: Path, manifest: Path, model: Path) -> Path:
    """The JSON spec run_script.py reads."""
    spec = {
        "manifest": str(manifest),
        "output": str(folder / "out"),
        "config": {"model": str(model), **CONFIG},
        "settings": SETTINGS,
    }
    path = folder / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def run(spec: Path) -> None:
    """Run the fine-tune to the end in a fresh process."""
    subprocess.run([sys.executable, str(SCRIPT), str(spec)], check=True, timeout=600)


def run_and_kill(spec: Path, out: Path, trigger, delay: float) -> None:
    """Start the fine-tune, SIGKILL it `delay` s after `trigger(out)` holds."""
    process = subprocess.Popen([sys.executable, str(SCRIPT), str(spec)])
    try:
        deadline = time.monotonic() + 300
        while not trigger(out):
            assert process.poll() is None, "the run ended before the kill point"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(delay)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


def outcome(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Results rows (what is computed) and predictions, in a fixed order."""
    rows = pd.read_parquet(out / "results.parquet")
    columns = ["cell_id", "fold", "ua", "best_epoch", "training_curve", "layer_weights"]
    rows = rows[columns].sort_values("cell_id").reset_index(drop=True)
    predictions = pd.read_parquet(out / "predictions.parquet")
    return rows, predictions.sort_values(["cell_id", "utt_id"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def manifest_file(corpus_manifest, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ft-manifest") / "manifest.csv"
    corpus_manifest.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def uninterrupted(manifest_file, tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ft-whole")
    run(spec_file(folder, manifest_file, tiny_model))
    return outcome(folder / "out")


@pytest.mark.slow
@pytest.mark.parametrize("when", list(TRIGGERS))
def test_killed_and_restarted_equals_uninterrupted(
    when, manifest_file, tiny_model, uninterrupted, tmp_path
):
    spec = spec_file(tmp_path, manifest_file, tiny_model)
    out = tmp_path / "out"
    run_and_kill(spec, out, TRIGGERS[when], 0.0 if when != "mid-epoch" else 0.3)
    run(spec)
    rows, predictions = outcome(out)
    pd.testing.assert_frame_equal(rows, uninterrupted[0], check_exact=True)
    pd.testing.assert_frame_equal(predictions, uninterrupted[1], check_exact=True)
    assert not any(out.glob("checkpoints/*/epoch-*"))


# The least time an epoch takes in the resume-timing test (a sleep: no CPU spent).
EPOCH_SECONDS = 0.3


class KilledError(Exception):
    """Stands for a kill right after the first checkpoint was committed."""


def test_fit_seconds_after_a_resume_count_the_whole_fold(
    corpus_manifest, tiny_model, tmp_path, monkeypatch
):
    from ssl_ser.classify.splits import SplitOptions
    from ssl_ser.finetune import checkpoint, train
    from ssl_ser.finetune.config import FinetuneConfig
    from ssl_ser.finetune.run import RunOptions, run_finetune

    epoch, save = train._epoch, checkpoint.save

    def slow_epoch(*args, **kwargs):  # each epoch takes at least EPOCH_SECONDS
        time.sleep(EPOCH_SECONDS)
        return epoch(*args, **kwargs)

    def save_then_die(folder, state, *args):
        save(folder, state, *args)
        raise KilledError

    config = FinetuneConfig(model=str(tiny_model), **{**CONFIG, "epochs": 2})
    settings = RunOptions(
        split="speaker", split_options=SplitOptions(), device="cpu", workers=0, bootstrap=10
    )
    monkeypatch.setattr(train, "_epoch", slow_epoch)
    monkeypatch.setattr(checkpoint, "save", save_then_die)
    with pytest.raises(KilledError):
        run_finetune(corpus_manifest, config, settings, tmp_path)
    (state_file,) = tmp_path.glob("checkpoints/*/epoch-001/state.json")
    first = json.loads(state_file.read_text())["seconds"]
    assert first >= EPOCH_SECONDS  # the first run's epoch, kept in the checkpoint
    monkeypatch.setattr(checkpoint, "save", save)
    started = time.perf_counter()
    run_finetune(corpus_manifest, config, settings, tmp_path)
    second = time.perf_counter() - started
    (fit,) = pd.read_parquet(tmp_path / "results.parquet")["fit_seconds"]
    # the resumed run trained one epoch; the fold's time counts both runs' epochs
    assert first + EPOCH_SECONDS <= fit <= first + second
