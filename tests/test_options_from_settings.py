"""Issue 20: every option of every command and every experiment key is one settings field.

The click options are generated from the fields (name, default, choices and help
agree by construction); these tests walk the whole command tree and the whole
experiment model so that a hand-written option or an undocumented key fails.
"""

from __future__ import annotations

import typing

import click
from pydantic import BaseModel

from ssl_ser.cli.main import cli
from ssl_ser.pipelines.experiment import Experiment
from ssl_ser.settings import SettingOption, Settings, bare, flag_of, option_of


def _commands(command: click.Command, path: tuple[str, ...] = ()):
    """Every (path, command) of the ``ser`` tree, groups included."""
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            yield from _commands(command.get_command(ctx, name), (*path, name))


def _options(command: click.Command) -> list[click.Option]:
    """The options of `command` but click's own --help and --version."""
    builtin = ("help", "version")
    return [p for p in command.params if isinstance(p, click.Option) and p.name not in builtin]


def test_every_option_of_every_command_is_generated_from_one_settings_field():
    listed = []
    for path, command in _commands(cli):
        for param in _options(command):
            where = f"ser {' '.join(path)} {param.opts[0]}"
            assert isinstance(param, SettingOption), f"{where} is hand-written"
            model, name = param.setting
            opt = option_of(model, name)
            assert opt is not None and opt.help, f"{where}: field {name} has no help"
            assert param.name == name, where
            assert flag_of(model, name) in param.opts or opt.hidden, where
            assert param.help == opt.help or opt.hidden, where
            info = model.model_fields[name]
            assert param.required == (info.is_required() or opt.required), where
            if not param.required and not param.multiple and not param.is_flag:
                default = info.get_default(call_default_factory=True)
                if typing.get_origin(bare(info.annotation)) is tuple and default is not None:
                    default = ",".join(str(v) for v in default)
                assert param.default == default, (where, param.default, default)
            choices = opt.choice_list() if opt.choices is not None else None
            if isinstance(param.type, click.Choice):
                assert list(param.type.choices) == choices, where
            listed.append(where)
    assert len(listed) > 150, "the walk reached every command"


def _keys(model: type[BaseModel], prefix: str = ""):
    """Every experiment-file key of `model`, with the model and field that define it."""
    for name in model.model_fields:
        opt = option_of(model, name)
        if opt is not None and not opt.file:
            continue
        yield f"{prefix}{name}", model, name
        section = bare(model.model_fields[name].annotation)
        if isinstance(section, type) and issubclass(section, Settings):
            yield from _keys(section, f"{prefix}{name}.")


def test_every_experiment_key_is_one_documented_settings_field():
    keys = list(_keys(Experiment))
    names = [key for key, _, _ in keys]
    assert len(names) == len(set(names))
    for key, model, name in keys:
        opt = option_of(model, name)
        assert opt is not None and opt.help, f"experiment key {key} has no help"
    for section in ("extract", "split", "classify", "finetune"):
        assert any(key.startswith(f"{section}.") for key in names), section
    assert {"extract.verify_cache", "extract.dask", "classify.dask", "classify.threads"} <= set(
        names
    )
