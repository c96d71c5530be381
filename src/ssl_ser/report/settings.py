"""Report settings: the options of ``ser report`` and ``ser compare``, declared once.

:class:`ReportSettings` holds what the two commands share (the bootstrap and its
seed) and what only the report takes; :class:`CompareSettings` what only
``ser compare`` takes. This module imports no plotting or table library.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import click
from pydantic import ValidationInfo, field_validator

from ssl_ser.settings import Opt, Settings

FILE_OUTPUT = click.Path(dir_okay=False, path_type=Path)


class ReportSettings(Settings):
    """How ``ser report`` draws its report (``ser compare`` shares the bootstrap and seed)."""

    output: Annotated[
        Path,
        Opt(
            "HTML file to write; report.md and figures/ go beside it.",
            aliases=("-o",),
            click_type=FILE_OUTPUT,
        ),
    ] = Path("report.html")
    title: Annotated[
        str | None, Opt("Report title (default: names the extractors and corpora).")
    ] = None
    bootstrap: Annotated[
        int,
        Opt(
            "Bootstrap resamples: for the 95% intervals of the report's best cells (0: none); "
            "in ser compare, per comparison, with as many permutations (at least 1).",
            minimum=0,
        ),
    ] = 1000
    seed: Annotated[int, Opt("Seed of the bootstrap resampling.")] = 0

    @field_validator("seed")
    @classmethod
    def _seed(cls, seed: Any, info: ValidationInfo) -> int:
        from ssl_ser.classify.splits import check_seed

        return check_seed(seed, cls.place(info))


class CompareSettings(Settings):
    """Which cells ``ser compare`` pairs, at what level, and where the table goes."""

    side_a: Annotated[
        str | None,
        Opt("First cell(s): KEY=VALUE[,KEY=VALUE].", flag="--a", metavar="SELECTOR"),
    ] = None
    side_b: Annotated[
        str | None, Opt("Second cell(s), paired with --a.", flag="--b", metavar="SELECTOR")
    ] = None
    where: Annotated[
        str,
        Opt(
            "Only cells matching this (e.g. classifier=logreg,test_condition=clean).",
            metavar="SELECTOR",
        ),
    ] = ""
    alpha: Annotated[
        float,
        Opt(
            "Level at which a difference counts as distinguishable.",
            click_type=click.FloatRange(0, 1, min_open=True, max_open=True),
        ),
    ] = 0.05
    table: Annotated[
        Path | None,
        Opt(
            "Also write the table as CSV here.",
            flag="--output",
            aliases=("-o",),
            click_type=FILE_OUTPUT,
        ),
    ] = None
