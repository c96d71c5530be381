"""Typed settings: every option of every stage declared once, as a field of a pydantic model.

A stage's settings model (extraction, sweep, fine-tune, predict, report) holds,
per field, its type, default, help text, choices (from the registry that owns
them) and what the value enters: the cache key, the cell id, or neither::

    folds: int = setting(5, "Folds (speaker-kfold, few-shot).", enters=CELL_ID, minimum=2)

(a field with its own validator keeps the long form ``Annotated[int, Opt(...)]``).
From that one declaration come

- the command line: :func:`options` generates a command's click options;
  :meth:`Settings.from_cli` turns the parsed values into the model, and its
  errors name the flag (``--folds``);
- the experiment file: a section *is* the model; :meth:`Settings.from_file`
  validates a parsed table, and its errors name the key and the file
  (``'split.folds' in experiments/x.yaml``).

Values are strict (no ``"5"`` for an integer, no ``1`` for a boolean). A tuple
field also takes a list, one comma-separated string (strings) or one number
(numbers); a number field takes a string in exponent form (``1e-5``), which YAML
1.1 parsers leave a string. Fields with their own grammar (layers, label sets,
``NAME=ROOT``) are parsed once, by their field's validator (see
:mod:`ssl_ser.classify.settings`).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import click
import pydantic
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ssl_ser.errors import ConfigError, SerError, UnknownChoiceError

T = TypeVar("T", bound="Settings")
# A number in exponent form without a dot (1e-5), which YAML 1.1 parsers leave a string.
EXPONENT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")
UNKNOWN_KEY = ("unexpected_keyword_argument", "extra_forbidden")
CACHE_KEY = "cache key"
CELL_ID = "cell id"
Choices = Iterable[str] | Callable[[], Iterable[str]]


@dataclass(frozen=True)
class Opt:
    """What a settings field is to its users: its help, flag, choices and what it enters.

    Attributes:
        help: the option's help text (also the experiment key's documentation).
        choices: the valid values, or a function returning them from the registry
            that owns them (checked for every element of a tuple).
        enters: :data:`CACHE_KEY`, :data:`CELL_ID`, or None (speed or output only).
        flag: the command-line spelling; default ``--`` and the name with dashes. A
            boolean's may name its false spelling too (``--weighted-layers/--last-layer``).
        negatable: a boolean spelled ``--x/--no-x`` (always so when it defaults to true).
        multiple: a tuple given by repeating the option, not as one comma list.
        metavar: how the value reads in ``--help``.
        required: the command line must give it (files and code may leave it out).
        cli: whether commands take it (False: experiment files only).
        file: whether experiment files take it (False: command line only).
        aliases: more command-line spellings of the option (``-o`` beside ``--output``).
        click_type: the command line's own, stricter type (``click.Path(exists=True)``).
        minimum: the smallest valid number (None: no bound).
        above: numbers must be greater than this (None: no bound).
        hidden: a deprecated spelling: still taken, but left out of ``--help``.
        flag_value: the value an option given without its value takes (``--finetune``
            alone); None: the option needs its value.
        count: an integer counted from repeats of a valueless flag (``-vv``).
    """

    help: str
    choices: Choices | None = None
    enters: str | None = None
    flag: str | None = None
    negatable: bool = False
    multiple: bool = False
    metavar: str | None = None
    required: bool = False
    cli: bool = True
    file: bool = True
    aliases: tuple[str, ...] = ()
    click_type: Any = None
    count: bool = False
    minimum: float | None = None
    above: float | None = None
    hidden: bool = False
    flag_value: Any = None

    def check_bounds(self, value: object) -> None:
        """Refuse a number below :attr:`minimum` or not above :attr:`above` (None passes)."""
        if not isinstance(value, int | float) or isinstance(value, bool):
            return
        if self.minimum is not None and value < self.minimum:
            raise PydanticCustomError(
                "bound", "below minimum", {"value": value, "text": f"at least {self.minimum:g}"}
            )
        if self.above is not None and not value > self.above:
            text = "positive" if self.above == 0 else f"above {self.above:g}"
            raise PydanticCustomError("bound", "not above", {"value": value, "text": text})

    def choice_list(self) -> list[str] | None:
        """The valid values (resolved from the registry now), or None for free values."""
        if self.choices is None:
            return None
        return list(self.choices() if callable(self.choices) else self.choices)


PLAIN = Opt(help="")  # what a field declared without an Opt is to users


def setting(default: Any, help: str, **declared: Any) -> Any:
    """A settings field: its default, and the :class:`Opt` that says what it is to users.

    ``folds: int = setting(5, "Speaker folds.", minimum=2)`` reads as a dataclass
    field; pydantic keeps the :class:`Opt` in the field's metadata.
    """
    info = pydantic.Field(default)
    info.metadata.append(Opt(help, **declared))
    return info


@dataclass(frozen=True)
class Where:
    """The position of a value: the file it came from and the keys leading to it."""

    source: str
    keys: tuple[str, ...] = ()

    def child(self, key: object) -> Where:
        """The position of `key` inside this value (a subclass stays itself)."""
        return dataclasses.replace(self, keys=(*self.keys, str(key)))

    def __str__(self) -> str:
        if not self.keys:
            return self.source
        return f"{'.'.join(self.keys)!r} in {self.source}"


class Settings(BaseModel):
    """Base of every stage's settings: frozen, unknown keys refused, scalars strict."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)
    section: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _loosen(cls, data: Any, info: ValidationInfo) -> Any:
        """Lists as tuples, comma strings as string tuples, exponent strings as numbers.

        A file may not set command-line-only fields (``shard``...): refused as unknown keys.
        """
        if not isinstance(data, Mapping):
            return data
        where = (info.context or {}).get("where")
        if where is not None:
            cls._refuse_cli_only(data, where)
        loosened = dict(data)
        for name, value in data.items():
            field = cls.model_fields.get(str(name))
            if field is not None:
                loosened[name] = _loosen_value(bare(field.annotation), value)
        return loosened

    @classmethod
    def _refuse_cli_only(cls, data: Mapping[str, Any], where: Where) -> None:
        """Refuse a key only the command line takes, naming its flag and the file's keys."""
        file_keys = file_fields(cls)
        for key in data:
            if key in cls.model_fields and key not in file_keys:
                place = where.child(cls.section) if cls.section else where
                raise ConfigError(
                    f"key {key!r} in {place} is for the command line only "
                    f"({flag_of(cls, str(key))}); a file takes {', '.join(file_keys)}"
                )

    @field_validator("*", mode="after")
    @classmethod
    def _in_choices(cls, value: Any, info: ValidationInfo) -> Any:
        """Refuse a value (or any element of a tuple) outside its field's choices."""
        opt = option_of(cls, str(info.field_name)) or PLAIN
        valid = opt.choice_list()
        for item in value if isinstance(value, tuple) else (value,):
            opt.check_bounds(item)
            if valid is not None and item is not None and item not in valid:
                raise PydanticCustomError(
                    "choice", "unknown value {value!r}", {"value": item, "choices": valid}
                )
        return value

    @classmethod
    def place(cls, info: ValidationInfo) -> str:
        """Where the value a validator sees sits: its key and file, or its flag."""
        name = str(info.field_name)
        where = (info.context or {}).get("where")
        return str(where.child(name)) if where is not None else flag_of(cls, name)

    @classmethod
    def from_file(cls: type[T], data: object, where: Where) -> T:
        """The settings of an experiment-file table; errors name the key and the file.

        Raises:
            ConfigError: not a table, a missing key, or a value of the wrong type.
            UnknownChoiceError: an unknown key, or a value outside a field's choices.
        """
        try:
            return cls.model_validate(data, context={"where": where})
        except pydantic.ValidationError as error:
            raise located_error(cls, error, lambda loc: str(_at(where, loc))) from None

    @classmethod
    def from_cli(cls: type[T], values: Mapping[str, Any], **fixed: Any) -> T:
        """The settings of a command's parsed options (`fixed` adds values set in code).

        Only the model's own fields are read from `values`, so one command may
        take the options of several models. Errors name the flag.

        Raises:
            ConfigError, UnknownChoiceError: naming the flag and the bad value.
        """
        data = {k: v for k, v in values.items() if k in cls.model_fields} | fixed
        try:
            return cls.model_validate(data, context={"cli": True})
        except pydantic.ValidationError as error:
            raise located_error(cls, error, lambda loc: _flag_of(cls, loc)) from None

    def file_data(self) -> dict[str, Any]:
        """The values an experiment file may hold (command-line-only fields left out)."""
        data = {}
        for name in file_fields(type(self)):
            value = getattr(self, name)
            data[name] = value.file_data() if isinstance(value, Settings) else value
        return data

    def fields_of(self, target: Callable[..., Any], **extra: Any) -> dict[str, Any]:
        """This model's values for the keyword parameters `target` takes, plus `extra`.

        One generic hand-over from settings to a stage's function or config class,
        in place of copying field by field.
        """
        names = accepted_names(target)
        values = {name: getattr(self, name) for name in type(self).model_fields if name in names}
        return values | extra


