"""`ser compare`: paired statistics between cells of stored results, from their predictions.

`ser compare RESULTS_DIR --a layer=3 --b layer=9` compares every cell at layer 3
with the cell at layer 9 that agrees with it on everything else (model, setting,
pooling, classifier): the paired difference in UA with its 95% interval
(utterances resampled within speakers), the paired permutation p-value and the
fold-level sign-flip p-value. Without ``--a``/``--b`` every layer of every line
(``--where`` narrows them) is compared with the line's best layer, Holm-corrected,
with the share of resamples in which each layer is best. Only the stored
predictions are read.
"""

from __future__ import annotations

from pathlib import Path

import click

from ssl_ser.atomic import write_file
from ssl_ser.cli.options import check_seeds
from ssl_ser.errors import ConfigError


@click.command()
@click.argument(
    "results_dirs",
    metavar="RESULTS_DIR...",
    nargs=-1,
    required=True,
    type=click.Path(path_type=Path),
)
@click.option("--a", "side_a", metavar="SELECTOR", help="First cell(s): KEY=VALUE[,KEY=VALUE].")
@click.option("--b", "side_b", metavar="SELECTOR", help="Second cell(s), paired with --a.")
@click.option(
    "--where",
    metavar="SELECTOR",
    default="",
    help="Only cells matching this (e.g. classifier=logreg,test_condition=clean).",
)
@click.option(
    "--bootstrap",
    "n_boot",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Bootstrap resamples (and permutations) per comparison.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    callback=check_seeds,
    help="Seed of the resampling.",
)
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.05,
    show_default=True,
    help="Level at which a difference counts as distinguishable.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the table as CSV here.",
)
def compare(
    results_dirs: tuple[Path, ...],
    side_a: str | None,
    side_b: str | None,
    where: str,
    n_boot: int,
    seed: int,
    alpha: float,
    output: Path | None,
) -> None:
    """Paired comparisons between cells of RESULTS_DIR folders (layers, models, settings).

    With --a and --b: each cell matching --a against the cell matching --b that
    agrees with it on every other column. Without them: every layer of each line
    against the line's best layer (Holm-corrected), with the share of resamples
    in which each layer is best. Only stored predictions are read.

    SELECTOR keys are the cell columns (extractor or model, layer, pooling,
    classifier, train_corpus, train_condition, test_corpus, test_condition,
    split, labels, seed, shots, speaker_norm, search, finetune_setup, target).
    """
    from ssl_ser.report.compare import run_compare

    if (side_a is None) != (side_b is None):
        raise ConfigError("give both --a and --b (or neither, to compare layers with the best)")
    table = run_compare(
        list(results_dirs), side_a, side_b, where, n_boot=n_boot, seed=seed, alpha=alpha
    )
    click.echo(table.text)
    if output is not None:
        write_file(output, lambda p: table.frame.to_csv(p, index=False))
        click.echo(f"wrote {output}")
