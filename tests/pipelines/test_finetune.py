"""Fine-tuning in experiments: the ``finetune`` section, its runs beside the probes, ``--finetune``.

The fine-tune folds of an experiment must be the probes' folds (same names,
same membership digests, same test utterances) and land in the same results
folder, so the report pairs them fold by fold.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from ssl_ser import manifest
from ssl_ser.cli.main import cli
from ssl_ser.errors import ConfigError, UnknownChoiceError
from ssl_ser.finetune.config import FinetuneConfig
from ssl_ser.finetune.settings import FinetuneSettings
from ssl_ser.pipelines.experiment import experiment_from_dict, load_experiment
from ssl_ser.pipelines.run import finetune_settings, run_experiment, sweep_config
from ssl_ser.results import FINETUNE_CLASSIFIER

from .conftest import SENTENCES, VOICES, synth_entry

N_UTTS = len(VOICES) * 4 * SENTENCES
SSL = "facebook/wav2vec2-base"
BASE = {"name": "t", "models": [SSL, "mfcc"], "corpora": {"emodb": "/data/emodb"}}


def write_yaml(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# --- the section's schema ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "error", "named"),
    [
        # unknown keys: the key, where it sits, and the valid keys
        (
            {"epoch": 3},
            UnknownChoiceError,
            ["unknown key 'epoch' in 'finetune'", "epochs, patience"],
        ),
        ({"lr": 1e-4}, UnknownChoiceError, ["unknown key 'lr' in 'finetune'", "learning_rate"]),
        # wrong types: the key, the expected and the found type
        ({"epochs": "3"}, ConfigError, ["'finetune.epochs' in", "an integer; got a string '3'"]),
        ({"epochs": 2.5}, ConfigError, ["'finetune.epochs' in", "an integer; got a number"]),
        ({"learning_rate": "fast"}, ConfigError, ["'finetune.learning_rate' in", "a number"]),
        ({"weighted_layers": "yes"}, ConfigError, ["'finetune.weighted_layers'", "true or false"]),
        ({"models": {"a": 1}}, ConfigError, ["'finetune.models' in", "a list of strings"]),
        ("yes", ConfigError, ["'finetune' in", "a table of fine-tune settings (or true"]),
        # values outside their choices: the value, the key and the valid values
        ({"head": "deep"}, UnknownChoiceError, ["'deep' in 'finetune.head'", "linear, mlp"]),
        (
            {"freeze": "all"},
            UnknownChoiceError,
            ["'all' in 'finetune.freeze'", "feature-encoder, base, none, top"],
        ),
        ({"adapter": "ia3"}, UnknownChoiceError, ["'ia3' in 'finetune.adapter'", "none, lora"]),
        ({"dtype": "int8"}, UnknownChoiceError, ["'int8' in 'finetune.dtype'", "bfloat16"]),
        ({"long_audio": "cut"}, UnknownChoiceError, ["'finetune.long_audio'", "window"]),
        # models: SSL models of the experiment only
        ({"models": ["mfcc"]}, UnknownChoiceError, ["'mfcc' in 'finetune.models'", SSL]),
        ({"models": ["other/model"]}, UnknownChoiceError, ["'finetune.models'", SSL]),
        ({"models": []}, ConfigError, ["'finetune.models' in", "at least one model"]),
        ({"models": [SSL, SSL]}, ConfigError, ["'finetune.models' in", "lists a value twice"]),
        # settings checked together, or against their range, name the section and the setting
        ({"freeze": "top"}, ConfigError, ["'finetune' in", "top_layers >= 1"]),
        ({"top_layers": 2}, ConfigError, ["'finetune' in", "top_layers=2 applies to freeze"]),
        ({"epochs": 0}, ConfigError, ["'finetune' in", "epochs 0 must be positive"]),
        ({"val_fraction": 1.5}, ConfigError, ["'finetune' in", "val_fraction 1.5"]),
    ],
)
def test_bad_finetune_sections_name_the_key_the_file_and_the_valid_values(
    tmp_path, section, error, named
):
    path = write_yaml(tmp_path, {**BASE, "finetune": section})
    with pytest.raises(error) as raised:
        load_experiment(path)
    message = str(raised.value)
    assert str(path) in message
    for part in named:
        assert part in message


def test_a_finetune_section_needs_an_ssl_model_to_train(tmp_path):
    path = write_yaml(tmp_path, {**BASE, "models": ["mfcc", "egemaps"], "finetune": {}})
    with pytest.raises(ConfigError, match=r"'finetune' in .*exp.yaml: .*all classic baselines"):
        load_experiment(path)


def test_the_section_maps_onto_one_finetune_config_per_ssl_model(tmp_path):
    # PyYAML leaves 1e-5 (no dot) a string; the section reads it as the number it spells
    text = (
        f"name: t\nmodels: [{SSL}, mfcc, /models/hubert]\ncorpora: {{emodb: /data/emodb}}\n"
        "extract: {revision: abc123}\n"
        "finetune:\n  epochs: 3\n  learning_rate: 1e-5\n  head: mlp\n  patience: null\n"
    )
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    assert yaml.safe_load(text)["finetune"]["learning_rate"] == "1e-5"
    experiment = load_experiment(path)
    configs = experiment.finetune_configs()
    assert list(configs) == [SSL, "/models/hubert"], "every SSL model, never a classic baseline"
    expected = FinetuneConfig(
        model=SSL, revision="abc123", epochs=3, learning_rate=1e-5, head="mlp", patience=None
    )
    assert configs[SSL] == expected
    same = experiment_from_dict({**BASE, "finetune": {"models": [SSL]}})
    assert same.finetune_models == (SSL,)
    assert same.finetune_configs()[SSL] == FinetuneConfig(model=SSL)
    assert experiment_from_dict({**BASE, "finetune": True}).finetune == FinetuneSettings()
    for off in (False, None):
        assert experiment_from_dict({**BASE, "finetune": off}).finetune_models == ()
    assert experiment_from_dict(BASE).finetune is None


def test_the_section_round_trips_and_reads_the_same_from_toml(tmp_path):
    data = {**BASE, "finetune": {"models": [SSL], "epochs": 4, "clip": None}}
    experiment = experiment_from_dict(data)
    assert experiment_from_dict(experiment.to_dict()) == experiment
    toml = tmp_path / "exp.toml"
    toml.write_text(
        f'name = "t"\nmodels = ["{SSL}", "mfcc"]\n[corpora]\nemodb = "/data/emodb"\n'
        f'[finetune]\nmodels = ["{SSL}"]\nepochs = 4\n'
    )
    from_toml = load_experiment(toml)
    assert from_toml.finetune == experiment.finetune.model_copy(update={"clip": 1.0})


def test_an_explicit_number_field_still_refuses_other_strings(tmp_path):
    with pytest.raises(ConfigError, match="'extract.batch_seconds' .* must be a number"):
        load_experiment(write_yaml(tmp_path, {**BASE, "extract": {"batch_seconds": "60"}}))
    experiment = load_experiment(
        write_yaml(tmp_path, {**BASE, "extract": {"batch_seconds": "6e1"}})
    )
    assert experiment.extract.batch_seconds == 60.0


# --- runs beside the probes --------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random wav2vec2 (2 layers, width 32) saved to a folder."""
    from ssl_ser.testing.models import save_waveform_model

    return save_waveform_model("wav2vec2-group", tmp_path_factory.mktemp("model") / "w2v")