def invalid(value: object, text: str) -> PydanticCustomError:
    """A validator's refusal of `value`; the message names the place: "... must be `text`"."""
    return PydanticCustomError("invalid", "invalid value", {"value": value, "text": text})


def existing_paths(paths: tuple[str, ...]) -> tuple[str, ...]:
    """Refuse a path that does not exist, before a command reads it (an :class:`AfterValidator`)."""
    for path in paths:
        if not Path(path).exists():
            raise invalid(path, "an existing file")
    return paths


ExistingPaths = AfterValidator(existing_paths)


def registry_choices(module: str, name: str) -> Callable[[], tuple[str, ...]]:
    """The choice list `name` of `module`, looked up when first needed (imports stay light)."""

    def choices() -> tuple[str, ...]:
        import importlib

        return tuple(getattr(importlib.import_module(module), name))

    return choices


def accepted_names(target: Callable[..., Any]) -> set[str]:
    """The keyword names a dataclass or function accepts."""
    if dataclasses.is_dataclass(target):
        return {f.name for f in dataclasses.fields(target) if f.init}
    import inspect

    return set(inspect.signature(target).parameters)


def option_of(model: type[BaseModel], name: str) -> Opt | None:
    """The :class:`Opt` a field of `model` was declared with (None for a plain field)."""
    info = model.model_fields.get(name)
    if info is None:
        return None
    return next((m for m in info.metadata if isinstance(m, Opt)), None)


