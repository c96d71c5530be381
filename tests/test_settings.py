"""The settings framework: one field gives the option, the file key and the typed value."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import click
import pytest
from click.testing import CliRunner
from pydantic import field_validator

from ssl_ser.errors import ConfigError, UnknownChoiceError
from ssl_ser.settings import CELL_ID, Opt, Settings, Where, generated_options, options


class Toy(Settings):
    folds: Annotated[int, Opt("Speaker folds.", enters=CELL_ID)] = 5
    rate: Annotated[float, Opt("Learning rate.")] = 1e-3
    names: Annotated[tuple[str, ...], Opt("Names.", choices=("a", "b", "c"))] = ("a",)
    shots: Annotated[tuple[int, ...], Opt("Shots.")] = (10,)
    kind: Annotated[str, Opt("Kind.", choices=lambda: ("x", "y"))] = "x"
    fast: Annotated[bool, Opt("Go fast.")] = False
    keep: Annotated[bool, Opt("Keep.")] = True
    where: Annotated[str | None, Opt("Where.", flag="--at")] = None


def _command():
    seen = {}

    @click.command()
    @options(Toy)
    def command(**values):
        seen["settings"] = Toy.from_cli(values)

    return command, seen


def test_options_are_generated_with_the_fields_default_choices_and_help():
    command, _ = _command()
    by_name = {o.name: o for o in generated_options(command)}
    assert set(by_name) == set(Toy.model_fields)
    assert by_name["folds"].default == 5 and by_name["folds"].help == "Speaker folds."
    assert list(by_name["kind"].type.choices) == ["x", "y"]
    assert by_name["names"].default == "a"
    assert by_name["keep"].secondary_opts == ["--no-keep"]
    assert by_name["fast"].is_flag and not by_name["fast"].secondary_opts
    assert by_name["where"].opts == ["--at"]


def test_the_command_line_gives_typed_values():
    command, seen = _command()
    result = CliRunner().invoke(
        command, ["--folds", "3", "--names", "a, c", "--shots", "0,10", "--no-keep", "--at", "z"]
    )
    assert result.exit_code == 0, result.output
    settings = seen["settings"]
    assert (settings.folds, settings.names, settings.shots) == (3, ("a", "c"), (0, 10))
    assert (settings.keep, settings.where) == (False, "z")


def test_command_line_errors_name_the_flag():
    command, _ = _command()
    result = CliRunner().invoke(command, ["--names", "a,q"])
    assert isinstance(result.exception, UnknownChoiceError)
    assert "--names" in str(result.exception) and "'q'" in str(result.exception)
    result = CliRunner().invoke(command, ["--shots", "1,x"])
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == "--shots must be an integer; got a string 'x'"


def test_file_tables_are_strict_and_errors_name_the_key_and_file():
    where = Where("x.yaml", ("section",))
    toy = Toy.from_file({"folds": 2, "rate": "1e-5", "names": ["b"], "shots": 5}, where)
    assert (toy.folds, toy.rate, toy.names, toy.shots) == (2, 1e-5, ("b",), (5,))
    with pytest.raises(ConfigError, match=r"'section.folds' in x.yaml must be an integer"):
        Toy.from_file({"folds": "2"}, where)
    with pytest.raises(UnknownChoiceError, match="fold") as error:
        Toy.from_file({"fold": 2}, where)
    assert "folds" in str(error.value)
    with pytest.raises(UnknownChoiceError, match="'y'|'z'"):
        Toy.from_file({"kind": "z"}, where)


class Spelled(Settings):
    model: Annotated[str | None, Opt("Model.", required=True, file=False)] = None
    mixed: Annotated[bool, Opt("Mix.", flag="--mixed/--last")] = True
    models: Annotated[tuple[str, ...], Opt("Models.", cli=False)] = ("a",)


def test_a_field_may_be_required_on_the_command_line_and_spell_its_false_value():
    seen = {}

    @click.command()
    @options(Spelled)
    def command(**values):
        seen["settings"] = Spelled.from_cli(values)

    by_name = {o.name: o for o in generated_options(command)}
    assert set(by_name) == {"model", "mixed"} and by_name["model"].required
    assert (by_name["mixed"].opts, by_name["mixed"].secondary_opts) == (["--mixed"], ["--last"])
    assert CliRunner().invoke(command, ["--last"]).exit_code == 2  # --model missing
    assert CliRunner().invoke(command, ["--model", "m", "--last"]).exit_code == 0
    assert (seen["settings"].model, seen["settings"].mixed) == ("m", False)
    assert Spelled().model is None  # code and files may leave it out


def test_command_line_only_fields_are_refused_in_files_naming_the_flag():
    where = Where("x.yaml", ("section",))
    with pytest.raises(ConfigError) as e:
        Spelled.from_file({"model": "m"}, where)
    assert str(e.value) == (
        "key 'model' in 'section' in x.yaml is for the command line only (--model); "
        "a file takes mixed, models"
    )
    settings = Spelled.from_file({"models": ["b", "c"]}, where)
    assert settings.file_data() == {"mixed": True, "models": ("b", "c")}
    assert Spelled.from_file(settings.file_data(), where) == settings


class Paths(Settings):
    out: Annotated[
        Path,
        Opt("Output.", flag="--output", aliases=("-o",), click_type=click.Path(dir_okay=False)),
    ] = Path("x.csv")
    pairs: Annotated[dict[str, str], Opt("Pairs.", flag="--pair", multiple=True)] = {}

    @field_validator("pairs", mode="before")
    @classmethod
    def _pairs(cls, value, info):
        if not isinstance(value, tuple):
            return value
        if any("=" not in item for item in value):
            raise ConfigError(f"{cls.place(info)} {value!r} is not KEY=VALUE")
        return dict(item.split("=", 1) for item in value)


def test_aliases_a_click_type_and_repeated_words_built_into_a_table(tmp_path):
    seen = {}

    @click.command()
    @options(Paths)
    def command(**values):
        seen["settings"] = Paths.from_cli(values)

    (option,) = [o for o in generated_options(command) if o.name == "out"]
    assert option.opts == ["--output", "-o"] and not option.type.dir_okay
    result = CliRunner().invoke(command, ["-o", "y.csv", "--pair", "a=1", "--pair", "b=2"])
    assert result.exit_code == 0, result.output
    assert seen["settings"].out == Path("y.csv")
    assert seen["settings"].pairs == {"a": "1", "b": "2"}
    result = CliRunner().invoke(command, ["-o", str(tmp_path)])
    assert result.exit_code == 2 and "is a directory" in result.output
    result = CliRunner().invoke(command, ["--pair", "a"])
    assert str(result.exception) == "--pair ('a',) is not KEY=VALUE"
    with pytest.raises(ConfigError, match=r"^'s.pairs' in x.yaml must be a table of keys"):
        Paths.from_file({"pairs": ["a"]}, Where("x.yaml", ("s",)))
    assert Paths.from_file({"pairs": {"a": "1"}}, Where("x.yaml")).pairs == {"a": "1"}


def test_a_hidden_field_is_taken_but_not_listed_in_help():
    class Old(Settings):
        backend: Annotated[str, Opt("Deprecated: use --dask.", hidden=True)] = "local"

    seen = {}

    @click.command()
    @options(Old)
    def command(**values):
        seen["settings"] = Old.from_cli(values)

    assert "--backend" not in CliRunner().invoke(command, ["--help"]).output
    assert CliRunner().invoke(command, ["--backend", "dask"]).exit_code == 0
    assert seen["settings"].backend == "dask"


def test_a_command_line_only_key_in_a_file_names_its_flag_and_the_file(tmp_path) -> None:
    from ssl_ser.pipelines.experiment import experiment_from_dict

    base = {"name": "t", "models": ["mfcc"], "corpora": {"emodb": str(tmp_path)}}
    with pytest.raises(ConfigError) as error:
        experiment_from_dict({**base, "extract": {"shard": "1/2"}}, source="e.yaml")
    assert str(error.value).startswith(
        "key 'shard' in 'extract' in e.yaml is for the command line only (--shard); "
        "a file takes revision, telephone_source, device,"
    )
