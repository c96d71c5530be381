"""`ser finetune`: fine-tune a model end to end on the folds `ser classify` makes."""

from __future__ import annotations

from typing import Any

import click

from ssl_ser.classify.settings import ClassifyRun, SplitSettings, SweepGrid, SweepSettings
from ssl_ser.cli.options import refuse_repeats
from ssl_ser.extract.settings import ExtractSettings
from ssl_ser.finetune.settings import FinetuneSettings
from ssl_ser.settings import Feedback, options

# Where FinetuneSettings' options sit among the others (the rest: the training settings).
INPUTS: tuple[str, ...] = ("model", "revision", "manifests", "corpora")
AUDIO: tuple[str, ...] = ("conditions",)
OUTPUTS: tuple[str, ...] = ("output", "force", "save_models", "audio_in_memory")
# ser classify's own, so that both make the same folds from the same words
GRID: tuple[str, ...] = ("labels", "seeds")
PAIR: tuple[str, ...] = ("train_condition", "test_condition")
SCORING: tuple[str, ...] = ("bootstrap",)
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
@options(SweepGrid, only=GRID)
@options(SplitSettings)
@options(ClassifyRun, only=PAIR)
@options(SweepSettings, only=SCORING)
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
    Several --seed values, and with --split few-shot several --shots, run one
    fine-tune each into OUTPUT. A killed run resumes from its last epoch;
    finished folds are skipped.
    """
    from ssl_ser.corpora import corpus_manifests
    from ssl_ser.finetune.run import run_finetune
    from ssl_ser.pipelines.experiment import parse_corpus

    settings = FinetuneSettings.from_cli(options)
    runs = run_options(options, settings)  # refused before any file is read
    table = corpus_manifests(settings.manifests, [parse_corpus(c) for c in settings.corpora])
    progress = Feedback.from_cli(options).progress
    for run in runs:
        result = run_finetune(table, settings.config(), run, settings.output, progress=progress)
        if result.main:  # under torchrun, rank 0 speaks for all processes
            click.echo(
                f"{result.folds_run} fold(s) fine-tuned, {result.folds_skipped} already done, "
                f"{result.skipped_audio} utterance(s) skipped, {result.seconds:.1f} s; results "
                f"in {settings.output}"
            )
            click.echo(result.line)


def run_options(options: dict[str, Any], settings: FinetuneSettings) -> list[Any]:
    """One :class:`~ssl_ser.finetune.run.RunOptions` per --seed and (few-shot) --shots value.

    Raises:
        ConfigError, UnknownChoiceError: a bad option (an option the split does not
            read, a repeated condition...), named by its flag.
    """
    from ssl_ser.classify.settings import split_options
    from ssl_ser.finetune.run import RunOptions

    refuse_repeats("--condition", settings.conditions)
    grid, split = SweepGrid.from_cli(options), SplitSettings.from_cli(options)
    loading = ExtractSettings.from_cli({name: options[name] for name in LOADING})
    fixed = loading.fields_of(RunOptions) | {name: options[name] for name in PAIR}
    fixed |= SweepSettings.from_cli({name: options[name] for name in SCORING}).fields_of(RunOptions)
    fixed |= {"labels": grid.labels, "split": split.method}
    shots = split.shots if split.method == "few-shot" else (None,)
    return [
        RunOptions(
            **settings.fields_of(RunOptions, split_options=split_options(split, s, n), **fixed)
        )
        for s in grid.seeds
        for n in shots
    ]