def flag_of(model: type[BaseModel], name: str) -> str:
    """The command-line spelling of field `name`."""
    opt = option_of(model, name)
    if opt is not None and opt.flag:
        return opt.flag.split("/")[0]
    return "--" + name.replace("_", "-")


def _flag_of(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    return flag_of(model, str(loc[0])) if loc else model.__name__


def _at(where: Where, loc: tuple[int | str, ...]) -> Where:
    return functools.reduce(Where.child, loc, where)


# --- values ---------------------------------------------------------------------------------


def bare(hint: Any) -> Any:
    """`hint` without Annotated metadata and without ``| None``."""
    while typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        real = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(real) == 1:
            return bare(real[0])
    return hint


def _loosen_value(hint: Any, value: Any) -> Any:
    """`value` in the form a strict field of type `hint` accepts (see the module docstring)."""
    if typing.get_origin(hint) is tuple and typing.get_args(hint)[-1] is Ellipsis:
        element = bare(typing.get_args(hint)[0])
        if isinstance(value, str) and element is str:
            return tuple(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, str) and element in (int, float):
            parts = (part.strip() for part in value.split(","))
            return tuple(_number(part, element) for part in parts if part)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and element in (int, float):
            return (value,)
        if isinstance(value, list):
            return tuple(_loosen_value(element, item) for item in value)
        return value
    if hint is float and isinstance(value, str) and EXPONENT.match(value.strip()):
        return float(value)
    if hint is Path and isinstance(value, str):
        return Path(value)
    return value


def _number(text: str, kind: type) -> Any:
    """`text` as an int or float, or left a string (then refused with the field's type)."""
    try:
        return kind(text) if kind is int else float(text)
    except ValueError:
        return text


def type_name(value: object) -> str:
    """How a parsed value's type reads in a message (YAML/TOML words, not Python's)."""
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        tuple: "a list",
        dict: "a table",
        type(None): "nothing (null)",
    }
    return names.get(type(value), type(value).__name__)