def tune_grid(root: Path, model: Path, work: Path, **fields) -> dict:
    """The tiny model and mfcc on the synthetic corpus; one fine-tune epoch per fold."""
    return {
        "name": "tune",
        "models": [str(model), "mfcc"],
        "corpora": {"synth": synth_entry(root)},
        "conditions": ["clean", "telephone"],
        "condition_pairs": [["clean", "telephone"]],
        "classifiers": ["logreg"],
        "split": {"method": "speaker-kfold", "folds": 2},
        "cache_dir": str(work / "cache"),
        "output": str(work / "out"),
        "report": False,
        "extract": {"workers": 0, "device": "cpu"},
        "classify": {"bootstrap": 0},
        "finetune": {"epochs": 1, "batch_seconds": 8.0},
        **fields,
    }


@pytest.fixture(scope="module")
def tuned(synth_root, tiny_model, tmp_path_factory):
    """The grid (the tiny model only) run twice: (first run, its results, second run)."""
    work = tmp_path_factory.mktemp("tune")
    path = work / "tune.yaml"
    path.write_text(
        yaml.safe_dump(tune_grid(synth_root, tiny_model, work, models=[str(tiny_model)]))
    )
    experiment = load_experiment(path)
    first = run_experiment(experiment, source=str(path))
    results = pd.read_parquet(first.plan.variants[0].results_dir / "results.parquet")
    again = run_experiment(experiment, source=str(path))
    return first, results, again


