"""FinetuneSettings: one declaration gives `ser finetune` options and the `finetune` section."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

from ssl_ser import audio
from ssl_ser.cli.finetune import finetune
from ssl_ser.cli.main import cli
from ssl_ser.errors import ConfigError, UnknownChoiceError
from ssl_ser.extract import config as extract_config
from ssl_ser.finetune import config as finetune_config
from ssl_ser.finetune.config import FinetuneConfig
from ssl_ser.finetune.settings import FinetuneSettings
from ssl_ser.pipelines.experiment import experiment_from_dict
from ssl_ser.settings import (
    CELL_ID,
    cli_fields,
    file_fields,
    flag_of,
    generated_options,
    option_of,
)

SSL = "facebook/wav2vec2-base"
BASE = {"name": "t", "models": [SSL, "mfcc"], "corpora": {"emodb": "/data/emodb"}}
# FinetuneConfig fields no setting gives: the experiment's models share one sample rate.
FIXED = ("sample_rate",)


def _unknown_key_listing(key: str) -> list[str]:
    """The keys an unknown key in the finetune section is told to pick from."""
    with pytest.raises(UnknownChoiceError) as error:
        experiment_from_dict({**BASE, "finetune": {key: 1}})
    listed = str(error.value).split("expected one of ")[1]
    return [part.strip() for part in listed.split(",")]


def test_the_experiment_section_lists_exactly_the_settings_file_fields():
    file_keys = list(file_fields(FinetuneSettings))
    assert _unknown_key_listing("nonsense") == file_keys
    defaults = experiment_from_dict({**BASE, "finetune": True}).finetune
    assert defaults == FinetuneSettings()
    assert defaults.file_data() == {
        name: FinetuneSettings.model_fields[name].default for name in file_keys
    }
    for cli_only in set(FinetuneSettings.model_fields) - set(file_keys):
        flag = flag_of(FinetuneSettings, cli_only)
        with pytest.raises(
            ConfigError, match=f"^key '{cli_only}' in 'finetune' in .* is for the command line "
            f"only \\({flag}\\); a file takes models, epochs,"
        ):  # fmt: skip
            experiment_from_dict({**BASE, "finetune": {cli_only: None}})


def test_ser_finetune_lists_exactly_the_settings_command_line_fields():
    assert len(generated_options(finetune)) == len(finetune.params), "every option generated"
    generated = {o.name: o for o in generated_options(finetune) if o.setting[0] is FinetuneSettings}
    assert list(generated) == list(cli_fields(FinetuneSettings))
    for name, option in generated.items():
        opt = option_of(FinetuneSettings, name)
        assert option.help == opt.help, name
        choices = opt.choice_list()
        assert (list(option.type.choices) if choices else None) == choices, name
    assert generated["learning_rate"].opts == ["--lr"]
    assert generated["head_learning_rate"].opts == ["--head-lr"]
    assert generated["weighted_layers"].secondary_opts == ["--last-layer"]
    assert generated["model"].required and generated["output"].required
    # the options' defaults are the settings' defaults
    given = finetune.make_context("finetune", ["--model", "m", "--output", "o"]).params
    assert FinetuneSettings.from_cli(given) == FinetuneSettings(model="m", output=Path("o"))
    missing = CliRunner().invoke(cli, ["finetune", "--output", "o"])
    assert missing.exit_code == 2 and "Missing option '--model'" in missing.output


def test_training_settings_are_finetune_configs_fields_with_its_defaults_and_choices():
    config_fields = {f.name: f for f in dataclasses.fields(FinetuneConfig) if f.name not in FIXED}
    for name, config_field in config_fields.items():
        assert name in FinetuneSettings.model_fields, name
        if config_field.default is not dataclasses.MISSING:
            assert FinetuneSettings.model_fields[name].default == config_field.default, name
        # every training setting is recorded in the params of the fold's cell id
        assert option_of(FinetuneSettings, name).enters == CELL_ID, name
    entering = {n for n in FinetuneSettings.model_fields if option_of(FinetuneSettings, n).enters}
    assert entering == {*config_fields, "conditions"}  # (each fold's train/test condition)
    registries = {
        "head": finetune_config.HEADS,
        "freeze": finetune_config.FREEZES,
        "adapter": finetune_config.ADAPTERS,
        "init": finetune_config.INITS,
        "probe_dtype": finetune_config.PROBE_DTYPES,
        "dtype": finetune_config.FINETUNE_DTYPES,
        "long_audio": extract_config.LONG_AUDIO_POLICIES,
        "conditions": audio.CONDITIONS,
    }
    listed = {
        name: tuple(option_of(FinetuneSettings, name).choice_list())
        for name in FinetuneSettings.model_fields
        if option_of(FinetuneSettings, name).choices is not None
    }
    assert listed == registries
    assert FinetuneSettings().config(model="m") == FinetuneConfig(model="m")


def _command(*arguments: str):
    return CliRunner().invoke(cli, ["finetune", "--model", "m", "--output", "o", *arguments])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--head-lr", "-1"], "--head-lr -1.0 must be positive"),
        (["--lr", "0"], "--lr 0.0 must be positive"),
        (["--mask-time-prob", "1"], "--mask-time-prob 1.0 must be in [0, 1)"),
        (["--epochs", "0"], "--epochs 0 must be positive"),
        (["--top-layers", "2"], "--top-layers=2 applies to --freeze 'top' only"),
        (["--freeze", "top"], "--freeze 'top' trains the top K transformer layers: give "),
        (["--adapter", "lora", "--freeze", "none"], "leave --freeze at feature-encoder"),
        (["--head-layer", "-1"], "--head-layer -1 must be >= 0"),
    ],
)
def test_command_line_errors_name_the_flag(arguments, message):
    result = _command(*arguments)
    assert result.exit_code == 1
    assert message in result.output


def test_a_head_from_probes_is_a_probe_initialised_head(corpus_manifest, tmp_path):
    missing = _command("--from-probe", str(tmp_path / "none"))
    assert missing.exit_code == 2 and "does not exist" in missing.output
    result = _command("--from-probe", str(tmp_path), "--head", "mlp")
    assert result.exit_code == 1
    assert "init 'probe' copies a linear probe into the head; --head 'mlp'" in result.output
    settings = FinetuneSettings.from_cli({"model": "m", "from_probe": tmp_path}, head_layer=2)
    assert settings.config() == FinetuneConfig(model="m", init="probe", head_layer=2)
    manifest = tmp_path / "manifest.csv"
    corpus_manifest.to_csv(manifest, index=False)
    empty = ["--from-probe", str(tmp_path), "--manifest", str(manifest)]
    result = _command(*empty)  # refused before any audio is read or model loaded
    assert result.exit_code == 1
    assert f"--from-probe {tmp_path}: holds no results.parquet" in result.output


def test_split_options_are_ser_classifys_with_one_run_per_seed_and_shots():
    from ssl_ser.cli.finetune import run_options

    words = ["--model", "m", "--output", "o", "--split", "few-shot", "--test", "emovo"]
    words += ["--seed", "1", "--seed", "2", "--shots", "5,20"]
    given = finetune.make_context("finetune", words)
    runs = run_options(given.params, FinetuneSettings.from_cli(given.params))
    assert [(r.split_options.seed, r.split_options.shots) for r in runs] == [
        (1, 5),
        (1, 20),
        (2, 5),
        (2, 20),
    ]
    assert {(r.split, r.split_options.test_corpora, r.labels) for r in runs} == {
        ("few-shot", ("emovo",), "basic4")
    }
    # an option the split does not read is refused, naming it, before any file is read
    result = _command("--split", "loso", "--folds", "3")
    assert result.exit_code == 1 and "--folds" in result.output


def test_the_settings_import_no_numerical_library():
    import subprocess
    import sys

    heavy = ("numpy", "pandas", "torch", "transformers")
    code = f"import sys, ssl_ser.finetune.settings; print([m for m in {heavy} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
