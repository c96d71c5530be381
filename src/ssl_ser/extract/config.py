"""The extractor configuration: a frozen, hashable description of what `ser extract` computes.

Its :meth:`ExtractorConfig.digest` is part of the cache key and its
:meth:`ExtractorConfig.slug` names the cache folder, so two runs share a cache
only when they compute the same features. Device, batch size and worker count
are deliberately not fields: they change speed, not results (batched output
equals unbatched output to within 1e-4 relative).

Each family of extractors (:data:`FEATURE_FAMILIES`) has a version in
:data:`FEATURE_VERSIONS`, bumped only when the code changes the numbers that
family stores. It goes into the digest and the cache key instead of the toolkit's
own version, so upgrading the toolkit keeps every cache whose family did not
change. The SSL family is at version 1, the value the digest always held, so SSL
caches of earlier releases keep their folders. This module imports neither torch
nor transformers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssl_ser.errors import ConfigError, UnknownChoiceError

# Baselines computed without a neural model; the rest of the names are model ids or folders.
CLASSIC_MODELS: tuple[str, ...] = ("egemaps", "mfcc", "logmel")
POOLINGS: tuple[str, ...] = ("mean", "std")
DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16")
LONG_AUDIO_POLICIES: tuple[str, ...] = ("window", "crop")
DEFAULT_SAMPLE_RATE = 16000
# Which feature family each classic baseline belongs to; every other model is "ssl".
FEATURE_FAMILIES: dict[str, str] = {"mfcc": "mel", "logmel": "mel", "egemaps": "egemaps"}
SSL_FAMILY = "ssl"
# Bumped whenever the code changes the numbers a family stores. History:
#   ssl 1: every release so far.
#   mel 1: log floored at 1e-10, mel range 0 Hz..Nyquist.
#   mel 2: log floored 80 dB under the utterance's peak too; mel range capped at 8 kHz.
#   egemaps 1: computed on audio resampled to the config's sample rate (16 kHz).
#   egemaps 2: computed at the recording's own rate (telephone: the chain's 8 kHz).
FEATURE_VERSIONS: dict[str, int] = {SSL_FAMILY: 1, "mel": 2, "egemaps": 2}
SLUG_DIGEST_CHARS = 10
# Padded seconds of audio per forward pass (not part of the key: it changes speed only).
DEFAULT_BATCH_SECONDS = 60.0
# Whether a run tries utterances recorded as failed again. Off: their failures are
# facts about their audio (unreadable, too short, NaN), and audio fixed since has a
# new fingerprint, which sends its row back to extraction anyway.
RETRY_FAILED = False


@dataclass(frozen=True)
class ExtractorConfig:
    """What to compute for every utterance (model, precision, pooling, long-audio policy).

    Attributes:
        model: a Hugging Face hub id (``facebook/wav2vec2-base``), a local model
            folder, or one of :data:`CLASSIC_MODELS`.
        sample_rate: rate (Hz) the audio is resampled to before the model (and
            before ``mfcc``/``logmel``); ``egemaps`` runs at each recording's
            own rate instead (see :mod:`ssl_ser.extract.classic`).
        n_mels: mel bands of the ``mfcc`` and ``logmel`` baselines.
        n_mfcc: cepstral coefficients of the ``mfcc`` baseline (c0 included).

    The other fields are the :class:`~ssl_ser.extract.settings.ExtractSettings`
    fields of the same name (see their help). The commit a `revision` resolves to
    goes into the cache key either way; `whisper_trim` changes the features because
    Whisper was trained on 30 s windows.
    """

    model: str
    revision: str | None = None
    dtype: str = "float32"
    poolings: tuple[str, ...] = POOLINGS
    sample_rate: int = DEFAULT_SAMPLE_RATE
    max_seconds: float | None = None
    long_audio: str = "window"
    whisper_trim: bool = False
    n_mels: int = 40
    n_mfcc: int = 20

    def __post_init__(self) -> None:
        object.__setattr__(self, "poolings", tuple(self.poolings))
        if not self.model or not isinstance(self.model, str):
            raise ConfigError(f"model {self.model!r} is not valid; expected a hub id or folder")
        if self.dtype not in DTYPES:
            raise UnknownChoiceError("dtype", self.dtype, DTYPES)
        if self.long_audio not in LONG_AUDIO_POLICIES:
            raise UnknownChoiceError("long-audio policy", self.long_audio, LONG_AUDIO_POLICIES)
        self._check_poolings()
        self._check_numbers()
        if self.is_classic and self.dtype != "float32":
            raise ConfigError(f"dtype {self.dtype!r} does not apply to {self.model!r}; use float32")

    def _check_poolings(self) -> None:
        if not self.poolings or len(set(self.poolings)) != len(self.poolings):
            raise ConfigError(
                f"poolings {self.poolings!r} must be a non-empty list without repeats"
            )
        for pooling in self.poolings:
            if pooling not in POOLINGS:
                raise UnknownChoiceError("pooling", pooling, POOLINGS)
        if self.model == "egemaps" and self.poolings != ("mean",):
            raise ConfigError(
                f"poolings {self.poolings!r} do not apply to egemaps: its functionals are "
                "stored as the single pooling ('mean',)"
            )

    def _check_numbers(self) -> None:
        if int(self.sample_rate) != self.sample_rate or self.sample_rate <= 0:
            raise ConfigError(f"sample rate {self.sample_rate!r} must be a positive integer")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ConfigError(f"max_seconds {self.max_seconds!r} must be positive (or None)")
        if not 1 <= self.n_mels <= 256:
            raise ConfigError(f"n_mels {self.n_mels!r} must be between 1 and 256")
        if not 1 <= self.n_mfcc <= self.n_mels:
            raise ConfigError(f"n_mfcc {self.n_mfcc!r} must be between 1 and n_mels={self.n_mels}")

    @classmethod
    def for_model(cls, model: str, **fields: Any) -> ExtractorConfig:
        """A config for `model` with the right default poolings (egemaps has only one)."""
        if model == "egemaps":
            fields.setdefault("poolings", ("mean",))
        return cls(model=model, **fields)

    @property
    def feature_family(self) -> str:
        """``ssl`` for transformer models, else the classic baseline's family (``mel``...)."""
        return FEATURE_FAMILIES.get(self.model, SSL_FAMILY)

    @property
    def feature_version(self) -> int:
        """The version of what this config's family computes (:data:`FEATURE_VERSIONS`)."""
        return FEATURE_VERSIONS[self.feature_family]

    @property
    def native_rate(self) -> bool:
        """Whether features are computed at each recording's own rate (eGeMAPS)."""
        return self.model == "egemaps"

    @property
    def is_classic(self) -> bool:
        """Whether the model is a classic baseline (eGeMAPS, MFCC, log-mel)."""
        return self.model in CLASSIC_MODELS

    def with_absolute_model_path(self) -> ExtractorConfig:
        """This config with a local model folder named by its absolute path (hub ids unchanged).

        The model path is part of the cache key, so the same folder must give the
        same key from any working directory.
        """
        folder = Path(self.model).expanduser()
        if self.is_classic or not folder.is_dir():
            return self
        return dataclasses.replace(self, model=str(folder.resolve()))

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-serialisable dict (poolings as a list)."""
        out = dataclasses.asdict(self)
        out["poolings"] = list(self.poolings)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExtractorConfig:
        """The config a :meth:`to_dict` dict describes; unknown keys are refused."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UnknownChoiceError("extractor config field", unknown[0], sorted(known))
        return cls(**data)  # __post_init__ makes poolings a tuple

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the fields and the family's feature version.

        The version sits under the name ``schema`` it had when one version covered
        every family, so digests of unchanged families stay what they were.
        """
        payload = {"schema": self.feature_version, **self.to_dict()}
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def slug(self) -> str:
        """A folder name: readable model name plus the start of the digest.

        ``facebook/wav2vec2-base`` -> ``wav2vec2-base-3f2a9c0d1e``.
        """
        name = Path(self.model.rstrip("/\\")).name or "model"
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model"
        return f"{name}-{self.digest()[:SLUG_DIGEST_CHARS]}"


def default_workers() -> int:
    """DataLoader workers by default: min(4, usable CPUs - 1), at least 0."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(0, min(4, cpus - 1))