def test_the_dry_run_lists_the_finetune_runs_of_the_ssl_models_only(
    synth_root, tiny_model, tmp_path
):
    planned = run_experiment(
        experiment_from_dict(tune_grid(synth_root, tiny_model, tmp_path)), dry_run=True
    )
    assert not (tmp_path / "out").exists(), "a dry run writes nothing"
    plan = planned.plan
    assert [u.model for u in plan.units] == [str(tiny_model), "mfcc"]
    assert [(u.model, u.pair, u.probe.n_folds) for u in plan.finetune_units] == [
        (str(tiny_model), ("clean", "telephone"), 2)
    ]
    assert plan.finetune_units[0].probe is plan.units[0]
    text = "\n".join(planned.lines())
    assert "finetune: 1 run(s), 2 fold(s) planned" in text
    line = f"  {tiny_model.name} on synth, clean -> telephone: 2 fold(s), at most 1 epoch(s)"
    assert line in text


@pytest.mark.slow
def test_finetune_rows_sit_beside_the_probe_rows_on_the_same_folds(tuned, tiny_model):
    first, results, _ = tuned
    assert [(t.folds_run, t.folds_skipped) for t in first.finetunes] == [(2, 0)]
    assert "finetune: 2 fold(s) trained, 0 already done" in first.lines()
    tuned_rows = results[results["classifier"] == FINETUNE_CLASSIFIER]
    probe_rows = results[results["classifier"] == "logreg"]
    assert len(tuned_rows) == 2 and len(probe_rows) > 2
    # the fine-tuned model is named as its probe features name it: one extractor, side by side
    assert set(tuned_rows["extractor"]) == {str(tiny_model)}
    # started from the sweep's logreg probes of the same folds: the layer they chose
    (layer,) = set(tuned_rows["layer"])
    assert layer in set(probe_rows["layer"])
    assert {json.loads(p)["init"] for p in tuned_rows["params"]} == {"probe"}
    for column in ("train_condition", "test_condition", "split", "labels", "seed"):
        assert set(tuned_rows[column]) == set(probe_rows[column]), column
    probe_digests = probe_rows.groupby("fold")["fold_digest"].unique()
    assert all(len(d) == 1 for d in probe_digests), "every probe cell of a fold has one digest"
    assert dict(zip(tuned_rows["fold"], tuned_rows["fold_digest"], strict=True)) == {
        fold: digests[0] for fold, digests in probe_digests.items()
    }
    # the same test utterances, scored on telephone audio, in both
    predictions = pd.read_parquet(first.plan.variants[0].results_dir / "predictions.parquet")
    for fold in ("0", "1"):
        of_fold = predictions[predictions["fold"].astype(str) == fold]
        tested = of_fold.groupby("classifier")["utt_id"].apply(lambda s: frozenset(s))
        assert tested[FINETUNE_CLASSIFIER] == tested["logreg"]
        assert len(tested["logreg"]) == N_UTTS // 2
        assert set(of_fold["condition"]) == {"telephone"}
    for cell in tuned_rows["cell_id"]:
        assert (first.plan.variants[0].results_dir / "models" / cell / "labels.json").is_file()


