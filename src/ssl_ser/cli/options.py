"""Click arguments and checks of option values that several ``ser`` commands share."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import click

from ssl_ser.errors import ConfigError

# The results folders that ``ser report`` and ``ser compare`` read.
results_dirs = click.argument(
    "results_dirs",
    metavar="RESULTS_DIR...",
    nargs=-1,
    required=True,
    type=click.Path(path_type=Path),
)


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