DEVICE_FORM = re.compile(r"auto|cpu|cuda(?::\d+)?")


def check_run_options(
    config: ExtractorConfig,
    conditions: list[str],
    *,
    device: str = "auto",
    batch_seconds: float = DEFAULT_BATCH_SECONDS,
    workers: int | None = None,
    telephone_source: str = "derived",
    storage_dtype: str = "auto",
) -> int:
    """Refuse bad extraction options before a model loads or a cluster starts; the workers.

    What :func:`ssl_ser.extract.extract` and the Dask path check first, so a typo
    costs nothing: conditions, telephone source, storage dtype, workers, batch
    seconds, the device's form, and float16 on CPU. (The GPU itself is checked
    where the model loads; audio and cache are imported here, not at module level,
    so this module stays light.)

    Returns:
        The number of DataLoader workers (`workers`, or :func:`default_workers`).
    """
    from ssl_ser import audio, cache

    for name in conditions:
        audio.check_condition(name)
    audio.check_telephone_source(telephone_source)
    if storage_dtype not in cache.STORAGE_DTYPE_CHOICES:
        raise UnknownChoiceError("storage dtype", storage_dtype, cache.STORAGE_DTYPE_CHOICES)
    workers = default_workers() if workers is None else workers
    if isinstance(workers, bool) or int(workers) != workers or workers < 0:
        raise ConfigError(f"workers {workers!r} must be an integer >= 0")
    check_batch_seconds(batch_seconds)
    if not isinstance(device, str) or DEVICE_FORM.fullmatch(device) is None:
        raise UnknownChoiceError("device", device, ("auto", "cpu", "cuda", "cuda:N"))
    if device == "cpu" and config.dtype == "float16":
        raise ConfigError("dtype 'float16' is not supported on CPU; use bfloat16 or float32")
    return int(workers)


def check_batch_seconds(batch_seconds: float) -> None:
    """Refuse (ConfigError) a padded-seconds budget per forward pass that is not positive."""
    if not batch_seconds > 0:
        raise ConfigError(f"batch seconds {batch_seconds!r} must be positive")
