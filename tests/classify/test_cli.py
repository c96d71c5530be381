import pandas as pd
import pytest
from click.testing import CliRunner

from ssl_ser import cache, manifest
from ssl_ser.cli.main import cli
from ssl_ser.testing.synthetic import write_cache

from .conftest import corpus


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    paths = {}
    for name, seed in (("alpha", 0), ("beta", 1)):
        table, features = corpus(name, seed=seed)
        paths[name] = (
            write_cache(folder / f"{name}.h5", features),
            manifest.write(table, folder / f"{name}.csv"),
        )
    return paths


def run(args):
    return CliRunner().invoke(cli, ["classify", *map(str, args)], catch_exceptions=False)


@pytest.mark.slow
def test_classify_end_to_end_over_caches(files, tmp_path):
    (alpha_cache, alpha_csv), (beta_cache, beta_csv) = files["alpha"], files["beta"]
    args = [
        "--cache",
        f"{alpha_cache},{beta_cache}",
        "--manifest",
        f"{alpha_csv},{beta_csv}",
        "--layers",
        "1-3",
        "--pooling",
        "mean+std",
        "--classifiers",
        "logreg,linear",
        "--split",
        "speaker-kfold",
        "--folds",
        "4",
        "--bootstrap",
        "50",
        "--threads",
        "1",
        "--output",
        tmp_path,
        "--no-progress",
    ]
    result = run(args)
    assert result.exit_code == 0, result.output
    assert "24 cell(s) run, 0 already done" in result.output
    assert "logreg: best layer" in result.output and "linear: best layer" in result.output
    results = pd.read_parquet(tmp_path / "results.parquet")
    assert set(results["test_corpus"]) == {"alpha+beta", "alpha", "beta"}
    assert set(results["layer"]) == {"1", "2", "3"}
    assert {p.name for p in tmp_path.iterdir()} >= {
        "results.parquet",
        "results.csv",
        "predictions.parquet",
        "summary.csv",
        "cells",
    }
    again = run(args)
    assert "0 cell(s) run, 24 already done" in again.output
    folds = args.index("--folds")  # cross-corpus reads no --folds (refused)
    cross = run(
        [
            *args[:folds],
            *args[folds + 2 : -3],
            "--split",
            "cross-corpus",
            "--train",
            "alpha",
            "--test",
            "beta",
            "--output",
            tmp_path / "cross",
            "--no-progress",
        ]
    )
    assert cross.exit_code == 0, cross.output
    # one fold has no spread, and the line says what the best number measured
    best = cross.output.split("logreg: best layer ")[1].split(";")[0]
    assert "±" not in best and "(tiny-model on alpha -> beta, clean, mean+std, 1 fold)" in best
    assert set(pd.read_parquet(tmp_path / "cross" / "results.parquet")["fold"]) == {"alpha->beta"}


