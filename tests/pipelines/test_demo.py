"""The offline demo end to end at its small size: corpus, untrained model, sweep, report."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from ssl_ser.cli.main import cli
from ssl_ser.pipelines.demo import MODEL_FOLDER, SIZES


@pytest.mark.slow
def test_demo_runs_end_to_end_and_reports_both_extractors_and_conditions(tmp_path):
    output = tmp_path / "demo"
    result = CliRunner().invoke(
        cli, ["demo", "--output", str(output), "--size", "small", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "%|" not in result.output and "Writing model shards" not in result.output  # no bars
    report = output / "report.html"
    assert f"open {report.resolve()} in a browser" in result.output
    html = report.read_text(encoding="utf-8")
    assert "untrained" in html.lower() and "random weights" in html
    assert (output / "report.md").is_file()

    spec = SIZES["small"]
    n_utts = len(spec.voices) * 4 * spec.sentences
    corpus = pd.read_csv(output / "manifests" / "synth-small.csv", keep_default_na=False)
    assert len(corpus) == n_utts and corpus["speaker"].nunique() == len(spec.voices)

    results = pd.read_parquet(output / "results" / "results.parquet")
    model = output / MODEL_FOLDER
    assert set(results["extractor"]) == {str(model.resolve()), "mfcc"}
    covered = set(zip(results["extractor"], results["train_condition"], strict=True))
    assert covered == {
        (e, c) for e in ("mfcc", str(model.resolve())) for c in ("clean", "telephone")
    }
    assert set(results["classifier"]) == {"logreg", "mlp"}
    assert results["speaker_independent"].all() and set(results["split"]) == {"speaker-kfold"}
    ssl_layers = results.loc[results["extractor"] != "mfcc", "layer"].unique()
    config = json.loads((model / "config.json").read_text())
    assert sorted(ssl_layers, key=int) == [str(i) for i in range(config["num_hidden_layers"] + 1)]
    for keys in results["cache_keys"]:
        assert all(key["model"] in {"mfcc", str(model.resolve())} for key in json.loads(keys))

    # the baseline runs (and is labelled) with its default pooling, the SSL model with mean
    used = {e: sorted(rows["pooling"].unique()) for e, rows in results.groupby("extractor")}
    assert used == {"mfcc": ["mean+std"], str(model.resolve()): ["mean"]}
    markdown = (output / "report.md").read_text(encoding="utf-8").splitlines()
    mfcc_rows = [line for line in markdown if line.startswith("| mfcc")]
    assert mfcc_rows and all("mean+std" in line for line in mfcc_rows)
