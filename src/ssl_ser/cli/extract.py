"""`ser extract`: every hidden layer of a model (or a classic baseline), pooled, into the cache.

`ser extract MANIFEST_OR_CORPUS [--root ROOT] --model MODEL --condition clean|telephone
--cache-dir DIR` takes a manifest file (CSV or parquet), or a corpus name plus
``--root``, runs the model once over every utterance not yet in the cache, and
prints each cache file and a one-line summary. ``--condition`` may be repeated
(``--condition clean --condition telephone``): the model loads once and each
condition gets its own cache file; a condition given twice is refused. Re-running
resumes: only missing utterances are computed. Torch and transformers load only
when the command runs.

Past one GPU: ``--shard K/N`` extracts shard K of N (K from 1, as
``#SBATCH --array=1-N`` numbers tasks), 1/N of the manifest's audio duration,
into shard files beside the cache files; run the N shards anywhere at once, then
``ser cache merge DIR``. ``--dask ADDRESS|local`` runs the N shards as tasks on a
Dask cluster and merges at the end (see :mod:`ssl_ser.extract.cluster`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
import pandas as pd

from ssl_ser import corpora, manifest
from ssl_ser.audio import TELEPHONE_SOURCES
from ssl_ser.cache import STORAGE_DTYPE_CHOICES
from ssl_ser.cli.options import conditions_option, progress_option, refuse_repeats
from ssl_ser.errors import ConfigError
from ssl_ser.extract.config import (
    CLASSIC_MODELS,
    DEFAULT_BATCH_SECONDS,
    DTYPES,
    LONG_AUDIO_POLICIES,
    RETRY_FAILED,
    ExtractorConfig,
    default_workers,
)

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
@click.option("--root", type=click.Path(path_type=Path), help="Corpus folder (with a corpus name).")
@click.option(
    "--model",
    required=True,
    help=f"Hub id or local folder of a transformers model, or one of {', '.join(CLASSIC_MODELS)}.",
)
@click.option("--revision", help="Hub branch, tag or commit (default branch if not given).")
@conditions_option("Audio condition; repeat for several (the model loads once for all).")
@click.option(
    "--telephone-source",
    type=click.Choice(TELEPHONE_SOURCES),
    default="derived",
    show_default=True,
    help="telephone: apply the simulated chain, or read the corpus's wav_telephone copies.",
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=Path("cache"),
    show_default=True,
    help="Root of the caches: DIR/<extractor>/<corpus>/<condition>.h5.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--dtype",
    type=click.Choice(DTYPES),
    default="float32",
    show_default=True,
    help="Compute precision (autocast). float16 needs a GPU; bfloat16 runs on CPU too.",
)
@click.option(
    "--batch-seconds",
    type=float,
    default=DEFAULT_BATCH_SECONDS,
    show_default=True,
    help="Padded seconds of audio per forward pass; lower it if memory runs out.",
)
@click.option(
    "--workers",
    type=int,
    default=None,
    help=f"Audio loading processes (0: none); default min(4, CPUs-1) = {default_workers()}.",
)
@click.option(
    "--max-seconds",
    type=float,
    default=None,
    help="Longest audio the model sees at once (default: no limit; Whisper: 30).",
)
@click.option(
    "--long-audio",
    type=click.Choice(LONG_AUDIO_POLICIES),
    default="window",
    show_default=True,
    help="Beyond --max-seconds: 'window' pools over equal windows, 'crop' keeps the start.",
)
@click.option(
    "--whisper-trim",
    is_flag=True,
    help="Whisper: feed only the real audio, not the padded 30 s window. Faster, but it "
    "changes what the model sees, so features differ from untrimmed ones.",
)
@click.option(
    "--storage-dtype",
    type=click.Choice(STORAGE_DTYPE_CHOICES),
    default="auto",
    show_default=True,
    help="Cache dtype. auto: an existing cache's own, else float32 for egemaps/mfcc/logmel "
    "and float16 for models. A dtype other than an existing cache's converts it (rows kept).",
)
@click.option(
    "--verify-cache/--no-verify-cache",
    default=True,
    show_default=True,
    help="Read every stored chunk first and extract again the rows that fail their checksum "
    "or hold NaN/inf (costs one read of the cache).",
)
@click.option(
    "--rehash",
    is_flag=True,
    help="Hash the audio of every cached row, not only of rows whose path, size or time "
    "changed: the certain check (also catches a file replaced by other audio of equal size "
    "and modification time, e.g. by cp -p).",
)
@click.option(
    "--retry-failed",
    is_flag=True,
    default=RETRY_FAILED,
    help="Try utterances an earlier run recorded as failed again (a failed utterance whose "
    "audio changed since is tried again anyway).",
)
@click.option(
    "--shard",
    metavar="K/N",
    help="Extract only shard K of N (K = 1..N, e.g. $SLURM_ARRAY_TASK_ID/8): 1/N of the "
    "audio duration, into DIR/<extractor>/<corpus>/<condition>.shard-K-of-N.h5. When all N "
    "are done: ser cache merge DIR.",
)
@click.option(
    "--dask",
    "dask_address",
    metavar="ADDRESS|local",
    help="Run the shards as tasks on a Dask cluster (scheduler address, or 'local' for a "
    "LocalCluster here), then merge them. Paths must be readable by every worker; "
    "--device cuda (or cuda:N, or auto where workers declare GPU) asks each task for the "
    "worker resource GPU=1 and runs it on that worker's own GPU, as cuda.",
)
@click.option(
    "--shards",
    "shard_count",
    type=click.IntRange(min=1),
    metavar="N",
    default=None,
    help="With --dask: the number of shards N (default: one per GPU with --device cuda, "
    "else one per worker thread).",
)
@click.option(
    "--keep-shards",
    is_flag=True,
    help="With --dask: keep the shard files after they are merged.",
)
@progress_option
def extract(
    source: str,
    root: Path | None,
    model: str,
    revision: str | None,
    conditions: tuple[str, ...],
    telephone_source: str,
    cache_dir: Path,
    device: str,
    dtype: str,
    batch_seconds: float,
    workers: int | None,
    max_seconds: float | None,
    long_audio: str,
    whisper_trim: bool,
    storage_dtype: str,
    verify_cache: bool,
    rehash: bool,
    retry_failed: bool,
    shard: str | None,
    dask_address: str | None,
    shard_count: int | None,
    keep_shards: bool,
    progress: bool,
) -> None:
    """Extract pooled features of every layer of MODEL for a manifest or corpus into the cache."""
    from ssl_ser.extract.runner import extract as run_extraction

    refuse_repeats("--condition", conditions)
    shard_numbers = _check_distribution(shard, dask_address, shard_count, keep_shards)
    table = read_source(source, root)
    config = ExtractorConfig.for_model(
        model,
        revision=revision,
        dtype=dtype,
        max_seconds=max_seconds,
        long_audio=long_audio,
        whisper_trim=whisper_trim,
    )
    options = {
        "batch_seconds": batch_seconds,
        "workers": workers,
        "telephone_source": telephone_source,
        "storage_dtype": storage_dtype,
        "verify_cache": verify_cache,
        "rehash": rehash,
        "retry_failed": retry_failed,
    }
    if dask_address is not None:
        from ssl_ser.extract.cluster import extract_on_dask

        summaries = extract_on_dask(
            table,
            config,
            cache_dir,
            list(conditions),
            address=dask_address,
            shards_count=shard_count,
            device=device,
            progress=progress,
            keep_shards=keep_shards,
            **options,
        )
    else:
        summaries = run_extraction(
            table,
            config,
            cache_dir,
            list(conditions),
            device=device,
            progress=progress,
            shard=shard_numbers,
            **options,
        )
    _print(summaries)
    if shard_numbers is not None:
        number, count = shard_numbers
        click.echo(
            f"shard {number}/{count} done; when all {count} shards are done: "
            f"ser cache merge {cache_dir}"
        )


def _check_distribution(
    shard: str | None, dask_address: str | None, shard_count: int | None, keep_shards: bool
) -> tuple[int, int] | None:
    """Parse --shard and refuse combinations that make no sense (named in the message)."""
    from ssl_ser.extract.sharding import parse_shard

    if shard is not None and dask_address is not None:
        raise ConfigError(
            "--shard and --dask do not combine: --dask runs every shard itself; give one"
        )
    for option, given in (("--shards", shard_count is not None), ("--keep-shards", keep_shards)):
        if given and dask_address is None:
            raise ConfigError(f"{option} applies to --dask runs (with --shard, N is in K/N)")
    if dask_address is not None and dask_address != "local":  # malformed: before any work
        from ssl_ser.scheduler import check_address

        check_address(dask_address, "--dask")
    return None if shard is None else parse_shard(shard)


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
