"""`ser extract`: every hidden layer of a model (or a classic baseline), pooled, into the cache.

The model loads once for all ``--condition`` values, each condition getting its own
cache file; re-running computes only the missing utterances. Past one GPU:
``--shard K/N`` (then ``ser cache merge DIR``) or ``--dask ADDRESS|local`` (see
:mod:`ssl_ser.extract.cluster` and ``docs/scale-out.md``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import pandas as pd

from ssl_ser import corpora, manifest
from ssl_ser.cli.options import refuse_repeats
from ssl_ser.errors import ConfigError
from ssl_ser.extract.settings import ExtractSettings
from ssl_ser.pipelines.experiment import Experiment
from ssl_ser.settings import Feedback, options

if TYPE_CHECKING:
    from ssl_ser.extract.summary import ExtractSummary

SHOWN_FAILURES = 5


def read_source(source: str, root: Path | None) -> pd.DataFrame:
    """A manifest file, or corpus `source` read from `root`.

    Raises:
        ConfigError: neither an existing manifest file nor a corpus name with a root.
    """
    path = Path(source)
    if path.is_file():
        if root is not None:
            raise ConfigError(f"--root applies to a corpus name, not to the manifest {source}")
        return manifest.read(path)
    if source in corpora.names():
        if root is None:
            raise ConfigError(f"corpus {source!r} needs --root, the folder holding the corpus")
        return corpora.load(source, root, on_error="skip")
    raise ConfigError(
        f"{source!r} is neither a manifest file nor a corpus name; "
        f"expected a {'/'.join(manifest.MANIFEST_SUFFIXES)} file or one of "
        f"{', '.join(corpora.names())}"
    )


@click.command()
@click.argument("source", metavar="MANIFEST_OR_CORPUS")
@options(Experiment, only=("models", "conditions", "cache_dir"))
@options(ExtractSettings)
@options(Feedback)
def extract(source: str, **values: Any) -> None:
    """Extract pooled features of every layer of MODEL for a manifest or corpus into the cache."""
    settings = ExtractSettings.from_cli(values)
    models, conditions = values["models"], values["conditions"]
    refuse_repeats("--model", models)
    refuse_repeats("--condition", conditions)
    _check_distribution(settings)
    table = read_source(source, settings.root)
    cache_dir = Path(values["cache_dir"])
    progress = values["progress"]
    for model in models:
        config = settings.extractor_config(model)
        summaries = settings.run(table, config, cache_dir, list(conditions), progress=progress)
        _print(summaries)
    if settings.shard is not None:
        number, count = settings.shard
        click.echo(
            f"shard {number}/{count} done; when all {count} shards are done: "
            f"ser cache merge {cache_dir}"
        )


def _check_distribution(settings: ExtractSettings) -> None:
    """Refuse sharding combinations that make no sense (named in the message)."""
    if settings.shard is not None and settings.dask is not None:
        raise ConfigError(
            "--shard and --dask do not combine: --dask runs every shard itself; give one"
        )
    given = (("--shards", settings.shards is not None), ("--keep-shards", settings.keep_shards))
    for option, is_given in given:
        if is_given and settings.dask is None:
            raise ConfigError(f"{option} applies to --dask runs (with --shard, N is in K/N)")
    if settings.dask is not None and settings.dask != "local":  # malformed: before any work
        from ssl_ser.scheduler import check_address

        check_address(settings.dask, "--dask")


def _print(summaries: list[ExtractSummary]) -> None:
    """Each cache file, its one-line summary and its first failures."""
    for summary in summaries:
        click.echo(f"cache: {summary.path}")
        click.echo(summary.line())
        for utt_id, reason in summary.failed[:SHOWN_FAILURES]:
            click.echo(f"  failed {utt_id}: {reason}")
        if len(summary.failed) > SHOWN_FAILURES:
            more = len(summary.failed) - SHOWN_FAILURES
            click.echo(
                f"  ... and {more} more (all are in the cache: ssl_ser.cache.open(path).failures)"
            )
