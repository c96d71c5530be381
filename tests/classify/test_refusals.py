"""Options that a split (or a backend) does not read are refused, naming the option and why."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from ssl_ser.classify.splits import SPLIT_READS, SPLITS, refuse_unused
from ssl_ser.cli.main import cli
from ssl_ser.errors import ConfigError
from ssl_ser.pipelines.experiment import load_experiment


def test_every_split_says_which_options_it_reads():
    assert set(SPLIT_READS) == set(SPLITS)


@pytest.mark.parametrize(
    ("method", "given", "message"),
    [
        (
            "loso",
            {"shots": 5},
            "--shots 5 does not apply to --split loso: loso leaves one speaker out at a time "
            "(it reads none of the split options)",
        ),
        (
            "speaker-kfold",
            {"train": ("emodb",)},
            "--train emodb does not apply to --split speaker-kfold: speaker-kfold deals whole "
            "speakers into k folds (it reads --folds)",
        ),
        (
            "loso",
            {"ratios": (0.7, 0.2, 0.1)},
            "--ratios 0.7,0.2,0.1 does not apply to --split loso",
        ),
        ("random", {"folds": 3}, "--folds 3 does not apply to --split random: random shuffles"),
        ("cross-corpus", {"shots": (0, 10)}, "--shots 0,10 does not apply to --split cross-corpus"),
    ],
)
def test_an_option_the_split_does_not_read_is_refused(method, given, message):
    with pytest.raises(ConfigError) as error:
        refuse_unused(method, given)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("method", "given"),
    [
        ("loso", {"folds": 5, "shots": 10, "train": (), "test": None, "ratios": (0.8, 0.1, 0.1)}),
        ("few-shot", {"folds": 3, "shots": (0, 10), "train": ("a",), "test": ("b",)}),
        ("loso", {"shots": (10,)}),  # an experiment file's default shots
        ("speaker", {"ratios": (0.6, 0.2, 0.2)}),
    ],
)
def test_defaults_and_options_the_split_reads_pass(method, given):
    refuse_unused(method, given)


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def _empty_inputs(tmp_path) -> tuple[str, str]:
    """A cache and a manifest that exist but are empty: reading either would fail."""
    cache, table = tmp_path / "empty.h5", tmp_path / "empty.csv"
    cache.touch()
    table.touch()
    return str(cache), str(table)


def test_ser_classify_refuses_before_reading_any_file(tmp_path):
    cache, table = _empty_inputs(tmp_path)
    result = _invoke(
        "classify", "--cache", cache, "--manifest", table,
        "--output", str(tmp_path / "out"), "--split", "loso", "--shots", "5",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "--shots 5 does not apply to --split loso" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["classify", "--cache", "CACHE", "--manifest", "no.csv"], "--manifest"),
        (["classify", "--cache", "CACHE,no.h5", "--manifest", "TABLE"], "--cache"),
        (["export", "--cache", "no.h5", "--manifest", "TABLE"], "--cache"),
        (["finetune", "--model", "none", "--manifest", "TABLE,no.csv"], "--manifest"),
    ],
)
def test_a_missing_cache_or_manifest_is_one_line_naming_the_flag(tmp_path, args, message):
    cache, table = _empty_inputs(tmp_path)
    args = [arg.replace("CACHE", cache).replace("TABLE", table) for arg in args]
    result = _invoke(*args, "--output", str(tmp_path / "out"))
    missing = "no.h5" if message == "--cache" else "no.csv"
    assert result.exit_code == 1
    assert result.output == f"error: {message} must be an existing file; got {missing!r}\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["classify", "finetune", "probe"])
def test_a_seed_given_twice_is_refused_naming_it(tmp_path, command):
    cache, table = _empty_inputs(tmp_path)
    inputs = {
        "classify": ["--cache", cache, "--manifest", table],
        "finetune": ["--model", "m", "--manifest", table],
        "probe": ["--model", "mfcc", "--corpus", "emodb=/nowhere", "--dry-run"],
    }[command]
    seeds = ["--seed", "1", "--seed", "2", "--seed", "1"]
    result = _invoke(command, *inputs, *seeds, "--output", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert result.output == "error: --seed 1 is given twice; give each value once\n"


def test_a_shot_count_given_twice_is_refused_naming_the_flag_or_the_key():
    from ssl_ser.classify.settings import SplitSettings
    from ssl_ser.settings import Where

    with pytest.raises(ConfigError, match=r"^--shots lists 10 twice; give each value once$"):
        SplitSettings.from_cli({"method": "few-shot", "shots": (10, 5, 10)})
    with pytest.raises(ConfigError, match=r"^'split.shots' in x.yaml lists 10 twice; give each"):
        SplitSettings.from_file(
            {"method": "few-shot", "shots": [10, 10]}, Where("x.yaml", ("split",))
        )


def test_ser_finetune_refuses_before_reading_any_file(tmp_path):
    result = _invoke(
        "finetune", "--model", "none", "--manifest", _empty_inputs(tmp_path)[1],
        "--output", str(tmp_path / "out"), "--train", "emodb",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "--train emodb does not apply to --split speaker-kfold" in result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--split", "loso", "--folds", "3"), "--folds 3 does not apply to --split loso"),
        (
            ("--dask", "local", "--backend", "dask"),
            "--dask local and the deprecated --backend dask say the same thing twice",
        ),
        (  # the deprecated spelling's address is checked as --dask's, before any work
            ("--backend", "dask", "--scheduler", "local"),
            "error: --scheduler 'local' is not a Dask scheduler address",
        ),
        (("--split", "few-shot"), "error: --split: split 'few-shot' needs at least 2 corpora"),
        (
            ("--scheduler", "tcp://h:8786"),
            "error: --scheduler ('tcp://h:8786') needs --backend dask, not 'local'",
        ),
    ],
)
def test_ser_probe_refuses_with_the_flags(tmp_path, extra, message):
    base = ("probe", "--model", "mfcc", "--corpus", "emodb=/nowhere", "--dry-run")
    result = _invoke(*base, *extra, "--output", str(tmp_path))
    assert result.exit_code == 1
    assert message in result.output


def test_ser_probe_refuses_a_missing_corpus_naming_the_flag(tmp_path):
    args = ("probe", "--model", "mfcc", "--corpus", "emodb=/nowhere/e.csv", "--dry-run")
    result = _invoke(*args, "--output", str(tmp_path))
    assert result.exit_code == 1
    assert (
        result.output == "error: --corpus emodb=/nowhere/e.csv: no such corpus folder or manifest\n"
    )


def test_an_experiment_file_refuses_with_its_keys(tmp_path):
    path = tmp_path / "x.yaml"
    data = {"name": "t", "models": ["mfcc"], "corpora": {"emodb": "/data/emodb"}}
    path.write_text(yaml.safe_dump({**data, "split": {"method": "loso", "shots": [5]}}))
    with pytest.raises(ConfigError) as error:
        load_experiment(path)
    assert str(error.value).startswith(
        f"{path}: split.shots 5 does not apply to split.method loso: loso leaves one speaker"
    )


# --- one Dask spelling: --dask ADDRESS|local; --backend dask [--scheduler] deprecated -------


@pytest.mark.parametrize(
    ("dask", "placement"),
    [
        (None, ("local", None)),
        ("local", ("dask", None)),
        ("tcp://h:8786", ("dask", "tcp://h:8786")),
    ],
)
def test_dask_gives_the_backend_and_scheduler(dask, placement):
    from ssl_ser.classify.sweep.plan import dask_placement

    assert dask_placement(dask) == placement


def test_the_deprecated_spelling_works_and_names_the_new_one(caplog):
    from ssl_ser.classify.sweep.plan import dask_placement

    assert dask_placement(None, "dask", "tcp://h:8786") == ("dask", "tcp://h:8786")
    assert "--backend dask --scheduler tcp://h:8786 is deprecated" in caplog.text
    assert "use --dask tcp://h:8786" in caplog.text
    caplog.clear()
    assert dask_placement(None, "dask") == ("dask", None)
    assert "--backend dask is deprecated and goes in the next release; use --dask local" in (
        caplog.text
    )


def test_both_spellings_or_a_malformed_address_are_refused(tmp_path):
    cache, table = _empty_inputs(tmp_path)
    base = ["classify", "--cache", cache, "--manifest", table, "--output", str(tmp_path / "out")]
    both = _invoke(*base, "--dask", "local", "--backend", "dask")
    assert both.exit_code == 1
    assert "--dask local and the deprecated --backend dask say the same thing twice" in both.output
    bad = _invoke(*base, "--dask", "host-without-port")
    assert bad.exit_code == 1
    assert "--dask 'host-without-port' is not a Dask scheduler address" in bad.output


def test_help_shows_dask_and_hides_the_deprecated_spelling():
    result = _invoke("classify", "--help")
    assert "--dask ADDRESS|local" in result.output
    assert "--backend" not in result.output and "--scheduler" not in result.output


def test_experiment_files_take_classify_dask_and_warn_on_the_old_keys(tmp_path, caplog):
    data = {"name": "t", "models": ["mfcc"], "corpora": {"emodb": "/data/emodb"}}
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump({**data, "classify": {"dask": "local"}}))
    assert load_experiment(path).classify.dask == "local"
    assert "deprecated" not in caplog.text
    path.write_text(yaml.safe_dump({**data, "classify": {"backend": "dask"}}))
    load_experiment(path)
    assert f"{path}: classify.backend: dask is deprecated" in caplog.text
    assert "use classify.dask: local" in caplog.text
    path.write_text(yaml.safe_dump({**data, "classify": {"dask": "local", "backend": "dask"}}))
    with pytest.raises(ConfigError, match="classify.dask: local and the deprecated classify"):
        load_experiment(path)


def test_jobs_do_not_apply_to_a_cluster_given_by_address():
    from ssl_ser.classify.sweep import SweepConfig

    with pytest.raises(ConfigError) as error:
        SweepConfig(backend="dask", scheduler="tcp://h:8786", jobs=4)
    assert str(error.value) == (
        "--jobs 4 does not apply to the Dask cluster at tcp://h:8786: its own workers run the "
        "cells (--jobs sizes the cluster of --dask local)"
    )
    assert SweepConfig(backend="dask", jobs=4).jobs == 4  # a local cluster of 4 workers
