"""Every option of predict, export, report, compare, cache, prepare, bench-inference, demo.

Each comes from one settings field; options two commands share come from the same field.
"""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from ssl_ser.cli.main import cli
from ssl_ser.corpora.settings import ReaderSettings
from ssl_ser.errors import ConfigError
from ssl_ser.extract.settings import ExtractSettings
from ssl_ser.predict.settings import BenchSettings
from ssl_ser.report.settings import ReportSettings
from ssl_ser.settings import SettingOption, Where

COMMANDS = ("predict", "export", "report", "compare", "cache", "prepare", "bench-inference", "demo")


def _commands() -> list[tuple[str, click.Command]]:
    """Each command (and each subcommand of a group) by its name."""
    found = []
    for name in COMMANDS:
        command = cli.get_command(click.Context(cli), name)
        if isinstance(command, click.Group):
            found += [(f"{name} {sub}", command.commands[sub]) for sub in command.commands]
        else:
            found.append((name, command))
    return found


@pytest.mark.parametrize(("name", "command"), _commands(), ids=lambda value: str(value))
def test_every_option_is_generated_from_a_settings_field(name, command) -> None:
    options = [p for p in command.params if isinstance(p, click.Option)]
    written = [p.name for p in options if not isinstance(p, SettingOption)]
    assert written == [], f"ser {name}: hand-written options {written}"


def _setting(command: str, option: str) -> tuple[type, str]:
    (found,) = [p for p in dict(_commands())[command].params if p.name == option]
    return found.setting


def test_shared_options_come_from_one_field() -> None:
    for option in ("bootstrap", "seed"):
        assert _setting("report", option) == _setting("compare", option) == (ReportSettings, option)
    assert _setting("predict", "device") == _setting("bench-inference", "device")
    assert _setting("predict", "device") == (ExtractSettings, "device")
    assert _setting("bench-inference", "whisper_trim") == (ExtractSettings, "whisper_trim")
    assert _setting("prepare", "telephone_source") == (ExtractSettings, "telephone_source")


def test_bench_defaults_are_the_timing_modules() -> None:
    from ssl_ser.predict import timing

    defaults = BenchSettings(target="m")
    assert defaults.durations == timing.DEFAULT_DURATIONS
    assert (defaults.input_rate, defaults.repeats, defaults.warmup) == (
        timing.DEFAULT_INPUT_RATE,
        timing.DEFAULT_REPEATS,
        timing.DEFAULT_WARMUP,
    )


def test_reader_mapping_is_parsed_once_from_words_or_taken_as_a_table() -> None:
    reader = ReaderSettings.from_cli({"mapping": ("Wut = angry", "Freude=happy")})
    assert reader.mapping == {"Wut": "angry", "Freude": "happy"}
    assert reader.given() == {"mapping": {"Wut": "angry", "Freude": "happy"}}
    table = ReaderSettings.from_file({"mapping": {"W": "angry"}}, Where("x.yaml", ("emodb",)))
    assert table.mapping == {"W": "angry"}
    with pytest.raises(ConfigError, match=r"^--map 'Wut' is not RAW=EMOTION$"):
        ReaderSettings.from_cli({"mapping": ("Wut",)})
    with pytest.raises(ConfigError, match=r"^'emodb.mapping' in x.yaml 'W' is not RAW=EMOTION$"):
        ReaderSettings.from_file({"mapping": ["W"]}, Where("x.yaml", ("emodb",)))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compare", "r", "--bootstrap", "0"], "--bootstrap 0: a comparison needs at least 1"),
        (["report", "r", "--bootstrap", "-1"], "--bootstrap must be at least 0; got -1"),
        (["predict", "r", "a.wav", "--workers", "-1"], "--workers must be at least 0; got -1"),
        (["predict", "r", "a.wav", "--batch-seconds", "0"], "--batch-seconds must be positive"),
        (["bench-inference", "--model", "m", "--threads", "0"], "--threads must be at least 1"),
    ],
)
def test_bad_values_are_one_line_naming_the_flag(tmp_path, args, message) -> None:
    args = [str(tmp_path) if arg == "r" else arg for arg in args]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"error: {message}")


def _every_command() -> list[tuple[str, click.Command]]:
    """Every command of ``ser`` (each subcommand of a group by its full name)."""
    found = []
    for name in cli.list_commands(click.Context(cli)):
        command = cli.get_command(click.Context(cli), name)
        subs = command.commands.items() if isinstance(command, click.Group) else [("", command)]
        found += [(f"{name} {sub}".strip(), each) for sub, each in subs]
    return found


def test_every_visible_option_says_what_it_does() -> None:
    """Help text beyond the default (ser predict --telephone-source had none)."""
    for name, command in _every_command():
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                text = (param.help or "").strip()
                assert text and not text.startswith("["), f"ser {name} {param.opts[0]}"


def test_ser_probe_lists_what_it_sweeps_first() -> None:
    command = cli.get_command(click.Context(cli), "probe")
    flags = [p.opts[0] for p in command.params if isinstance(p, click.Option)]
    assert flags[:4] == ["--model", "--corpus", "--condition", "--classifiers"]
