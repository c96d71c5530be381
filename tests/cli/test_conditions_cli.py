"""Repeated ``--condition`` in ``ser extract`` and ``ser probe``; a ``--labels`` list in probe."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from ssl_ser import cache
from ssl_ser.cli.main import cli
from ssl_ser.testing import emodb


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("emodb")
    emodb.make_tree(root, seconds=0.3)
    return root


def extract(tree: Path, cache_dir: Path, *conditions: str):
    args = ["extract", "emodb", "--root", str(tree), "--model", "mfcc"]
    args += ["--cache-dir", str(cache_dir), "--workers", "0", "--no-progress"]
    for condition in conditions:
        args += ["--condition", condition]
    return CliRunner().invoke(cli, args)


def test_extract_runs_every_condition_given_with_one_model_load(tree, tmp_path, monkeypatch):
    from ssl_ser.extract import runner

    loads = []
    load_backbone = runner.load_backbone
    monkeypatch.setattr(runner, "load_backbone", lambda *a: loads.append(a) or load_backbone(*a))
    result = extract(tree, tmp_path / "c", "clean", "telephone")
    assert result.exit_code == 0, result.output
    assert len(loads) == 1
    printed = [line[len("cache: ") :] for line in result.stdout.splitlines() if "cache: " in line]
    assert [Path(p).relative_to(tmp_path / "c").parts[1:] for p in printed] == [
        ("emodb", "clean.h5"),
        ("emodb", "telephone.h5"),
    ]
    ids = sorted(f"emodb/{Path(n).stem}" for n in emodb.file_names())
    features = {}
    for path, condition in zip(printed, ("clean", "telephone"), strict=True):
        with cache.open(path) as reader:
            assert reader.key["condition"] == condition
            assert sorted(reader.ids) == ids
            features[condition] = reader.read_rows(ids)
    assert not (features["clean"] == features["telephone"]).all()
    # the telephone cache holds what a telephone-only run computes
    alone = extract(tree, tmp_path / "alone", "telephone")
    assert alone.exit_code == 0, alone.output
    (path,) = (tmp_path / "alone").rglob("telephone.h5")
    with cache.open(path) as reader:
        assert (reader.read_rows(ids) == features["telephone"]).all()


def test_extract_refuses_a_condition_given_twice(tree, tmp_path):
    result = extract(tree, tmp_path / "c", "telephone", "clean", "telephone")
    assert result.exit_code == 1
    assert "--condition telephone is given twice" in result.output
    assert not (tmp_path / "c").exists()


def test_extract_default_condition_is_still_clean(tree, tmp_path):
    result = extract(tree, tmp_path / "c")
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "c").rglob("*.h5")] == ["clean.h5"]


def probe(tree: Path, tmp_path: Path, *extra: str):
    args = ["probe", "--model", "mfcc", "--corpus", f"emodb={tree}", "--folds", "2"]
    args += ["--layers", "0", "--cache-dir", str(tmp_path / "cache")]
    args += ["--output", str(tmp_path / "out"), "--no-report", "--no-progress", *extra]
    return CliRunner().invoke(cli, args)


def test_probe_refuses_a_condition_given_twice(tree, tmp_path):
    result = probe(tree, tmp_path, "--condition", "clean", "--condition", "clean")
    assert result.exit_code == 1
    assert "--condition clean is given twice" in result.output
    assert not (tmp_path / "cache").exists()


def test_probe_runs_each_condition_on_an_explicit_label_list(tree, tmp_path):
    labels = "disgust,fear,neutral,sad,happy,angry"
    result = probe(
        tree, tmp_path, "--condition", "clean", "--condition", "telephone", "--labels", labels
    )
    assert result.exit_code == 0, result.output
    results = pd.read_parquet(tmp_path / "out" / "results" / "results.parquet")
    assert set(results["labels"]) == {"angry,happy,sad,neutral,fear,disgust"}
    assert set(zip(results["train_condition"], results["test_condition"], strict=True)) == {
        ("clean", "clean"),
        ("telephone", "telephone"),
    }
    predictions = pd.read_parquet(tmp_path / "out" / "results" / "predictions.parquet")
    boredom = {f"emodb/{Path(n).stem}" for n in emodb.file_names() if n[5] == "L"}
    assert boredom and not boredom & set(predictions["utt_id"])
    assert "boredom" not in set(predictions["label"])


def test_probe_on_a_manifest_that_is_a_subset_of_its_cache(tree, tmp_path):
    from ssl_ser import corpora, manifest

    full = probe(tree, tmp_path, "--labels", "all")
    assert full.exit_code == 0, full.output
    table = corpora.load("emodb", tree)
    no_boredom = manifest.write(table[table["emotion"] != "boredom"], tmp_path / "six.csv")
    args = ["probe", "--model", "mfcc", "--corpus", f"emodb={no_boredom}", "--folds", "2"]
    args += ["--layers", "0", "--labels", "all", "--cache-dir", str(tmp_path / "cache")]
    args += ["--output", str(tmp_path / "six"), "--no-report", "--no-progress"]
    subset = CliRunner().invoke(cli, args)
    assert subset.exit_code == 0, subset.output
    assert "extraction: 0 cache(s) updated, 1 already complete" in subset.output
    predictions = pd.read_parquet(tmp_path / "six" / "results" / "predictions.parquet")
    assert sorted(predictions["utt_id"].unique()) == sorted(
        table.loc[table["emotion"] != "boredom", "utt_id"]
    )
