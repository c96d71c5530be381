"""`ser finetune`: fine-tune a model end to end on the folds `ser classify` makes."""

from __future__ import annotations

import click

from ssl_ser.audio import TELEPHONE_SOURCES
from ssl_ser.cli.options import (
    conditions_option,
    parse_paths,
    progress_option,
    refuse_repeats,
    split_options,
    split_settings,
)
from ssl_ser.extract.config import LONG_AUDIO_POLICIES
from ssl_ser.finetune.config import ADAPTERS, FINETUNE_DTYPES, FREEZES, HEADS, FinetuneConfig

# The registries own the choices; the options list exactly theirs.
HEAD_CHOICES: tuple[str, ...] = HEADS
FREEZE_CHOICES: tuple[str, ...] = FREEZES
ADAPTER_CHOICES: tuple[str, ...] = ADAPTERS
FINETUNE_DTYPE_CHOICES: tuple[str, ...] = FINETUNE_DTYPES
TELEPHONE_SOURCE_CHOICES: tuple[str, ...] = tuple(TELEPHONE_SOURCES)
LONG_AUDIO_CHOICES: tuple[str, ...] = LONG_AUDIO_POLICIES
DEFAULTS = FinetuneConfig(model="-")

EXAMPLE = (
    "\b\nExamples:\n"
    "  ser finetune --model facebook/wav2vec2-base --corpus emodb=/data/emodb \\\n"
    "    --split speaker-kfold --folds 5 --epochs 20 --output ser-out/emodb\n"
    "  # 4 GPUs of one node (each process takes its own GPU):\n"
    "  torchrun --nproc-per-node 4 -m ssl_ser.cli.main finetune --model ... --output ...\n"
)