def wrong_type(value: object, expected: str, where: object) -> ConfigError:
    """The error for a value of the wrong type."""
    return ConfigError(f"{where} must be {expected}; got {type_name(value)} {value!r}")


def check_choices(value: object, choices: Iterable[str], where: object) -> None:
    """Refuse a value (or any element of a tuple value) outside `choices`."""
    choices = list(choices)
    for item in value if isinstance(value, tuple) else (value,):
        if item is not None and item not in choices:
            raise UnknownChoiceError("value", item, choices, where=str(where))


def located_error(
    model: type[BaseModel], error: pydantic.ValidationError, name: Callable[[tuple], str]
) -> SerError:
    """Pydantic's first error (unknown keys first) as the project's error, naming its place.

    Args:
        model: the model validated.
        error: pydantic's error.
        name: how a location (a tuple of keys) reads: a flag or a key in a file.
    """
    errors = error.errors()
    first = next((e for e in errors if e["type"] in UNKNOWN_KEY), errors[0])
    loc, kind, ctx = first["loc"], first["type"], first.get("ctx") or {}
    if kind == "value_error" and isinstance(ctx.get("error"), SerError):
        return ctx["error"]  # a parser's own, already located
    if kind in UNKNOWN_KEY:
        return UnknownChoiceError("key", loc[-1], _keys(_hint_at(model, loc[:-1])), name(loc[:-1]))
    if kind == "missing":
        return ConfigError(f"missing required key {loc[-1]!r} in {name(loc[:-1])}")
    if kind == "choice":
        return UnknownChoiceError("value", ctx["value"], ctx["choices"], where=name(loc))
    if kind in ("invalid", "bound"):
        return ConfigError(f"{name(loc)} must be {ctx['text']}; got {ctx['value']!r}")
    return wrong_type(first["input"], _expected(_hint_at(model, loc)), name(loc))


def _keys(hint: Any) -> list[str]:
    """The keys an experiment file may give a table of type `hint`."""
    if isinstance(hint, type) and issubclass(hint, Settings):
        return file_fields(hint)
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return list(hint.model_fields)
    return []


def _hint_at(model: type, loc: tuple[int | str, ...]) -> Any:
    """The type hint of the value at `loc` inside `model`."""
    hint: Any = model
    for part in loc:
        hint = bare(hint)
        if isinstance(hint, type) and issubclass(hint, BaseModel):
            info = hint.model_fields.get(str(part))
            hint = info.annotation if info is not None else Any
        elif typing.get_origin(hint) is tuple:
            hint = typing.get_args(hint)[0]
        else:
            return Any
    return bare(hint)


def _expected(hint: Any) -> str:
    """What a value of type `hint` must be, in the words of a message."""
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return "a table of keys"
    if hint is dict or typing.get_origin(hint) is dict:
        return "a table of keys"
    if typing.get_origin(hint) is tuple:
        element = bare(typing.get_args(hint)[0])
        names = {str: "strings", int: "integers", float: "numbers"}
        return f"a list of {names.get(element, 'values')}"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, "a valid value")


# --- the command line -----------------------------------------------------------------------