@pytest.mark.slow
def test_a_rerun_skips_the_finished_finetune_folds(tuned):
    first, results, again = tuned
    assert [(t.folds_run, t.folds_skipped) for t in again.finetunes] == [(0, 2)]
    assert again.cells_run == 0
    rerun = pd.read_parquet(again.plan.variants[0].results_dir / "results.parquet")
    key = ["cell_id"]
    pd.testing.assert_frame_equal(
        rerun.sort_values(key).reset_index(drop=True),
        results.sort_values(key).reset_index(drop=True),
    )


def test_each_variant_finetunes_on_its_own_seed_and_shots(tmp_path, tiny_model):
    """Few-shot with two seeds and two shot counts: four variants, each its own folds."""
    from ssl_ser.synth import SPEAKER_PATTERN, write_corpus

    roots = {}
    for name, chosen in (("left", VOICES[:2]), ("right", VOICES[2:])):
        roots[name] = tmp_path / name
        write_corpus(roots[name], chosen, sentences=1, seed=3)
    corpora = {
        name: {"root": str(root), "reader": "folder", "speaker_pattern": SPEAKER_PATTERN}
        for name, root in roots.items()
    }
    data = tune_grid(
        tmp_path,
        tiny_model,
        tmp_path,
        corpora=corpora,
        conditions=["clean"],
        condition_pairs="matched",
        split={"method": "few-shot", "test": ["right"], "shots": [0, 2], "folds": 2},
        seeds=[0, 1],
    )
    plan = run_experiment(experiment_from_dict(data), dry_run=True).plan
    assert len(plan.variants) == 4 and len(plan.finetune_units) == 4
    for tune in plan.finetune_units:
        settings = finetune_settings(plan, tune)
        probe = sweep_config(plan.experiment, tune.probe)
        assert settings.split == "few-shot" and settings.labels == probe.labels
        assert settings.split_options == probe.split_options
        assert settings.seed == tune.variant.seed
        assert settings.split_options.shots == tune.variant.shots
        assert (settings.train_condition, settings.test_condition) == ("clean", "clean")
        assert tune.variant.results_dir == tune.probe.variant.results_dir


def test_folds_clamped_to_the_speaker_count_are_clamped_for_finetuning_too(
    synth_root, tiny_model, tmp_path
):
    data = tune_grid(synth_root, tiny_model, tmp_path, split={"folds": 6})
    plan = run_experiment(experiment_from_dict(data), dry_run=True).plan
    (tune,) = plan.finetune_units
    assert finetune_settings(plan, tune).split_options.folds == len(VOICES) == tune.probe.folds


# --- ser probe --finetune ----------------------------------------------------------------


