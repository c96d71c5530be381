"""Running experiments: extraction only where caches lack rows, resumable sweeps, dry runs."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from ssl_ser import manifest
from ssl_ser.cli.main import cli
from ssl_ser.errors import ConfigError, CorpusError
from ssl_ser.pipelines.experiment import experiment_from_dict
from ssl_ser.pipelines.run import run_experiment

from .conftest import SENTENCES, VOICES, synth_entry

N_UTTS = len(VOICES) * 4 * SENTENCES
PAIRS = [
    ("clean", "clean"),
    ("clean", "telephone"),
    ("telephone", "clean"),
    ("telephone", "telephone"),
]


def grid(root: Path, work: Path, **fields) -> dict:
    """An mfcc-only grid over the synthetic corpus, clean and telephone, all four pairs."""
    return {
        "name": "grid",
        "models": ["mfcc"],
        "corpora": {"synth": synth_entry(root)},
        "conditions": ["clean", "telephone"],
        "condition_pairs": "all",
        "classifiers": ["logreg"],
        "split": {"method": "speaker-kfold", "folds": 2},
        "cache_dir": str(work / "cache"),
        "output": str(work / "out"),
        "report": False,
        "extract": {"workers": 0},
        "classify": {"bootstrap": 0},
        **fields,
    }


@pytest.fixture(scope="module")
def first_run(synth_root, tmp_path_factory):
    """The grid run once: (experiment file, its summary)."""
    work = tmp_path_factory.mktemp("grid")
    path = work / "grid.yaml"
    path.write_text(yaml.safe_dump(grid(synth_root, work)))
    experiment = experiment_from_dict(yaml.safe_load(path.read_text()), str(path))
    before = run_experiment(experiment, source=str(path), dry_run=True)
    assert not (work / "out").exists(), "a dry run writes nothing"
    summary = run_experiment(experiment, source=str(path))
    return path, before, summary


def test_dry_run_plans_the_caches_and_cells(first_run):
    _, before, _ = first_run
    plan = before.plan
    assert [(s.condition, s.state, s.missing) for s in plan.caches] == [
        ("clean", "missing", N_UTTS),
        ("telephone", "missing", N_UTTS),
    ]
    # 4 condition pairs x 2 folds x 1 classifier x 1 layer x 1 pooling
    assert [u.pair for u in plan.units] == PAIRS
    assert sum(u.cells for u in plan.units) == 8
    text = "\n".join(before.lines())
    assert "0 complete, 2 to extract" in text and f"would extract {N_UTTS}" in text
    assert "4 sweep(s), 8 cell(s) planned" in text


def test_first_run_extracts_every_cache_and_runs_every_cell(first_run):
    _, _, summary = first_run
    assert [(s.condition, s.extracted) for s in summary.extracted] == [
        ("clean", N_UTTS),
        ("telephone", N_UTTS),
    ]
    assert summary.cells_run == 8 and summary.cells_skipped == 0
    results = pd.read_parquet(summary.plan.variants[0].results_dir / "results.parquet")
    assert results["cell_id"].nunique() == 8
    pairs = set(zip(results["train_condition"], results["test_condition"], strict=True))
    assert pairs == set(PAIRS)
    assert set(results["extractor"]) == {"mfcc"} and set(results["fold"]) == {"0", "1"}
    saved = manifest.read(summary.plan.experiment.output_dir / "manifests" / "synth.csv")
    assert len(saved) == N_UTTS and set(saved["speaker"]) == {f"synth/{v.name}" for v in VOICES}


def test_second_run_does_no_extraction_and_no_classify_work(first_run, monkeypatch):
    path, _, _ = first_run

    def fail(*args, **kwargs):
        raise AssertionError("nothing should be computed on a re-run")

    monkeypatch.setattr("ssl_ser.extract.runner.extract", fail)
    monkeypatch.setattr("ssl_ser.classify.sweep.run.run_task", fail)
    result = CliRunner().invoke(cli, ["run", str(path), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "extraction: 0 cache(s) updated, 2 already complete" in result.output
    assert "classify: 0 cell(s) run, 8 already done" in result.output
    dry = CliRunner().invoke(cli, ["run", str(path), "--dry-run", "--no-progress"])
    assert "2 complete, 0 to extract" in dry.output
    assert "8 finished cell(s) stored" in dry.output


def test_a_grown_manifest_extracts_only_the_new_rows(synth_root, tmp_path):
    from ssl_ser import corpora
    from ssl_ser.synth import SPEAKER_PATTERN

    full = corpora.load("folder", synth_root, name="synth", speaker_pattern=SPEAKER_PATTERN)
    half = manifest.write(full.iloc[::2], tmp_path / "half.csv")
    fields = {"conditions": ["clean"], "condition_pairs": "matched"}
    run_experiment(
        experiment_from_dict(grid(synth_root, tmp_path, corpora={"synth": str(half)}, **fields))
    )
    grown = experiment_from_dict(grid(synth_root, tmp_path, **fields))
    plan = run_experiment(grown, dry_run=True).plan
    assert [(s.state, s.complete, s.missing) for s in plan.caches] == [
        ("partial", N_UTTS // 2, N_UTTS // 2)
    ]
    summary = run_experiment(grown)
    assert [(s.extracted, s.already_done) for s in summary.extracted] == [
        (N_UTTS // 2, N_UTTS // 2)
    ]


def test_a_missing_corpus_root_is_named(tmp_path):
    path = tmp_path / "exp.yaml"
    data = grid(tmp_path / "nowhere", tmp_path)
    data["corpora"]["emodb"] = "/data/emodb-placeholder"
    path.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(cli, ["run", str(path)])
    assert result.exit_code == 1
    assert f"synth: {tmp_path / 'nowhere'} ('corpora.synth' in {path})" in result.output
    assert "emodb: /data/emodb-placeholder ('corpora.emodb'" in result.output
    with pytest.raises(CorpusError, match="corpus root"):
        run_experiment(experiment_from_dict(data))


def test_seeds_get_their_own_results_folders_and_a_joint_summary(first_run, synth_root):
    path, _, _ = first_run
    work = path.parent
    fields = {"conditions": ["clean"], "condition_pairs": "matched", "seeds": [0, 1]}
    experiment = experiment_from_dict(grid(synth_root, work, output=str(work / "seeds"), **fields))
    summary = run_experiment(experiment)
    assert summary.extracted == []  # the caches of the first run serve
    assert [v.label for v in summary.plan.variants] == ["seed-0", "seed-1"]
    for seed in (0, 1):
        results = pd.read_parquet(work / "seeds" / f"seed-{seed}" / "results" / "results.parquet")
        assert set(results["seed"]) == {seed} and len(results) == 2
    joint = pd.read_csv(summary.summary_csv)
    assert sorted(joint["seed"].unique()) == [0, 1]


def test_speaker_kfold_over_fewer_speakers_uses_one_fold_each(first_run, synth_root, caplog):
    path, _, _ = first_run
    data = grid(synth_root, path.parent, split={"method": "speaker-kfold", "folds": 6})
    with caplog.at_level(logging.WARNING, logger="ssl_ser.pipelines.plan"):
        plan = run_experiment(experiment_from_dict(data), dry_run=True).plan
    assert {(u.folds, u.n_folds) for u in plan.units} == {(len(VOICES), len(VOICES))}
    assert "fewer than 6 folds: using 4 folds" in caplog.text


def test_pooled_cross_corpus_over_two_corpora(synth_root, tmp_path):
    from ssl_ser import corpora
    from ssl_ser.synth import SPEAKER_PATTERN

    full = corpora.load("folder", synth_root, name="synth", speaker_pattern=SPEAKER_PATTERN)
    parts = {}
    for name, voices in (("left", ("m01", "f01")), ("right", ("m02", "f02"))):
        rows = full[full["speaker"].str.split("/").str[1].isin(voices)].copy()
        rows["corpus"] = name
        rows["utt_id"] = name + "/" + rows["utt_id"].str.split("/").str[1]
        rows["speaker"] = name + "/" + rows["speaker"].str.split("/").str[1]
        parts[name] = str(manifest.write(rows, tmp_path / f"{name}.csv"))
    data = grid(
        synth_root,
        tmp_path,
        corpora=parts,
        conditions=["clean"],
        condition_pairs="matched",
        split={"method": "cross-corpus"},
    )
    summary = run_experiment(experiment_from_dict(data))
    assert [u.corpora for u in summary.plan.units] == [("left", "right")]
    results = pd.read_parquet(summary.plan.variants[0].results_dir / "results.parquet")
    pairs = set(zip(results["train_corpus"], results["test_corpus"], strict=True))
    assert pairs == {("left", "right"), ("right", "left")}


def test_probe_command_line_runs_on_a_manifest(first_run, synth_root, tmp_path):
    from ssl_ser import corpora
    from ssl_ser.synth import SPEAKER_PATTERN

    path, _, _ = first_run
    table = corpora.load("folder", synth_root, name="synth", speaker_pattern=SPEAKER_PATTERN)
    listing = manifest.write(table, tmp_path / "synth.csv")
    args = [
        "probe",
        "--model", "mfcc",
        "--corpus", f"synth={listing}",
        "--condition", "clean",
        "--classifiers", "logreg",
        "--folds", "2",
        "--cache-dir", str(path.parent / "cache"),
        "--output", str(tmp_path / "probe"),
        "--no-report",
        "--no-progress",
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "extraction: 0 cache(s) updated, 1 already complete" in result.output
    assert "classify: 2 cell(s) run, 0 already done" in result.output
    assert (tmp_path / "probe" / "results" / "results.parquet").is_file()


def test_the_plan_inspects_each_model_once_whatever_the_grid(first_run, synth_root, monkeypatch):
    from ssl_ser.pipelines import plan as plan_module

    path, _, _ = first_run
    calls = []
    real = plan_module.model_layers

    def counted(model, config, caches):
        calls.append(model)
        return real(model, config, caches)

    monkeypatch.setattr(plan_module, "model_layers", counted)
    data = grid(synth_root, path.parent, seeds=[0, 1, 2])
    plan = run_experiment(experiment_from_dict(data), dry_run=True).plan
    assert len(plan.units) == 3 * len(PAIRS)
    assert calls == ["mfcc"]


def test_the_model_loads_once_for_all_its_conditions(synth_root, tmp_path, monkeypatch):
    from ssl_ser.extract import runner

    loads = []
    load_backbone = runner.load_backbone
    monkeypatch.setattr(runner, "load_backbone", lambda *a: loads.append(a) or load_backbone(*a))
    experiment = experiment_from_dict(grid(synth_root, tmp_path), "grid")
    summary = run_experiment(experiment, source="grid")
    assert [s.condition for s in summary.extracted] == ["clean", "telephone"]
    assert len(loads) == 1


def test_the_tables_are_written_once_per_results_folder(synth_root, tmp_path, monkeypatch):
    from ssl_ser.classify import results

    writes = []
    write_tables = results.write_tables
    monkeypatch.setattr(
        results, "write_tables", lambda *a, **k: writes.append(a) or write_tables(*a, **k)
    )
    experiment = experiment_from_dict(grid(synth_root, tmp_path), "grid")
    summary = run_experiment(experiment, source="grid")
    assert len(summary.sweeps) == 4 and len(writes) == 1  # four sweeps, one folder
    assert all("best layer" in outcome.line for outcome in summary.sweeps)
    again = run_experiment(experiment, source="grid")
    assert again.cells_run == 0 and len(writes) == 1  # nothing new: tables left as they are


@pytest.mark.slow
def test_a_changed_model_folder_is_never_served_its_old_features(synth_root, tmp_path, monkeypatch):
    import shutil

    from ssl_ser.errors import CacheKeyMismatchError
    from ssl_ser.extract import backbones
    from ssl_ser.pipelines.demo import build_model

    model = build_model(tmp_path / "my-model", seed=0)
    fields = {"models": [str(model)], "condition_pairs": "matched"}  # clean and telephone
    experiment = experiment_from_dict(grid(synth_root, tmp_path, **fields), "test")
    run_experiment(experiment, source="test")
    other = build_model(tmp_path / "other", seed=1)
    shutil.copy(other / "model.safetensors", model / "model.safetensors")  # new weights
    hashed = []
    real = backbones.local_fingerprint
    monkeypatch.setattr(backbones, "local_fingerprint", lambda f: hashed.append(f) or real(f))
    plan = run_experiment(experiment, source="test", dry_run=True).plan
    assert len(plan.caches) == 2 and len(hashed) == 1  # the folder is hashed once per plan
    for status in plan.caches:
        assert status.state == "stale"
        assert "model folder changed (revision untrained:" in status.line()
    with pytest.raises(CacheKeyMismatchError, match="revision: stored"):
        run_experiment(experiment, source="test")


@pytest.mark.parametrize(
    ("classify", "placement"),
    [
        ({"dask": "tcp://127.0.0.1:8786"}, ("dask", "tcp://127.0.0.1:8786")),
        ({"dask": "local"}, ("dask", None)),
        (
            {"backend": "dask", "scheduler": "tcp://127.0.0.1:8786"},
            ("dask", "tcp://127.0.0.1:8786"),
        ),
    ],
)
def test_the_classify_backend_reaches_every_sweep(first_run, classify, placement):
    from ssl_ser.pipelines.run import sweep_config

    path, before, _ = first_run
    data = {**yaml.safe_load(path.read_text()), "classify": {"bootstrap": 0, **classify}}
    plan = run_experiment(experiment_from_dict(data), dry_run=True).plan
    configs = [sweep_config(plan.experiment, unit) for unit in plan.units]
    assert {(c.backend, c.scheduler) for c in configs} == {placement}
    default = [sweep_config(before.plan.experiment, unit) for unit in before.plan.units]
    assert {(c.backend, c.scheduler) for c in default} == {("local", None)}


def test_experiment_files_set_rehash_control_mdl_and_the_speaker_target(
    first_run, tmp_path, monkeypatch
):
    from ssl_ser.extract import runner

    path, _, _ = first_run
    calls = []
    real = runner.extract

    @functools.wraps(real)
    def recording(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "extract", recording)
    data = yaml.safe_load(path.read_text())
    data.update(
        output=str(tmp_path / "measures"),
        condition_pairs="matched",
        conditions=["clean"],
        extract={"workers": 0, "rehash": True},
        classify={"bootstrap": 0, "control": True, "mdl": True},
    )
    summary = run_experiment(experiment_from_dict(data))
    # the cache is complete, yet rehash sends it to the extractor to hash every file again
    assert [k["rehash"] for k in calls] == [True]
    assert [(s.condition, s.extracted) for s in summary.extracted] == [("clean", 0)]
    table = pd.read_parquet(next((tmp_path / "measures").rglob("results.parquet")))
    assert sorted(table["target"].unique()) == ["control", "emotion"]
    assert table["mdl_bits"].gt(0).all() and table["compression"].notna().all()
    speaker = {**data, "output": str(tmp_path / "speaker")}
    speaker.update(extract={"workers": 0}, classify={"bootstrap": 0, "target": "speaker"})
    run_experiment(experiment_from_dict(speaker))
    table = pd.read_parquet(next((tmp_path / "speaker").rglob("results.parquet")))
    assert set(table["target"]) == {"speaker"}
    refused = {**speaker, "split": {"method": "loso"}}
    with pytest.raises(ConfigError, match=r"'classify.target'.*speaker needs folds of utterances"):
        experiment_from_dict(refused)
    both = {**speaker, "classify": {"target": "speaker", "control": True}}
    with pytest.raises(ConfigError, match=r"'classify.control'.*no meaning for target: speaker"):
        experiment_from_dict(both)
