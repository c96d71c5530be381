"""`ser finetune`: fine-tune a model end to end on the folds `ser classify` makes."""

from __future__ import annotations

import click

from ssl_ser.cli.options import refuse_repeats, split_options, split_settings
from ssl_ser.extract.settings import ExtractSettings
from ssl_ser.finetune.settings import FinetuneSettings
from ssl_ser.settings import Feedback, options

# Where FinetuneSettings' options sit among the others (the rest: the training settings).
INPUTS: tuple[str, ...] = ("model", "revision", "manifests", "corpora")
AUDIO: tuple[str, ...] = ("conditions",)
OUTPUTS: tuple[str, ...] = ("output", "force", "save_models", "audio_in_memory")
LOADING: tuple[str, ...] = ("telephone_source", "device", "workers")  # as extraction loads it

EXAMPLE = (
    "\b\nExamples:\n"
    "  ser finetune --model facebook/wav2vec2-base --corpus emodb=/data/emodb \\\n"
    "    --split speaker-kfold --folds 5 --epochs 20 --output ser-out/emodb\n"
    "  # 4 GPUs of one node (each process takes its own GPU):\n"
    "  torchrun --nproc-per-node 4 -m ssl_ser.cli.main finetune --model ... --output ...\n"
)


@click.command(epilog=EXAMPLE)
@options(FinetuneSettings, only=INPUTS)
@split_options
@options(FinetuneSettings, only=AUDIO)
@options(ExtractSettings, only=LOADING)
@options(FinetuneSettings, exclude=(*INPUTS, *AUDIO, *OUTPUTS))
@options(FinetuneSettings, only=OUTPUTS)
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
    refuse_repeats("--condition", settings.conditions)
    table = corpus_manifests(settings.manifests, settings.corpora)
    loading = ExtractSettings.from_cli({name: options[name] for name in LOADING})
    run = RunOptions(
        **loading.fields_of(RunOptions),
        **settings.fields_of(
            RunOptions,
            labels=options["labels"],
            split=options["split"],
            split_options=split_settings(options),
            train_condition=options["train_condition"],
            test_condition=options["test_condition"],
            bootstrap=options["bootstrap"],
        ),
    )
    output = settings.output
    progress = Feedback.from_cli(options).progress
    result = run_finetune(table, settings.config(), run, output, progress=progress)
    if not result.main:  # under torchrun, rank 0 speaks for all processes
        return
    click.echo(
        f"{result.folds_run} fold(s) fine-tuned, {result.folds_skipped} already done, "
        f"{result.skipped_audio} utterance(s) skipped, {result.seconds:.1f} s; results in "
        f"{output}"
    )
    click.echo(result.line)