@click.command(epilog=EXAMPLE)
@click.option("--model", required=True, help="Hub id or local model folder (Whisper: encoder).")
@click.option("--revision", default=None, help="Hub branch, tag or commit.")
@click.option(
    "--manifest", "manifests", default=None, help="Manifest(s) (CSV/parquet), comma-separated."
)
@click.option(
    "--corpus",
    "corpora",
    multiple=True,
    help="NAME=ROOT (a corpus folder read by reader NAME, e.g. emodb=/data/emodb) or "
    "NAME=MANIFEST. Repeatable; instead of or beside --manifest.",
)
@split_options
@conditions_option(
    "Audio condition(s) to load; each is trained and tested on itself unless "
    "--train-condition/--test-condition pick one pair."
)
@click.option(
    "--telephone-source",
    type=click.Choice(TELEPHONE_SOURCE_CHOICES),
    default="derived",
    show_default=True,
    help="telephone: the chain applied to clean audio, or the corpus's ready copies.",
)
@click.option("--epochs", type=int, default=DEFAULTS.epochs, show_default=True)
@click.option(
    "--patience",
    type=int,
    default=DEFAULTS.patience,
    show_default=True,
    help="Stop after this many epochs without a better validation UA (0: never).",
)
@click.option(
    "--lr",
    "learning_rate",
    type=float,
    default=DEFAULTS.learning_rate,
    show_default=True,
    help="Peak AdamW learning rate of the backbone (HF wav2vec2 audio-classification recipe).",
)
@click.option(
    "--head-lr",
    "head_learning_rate",
    type=float,
    default=DEFAULTS.head_learning_rate,
    show_default=True,
    help="Peak AdamW learning rate of the head and layer weights (as the torch probes).",
)
@click.option(
    "--spec-augment/--no-spec-augment",
    default=DEFAULTS.spec_augment,
    show_default=True,
    help="SpecAugment time masking in training, seeded per batch (resume stays exact).",
)
@click.option(
    "--mask-time-prob",
    type=float,
    default=DEFAULTS.mask_time_prob,
    show_default=True,
    help="About the share of frames masked: prob x frames / length spans are drawn "
    "(transformers' Wav2Vec2Config default).",
)
@click.option(
    "--mask-time-length",
    type=int,
    default=DEFAULTS.mask_time_length,
    show_default=True,
    help="Frames per masked span (Whisper: log-mel frames).",
)
@click.option(
    "--warmup",
    type=float,
    default=DEFAULTS.warmup,
    show_default=True,
    help="Fraction of steps of linear warm-up (then linear decay).",
)
@click.option("--weight-decay", type=float, default=DEFAULTS.weight_decay, show_default=True)
@click.option(
    "--accumulation",
    type=int,
    default=DEFAULTS.accumulation,
    show_default=True,
    help="Micro-batches per optimizer step.",
)
@click.option(
    "--clip",
    type=float,
    default=DEFAULTS.clip,
    show_default=True,
    help="Gradient norm clip (0: none).",
)
@click.option(
    "--batch-seconds",
    type=float,
    default=DEFAULTS.batch_seconds,
    show_default=True,
    help="Padded audio seconds per micro-batch.",
)
@click.option("--head", type=click.Choice(HEAD_CHOICES), default=DEFAULTS.head, show_default=True)
@click.option(
    "--hidden", type=int, default=DEFAULTS.hidden, show_default=True, help="mlp head width."
)
@click.option("--dropout", type=float, default=DEFAULTS.dropout, show_default=True)
@click.option(
    "--weighted-layers/--last-layer",
    default=DEFAULTS.weighted_layers,
    show_default=True,
    help="Head reads a learned softmax-weighted sum of all hidden states (SUPERB), or the "
    "last one (without --head-layer or --from-probe).",
)
@click.option(
    "--head-layer",
    type=int,
    default=None,
    help="Hidden state the head reads (0: input embedding); layers above it are cut off. "
    "Default: the --from-probe layer, else as --weighted-layers/--last-layer say.",
)
@click.option(
    "--from-probe",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Results folder of ser classify/probe (logreg, same folds): its best layer on "
    "validation speakers is read and each fold's head starts as that fold's probe.",
)
@click.option(
    "--standardise/--no-standardise",
    default=DEFAULTS.standardise,
    show_default=True,
    help="Standardise the head's input with the fitting rows' mean and scale (as the probes).",
)
@click.option(
    "--freeze",
    type=click.Choice(FREEZE_CHOICES),
    default=DEFAULTS.freeze,
    show_default=True,
    help="feature-encoder: the conv front end; base: the whole backbone (head only); "
    "none; top: all but the top --top-layers transformer layers.",
)
@click.option("--top-layers", type=int, default=None, help="Layers trained with --freeze top.")
@click.option(
    "--adapter", type=click.Choice(ADAPTER_CHOICES), default=DEFAULTS.adapter, show_default=True
)
@click.option("--lora-rank", type=int, default=DEFAULTS.lora_rank, show_default=True)
@click.option("--lora-alpha", type=float, default=DEFAULTS.lora_alpha, show_default=True)
@click.option(
    "--gradient-checkpointing/--no-gradient-checkpointing",
    default=DEFAULTS.gradient_checkpointing,
    show_default=True,
    help="Recompute activations in backward: less memory, slower steps.",
)
@click.option(
    "--class-weights/--no-class-weights",
    default=DEFAULTS.class_weights,
    show_default=True,
    help="Weight the loss by inverse class frequency (imbalanced corpora).",
)
@click.option(
    "--val-fraction",
    type=float,
    default=DEFAULTS.val_fraction,
    show_default=True,
    help="Share of training rows (whole speakers) that choose the epoch.",
)
@click.option(
    "--dtype",
    type=click.Choice(FINETUNE_DTYPE_CHOICES),
    default=DEFAULTS.dtype,
    show_default=True,
    help="Autocast precision on CUDA (CPU trains in float32).",
)
@click.option(
    "--max-seconds",
    type=float,
    default=DEFAULTS.max_seconds,
    show_default=True,
    help="Longest stretch of audio the model sees at once.",
)
@click.option(
    "--long-audio",
    type=click.Choice(LONG_AUDIO_CHOICES),
    default=DEFAULTS.long_audio,
    show_default=True,
)
@click.option("--whisper-trim", is_flag=True, help="Whisper: only the real audio's frames.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option("--workers", type=int, default=None, help="Audio loading processes.")
@click.option("--output", required=True, type=click.Path(file_okay=False), help="Results folder.")
@click.option("--force", is_flag=True, help="Train folds again that OUTPUT already holds.")
@click.option(
    "--save-models/--no-save-models",
    default=True,
    show_default=True,
    help="Save each fold's chosen model under OUTPUT/models/.",
)
@click.option(
    "--audio-in-memory",
    is_flag=True,
    help="Hold all prepared audio in memory (about 230 MB per hour) instead of a file in "
    "OUTPUT read per batch; the results are the same.",
)
@progress_option
def finetune(**options) -> None:
    """Fine-tune a model end to end on every fold and score the test speakers once.

    The folds are those `ser classify` makes from the same manifest, split
    options and seed, and the results land in the same tables (classifier
    `finetune`), so `ser report OUTPUT` shows fine-tuning beside the probes.
    A killed run resumes from its last epoch; finished folds are skipped.
    """
    from ssl_ser.finetune.run import FinetuneSettings, run_finetune
    from ssl_ser.pipelines.probe import corpus_manifests

    refuse_repeats("--condition", options["conditions"])
    split = split_settings(options)  # refused before any file is read
    table = corpus_manifests(parse_paths(options["manifests"] or ""), options["corpora"])
    fields = _config_fields(options)
    if options["from_probe"]:  # each fold's head starts as its probe
        fields["init"] = "probe"
    config = FinetuneConfig(**fields)
    settings = FinetuneSettings(
        labels=options["labels"],
        split=options["split"],
        split_options=split,
        conditions=tuple(options["conditions"]),
        train_condition=options["train_condition"],
        test_condition=options["test_condition"],
        telephone_source=options["telephone_source"],
        bootstrap=options["bootstrap"],
        device=options["device"],
        workers=options["workers"],
        force=options["force"],
        save_models=options["save_models"],
        from_probe=options["from_probe"],
        audio_in_memory=options["audio_in_memory"],
    )
    result = run_finetune(table, config, settings, options["output"], progress=options["progress"])
    if not result.main:  # under torchrun, rank 0 speaks for all processes
        return
    click.echo(
        f"{result.folds_run} fold(s) fine-tuned, {result.folds_skipped} already done, "
        f"{result.skipped_audio} utterance(s) skipped, {result.seconds:.1f} s; results in "
        f"{options['output']}"
    )
    click.echo(result.line)


def _config_fields(options: dict) -> dict:
    """The FinetuneConfig fields among the options (0 turns patience and clip off there)."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(FinetuneConfig)}
    return {k: v for k, v in options.items() if k in names}
