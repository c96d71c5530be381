"""Report settings: the options of ``ser report`` and ``ser compare``, declared once.

:class:`ReportSettings` holds what the two commands share (the bootstrap and its
seed) and what only the report takes; :class:`CompareSettings` what only
``ser compare`` takes. This module imports no plotting or table library.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from pydantic import ValidationInfo, field_validator

from ssl_ser.settings import Settings, setting

FILE_OUTPUT = click.Path(dir_okay=False, path_type=Path)


class ReportSettings(Settings):
    """How ``ser report`` draws its report (``ser compare`` shares the bootstrap and seed)."""

    output: Path = setting(
        Path("report.html"),
        "HTML file to write; report.md and figures/ go beside it.",
        aliases=("-o",),
        click_type=FILE_OUTPUT,
    )
    title: str | None = setting(None, "Report title (default: names the extractors and corpora).")
    bootstrap: int = setting(
        1000,
        "Bootstrap resamples: for the 95% intervals of the report's best cells (0: none); "
        "in ser compare, per comparison, with as many permutations (at least 1).",
        minimum=0,
    )
    seed: int = setting(0, "Seed of the bootstrap resampling.")

    @field_validator("seed")
    @classmethod
    def _seed(cls, seed: Any, info: ValidationInfo) -> int:
        from ssl_ser.classify.splits import check_seed

        return check_seed(seed, cls.place(info))


class CompareSettings(Settings):
    """Which cells ``ser compare`` pairs, at what level, and where the table goes."""

    side_a: str | None = setting(
        None, "First cell(s): KEY=VALUE[,KEY=VALUE].", flag="--a", metavar="SELECTOR"
    )
    side_b: str | None = setting(
        None, "Second cell(s), paired with --a.", flag="--b", metavar="SELECTOR"
    )
    where: str = setting(
        "",
        "Only cells matching this (e.g. classifier=logreg,test_condition=clean).",
        metavar="SELECTOR",
    )
    alpha: float = setting(
        0.05,
        "Level at which a difference counts as distinguishable.",
        click_type=click.FloatRange(0, 1, min_open=True, max_open=True),
    )
    table: Path | None = setting(
        None,
        "Also write the table as CSV here.",
        flag="--output",
        aliases=("-o",),
        click_type=FILE_OUTPUT,
    )
