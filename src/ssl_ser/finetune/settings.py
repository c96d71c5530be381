"""Fine-tune settings: the options of ``ser finetune`` and the experiment's ``finetune`` section.

Every training setting of :class:`~ssl_ser.finetune.config.FinetuneConfig`
(the defaults are its own, a test holds them equal) enters each fold's cell id;
the rest say which models an experiment trains and what a run keeps or redoes.
Settings that do not fit together are refused naming the flag on the command
line (``--head-lr -1.0 must be positive``) and the key in an experiment file.
This module imports neither torch nor pandas.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any

import click
from pydantic import ValidationInfo, model_validator

from ssl_ser.choices import CONDITIONS
from ssl_ser.errors import ConfigError
from ssl_ser.extract.config import LONG_AUDIO_POLICIES
from ssl_ser.finetune.config import (
    ADAPTERS,
    FINETUNE_DTYPES,
    FREEZES,
    HEADS,
    INITS,
    PROBE_DTYPES,
    FinetuneConfig,
    check_training,
)
from ssl_ser.settings import (
    CELL_ID,
    ExistingPaths,
    Opt,
    Settings,
    Where,
    flag_of,
    option_of,
    setting,
    wrong_type,
)


class FinetuneSettings(Settings):
    """What ``ser finetune`` trains and keeps; an experiment's ``finetune`` section."""

    model: str | None = setting(
        None,
        "Hub id or local model folder (Whisper: encoder).",
        enters=CELL_ID,
        required=True,
        file=False,
    )
    revision: str | None = setting(None, "Hub branch, tag or commit.", enters=CELL_ID, file=False)
    manifests: Annotated[
        tuple[str, ...],
        Opt("Manifest(s) (CSV/parquet), comma-separated.", flag="--manifest", file=False),
        ExistingPaths,
    ] = ()
    corpora: tuple[str, ...] = setting(
        (),
        "NAME=ROOT (a corpus folder read by reader NAME, e.g. emodb=/data/emodb) or "
        "NAME=MANIFEST. Repeatable; instead of or beside --manifest.",
        flag="--corpus",
        multiple=True,
        file=False,
    )
    conditions: tuple[str, ...] = setting(
        ("clean",),
        "Audio condition(s) to load; each is trained and tested on itself unless "
        "--train-condition/--test-condition pick one pair.",
        choices=CONDITIONS,
        flag="--condition",
        multiple=True,
        enters=CELL_ID,
        file=False,
    )
    models: tuple[str, ...] | None = setting(
        None,
        "The experiment's models to fine-tune (default: every model that is not a "
        "classic baseline); their revision is extract.revision.",
        cli=False,
    )
    epochs: int = setting(20, "Most epochs (0 with a probe's head: the probe).", enters=CELL_ID)
    patience: int | None = setting(
        5, "Stop after this many epochs without a better validation UA (0: never).", enters=CELL_ID
    )
    learning_rate: float = setting(
        5e-5,
        "Peak AdamW learning rate of the backbone (HF wav2vec2 audio-classification recipe).",
        flag="--lr",
        enters=CELL_ID,
    )
    head_learning_rate: float = setting(
        1e-3,
        "Peak AdamW learning rate of the head and layer weights (as the torch probes).",
        flag="--head-lr",
        enters=CELL_ID,
    )
    spec_augment: bool = setting(
        True,
        "SpecAugment time masking in training, seeded per batch (resume stays exact).",
        enters=CELL_ID,
    )
    mask_time_prob: float = setting(
        0.05,
        "About the share of frames masked: prob x frames / length spans are drawn "
        "(transformers' Wav2Vec2Config default).",
        enters=CELL_ID,
    )
    mask_time_length: int = setting(
        10, "Frames per masked span (Whisper: log-mel frames).", enters=CELL_ID
    )
    warmup: float = setting(
        0.1, "Fraction of steps of linear warm-up (then linear decay).", enters=CELL_ID
    )
    weight_decay: float = setting(0.01, "AdamW weight decay.", enters=CELL_ID)
    accumulation: int = setting(1, "Micro-batches per optimizer step.", enters=CELL_ID)
    clip: float | None = setting(1.0, "Gradient norm clip (0: none).", enters=CELL_ID)
    batch_seconds: float = setting(32.0, "Padded audio seconds per micro-batch.", enters=CELL_ID)
    head: str = setting(
        "linear", "linear, or mlp (one hidden layer, ReLU, dropout).", choices=HEADS, enters=CELL_ID
    )
    hidden: int = setting(256, "mlp head width.", enters=CELL_ID)
    dropout: float = setting(0.1, "Dropout before the mlp head's output layer.", enters=CELL_ID)
    weighted_layers: bool = setting(
        True,
        "Head reads a learned softmax-weighted sum of all hidden states (SUPERB), or the "
        "last one (without --head-layer or --from-probe).",
        flag="--weighted-layers/--last-layer",
        enters=CELL_ID,
    )
    head_layer: int | None = setting(
        None,
        "Hidden state the head reads (0: input embedding); layers above it are cut off. "
        "Default: the --from-probe layer, else as --weighted-layers/--last-layer say.",
        enters=CELL_ID,
    )
    from_probe: Path | None = setting(
        None,
        "Results folder of ser classify/probe (logreg, same folds): its best layer on "
        "validation speakers is read and each fold's head starts as that fold's probe.",
        click_type=click.Path(exists=True, file_okay=False, path_type=Path),
        file=False,
    )
    standardise: bool = setting(
        True,
        "Standardise the head's input with the fitting rows' mean and scale (as the probes).",
        enters=CELL_ID,
    )
    init: str = setting(
        "random",
        "random head, or probe: each fold's head starts as that fold's logistic-regression "
        "probe of head_layer (epoch 0 then equals the probe).",
        choices=INITS,
        enters=CELL_ID,
        cli=False,
    )
    probe_dtype: str = setting(
        "float32",
        "Precision the head's input is rounded to before standardising: the probes' cache "
        "storage dtype (float16), so a head started from a probe predicts what it did.",
        choices=PROBE_DTYPES,
        enters=CELL_ID,
        cli=False,
    )
    freeze: str = setting(
        "feature-encoder",
        "feature-encoder: the conv front end; base: the whole backbone (head only); "
        "none; top: all but the top --top-layers transformer layers.",
        choices=FREEZES,
        enters=CELL_ID,
    )
    top_layers: int | None = setting(None, "Layers trained with --freeze top.", enters=CELL_ID)
    adapter: str = setting(
        "none",
        "lora: low-rank adapters on the attention projections, backbone frozen.",
        choices=ADAPTERS,
        enters=CELL_ID,
    )
    lora_rank: int = setting(8, "Rank of the LoRA matrices.", enters=CELL_ID)
    lora_alpha: float = setting(16.0, "Scale numerator of the LoRA matrices.", enters=CELL_ID)
    gradient_checkpointing: bool = setting(
        False,
        "Recompute activations in backward: less memory, slower steps.",
        negatable=True,
        enters=CELL_ID,
    )
    class_weights: bool = setting(
        False,
        "Weight the loss by inverse class frequency (imbalanced corpora).",
        negatable=True,
        enters=CELL_ID,
    )
    val_fraction: float = setting(
        0.1, "Share of training rows (whole speakers) that choose the epoch.", enters=CELL_ID
    )
    dtype: str = setting(
        "float32",
        "Autocast precision on CUDA (CPU trains in float32).",
        choices=FINETUNE_DTYPES,
        enters=CELL_ID,
    )
    max_seconds: float | None = setting(
        20.0, "Longest stretch of audio the model sees at once.", enters=CELL_ID
    )
    long_audio: str = setting(
        "window",
        "Beyond --max-seconds: 'window' pools over equal windows, 'crop' keeps the start.",
        choices=LONG_AUDIO_POLICIES,
        enters=CELL_ID,
    )
    whisper_trim: bool = setting(False, "Whisper: only the real audio's frames.", enters=CELL_ID)
    output: Path | None = setting(
        None,
        "Results folder.",
        click_type=click.Path(file_okay=False, path_type=Path),
        required=True,
        file=False,
    )
    force: bool = setting(False, "Train folds again that OUTPUT already holds.", file=False)
    save_models: bool = setting(
        True, "Save each fold's chosen model under OUTPUT/models/.", negatable=True
    )
    audio_in_memory: bool = setting(
        False,
        "Hold all prepared audio in memory (about 230 MB per hour) instead of a file in "
        "OUTPUT read per batch; the results are the same.",
        file=False,
    )

    @model_validator(mode="before")
    @classmethod
    def _probe_head(cls, data: Any) -> Any:
        """A head started from probes' results (``--from-probe``) is a probe-initialised head."""
        if isinstance(data, dict) and data.get("from_probe") is not None:
            return {**data, "init": "probe"}
        return data

    @model_validator(mode="after")
    def _fit_together(self, info: ValidationInfo) -> FinetuneSettings:
        """Refuse settings out of range or at odds, naming the flag or the file's section."""
        context = info.context or {}
        where = context.get("where")
        name = functools.partial(_flag_or_key, type(self)) if context.get("cli") else str
        try:
            check_training(self, name)
        except ConfigError as error:
            if where is None:
                raise
            raise ConfigError(f"{where}: {error}") from None
        return self

    def config(self, **extra: Any) -> FinetuneConfig:
        """The :class:`~ssl_ser.finetune.config.FinetuneConfig` of these settings (and `extra`)."""
        return FinetuneConfig(**self.fields_of(FinetuneConfig, **extra))


def _flag_or_key(model: type[Settings], name: str) -> str:
    """A setting's flag, or its key when the command line does not take it (``init``)."""
    opt = option_of(model, name)
    return flag_of(model, name) if opt is None or opt.cli else name


def finetune_section(value: object, where: Where) -> FinetuneSettings | None:
    """An experiment's ``finetune`` value: a table, true (every default), false or null (none)."""
    if value is None or value is False:
        return None
    if value is True:
        return FinetuneSettings()
    if not isinstance(value, dict):
        raise wrong_type(value, "a table of fine-tune settings (or true for the defaults)", where)
    return FinetuneSettings.from_file(value, where)
