"""Two processes under torchrun (gloo, CPU) train what one process with 2x accumulation does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPT = Path(__file__).with_name("run_script.py")
# Summation order differs between one process and two (all_reduce), nothing else:
# probabilities and curves agree to float32 rounding after a few steps.
TOLERANCE = 1e-4
CONFIG = {
    "epochs": 2,
    "learning_rate": 1e-3,
    "batch_seconds": 6.0,
    "patience": None,
    "head": "mlp",
    "dropout": 0.3,
}
# What this CONFIG changes from the defaults, besides the step (as FinetuneConfig.setting says).
SETTING = "head=mlp, dropout=0.3, epochs=2, patience=None, learning_rate=0.001, batch_seconds=6.0"
SETTINGS = {"split_options": {"folds": 2}, "device": "cpu", "workers": 0, "bootstrap": 20}


def write_spec(folder: Path, manifest: Path, model: Path, accumulation: int) -> Path:
    spec = {
        "manifest": str(manifest),
        "output": str(folder / "out"),
        "config": {"model": str(model), "accumulation": accumulation, **CONFIG},
        "settings": {**SETTINGS, "save_models": False},
    }
    path = folder / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def results(out: Path) -> tuple[pd.DataFrame, np.ndarray]:
    rows = pd.read_parquet(out / "results.parquet").sort_values("fold").reset_index(drop=True)
    predictions = pd.read_parquet(out / "predictions.parquet").sort_values(["fold", "utt_id"])
    return rows, predictions.filter(like="prob_").to_numpy()


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(corpus_manifest, tiny_model, tmp_path):
    manifest = tmp_path / "manifest.csv"
    corpus_manifest.to_csv(manifest, index=False)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = write_spec(tmp_path / "one", manifest, tiny_model, accumulation=2)
    two = write_spec(tmp_path / "two", manifest, tiny_model, accumulation=1)
    subprocess.run([sys.executable, str(SCRIPT), str(one)], check=True, timeout=600)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    subprocess.run(
        [*torchrun, "--nproc-per-node", "2", str(SCRIPT), str(two)], check=True, timeout=600
    )
    (rows_one, p_one), (rows_two, p_two) = (
        results(tmp_path / "one" / "out"),
        results(tmp_path / "two" / "out"),
    )
    assert list(rows_one["fold_digest"]) == list(rows_two["fold_digest"])
    # the same step (2 micro-batches) is the same setting and the same cells
    assert list(rows_one["cell_id"]) == list(rows_two["cell_id"])
    assert set(rows_two["setting"]) == {SETTING + ", step_micro_batches=2"}
    assert list(rows_one["best_epoch"]) == list(rows_two["best_epoch"])
    np.testing.assert_allclose(p_two, p_one, atol=TOLERANCE)
    for a, b in zip(rows_one["training_curve"], rows_two["training_curve"], strict=True):
        curve_one, curve_two = pd.DataFrame(json.loads(a)), pd.DataFrame(json.loads(b))
        pd.testing.assert_frame_equal(curve_one, curve_two, atol=TOLERANCE, check_exact=False)
