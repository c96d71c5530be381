"""Experiment-file schema on pydantic v2: frozen dataclasses whose errors name the bad key.

:func:`schema` turns a class with annotated fields into a frozen pydantic
dataclass that forbids unknown keys and checks every scalar strictly (no
``"5"`` for an integer, no ``true`` for a number). A field's
``dataclasses.field`` metadata may add ``convert`` (a function
``(value, where) -> value`` for fields with their own syntax; run only when the
class is read by :func:`build`, not when code builds it) and ``choices`` (valid
values, or a function returning them from the registry that owns them, checked
for every element). Lists arrive as tuples; a tuple of strings also takes one
comma-separated string and a tuple of numbers one number. A number field also
takes a string in exponent form (``1e-5``), which YAML 1.1 parsers such as
PyYAML leave a string.

:func:`build` validates a parsed table and turns pydantic's first error into the
project's own: it says where the bad value sits (``'split.folds' in
experiments/x.yaml``), what was expected and what was found; unknown keys and
values list the valid ones.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import pydantic
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Strict, ValidationInfo
from pydantic_core import PydanticCustomError

from ssl_ser.errors import ConfigError, SerError, UnknownChoiceError

T = TypeVar("T")
# A number in exponent form without a dot (1e-5), which YAML 1.1 parsers leave a string.
EXPONENT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")
Converter = Callable[[Any, "Where"], Any]
# Unknown keys are errors. Strictness is set per scalar (see `_strict`), not here: pydantic's
# strict mode would refuse the tables YAML and TOML give for nested dataclasses.
CONFIG = ConfigDict(extra="forbid")
UNKNOWN_KEY = ("unexpected_keyword_argument", "extra_forbidden")


@dataclass(frozen=True)
class Where:
    """The position of a value: the file it came from and the keys leading to it."""

    source: str
    keys: tuple[str, ...] = ()

    def child(self, key: object) -> Where:
        """The position of `key` inside this value."""
        return Where(self.source, (*self.keys, str(key)))

    def __str__(self) -> str:
        if not self.keys:
            return self.source
        return f"{'.'.join(self.keys)!r} in {self.source}"


def type_name(value: object) -> str:
    """How a parsed value's type reads in a message (YAML/TOML words, not Python's)."""
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
        type(None): "nothing (null)",
    }
    return names.get(type(value), type(value).__name__)


def wrong_type(value: object, expected: str, where: Where) -> ConfigError:
    """The error for a value of the wrong type."""
    return ConfigError(f"{where} must be {expected}; got {type_name(value)} {value!r}")


def check_choices(value: object, choices: Iterable[str], where: Where) -> None:
    """Refuse a value (or any element of a tuple value) outside `choices`."""
    choices = list(choices)
    for item in value if isinstance(value, tuple) else (value,):
        if item is not None and item not in choices:
            raise UnknownChoiceError("value", item, choices, where=str(where))


def schema(cls: type[T]) -> type[T]:
    """`cls` as a frozen pydantic dataclass: strict scalars, metadata converters and choices."""
    hints = typing.get_type_hints(cls, include_extras=True)
    annotations = {}
    for name in cls.__dict__.get("__annotations__", {}):
        default = cls.__dict__.get(name)
        metadata = default.metadata if isinstance(default, dataclasses.Field) else {}
        annotations[name] = _field_type(name, hints[name], metadata)
    cls.__annotations__ = annotations
    return pydantic.dataclasses.dataclass(frozen=True, config=CONFIG)(cls)


def _field_type(name: str, hint: Any, metadata: Mapping[str, Any]) -> Any:
    """The annotation pydantic validates field `name` by."""
    converter: Converter | None = metadata.get("convert")
    if converter is not None:
        validated: Any = Annotated[Any, BeforeValidator(_run_converter(converter))]
    else:
        validated = _strict(hint)
    choices = metadata.get("choices")
    if choices is not None:
        validated = Annotated[validated, AfterValidator(_in_choices(choices))]
    return validated


def _run_converter(converter: Converter) -> Callable[[Any, ValidationInfo], Any]:
    """A validator calling `converter` with the value's position (read from :func:`build`)."""

    def validate(value: Any, info: ValidationInfo) -> Any:
        if not info.context or info.field_name is None:
            return value  # built in code from already converted values
        return converter(value, info.context["where"].child(info.field_name))

    return validate