def probe_args(listing: Path, model: Path, work: Path, *extra: str) -> list[str]:
    return [
        "probe",
        "--model", str(model),
        "--corpus", f"synth={listing}",
        "--classifiers", "logreg",
        "--folds", "2",
        "--device", "cpu",
        "--workers", "0",
        "--cache-dir", str(work / "cache"),
        "--output", str(work / "probe"),
        "--no-progress",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def listing(synth_root, tmp_path_factory) -> Path:
    from ssl_ser import corpora
    from ssl_ser.synth import SPEAKER_PATTERN

    table = corpora.load("folder", synth_root, name="synth", speaker_pattern=SPEAKER_PATTERN)
    return manifest.write(table, tmp_path_factory.mktemp("listing") / "synth.csv")


def test_probe_finetune_alone_takes_the_default_epochs(listing, tiny_model, tmp_path):
    args = probe_args(listing, tiny_model, tmp_path, "--model", "mfcc", "--finetune", "--dry-run")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    epochs = FinetuneConfig(model="-").epochs
    assert "finetune: 1 run(s), 2 fold(s) planned" in result.output
    assert f"2 fold(s), at most {epochs} epoch(s), head linear" in result.output
    refused = CliRunner().invoke(cli, probe_args(listing, tiny_model, tmp_path, "--finetune", "0"))
    assert refused.exit_code == 1
    assert refused.output == "error: --finetune must be at least 1; got 0\n"
    plain = CliRunner().invoke(cli, probe_args(listing, tiny_model, tmp_path, "--dry-run"))
    assert plain.exit_code == 0 and "finetune:" not in plain.output


@pytest.mark.slow
def test_probe_finetune_adds_a_finetune_row_before_the_report(listing, tiny_model, tmp_path):
    args = probe_args(listing, tiny_model, tmp_path, "--finetune", "1")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "finetune: 2 fold(s) trained, 0 already done" in result.output
    out = tmp_path / "probe"
    results = pd.read_parquet(out / "results" / "results.parquet")
    tuned = results[results["classifier"] == FINETUNE_CLASSIFIER]
    probed = results[results["classifier"] == "logreg"]
    assert sorted(tuned["fold"].astype(str)) == ["0", "1"]
    for fold, digest in zip(tuned["fold"], tuned["fold_digest"], strict=True):
        assert set(probed.loc[probed["fold"] == fold, "fold_digest"]) == {digest}
    report = (out / "report.md").read_text()
    assert "finetune" in report, "the report was written after the fine-tune folds"
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert "finetune: 0 fold(s) trained, 2 already done" in again.output


def test_the_documented_module_entry_runs_the_cli_that_torchrun_launches():
    """``torchrun ... -m ssl_ser.cli.main finetune`` needs the module to run the ``ser`` group."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "ssl_ser.cli.main", "finetune", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Usage: ser finetune [OPTIONS]" in done.stdout


def test_the_shipped_finetune_example_finetunes_its_ssl_model_only():
    example = Path(__file__).parents[2] / "experiments" / "finetune.yaml"
    experiment = load_experiment(example)
    assert experiment.models == (SSL, "egemaps")
    assert experiment.finetune_models == (SSL,)
    assert experiment.finetune_configs()[SSL].learning_rate == 1e-5


def test_a_pipeline_launched_as_several_processes_is_refused(synth_root, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    data = tune_grid(synth_root, tmp_path / "absent-model", tmp_path, models=["mfcc"])
    data.pop("finetune")
    with pytest.raises(ConfigError, match=r"WORLD_SIZE > 1.*-m ssl_ser.cli.main finetune"):
        run_experiment(experiment_from_dict(data), dry_run=True)
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_the_sweeps_reach_the_tables_when_fine_tuning_then_fails(synth_root, tmp_path, monkeypatch):
    from ssl_ser.pipelines import run as run_module
    from ssl_ser.pipelines.plan import make_plan

    data = tune_grid(synth_root, tmp_path, tmp_path, models=["mfcc"], conditions=["clean"])
    data.update(condition_pairs="matched")
    data.pop("finetune")
    plan = make_plan(experiment_from_dict(data))
    run_module.extract_missing(plan)

    def fails(*args, **kwargs):
        raise ConfigError("out of memory")

    monkeypatch.setattr(run_module, "run_finetune_unit", fails)
    with pytest.raises(ConfigError, match="out of memory"):
        run_module.run_variant(plan, plan.units, ["a fine-tune run"])
    results = pd.read_parquet(plan.variants[0].results_dir / "results.parquet")
    assert len(results) == 2 and set(results["classifier"]) == {"logreg"}
