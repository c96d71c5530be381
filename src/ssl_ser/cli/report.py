"""`ser report`: an HTML and Markdown report with figures from ``ser classify`` results.

``report.html`` is self-contained (figures embedded, opens offline); ``report.md``
and the PNG and SVG figures in ``figures/`` go beside it. Cells given twice are
counted once.
"""

from __future__ import annotations

from pathlib import Path

import click

from ssl_ser.cli.options import results_dirs
from ssl_ser.report.settings import ReportSettings
from ssl_ser.settings import Feedback, options


@click.command()
@results_dirs
@options(ReportSettings)
@options(Feedback)
def report(results_dirs: tuple[Path, ...], **values) -> None:
    """Write a layer-wise probing report from one or more RESULTS_DIR folders.

    A RESULTS_DIR is a ser classify output folder, or a ser probe/ser run
    --output folder (its results/ folders are read).
    """
    from ssl_ser.report import write_report

    settings = ReportSettings.from_cli(values)
    summary = write_report(
        list(results_dirs),
        settings.output,
        title=settings.title,
        n_boot=settings.bootstrap,
        seed=settings.seed,
        progress=Feedback.from_cli(values).progress,
    )
    click.echo(summary.line())
