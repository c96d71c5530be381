"""`ser compare`: paired statistics between cells of stored results, from their predictions.

Each pair gets the paired difference in UA with its 95% interval (utterances
resampled within speakers), the paired permutation p-value and the fold-level
sign-flip p-value (:mod:`ssl_ser.report.compare`).
"""

from __future__ import annotations

from pathlib import Path

import click

from ssl_ser.atomic import write_file
from ssl_ser.cli.options import results_dirs
from ssl_ser.errors import ConfigError
from ssl_ser.report.settings import CompareSettings, ReportSettings
from ssl_ser.settings import options


@click.command()
@results_dirs
@options(CompareSettings)
@options(ReportSettings, only=["bootstrap", "seed"])
def compare(results_dirs: tuple[Path, ...], **values) -> None:
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

    chosen, shared = CompareSettings.from_cli(values), ReportSettings.from_cli(values)
    if (chosen.side_a is None) != (chosen.side_b is None):
        raise ConfigError("give both --a and --b (or neither, to compare layers with the best)")
    if shared.bootstrap < 1:
        raise ConfigError(f"--bootstrap {shared.bootstrap}: a comparison needs at least 1")
    table = run_compare(
        list(results_dirs),
        chosen.side_a,
        chosen.side_b,
        chosen.where,
        n_boot=shared.bootstrap,
        seed=shared.seed,
        alpha=chosen.alpha,
    )
    click.echo(table.text)
    if chosen.table is not None:
        write_file(chosen.table, lambda p: table.frame.to_csv(p, index=False))
        click.echo(f"wrote {chosen.table}")
