"""`ser probe`, `ser run` and `ser demo`: the named pipelines (extract, classify, report).

Thin commands over :mod:`ssl_ser.pipelines`: parse options, call one function,
print what happened. Torch and transformers load only when a model runs.
"""

from __future__ import annotations

from typing import Any

import click

from ssl_ser.classify.settings import SplitSettings, SweepSettings
from ssl_ser.cli.options import refuse_repeats
from ssl_ser.extract.settings import ExtractSettings
from ssl_ser.pipelines.demo import DemoSettings
from ssl_ser.pipelines.experiment import Experiment, RunSettings
from ssl_ser.pipelines.quick import NOT_PROBE_EXTRACT, ProbeSettings
from ssl_ser.settings import Feedback, options

PROBE_EXAMPLE = (
    "\b\nExample (a real model on a real corpus):\n"
    "  ser probe --model facebook/wav2vec2-base --model egemaps \\\n"
    "    --corpus emodb=/data/emodb --condition clean --condition telephone \\\n"
    "    --classifiers logreg,mlp --split speaker-kfold --folds 5 \\\n"
    "    --cache-dir ser-out/cache --output ser-out/emodb"
)


# What a probe sweeps comes first in --help, then how (the rest of the experiment's fields).
PROBE_FIRST = ("models", "corpora", "conditions", "classifiers", "labels", "layers", "pooling")


@click.command(epilog=PROBE_EXAMPLE)
@options(Experiment, only=PROBE_FIRST)
@options(Experiment, exclude=PROBE_FIRST)
@options(SplitSettings)
@options(ExtractSettings, exclude=(*NOT_PROBE_EXTRACT, "root", "shard"))
@options(SweepSettings)
@options(ProbeSettings)
@options(RunSettings)
@options(Feedback)
def probe(**values: Any) -> None:
    """Extract (where the cache is missing), classify over all layers, and report.

    Several models, corpora and conditions may be given; every combination is
    extracted once into the cache and swept layer by layer. With --finetune, each
    SSL model is also fine-tuned on every fold (as `ser finetune` with its
    defaults) before the report is written.
    """
    from ssl_ser.pipelines.quick import probe as run_probe

    refuse_repeats("--condition", values["conditions"])
    click.echo("\n".join(run_probe(values).lines()))


@click.command()
@click.argument("experiment_file", metavar="EXPERIMENT", type=click.Path(dir_okay=False))
@options(RunSettings)
@options(Feedback)
def run(experiment_file: str, dry_run: bool, progress: bool) -> None:
    """Run the experiment grid in EXPERIMENT (.yaml, .yml or .toml); re-runs resume.

    Finished extraction (complete caches) and finished classify cells are
    skipped, so a killed or extended run is completed by running it again.
    """
    from ssl_ser.pipelines.experiment import load_experiment
    from ssl_ser.pipelines.run import run_experiment

    experiment = load_experiment(experiment_file)
    summary = run_experiment(experiment, source=experiment_file, dry_run=dry_run, progress=progress)
    click.echo("\n".join(summary.lines()))


@click.command()
@options(DemoSettings)
@options(Feedback)
def demo(**values) -> None:
    """Offline demo: synthetic emotional speech, an untrained model, the full pipeline.

    Synthesises a corpus, builds a small random-weight wav2vec2 model, extracts
    MFCC and SSL features of clean and telephone audio, runs a speaker-independent
    sweep and writes the report. Needs no network and no downloads.
    """
    from ssl_ser.pipelines.demo import run_demo

    settings = DemoSettings.from_cli(values)
    summary = run_demo(settings.output, settings.size, progress=Feedback.from_cli(values).progress)
    click.echo("\n".join(summary.lines()))
    for path in summary.reports:
        click.echo(f"open {path.resolve()} in a browser to read the report")
