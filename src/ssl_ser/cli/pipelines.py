"""`ser probe`, `ser run` and `ser demo`: the named pipelines (extract, classify, report).

Thin commands over :mod:`ssl_ser.pipelines`: parse options, call one function,
print what happened. Torch and transformers load only when a model runs.
"""

from __future__ import annotations

from pathlib import Path

import click

from ssl_ser.classify.splits import SPLITS, refuse_unused
from ssl_ser.cli.options import (
    check_seeds,
    conditions_option,
    dry_run_option,
    progress_option,
    refuse_repeats,
)
from ssl_ser.extract.config import DTYPES
from ssl_ser.finetune.config import FinetuneConfig
from ssl_ser.pipelines.demo import SIZES
from ssl_ser.pipelines.experiment import CORPORA_MODES, PAIR_KEYWORDS

# The registries own the choices; the options list exactly theirs.
SPLIT_CHOICES: tuple[str, ...] = tuple(SPLITS)
DTYPE_CHOICES: tuple[str, ...] = DTYPES
FINETUNE_DEFAULTS = FinetuneConfig(model="-")  # --finetune takes ser finetune's defaults


def _names(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def _counts(value: str | None) -> list[int] | None:
    from ssl_ser.errors import ConfigError

    names = _names(value)
    if not names:
        return None
    try:
        return [int(name) for name in names]
    except ValueError:
        raise ConfigError(f"--shots {value!r} must be whole numbers, e.g. 0,10,50") from None


def _finetune(epochs: int | None) -> dict[str, int] | None:
    """The experiment's ``finetune`` section of ``--finetune [EPOCHS]`` (None: no fine-tuning)."""
    return None if epochs is None else {"epochs": epochs}


def _echo(lines: list[str]) -> None:
    for line in lines:
        click.echo(line)


PROBE_EXAMPLE = (
    "\b\nExample (a real model on a real corpus):\n"
    "  ser probe --model facebook/wav2vec2-base --model egemaps \\\n"
    "    --corpus emodb=/data/emodb --condition clean --condition telephone \\\n"
    "    --classifiers logreg,mlp --split speaker-kfold --folds 5 \\\n"
    "    --cache-dir ser-out/cache --output ser-out/emodb"
)


@click.command(epilog=PROBE_EXAMPLE)
@click.option(
    "--model",
    "models",
    multiple=True,
    required=True,
    help="Hub id (facebook/wav2vec2-base), local model folder, or egemaps/mfcc/logmel. Repeatable.",
)
@click.option(
    "--corpus",
    "corpora",
    multiple=True,
    required=True,
    help="NAME=ROOT (a corpus folder, e.g. emodb=/data/emodb) or NAME=MANIFEST "
    "(a manifest CSV/parquet from `ser prepare`). Repeatable.",
)
@conditions_option("Audio condition to extract. Repeatable (each value once).")
@click.option(
    "--condition-pairs",
    type=click.Choice(PAIR_KEYWORDS),
    default="matched",
    show_default=True,
    help="Evaluate each condition on itself, or every train x test combination.",
)
@click.option("--classifiers", default="logreg", show_default=True, help="Comma list.")
@click.option(
    "--split", type=click.Choice(SPLIT_CHOICES), default="speaker-kfold", show_default=True
)
@click.option("--folds", type=int, default=5, show_default=True)
@click.option("--train", "train_corpora", default=None, help="Training corpora (cross-corpus).")
@click.option("--test", "test_corpora", default=None, help="Test corpora (cross-corpus, few-shot).")
@click.option("--shots", default=None, help="Target utterances (few-shot); a comma list runs each.")
@click.option(
    "--corpora-mode",
    type=click.Choice(CORPORA_MODES),
    default=None,
    help="One sweep per corpus, or one over all corpora (default: by split).",
)
@click.option(
    "--labels",
    default="basic4",
    show_default=True,
    help="basic4, all, sentiment, or a comma list of emotions (angry,happy,sad,fear).",
)
@click.option("--layers", default="all", show_default=True, help="all, 0-6, or 3,6,9.")
@click.option(
    "--pooling",
    default="auto",
    show_default=True,
    help="auto (per model: mean+std for mfcc/logmel, the functionals for egemaps, mean for "
    "SSL models), mean, std, mean+std; a comma list sweeps several.",
)
@click.option(
    "--seed",
    "seeds",
    type=int,
    multiple=True,
    default=(0,),
    show_default=True,
    callback=check_seeds,
)
@click.option(
    "--cache-dir",
    default="ser-out/cache",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Feature cache root (shared between runs).",
)
@click.option(
    "--output",
    default="ser-out/probe",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Results and report folder.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option("--dtype", type=click.Choice(DTYPE_CHOICES), default="float32", show_default=True)
@click.option("--batch-seconds", type=float, default=None, help="Padded audio seconds per batch.")
@click.option("--workers", type=int, default=None, help="Audio loading processes.")
@click.option("--max-seconds", type=float, default=None, help="Window long audio to this length.")
@click.option("--jobs", type=int, default=None, help="Parallel classify cells.")
@click.option(
    "--finetune",
    "finetune_epochs",
    type=click.IntRange(min=1),
    is_flag=False,
    flag_value=FINETUNE_DEFAULTS.epochs,
    default=None,
    metavar="[EPOCHS]",
    help="Also fine-tune each SSL model (not the classic baselines) end to end on the same "
    "folds, with ser finetune's default settings and at most EPOCHS epochs "
    f"(alone: {FINETUNE_DEFAULTS.epochs}); classifier finetune rows in the same results "
    "and report.",
)
@click.option("--report/--no-report", default=True, show_default=True)
@dry_run_option
@progress_option
def probe(**options) -> None:
    """Extract (where the cache is missing), classify over all layers, and report.

    Several models, corpora and conditions may be given; every combination is
    extracted once into the cache and swept layer by layer. With --finetune, each
    SSL model is also fine-tuned on every fold (as `ser finetune` with its
    defaults) before the report is written.
    """
    from ssl_ser.pipelines.probe import probe as run_probe

    refuse_repeats("--condition", options["conditions"])
    split = {
        "method": options["split"],
        "folds": options["folds"],
        "train": _names(options["train_corpora"]),
        "test": _names(options["test_corpora"]),
        "shots": _counts(options["shots"]),
    }
    refuse_unused(split["method"], {k: v for k, v in split.items() if k != "method"})
    summary = run_probe(
        options["models"],
        options["corpora"],
        conditions=options["conditions"],
        condition_pairs=options["condition_pairs"],
        classifiers=_names(options["classifiers"]),
        labels=options["labels"],
        layers=options["layers"],
        pooling=options["pooling"],
        seeds=list(options["seeds"]),
        corpora_mode=options["corpora_mode"],
        cache_dir=options["cache_dir"],
        output=options["output"],
        report=options["report"],
        split=split,
        extract={
            "device": options["device"],
            "dtype": options["dtype"],
            "batch_seconds": options["batch_seconds"],
            "workers": options["workers"],
            "max_seconds": options["max_seconds"],
        },
        classify={"jobs": options["jobs"]},
        finetune=_finetune(options["finetune_epochs"]),
        dry_run=options["dry_run"],
        progress=options["progress"],
    )
    _echo(summary.lines())


@click.command()
@click.argument("experiment_file", metavar="EXPERIMENT", type=click.Path(dir_okay=False))
@dry_run_option
@progress_option
def run(experiment_file: str, dry_run: bool, progress: bool) -> None:
    """Run the experiment grid in EXPERIMENT (.yaml, .yml or .toml); re-runs resume.

    Finished extraction (complete caches) and finished classify cells are
    skipped, so a killed or extended run is completed by running it again.
    """
    from ssl_ser.pipelines.experiment import load_experiment
    from ssl_ser.pipelines.run import run_experiment

    experiment = load_experiment(experiment_file)
    summary = run_experiment(experiment, source=experiment_file, dry_run=dry_run, progress=progress)
    _echo(summary.lines())


@click.command()
@click.option(
    "--output",
    default="ser-demo",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the corpus, model, caches, results and report.",
)
@click.option(
    "--size",
    type=click.Choice(tuple(SIZES)),
    default="full",
    show_default=True,
    help="full: 288 utterances of 6 voices; small: 48 utterances of 4 voices.",
)
@progress_option
def demo(output: Path, size: str, progress: bool) -> None:
    """Offline demo: synthetic emotional speech, an untrained model, the full pipeline.

    Synthesises a corpus, builds a small random-weight wav2vec2 model, extracts
    MFCC and SSL features of clean and telephone audio, runs a speaker-independent
    sweep and writes the report. Needs no network and no downloads.
    """
    from ssl_ser.pipelines.demo import run_demo

    summary = run_demo(output, size, progress=progress)
    _echo(summary.lines())
    for path in summary.reports:
        click.echo(f"open {path.resolve()} in a browser to read the report")