class SettingOption(click.Option):
    """A click option generated from a settings field; `setting` says which."""

    def __init__(self, *args: Any, setting: tuple[type[Settings], str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.setting = setting


def cli_fields(model: type[Settings]) -> list[str]:
    """The fields of `model` that commands take, in declaration order."""
    return [name for name in model.model_fields if (option_of(model, name) or PLAIN).cli]


def file_fields(model: type[Settings]) -> list[str]:
    """The fields of `model` that experiment files take, in declaration order."""
    return [name for name in model.model_fields if (option_of(model, name) or PLAIN).file]


def options(
    model: type[Settings], *, only: Iterable[str] | None = None, exclude: Iterable[str] = ()
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator adding a click option for each command-line field of `model`.

    Args:
        model: the settings model.
        only: these fields only (in this order); default every command-line field.
        exclude: fields to leave out.
    """
    names = list(only) if only is not None else cli_fields(model)
    names = [name for name in names if name not in set(exclude)]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for name in reversed(names):
            command = click_option(model, name)(command)
        return command

    return decorate


def click_option(model: type[Settings], name: str) -> Callable[[Callable[..., Any]], Any]:
    """The click option of field `name` of `model`: flag, type, default, choices and help."""
    info = model.model_fields[name]
    opt = option_of(model, name) or PLAIN
    hint = bare(info.annotation)
    flag = opt.flag or flag_of(model, name)
    default = None if info.is_required() else info.get_default(call_default_factory=True)
    kwargs: dict[str, Any] = {
        "help": opt.help,
        "required": info.is_required() or opt.required,
        "metavar": opt.metavar,
        "hidden": opt.hidden,
        "setting": (model, name),
        "cls": SettingOption,
    }
    if hint is bool:
        negatable = opt.negatable or default is True or "/" in flag
        if negatable and "/" not in flag:
            flag = f"{flag}/--no-{flag[2:]}"
        if not negatable:
            kwargs["is_flag"] = True
        kwargs.update(default=bool(default), show_default=negatable)
        return click.option(flag, *opt.aliases, name, **kwargs)
    kwargs.update(cli_type(opt, hint, default))
    if kwargs["required"]:
        del kwargs["default"]  # with a default, click takes a missing option as given
    return click.option(flag, *opt.aliases, name, **kwargs)


def cli_type(opt: Opt, hint: Any, default: Any) -> dict[str, Any]:
    """The click type, default and repetition of a non-boolean field (`hint`: its bare type)."""
    choices = opt.choice_list()
    shown = default not in (None, (), {}, "")
    tuple_hint = typing.get_origin(hint) is tuple
    if opt.multiple:  # a tuple, or a value its validator builds from repeated strings
        element = bare(typing.get_args(hint)[0]) if tuple_hint else str
        kind = opt.click_type or (click.Choice(choices) if choices else _scalar_type(element))
        repeated = default if isinstance(default, tuple) else ()
        return {"type": kind, "multiple": True, "default": repeated, "show_default": shown}
    if tuple_hint:
        text = None if default is None else ",".join(str(v) for v in default)
        return {"type": str, "default": text, "show_default": shown}
    if opt.count:
        return {"count": True, "default": default}
    kind = opt.click_type or (click.Choice(choices) if choices else _scalar_type(hint))
    typed = {"type": kind, "default": default, "show_default": shown}
    if opt.flag_value is not None:
        typed.update(is_flag=False, flag_value=opt.flag_value)
    return typed


def _scalar_type(hint: Any) -> Any:
    if hint is Path:
        return click.Path(path_type=Path)
    if hint in (int, float, str):
        return hint
    return str  # a field with its own grammar: its validator reads the text


class Feedback(Settings):
    """What a command shows while it works (every long-running command takes these)."""

    progress: bool = setting(
        True, "Show progress bars with a rate (on stderr).", negatable=True, file=False
    )


class Logging(Settings):
    """How much the toolkit logs (the ``ser`` group's own option)."""

    verbose: int = setting(
        0, "More log output (-v info, -vv debug).", aliases=("-v",), count=True, file=False
    )


def generated_options(command: click.Command) -> list[SettingOption]:
    """The options of `command` that a settings field generated."""
    return [p for p in command.params if isinstance(p, SettingOption)]
