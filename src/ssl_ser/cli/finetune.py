"""`ser finetune`: fine-tune a model end to end on the folds `ser classify` makes."""

from __future__ import annotations

import click

from ssl_ser.audio import TELEPHONE_SOURCES
from ssl_ser.cli.options import (
    conditions_option,
    parse_paths,
    refuse_repeats,
    split_options,
    split_settings,
)
from ssl_ser.finetune.settings import FinetuneSettings
from ssl_ser.settings import Feedback, options

# Options of FinetuneSettings that come last, after where the audio and the results are.
OUTPUT_OPTIONS: tuple[str, ...] = ("force", "save_models", "audio_in_memory")
FIRST_OPTIONS: tuple[str, ...] = ("model", "revision")

EXAMPLE = (
    "\b\nExamples:\n"
    "  ser finetune --model facebook/wav2vec2-base --corpus emodb=/data/emodb \\\n"
    "    --split speaker-kfold --folds 5 --epochs 20 --output ser-out/emodb\n"
    "  # 4 GPUs of one node (each process takes its own GPU):\n"
    "  torchrun --nproc-per-node 4 -m ssl_ser.cli.main finetune --model ... --output ...\n"
)


@click.command(epilog=EXAMPLE)
@options(FinetuneSettings, only=FIRST_OPTIONS)
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
    type=click.Choice(tuple(TELEPHONE_SOURCES)),
    default="derived",
    show_default=True,
    help="telephone: the chain applied to clean audio, or the corpus's ready copies.",
)
@options(FinetuneSettings, exclude=(*FIRST_OPTIONS, *OUTPUT_OPTIONS))
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option("--workers", type=int, default=None, help="Audio loading processes.")
@click.option("--output", required=True, type=click.Path(file_okay=False), help="Results folder.")
@options(FinetuneSettings, only=OUTPUT_OPTIONS)
@options(Feedback)
def finetune(**options) -> None:
    """Fine-tune a model end to end on every fold and score the test speakers once.

    The folds are those `ser classify` makes from the same manifest, split
    options and seed, and the results land in the same tables (classifier
    `finetune`), so `ser report OUTPUT` shows fine-tuning beside the probes.
    A killed run resumes from its last epoch; finished folds are skipped.
    """
    from ssl_ser.finetune.run import RunOptions, run_finetune
    from ssl_ser.pipelines.probe import corpus_manifests

    settings = FinetuneSettings.from_cli(options)
    refuse_repeats("--condition", options["conditions"])
    table = corpus_manifests(parse_paths(options["manifests"] or ""), options["corpora"])
    run = RunOptions(
        **settings.fields_of(
            RunOptions,
            labels=options["labels"],
            split=options["split"],
            split_options=split_settings(options),
            conditions=tuple(options["conditions"]),
            train_condition=options["train_condition"],
            test_condition=options["test_condition"],
            telephone_source=options["telephone_source"],
            bootstrap=options["bootstrap"],
            device=options["device"],
            workers=options["workers"],
        )
    )
    output = options["output"]
    result = run_finetune(table, settings.config(), run, output, progress=options["progress"])
    if not result.main:  # under torchrun, rank 0 speaks for all processes
        return
    click.echo(
        f"{result.folds_run} fold(s) fine-tuned, {result.folds_skipped} already done, "
        f"{result.skipped_audio} utterance(s) skipped, {result.seconds:.1f} s; results in "
        f"{output}"
    )
    click.echo(result.line)
