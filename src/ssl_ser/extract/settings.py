"""Extraction settings: the options of ``ser extract`` and the experiment's ``extract`` section.

Fields marked ``enters=CACHE_KEY`` change the features (they are part of the
:class:`~ssl_ser.extract.config.ExtractorConfig` digest, or of the cache's key);
the rest change speed, where the work runs, or what is checked. This module
imports neither torch nor transformers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator

from ssl_ser.choices import TELEPHONE_SOURCES
from ssl_ser.extract.config import (
    DEFAULT_BATCH_SECONDS,
    DTYPES,
    LONG_AUDIO_POLICIES,
    POOLINGS,
    RETRY_FAILED,
    default_workers,
)
from ssl_ser.settings import CACHE_KEY, Opt, Settings, registry_choices, setting

DASK_HELP = (
    "Run the shards as tasks on a Dask cluster (scheduler address, or 'local' for a "
    "LocalCluster here), then merge them. Paths must be readable by every worker; "
    "--device cuda (or cuda:N, or auto where workers declare GPU) asks each task for the "
    "worker resource GPU=1 and runs it on that worker's own GPU, as cuda."
)


def _shard(value: Any) -> Any:
    """``K/N`` as the pair (K, N), refused in one line when malformed."""
    if not isinstance(value, str):
        return value
    from ssl_ser.extract.sharding import parse_shard

    return parse_shard(value)


class ExtractSettings(Settings):
    """How features are extracted (every model of an experiment shares them)."""

    section = "extract"

    root: Path | None = setting(
        None, "Corpus folder (with a corpus name).", metavar="PATH", file=False
    )
    revision: str | None = setting(
        None, "Hub branch, tag or commit (default branch if not given).", enters=CACHE_KEY
    )
    telephone_source: str = setting(
        "derived",
        "telephone: apply the simulated chain, or read the corpus's wav_telephone copies.",
        choices=TELEPHONE_SOURCES,
        enters=CACHE_KEY,
    )
    device: str = setting("auto", "auto, cpu, cuda or cuda:N.")
    dtype: str = setting(
        "float32",
        "Compute precision (autocast). float16 needs a GPU; bfloat16 runs on CPU too.",
        choices=DTYPES,
        enters=CACHE_KEY,
    )
    poolings: tuple[str, ...] = setting(
        POOLINGS,
        "Statistics over the valid frames stored per layer (SSL models, mfcc, logmel; "
        "egemaps stores its functionals).",
        choices=POOLINGS,
        enters=CACHE_KEY,
    )
    batch_seconds: float = setting(
        DEFAULT_BATCH_SECONDS,
        "Padded seconds of audio per forward pass; lower it if memory runs out.",
        above=0,
    )
    workers: int | None = setting(
        None,
        f"Audio loading processes (0: none); default min(4, CPUs-1) = {default_workers()}.",
        minimum=0,
    )
    max_seconds: float | None = setting(
        None,
        "Longest audio the model sees at once (default: no limit; Whisper: 30).",
        enters=CACHE_KEY,
    )
    long_audio: str = setting(
        "window",
        "Beyond --max-seconds: 'window' pools over equal windows, 'crop' keeps the start.",
        choices=LONG_AUDIO_POLICIES,
        enters=CACHE_KEY,
    )
    whisper_trim: bool = setting(
        False,
        "Whisper: feed only the real audio, not the padded 30 s window. Faster, but it "
        "changes what the model sees, so features differ from untrimmed ones.",
        enters=CACHE_KEY,
    )
    storage_dtype: str = setting(
        "auto",
        "Cache dtype. auto: an existing cache's own, else float32 for egemaps/mfcc/logmel "
        "and float16 for models. A dtype other than an existing cache's converts it "
        "(rows kept).",
        choices=registry_choices("ssl_ser.cache.layout", "STORAGE_DTYPE_CHOICES"),
        enters=CACHE_KEY,
    )
    verify_cache: bool = setting(
        True,
        "Read every stored chunk first and extract again the rows that fail their "
        "checksum or hold NaN/inf (costs one read of the cache).",
        negatable=True,
    )
    rehash: bool = setting(
        False,
        "Hash the audio of every cached row, not only of rows whose path, size or time "
        "changed: the certain check (also catches a file replaced by other audio of equal "
        "size and modification time, e.g. by cp -p).",
    )
    retry_failed: bool = setting(
        RETRY_FAILED,
        "Try utterances an earlier run recorded as failed again (a failed utterance whose "
        "audio changed since is tried again anyway).",
    )
    dask: str | None = setting(None, DASK_HELP, metavar="ADDRESS|local")
    shards: int | None = setting(
        None,
        "With --dask: the number of shards N (default: one per GPU with --device cuda, "
        "else one per worker thread).",
        metavar="N",
        minimum=1,
    )
    keep_shards: bool = setting(False, "With --dask: keep the shard files after they are merged.")
    shard: Annotated[
        tuple[int, int] | None,
        BeforeValidator(_shard),
        Opt(
            "Extract only shard K of N (K = 1..N, e.g. $SLURM_ARRAY_TASK_ID/8): 1/N of the "
            "audio duration, into DIR/<extractor>/<corpus>/<condition>.shard-K-of-N.h5. When "
            "all N are done: ser cache merge DIR.",
            metavar="K/N",
            file=False,
        ),
    ] = None

    def extractor_config(self, model: str) -> Any:
        """The :class:`~ssl_ser.extract.config.ExtractorConfig` of `model` under these settings.

        Classic baselines take only what applies to them (float32, no revision, and
        eGeMAPS its single pooling).
        """
        from ssl_ser.extract.config import CLASSIC_MODELS, ExtractorConfig

        fields = self.fields_of(ExtractorConfig)
        if model in CLASSIC_MODELS:
            fields = {k: v for k, v in fields.items() if k in ("max_seconds", "long_audio")}
            if model != "egemaps":
                fields["poolings"] = self.poolings
        return ExtractorConfig.for_model(model, **fields)

    def run(
        self, table: Any, config: Any, cache_dir: Any, conditions: list[str], *, progress: bool
    ) -> list[Any]:
        """Extract `table`'s rows under `config` with these settings: here, or on Dask.

        Returns:
            One :class:`~ssl_ser.extract.summary.ExtractSummary` per corpus and condition.
        """
        from ssl_ser.extract.runner import extract

        options = self.fields_of(extract)
        if self.dask is None:
            return extract(table, config, cache_dir, conditions, progress=progress, **options)
        from ssl_ser.extract.cluster import extract_on_dask

        del options["shard"]  # refused with --dask; the cluster runs every shard
        return extract_on_dask(
            table,
            config,
            cache_dir,
            conditions,
            address=self.dask,
            shards_count=self.shards,
            keep_shards=self.keep_shards,
            progress=progress,
            **options,
        )
