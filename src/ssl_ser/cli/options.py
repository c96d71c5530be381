"""Checks of click option values that several ``ser`` commands share."""

from __future__ import annotations

from collections.abc import Iterable

from ssl_ser.errors import ConfigError


def refuse_repeats(option: str, values: Iterable[str]) -> None:
    """Refuse a repeatable option given the same value twice, rather than run it once or twice.

    Raises:
        ConfigError: naming the option and the repeated value.
    """
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ConfigError(f"{option} {value} is given twice; give each value once")
        seen.add(value)