@pytest.mark.parametrize(
    "extra,message",
    [
        (
            ["--model", "wavlm-large"],
            "holds model 'tiny-model', but model 'wavlm-large' was requested",
        ),
        (["--condition", "telephone"], "holds condition 'clean', but condition 'telephone'"),
        (["--labels", "basic9"], "unknown label set 'basic9'"),
        (
            ["--layers", "0-40"],
            "unknown layer '40' in range '0-40' of --layers (the cache holds 4 layers); "
            "expected one of 0, 1, 2, 3",
        ),
        (["--folds", "20"], "20 folds need at least 20 speakers"),
        (
            ["--ratios", "0.8,0.2"],
            "--ratios must be three non-negative numbers, e.g. 0.8,0.1,0.1; got [0.8, 0.2]",
        ),
        (
            ["--scheduler", "tcp://h:8786"],
            "--scheduler ('tcp://h:8786') needs --backend dask, not 'local'",
        ),
    ],
)
def test_bad_input_is_one_line_error(files, tmp_path, extra, message):
    alpha_cache, alpha_csv = files["alpha"]
    result = run(["--cache", alpha_cache, "--manifest", alpha_csv, "--output", tmp_path, *extra])
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("modules", "heavy"),
    [
        ("ssl_ser.cli.classify, ssl_ser.classify.sweep", ("torch", "xgboost", "h5py")),
        # the command and its settings alone: choices from classify.names, not the registries
        ("ssl_ser.cli.classify, ssl_ser.classify.settings", ("numpy", "pandas", "sklearn")),
    ],
)
def test_imports_stay_light(modules, heavy):
    import subprocess
    import sys

    code = f"import sys, {modules}; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_the_options():
    result = CliRunner().invoke(cli, ["classify", "--help"])
    assert result.exit_code == 0
    for option in ("--cache", "--manifest", "--layers", "--split", "--search", "--jobs", "--force"):
        assert option in result.output


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_no_progress_prints_a_line_per_finished_group(files, tmp_path, jobs):
    alpha_cache, alpha_csv = files["alpha"]
    args = ["--cache", alpha_cache, "--manifest", alpha_csv, "--layers", "1-3"]
    args += ["--classifiers", "logreg,linear", "--folds", "2", "--bootstrap", "10"]
    args += ["--jobs", jobs, "--threads", "1"]
    quiet = run([*args, "--output", tmp_path / "quiet", "--no-progress"])
    assert quiet.exit_code == 0, quiet.output
    lines = [line for line in quiet.output.splitlines() if line.startswith("classify: ")]
    # logreg: one task per (fold, layer); linear: one batched task per fold
    assert len(lines) == 2 * 3 + 2, quiet.output
    counts = [int(line.split()[1].split("/")[0]) for line in lines]
    assert counts == sorted(counts) and lines[-1].startswith("classify: 12/12 cells (100%)")
    assert sum("linear mean, layers 1..3 (3), " in line for line in lines) == 2
    assert sum("logreg mean, layer 2, " in line for line in lines) == 2
    assert "cells/s" in lines[0] and "%|" not in quiet.output
    shown = run([*args, "--output", tmp_path / "shown"])
    assert "%|" in shown.output and "classify: 12/12 cells" not in shown.output


