"""What a fine-tune run trains: a frozen, validated description, part of every cell id.

Every field that changes the numbers (the model, head, freezing, adapter and
every training setting, batch seconds included, since batches change the
gradient) goes into each fold's cell id; the device and the number of
processes do not (one process and several give the same result, see
:mod:`ssl_ser.finetune.distributed`). The defaults follow the established
recipes: the Hugging Face wav2vec2 audio-classification example (a backbone
rate of its order, 5e-5, transformers' default, where it uses 3e-5; linear
warm-up and decay; SpecAugment time masking with ``mask_time_prob`` 0.05 and
spans of 10 frames; the convolutional feature encoder frozen), SUPERB's
emotion task (a learned weighted sum of all hidden states when no probe says
which layer to read; a head rate of 1e-3, the toolkit's torch probes') and early
stopping on validation speakers drawn from the training side (patience 5).

This module imports neither torch nor transformers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ssl_ser.errors import ConfigError, UnknownChoiceError
from ssl_ser.extract.config import DEFAULT_SAMPLE_RATE, DTYPES, LONG_AUDIO_POLICIES, ExtractorConfig
from ssl_ser.results import LAST_STATE_LAYER, WEIGHTED_LAYER

HEADS: tuple[str, ...] = ("linear", "mlp")
FREEZES: tuple[str, ...] = ("feature-encoder", "base", "none", "top")
ADAPTERS: tuple[str, ...] = ("none", "lora")
INITS: tuple[str, ...] = ("random", "probe")
# Storage precisions of the feature caches (ssl_ser.cache.STORAGE_DTYPES).
PROBE_DTYPES: tuple[str, ...] = ("float32", "float16")
# Autocast precisions on CUDA: those of extraction (on CPU only float32 is accepted).
FINETUNE_DTYPES: tuple[str, ...] = DTYPES

# Attention projections LoRA adapts in every supported family (wav2vec2-like and Whisper).
LORA_TARGETS: tuple[str, ...] = ("q_proj", "v_proj")
# Settings that must be above 0, and those in [0, 1).
POSITIVE: tuple[str, ...] = (
    "learning_rate",
    "head_learning_rate",
    "mask_time_length",
    "accumulation",
    "batch_seconds",
    "hidden",
    "lora_rank",
    "lora_alpha",
)
FRACTIONS: tuple[str, ...] = ("dropout", "warmup", "mask_time_prob")


@dataclass(frozen=True)
class FinetuneConfig:
    """Model and training settings of ``ser finetune``, validated (see the module docstring).

    The fields are :class:`~ssl_ser.finetune.settings.FinetuneSettings`' training
    settings (its help says what each does), plus the sample rate of the experiment's models.
    """

    model: str
    revision: str | None = None
    head: str = "linear"
    hidden: int = 256
    dropout: float = 0.1
    weighted_layers: bool = True
    head_layer: int | None = None
    standardise: bool = True
    init: str = "random"
    probe_dtype: str = "float32"
    freeze: str = "feature-encoder"
    top_layers: int | None = None
    adapter: str = "none"
    lora_rank: int = 8
    lora_alpha: float = 16.0
    epochs: int = 20
    patience: int | None = 5
    learning_rate: float = 5e-5
    head_learning_rate: float = 1e-3
    spec_augment: bool = True
    mask_time_prob: float = 0.05
    mask_time_length: int = 10
    warmup: float = 0.1
    weight_decay: float = 0.01
    accumulation: int = 1
    clip: float | None = 1.0
    gradient_checkpointing: bool = False
    class_weights: bool = False
    batch_seconds: float = 32.0
    val_fraction: float = 0.1
    dtype: str = "float32"
    max_seconds: float | None = 20.0
    long_audio: str = "window"
    whisper_trim: bool = False
    sample_rate: int = DEFAULT_SAMPLE_RATE

    def __post_init__(self) -> None:
        # 0 means "off" for early stopping and clipping, as on the command line
        for name in ("patience", "clip"):
            if getattr(self, name) == 0:
                object.__setattr__(self, name, None)
        for name, value, choices in (
            ("head", self.head, HEADS),
            ("freeze", self.freeze, FREEZES),
            ("adapter", self.adapter, ADAPTERS),
            ("head init", self.init, INITS),
            ("probe dtype", self.probe_dtype, PROBE_DTYPES),
            ("dtype", self.dtype, FINETUNE_DTYPES),
            ("long-audio policy", self.long_audio, LONG_AUDIO_POLICIES),
        ):
            if value not in choices:
                raise UnknownChoiceError(name, value, choices)
        check_training(self)

    @property
    def layer(self) -> str:
        """The results rows' layer: the state read (``3``), ``weighted`` for a mix, else ``all``."""
        if self.head_layer is not None:
            return str(self.head_layer)
        return WEIGHTED_LAYER if self.weighted_layers else LAST_STATE_LAYER

    def extractor_config(self) -> ExtractorConfig:
        """The extraction settings the backbone loads and preprocesses audio with."""
        return ExtractorConfig(
            model=self.model,
            revision=self.revision,
            dtype="float32",
            poolings=("mean",),
            sample_rate=self.sample_rate,
            max_seconds=self.max_seconds,
            long_audio=self.long_audio,
            whisper_trim=self.whisper_trim,
        )

    def params(self, processes: int = 1) -> dict[str, Any]:
        """The settings recorded in each results row's params and cell id (all but the model).

        ``accumulation`` becomes ``step_micro_batches``, accumulation x processes:
        N processes train what one process does with N times the accumulation
        (:mod:`ssl_ser.finetune.distributed`), and another count is another step.
        """
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("model",)}
        out["step_micro_batches"] = out.pop("accumulation") * processes
        return out

    def setting(self, processes: int = 1) -> str:
        """Short name of the settings, for grouping results: those that differ from the defaults.

        ``default`` for the defaults; otherwise ``freeze=base, learning_rate=0.001``...,
        so two fine-tune settings of one model never share a group (or a mean).
        """
        mine = self.params(processes)
        base = FinetuneConfig(model=self.model).params()
        changed = [f"{k}={v}" for k, v in mine.items() if base.get(k) != v]
        return ", ".join(changed) or "default"

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready (run configuration saved beside each model)."""
        return dataclasses.asdict(self)


def check_training(settings: Any, name: Callable[[str], str] = str) -> None:
    """Refuse training settings out of range or that do not fit together.

    Args:
        settings: a :class:`FinetuneConfig`, or settings with its field names.
        name: how a setting reads in the message: its field name (the default),
            its flag on the command line (``--head-lr``).
    """
    _check_freezing(settings, name)
    _check_numbers(settings, name)
    _check_layer(settings, name)


def _check_freezing(c: Any, name: Callable[[str], str]) -> None:
    if c.freeze == "top" and (c.top_layers is None or c.top_layers < 1):
        raise ConfigError(
            f"{name('freeze')} 'top' trains the top K transformer layers: give "
            f"{name('top_layers')} >= 1, got {c.top_layers!r}"
        )
    if c.freeze != "top" and c.top_layers is not None:
        raise ConfigError(
            f"{name('top_layers')}={c.top_layers} applies to {name('freeze')} 'top' only, "
            f"not {c.freeze!r}"
        )
    if c.adapter == "lora" and c.freeze not in ("feature-encoder", "base"):
        raise ConfigError(
            f"{name('adapter')} 'lora' trains adapters on a frozen backbone; {name('freeze')} "
            f"{c.freeze!r} would also train its weights: leave {name('freeze')} at "
            "feature-encoder"
        )


def _check_numbers(c: Any, name: Callable[[str], str]) -> None:
    if c.epochs < 0 or (c.epochs == 0 and c.init != "probe"):
        raise ConfigError(
            f"{name('epochs')} {c.epochs!r} must be positive (0 only with a head started from "
            "a probe: the probe itself, scored through the fine-tune model)"
        )
    for key in POSITIVE:
        if not getattr(c, key) > 0:
            raise ConfigError(f"{name(key)} {getattr(c, key)!r} must be positive")
    for key in FRACTIONS:
        if not 0 <= getattr(c, key) < 1:
            raise ConfigError(f"{name(key)} {getattr(c, key)!r} must be in [0, 1)")
    if not 0 < c.val_fraction < 1:
        raise ConfigError(f"{name('val_fraction')} {c.val_fraction!r} must be in (0, 1)")
    # 0 turns early stopping and clipping off (FinetuneConfig stores None)
    if c.patience not in (None, 0) and c.patience < 1:
        raise ConfigError(
            f"{name('patience')} {c.patience!r} must be >= 1 (or None: no early stop)"
        )
    if c.clip not in (None, 0) and not c.clip > 0:
        raise ConfigError(f"{name('clip')} {c.clip!r} must be positive (or None: no clipping)")
    if c.weight_decay < 0:
        raise ConfigError(f"{name('weight_decay')} {c.weight_decay!r} must be >= 0")


def _check_layer(c: Any, name: Callable[[str], str]) -> None:
    if c.head_layer is not None and c.head_layer < 0:
        raise ConfigError(
            f"{name('head_layer')} {c.head_layer!r} must be >= 0 (0: input embedding)"
        )
    if c.init == "probe" and c.head != "linear":
        raise ConfigError(
            f"{name('init')} 'probe' copies a linear probe into the head; {name('head')} "
            f"{c.head!r} cannot take it: use {name('head')} 'linear'"
        )
