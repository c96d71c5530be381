"""Click options that several ``ser`` commands share, defined once so they stay alike."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import click

from ssl_ser.audio import CONDITIONS
from ssl_ser.classify.names import SPLIT_NAMES
from ssl_ser.classify.splits import SplitOptions, check_seed, refuse_unused
from ssl_ser.errors import ConfigError

# The split registry owns the choices; the option lists exactly its names.
SPLIT_CHOICES: tuple[str, ...] = SPLIT_NAMES

progress_option = click.option("--progress/--no-progress", default=True, show_default=True)
"""``--progress/--no-progress``: show tqdm progress bars (on by default)."""


def check_seeds(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Click callback of every ``--seed``: each seed from 0 to 2**32 - 1, else a one-line error.

    Raises:
        ConfigError: naming the option, the value and the range.
    """
    for seed in value if isinstance(value, tuple) else () if value is None else (value,):
        check_seed(seed, param.opts[0] if param.opts else "--seed")
    return value


def refuse_repeats(option: str, values: Iterable[str]) -> None:
    """Refuse a repeatable option given the same value twice, rather than run it once or twice.

    Raises:
        ConfigError: naming the option and the repeated value.
    """
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ConfigError(f"{option} {value} is given twice; give each value once")
        seen.add(value)


def parse_paths(value: str) -> list[Path]:
    """``a.csv, b.csv`` -> paths (empty parts dropped)."""
    return [Path(part.strip()) for part in value.split(",") if part.strip()]


def parse_names(value: str | None) -> tuple[str, ...]:
    """``emodb, emovo`` -> names (empty parts dropped; None -> ())."""
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def parse_ratios(value: str) -> tuple[float, float, float]:
    """``0.8,0.1,0.1`` -> three non-negative numbers with a positive sum.

    Raises:
        ConfigError: naming the value and its form.
    """
    try:
        parts = tuple(float(part) for part in value.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 0 or sum(parts) <= 0:
        raise ConfigError(
            f"--ratios {value!r} must be three non-negative numbers, e.g. 0.8,0.1,0.1"
        )
    return parts  # type: ignore[return-value]


def split_settings(options: Mapping[str, Any]) -> SplitOptions:
    """The split options of a command that takes :func:`split_options`, parsed and typed.

    Raises:
        ConfigError: bad ``--ratios`` (see :func:`parse_ratios`), or an option the
            ``--split`` method does not read (see :func:`~ssl_ser.classify.splits.refuse_unused`).
    """
    split = SplitOptions(
        folds=options["folds"],
        seed=options["seed"],
        ratios=parse_ratios(options["ratios"]),
        train_corpora=parse_names(options["train_corpora"]),
        test_corpora=parse_names(options["test_corpora"]),
        shots=options["shots"],
    )
    given = {"folds": split.folds, "ratios": split.ratios, "shots": split.shots}
    refuse_unused(
        options["split"], given | {"train": split.train_corpora, "test": split.test_corpora}
    )
    return split


SPLIT_OPTIONS: tuple[Callable[[Any], Any], ...] = (
    click.option(
        "--labels",
        default="basic4",
        show_default=True,
        help="Label set: basic4, all, sentiment, or a comma list of canonical emotions "
        "(angry,happy,sad,neutral,fear,disgust); rows of other emotions are left out.",
    ),
    click.option(
        "--split", type=click.Choice(SPLIT_CHOICES), default="speaker-kfold", show_default=True
    ),
    click.option(
        "--folds", type=int, default=5, show_default=True, help="Folds (speaker-kfold, few-shot)."
    ),
    click.option(
        "--ratios",
        default="0.8,0.1,0.1",
        show_default=True,
        help="train,val,test (random, speaker).",
    ),
    click.option("--train", "train_corpora", default=None, help="Training corpora (cross-corpus)."),
    click.option(
        "--test", "test_corpora", default=None, help="Test corpora (cross-corpus, few-shot)."
    ),
    click.option(
        "--shots", type=int, default=10, show_default=True, help="Target utterances (few-shot)."
    ),
    click.option(
        "--train-condition",
        default=None,
        help="Train on this condition (its features; its audio for finetune).",
    ),
    click.option("--test-condition", default=None, help="Test on this condition."),
    click.option(
        "--bootstrap", type=int, default=1000, show_default=True, help="Bootstrap resamples."
    ),
    click.option("--seed", type=int, default=0, show_default=True, callback=check_seeds),
)


def split_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``ser finetune``'s label-set and split options, until it takes them from settings.

    ``ser classify`` generates the same options from
    :class:`~ssl_ser.classify.settings.SplitSettings` and its neighbours; this list
    goes once ``ser finetune`` does too.
    """
    for option in reversed(SPLIT_OPTIONS):
        command = option(command)
    return command


def conditions_option(help_text: str) -> Callable[[Any], Any]:
    """``--condition`` (repeatable, clean by default) over the audio module's conditions."""
    return click.option(
        "--condition",
        "conditions",
        type=click.Choice(tuple(CONDITIONS)),
        multiple=True,
        default=("clean",),
        show_default=True,
        help=help_text,
    )
