"""Click options that several ``ser`` commands share, defined once so they stay alike."""

from __future__ import annotations

from collections.abc import Iterable

import click

from ssl_ser.errors import ConfigError

progress_option = click.option("--progress/--no-progress", default=True, show_default=True)
"""``--progress/--no-progress``: show tqdm progress bars (on by default)."""

dry_run_option = click.option(
    "--dry-run", is_flag=True, help="Print the plan (caches, sweeps, cells); run nothing."
)
"""``--dry-run``: print what a pipeline would do and run nothing."""


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