def test_label_list_and_subset_manifest(files, tmp_path):
    alpha_cache, alpha_csv = files["alpha"]
    table = manifest.read(alpha_csv)
    subset = manifest.write(table.iloc[: len(table) // 2], tmp_path / "half.csv")
    common = ["--cache", alpha_cache, "--manifest", subset, "--layers", "2", "--folds", "2"]
    common += ["--bootstrap", "20", "--threads", "1", "--no-progress", "--output", tmp_path / "r"]
    result = run([*common, "--labels", "sad,happy,angry"])
    assert result.exit_code == 0, result.output
    assert "2 cell(s) run" in result.output
    results = pd.read_parquet(tmp_path / "r" / "results.parquet")
    assert set(results["labels"]) == {"angry,happy,sad"}
    predictions = pd.read_parquet(tmp_path / "r" / "predictions.parquet")
    kept = table.iloc[: len(table) // 2]
    kept = kept[kept["emotion"].isin(["angry", "happy", "sad"])]
    assert sorted(predictions["utt_id"]) == sorted(kept["utt_id"])
    again = run([*common, "--labels", "angry,happy,sad"])
    assert "0 cell(s) run, 2 already done" in again.output
    bad = run([*common, "--labels", "angry,happy,sadness"])
    assert bad.exit_code == 1
    assert "unknown emotion 'sadness' in label list 'angry,happy,sadness'" in bad.output
    assert "expected one of angry, happy, sad, neutral" in bad.output


def test_an_incomplete_cache_is_refused_unless_allowed(tmp_path):
    table, features = corpus("alpha", seed=0)
    manifest_path = manifest.write(table, tmp_path / "alpha.csv")
    path = tmp_path / "alpha.h5"
    first = features.ids[:40]  # as if the extraction were still running
    with cache.CacheWriter(
        path, key=features.key, layers=features.layers, dim=features.dim, storage_dtype="float32"
    ) as writer:
        writer.add_ids(features.ids)
        writer.write(first, {p: a[:40] for p, a in features.arrays.items()})
        writer.flush()
    args = ["--cache", path, "--manifest", manifest_path, "--layers", "1", "--folds", "2"]
    args += ["--bootstrap", "10", "--no-progress"]
    refused = run([*args, "--output", tmp_path / "out"])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert f"is incomplete: {len(table) - 40} of the manifest's {len(table)}" in refused.output
    assert not (tmp_path / "out" / "results.parquet").exists()
    allowed = run([*args, "--output", tmp_path / "out", "--allow-incomplete"])
    assert allowed.exit_code == 0, allowed.output
    results = pd.read_parquet(tmp_path / "out" / "results.parquet")
    assert results["n_test"].sum() <= 40


def test_a_refused_run_leaves_no_output_folder_behind(files, tmp_path):
    """Folders a refused run made are removed; a folder that existed stays as it was."""
    alpha_cache, alpha_csv = files["alpha"]
    fresh = tmp_path / "new" / "out"
    args = ["--cache", alpha_cache, "--manifest", alpha_csv, "--folds", "20"]
    result = run([*args, "--output", fresh])
    assert result.exit_code == 1
    assert "20 folds need at least 20 speakers" in result.output
    assert list(tmp_path.iterdir()) == []
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    assert run([*args, "--output", kept]).exit_code == 1
    assert sorted(p.name for p in kept.iterdir()) == ["notes.txt"]


def test_several_seeds_and_shots_run_one_sweep_each_into_the_output(files, tmp_path):
    alpha_cache, alpha_csv = files["alpha"]
    args = ["--cache", alpha_cache, "--manifest", alpha_csv, "--layers", "1", "--folds", "2"]
    args += ["--bootstrap", "0", "--threads", "1", "--no-progress", "--output", tmp_path]
    result = run([*args, "--seed", "0", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "4 cell(s) run, 0 already done" in result.output  # 2 seeds x 2 folds
    assert set(pd.read_parquet(tmp_path / "results.parquet")["seed"]) == {0, 3}
    refused = run([*args, "--seed", "0", "--seed", "3", "--save-probe", tmp_path / "probe"])
    assert refused.exit_code == 1
    assert "--save-probe saves one probe; give one --seed (and one --shots)" in refused.output


def test_few_shot_shots_run_one_sweep_each(files, tmp_path):
    (alpha_cache, alpha_csv), (beta_cache, beta_csv) = files["alpha"], files["beta"]
    args = ["--cache", f"{alpha_cache},{beta_cache}", "--manifest", f"{alpha_csv},{beta_csv}"]
    args += ["--layers", "1", "--split", "few-shot", "--test", "beta", "--folds", "2"]
    args += ["--shots", "0,4", "--bootstrap", "0", "--no-progress", "--output", tmp_path]
    result = run(args)
    assert result.exit_code == 0, result.output
    results = pd.read_parquet(tmp_path / "results.parquet")
    assert set(results["shots"]) == {0, 4}


@pytest.mark.slow
def test_dask_local_runs_the_cells_on_a_local_cluster_with_the_same_numbers(files, tmp_path):
    alpha_cache, alpha_csv = files["alpha"]
    args = ["--cache", alpha_cache, "--manifest", alpha_csv, "--layers", "1-2", "--folds", "2"]
    args += ["--bootstrap", "0", "--no-progress"]
    local = run([*args, "--output", tmp_path / "local"])
    remote = run([*args, "--dask", "local", "--jobs", "2", "--output", tmp_path / "dask"])
    assert local.exit_code == 0 and remote.exit_code == 0, remote.output
    columns = ["cell_id", "test_corpus", "ua", "wa", "confusion"]
    tables = [
        pd.read_parquet(tmp_path / name / "results.parquet")[columns].sort_values(columns[:2])
        for name in ("local", "dask")
    ]
    pd.testing.assert_frame_equal(*(t.reset_index(drop=True) for t in tables))