def _in_choices(choices: Iterable[str] | Callable[[], Iterable[str]]) -> Callable[[Any], Any]:
    """A validator refusing a value (or an element of a tuple) outside `choices`."""

    def validate(value: Any) -> Any:
        valid = list(choices() if callable(choices) else choices)
        for item in value if isinstance(value, tuple) else (value,):
            if item is not None and item not in valid:
                raise PydanticCustomError(
                    "choice", "unknown value {value!r}", {"value": item, "choices": valid}
                )
        return value

    return validate


def _strict(hint: Any) -> Any:
    """`hint` with strict scalars, exponent strings as numbers and lists as tuples."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = tuple(_strict(option) for option in typing.get_args(hint))
        return functools.reduce(lambda a, b: a | b, options)  # type: ignore[no-any-return]
    if origin is tuple:
        element = typing.get_args(hint)[0]
        return Annotated[tuple[_strict(element), ...], BeforeValidator(_listed(element))]
    if hint is float:
        return Annotated[float, Strict(), BeforeValidator(_exponent)]
    if hint in (bool, int, str):
        return Annotated[hint, Strict()]
    return hint


def _exponent(value: Any) -> Any:
    """A string in exponent form as the number it spells (YAML 1.1 reads 1e-5 as a string)."""
    if isinstance(value, str) and EXPONENT.match(value.strip()):
        return float(value)
    return value


def _listed(element: Any) -> Callable[[Any], Any]:
    """A validator reading a comma string (strings) or one number (numbers) as a list."""

    def validate(value: Any) -> Any:
        if isinstance(value, str) and element is str:
            return [part.strip() for part in value.split(",") if part.strip()]
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and element is not str:
            return [value]
        return value

    return validate


@functools.cache
def _adapter(cls: type) -> pydantic.TypeAdapter:
    return pydantic.TypeAdapter(cls)


def build(cls: type[T], data: object, where: Where) -> T:
    """An instance of schema class `cls` from a parsed table, every field converted and checked.

    Raises:
        ConfigError: `data` is not a table, a required key is missing, or a value
            has the wrong type.
        UnknownChoiceError: an unknown key, or a value outside a field's choices.
    """
    try:
        return _adapter(cls).validate_python(data, context={"where": where})
    except pydantic.ValidationError as error:
        raise located_error(cls, error, where) from None


def located_error(cls: type, error: pydantic.ValidationError, where: Where) -> SerError:
    """Pydantic's first error (unknown keys first) as the project's error, naming its key."""
    errors = error.errors()
    first = next((e for e in errors if e["type"] in UNKNOWN_KEY), errors[0])
    loc, kind, ctx = first["loc"], first["type"], first.get("ctx") or {}
    position = functools.reduce(Where.child, loc, where)
    parent = functools.reduce(Where.child, loc[:-1], where)
    if kind == "value_error" and isinstance(ctx.get("error"), SerError):
        return ctx["error"]  # a converter's own, already located
    if kind in UNKNOWN_KEY:
        return UnknownChoiceError("key", loc[-1], _keys(_hint_at(cls, loc[:-1])), str(parent))
    if kind == "missing":
        return ConfigError(f"missing required key {loc[-1]!r} in {parent}")
    if kind == "choice":
        return UnknownChoiceError("value", ctx["value"], ctx["choices"], where=str(position))
    return wrong_type(first["input"], _expected(_hint_at(cls, loc)), position)


def _keys(cls: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


def _bare(hint: Any) -> Any:
    """`hint` without Annotated metadata and without ``| None``."""
    while typing.get_origin(hint) is Annotated:
        hint = typing.get_args(hint)[0]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        real = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(real) == 1:
            return _bare(real[0])
    return hint


def _hint_at(cls: type, loc: tuple[int | str, ...]) -> Any:
    """The type hint of the value at `loc` inside schema class `cls`."""
    hint: Any = cls
    for part in loc:
        hint = _bare(hint)
        if dataclasses.is_dataclass(hint):
            hint = typing.get_type_hints(hint, include_extras=True).get(str(part), Any)
        elif typing.get_origin(hint) is tuple:
            hint = typing.get_args(hint)[0]
        else:
            return Any
    return _bare(hint)


def _expected(hint: Any) -> str:
    """What a value of type `hint` must be, in the words of a message."""
    if dataclasses.is_dataclass(hint) or hint is dict or typing.get_origin(hint) is dict:
        return "a table of keys"
    if typing.get_origin(hint) is tuple:
        element = _bare(typing.get_args(hint)[0])
        names = {str: "strings", int: "integers", float: "numbers"}
        return f"a list of {names.get(element, 'values')}"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, "a valid value")
