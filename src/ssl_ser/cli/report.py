"""`ser report`: an HTML and Markdown report with figures from ``ser classify`` results.

`ser report RESULTS_DIR [RESULTS_DIR...] --output report.html` reads each
folder's results table (and stored predictions; a ``ser probe``/``ser run``
output folder stands for the results folders inside it; cells given twice are
counted once), writes ``report.html``
(self-contained: figures embedded, opens offline), ``report.md`` and the PNG
and SVG figures in ``figures/`` beside it, then prints a one-line summary.
"""

from __future__ import annotations

from pathlib import Path

import click

from ssl_ser.cli.options import check_seeds, progress_option


@click.command()
@click.argument(
    "results_dirs",
    metavar="RESULTS_DIR...",
    nargs=-1,
    required=True,
    type=click.Path(path_type=Path),
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("report.html"),
    show_default=True,
    help="HTML file to write; report.md and figures/ go beside it.",
)
@click.option("--title", help="Report title (default: names the extractors and corpora).")
@click.option(
    "--bootstrap",
    "n_boot",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Bootstrap resamples for the 95% intervals of the best cells (0: none).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    callback=check_seeds,
    help="Seed of the bootstrap.",
)
@progress_option
def report(
    results_dirs: tuple[Path, ...],
    output: Path,
    title: str | None,
    n_boot: int,
    seed: int,
    progress: bool,
) -> None:
    """Write a layer-wise probing report from one or more RESULTS_DIR folders.

    A RESULTS_DIR is a ser classify output folder, or a ser probe/ser run
    --output folder (its results/ folders are read).
    """
    from ssl_ser.report import write_report

    summary = write_report(
        list(results_dirs), output, title=title, n_boot=n_boot, seed=seed, progress=progress
    )
    click.echo(summary.line())
