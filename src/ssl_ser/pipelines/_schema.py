"""Turn parsed YAML/TOML tables into frozen dataclasses, naming every bad key.

A dataclass field's type hint says what a value may be (``str``, ``int``,
``float``, ``bool``, ``X | None``, ``tuple[T, ...]``, ``dict[str, Any]`` or a
nested dataclass); field metadata may add ``convert`` (a function
``(value, where) -> value`` for fields with their own syntax) and ``choices``
(valid values, or a function returning them, checked for every element).
A number field also takes a string in exponent form (``1e-5``), which YAML 1.1
parsers such as PyYAML leave a string. Errors say where the bad value sits
(``'split.folds' in experiments/x.yaml``), what was expected and what was found;
unknown keys list the valid ones.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ssl_ser.errors import ConfigError, UnknownChoiceError

T = TypeVar("T")
# A number in exponent form without a dot (1e-5), which YAML 1.1 parsers leave a string.
EXPONENT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")
Converter = Callable[[Any, "Where"], Any]


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


def build(cls: type[T], data: object, where: Where) -> T:
    """An instance of dataclass `cls` from a parsed table, every field converted and checked.

    Raises:
        ConfigError: `data` is not a table, a required key is missing, or a value
            has the wrong type.
        UnknownChoiceError: an unknown key, or a value outside a field's choices.
    """
    if not isinstance(data, Mapping):
        raise wrong_type(data, "a table of keys", where)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise UnknownChoiceError("key", key, fields, where=str(where))
    hints = typing.get_type_hints(cls)
    values = {}
    for name, field in fields.items():
        if name in data:
            values[name] = convert_field(field, hints[name], data[name], where.child(name))
        elif _required(field):
            raise ConfigError(f"missing required key {name!r} in {where}")
    return cls(**values)


def _required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def convert_field(field: dataclasses.Field, hint: Any, value: object, where: Where) -> Any:
    """Convert one field's value by its metadata converter or its type hint, then check choices."""
    converter: Converter | None = field.metadata.get("convert")
    result = converter(value, where) if converter else convert(value, hint, where)
    choices = field.metadata.get("choices")
    if choices is not None:
        check_choices(result, choices() if callable(choices) else choices, where)
    return result


def check_choices(value: object, choices: Iterable[str], where: Where) -> None:
    """Refuse a value (or any element of a tuple value) outside `choices`."""
    choices = list(choices)
    for item in value if isinstance(value, tuple) else (value,):
        if item is not None and item not in choices:
            raise UnknownChoiceError("value", item, choices, where=str(where))


def convert(value: object, hint: Any, where: Where) -> Any:
    """A parsed value as the type `hint` describes.

    Raises:
        ConfigError: the value cannot be that type.
    """
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return _convert_union(value, typing.get_args(hint), where)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where)
    if origin is tuple:
        return _convert_tuple(value, typing.get_args(hint)[0], where)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return _convert_table(value, where)
    if hint is Any:
        return value
    return _convert_scalar(value, hint, where)


def _convert_union(value: object, options: tuple[Any, ...], where: Where) -> Any:
    if value is None and type(None) in options:
        return None
    real = [option for option in options if option is not type(None)]
    if len(real) != 1:
        raise TypeError(f"unsupported union {options} at {where}")
    return convert(value, real[0], where)


def _convert_tuple(value: object, element: Any, where: Where) -> tuple:
    """A list (or a single value, or a comma-separated string of strings) as a tuple."""
    if isinstance(value, str) and element is str:
        items: list[Any] = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    elif isinstance(value, int | float) and not isinstance(value, bool) and element is not str:
        items = [value]
    else:
        raise wrong_type(value, f"a list of {_element_name(element)}", where)
    return tuple(convert(item, element, where.child(i)) for i, item in enumerate(items))


def _element_name(element: Any) -> str:
    return {str: "strings", int: "integers", float: "numbers"}.get(element, "values")


def _convert_table(value: object, where: Where) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise wrong_type(value, "a table of keys", where)
    return {
        str(k): (_convert_table(v, where.child(k)) if isinstance(v, Mapping) else v)
        for k, v in value.items()
    }


def _convert_scalar(value: object, hint: Any, where: Where) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise wrong_type(value, "true or false", where)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong_type(value, "an integer", where)
        return value
    if hint is float:
        if isinstance(value, str) and EXPONENT.match(value.strip()):
            return float(value)  # YAML 1.1 (PyYAML) reads 1e-5 as a string
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong_type(value, "a number", where)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise wrong_type(value, "a string", where)
        return value
    raise TypeError(f"unsupported type {hint!r} at {where}")
