"""Prediction settings: the options of ``ser predict``, ``ser export`` and ``ser bench-inference``.

Each model is one command's own options; the device, batch size and Whisper
trim they share with extraction are
:class:`~ssl_ser.extract.settings.ExtractSettings` fields, taken from there.
This module imports neither torch nor pandas.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import click
from pydantic import ValidationInfo, field_validator

from ssl_ser.choices import CONDITIONS, TELEPHONE_SOURCES
from ssl_ser.settings import ExistingPaths, Opt, Settings, registry_choices, setting

FILE_OUTPUT = click.Path(dir_okay=False, path_type=Path)
# What ser predict and ser bench-inference share with extraction: ExtractSettings' fields.
PREDICT_EXTRACTION: tuple[str, ...] = ("batch_seconds", "device")
BENCH_EXTRACTION: tuple[str, ...] = ("device", "whisper_trim")


class PredictSettings(Settings):
    """How ``ser predict`` reads new audio and where the table goes."""

    output: Path | None = setting(
        None,
        "CSV to write (default: print the table); missing folders on its path are created.",
        click_type=FILE_OUTPUT,
    )
    condition: str | None = setting(
        None,
        "telephone: pass the audio through the telephone chain first, as in extraction "
        "[default: the condition of the model's training audio; another one is read with "
        "a warning].",
        choices=CONDITIONS,
    )
    telephone_source: str | None = setting(
        None,
        "telephone: apply the simulated chain, or read the corpus's wav_telephone copies "
        "[default: that of the model's training audio, else derived].",
        choices=TELEPHONE_SOURCES,
    )
    window: float | None = setting(
        None,
        "Label long recordings in windows of this many seconds: a row per window, then "
        "the file's row with the mean of its windows' probabilities.",
    )
    hop: float | None = setting(None, "Seconds between windows [default: --window].")
    workers: int = setting(0, "Audio loading processes.", minimum=0)

    @field_validator("window", "hop")
    @classmethod
    def _seconds(cls, value: float | None, info: ValidationInfo) -> float | None:
        """A window or hop: positive, finite seconds, checked before the model loads."""
        from ssl_ser.predict.predictor import check_seconds

        return None if value is None else check_seconds(value, cls.place(info))


class ExportSettings(Settings):
    """What ``ser export`` fits a probe on, and how (unset: logreg, basic4... or RESULTS')."""

    caches: Annotated[
        tuple[str, ...], Opt("Feature cache(s), comma-separated.", flag="--cache"), ExistingPaths
    ]
    manifests: Annotated[
        tuple[str, ...],
        Opt("Manifest(s) of the cached corpora (CSV/parquet).", flag="--manifest"),
        ExistingPaths,
    ]
    output: Annotated[
        Path,
        Opt("Bundle folder.", click_type=click.Path(file_okay=False, path_type=Path)),
    ]
    results: Path | None = setting(
        None,
        "A `ser classify` results folder to take the label set, seed and best savable "
        "classifier and pooling from (its caches must be the ones given).",
        click_type=click.Path(exists=True, file_okay=False, path_type=Path),
    )
    classifier: str | None = setting(
        None, "logreg, rf, knn, xgb, xgb-fast, linear or mlp [default: logreg, or RESULTS' best]."
    )
    labels: str | None = setting(None, "Label set [default: basic4, or RESULTS'].")
    pooling: str | None = setting(None, "Pooling [default: auto, or RESULTS'].")
    layers: str = setting(
        "selected",
        "selected (chosen on held-out training speakers), a layer, or a range with --combine.",
        flag="--layer",
    )
    combine: str = setting(
        "each",
        "each: the one layer of --layer; concat/mean: concatenate or average the layers "
        "of the --layer range.",
        choices=registry_choices("ssl_ser.classify.names", "COMBINE_NAMES"),
    )
    condition: str | None = setting(None, "Condition of the rows to fit on.")
    model: str | None = setting(None, "Use only caches of this model.")
    seed: int | None = setting(None, "Seed [default: 0, or RESULTS'].")

    @field_validator("seed")
    @classmethod
    def _seed(cls, seed: Any, info: ValidationInfo) -> int | None:
        from ssl_ser.classify.splits import check_seed

        return None if seed is None else check_seed(seed, cls.place(info))


class BenchSettings(Settings):
    """What ``ser bench-inference`` times, how often, and where the table goes."""

    target: Annotated[
        str,
        Opt(
            "A model id or folder, a probe bundle, or a fine-tuned model folder from "
            "`ser finetune`.",
            flag="--model",
        ),
    ]
    durations: tuple[float, ...] = setting((1.0, 5.0, 10.0, 20.0), "Audio seconds.")
    repeats: int = setting(10, "Timed runs per duration.")
    warmup: int = setting(2, "Untimed runs first.")
    input_rate: int = setting(
        8000, "Sample rate of the synthetic input audio (resampled to the model's rate)."
    )
    threads: int | None = setting(
        None, "CPU threads of torch (default: torch's own, one per core).", minimum=1
    )
    output: Path = setting(Path("bench_inference.csv"), "CSV to write.", click_type=FILE_OUTPUT)
