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

from ssl_ser.settings import ExistingPaths, Opt, Settings, registry_choices

FILE_OUTPUT = click.Path(dir_okay=False, path_type=Path)
CONDITIONS = registry_choices("ssl_ser.audio", "CONDITIONS")
TELEPHONE_SOURCES = registry_choices("ssl_ser.audio", "TELEPHONE_SOURCES")
# What ser predict and ser bench-inference share with extraction: ExtractSettings' fields.
PREDICT_EXTRACTION: tuple[str, ...] = ("batch_seconds", "device")
BENCH_EXTRACTION: tuple[str, ...] = ("device", "whisper_trim")


class PredictSettings(Settings):
    """How ``ser predict`` reads new audio and where the table goes."""

    output: Annotated[
        Path | None,
        Opt(
            "CSV to write (default: print the table); missing folders on its path are created.",
            click_type=FILE_OUTPUT,
        ),
    ] = None
    condition: Annotated[
        str | None,
        Opt(
            "telephone: pass the audio through the telephone chain first, as in extraction "
            "[default: the condition of the model's training audio; another one is read with "
            "a warning].",
            choices=CONDITIONS,
        ),
    ] = None
    telephone_source: Annotated[
        str | None,
        Opt(
            "telephone: apply the simulated chain, or read the corpus's wav_telephone copies "
            "[default: that of the model's training audio, else derived].",
            choices=TELEPHONE_SOURCES,
        ),
    ] = None
    window: Annotated[
        float | None,
        Opt(
            "Label long recordings in windows of this many seconds: a row per window, then "
            "the file's row with the mean of its windows' probabilities."
        ),
    ] = None
    hop: Annotated[float | None, Opt("Seconds between windows [default: --window].")] = None
    workers: Annotated[int, Opt("Audio loading processes.", minimum=0)] = 0

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
    results: Annotated[
        Path | None,
        Opt(
            "A `ser classify` results folder to take the label set, seed and best savable "
            "classifier and pooling from (its caches must be the ones given).",
            click_type=click.Path(exists=True, file_okay=False, path_type=Path),
        ),
    ] = None
    classifier: Annotated[
        str | None,
        Opt("logreg, rf, knn, xgb, xgb-fast, linear or mlp [default: logreg, or RESULTS' best]."),
    ] = None
    labels: Annotated[str | None, Opt("Label set [default: basic4, or RESULTS'].")] = None
    pooling: Annotated[str | None, Opt("Pooling [default: auto, or RESULTS'].")] = None
    layers: Annotated[
        str,
        Opt(
            "selected (chosen on held-out training speakers), a layer, or a range with --combine.",
            flag="--layer",
        ),
    ] = "selected"
    combine: Annotated[
        str,
        Opt(
            "each: the one layer of --layer; concat/mean: concatenate or average the layers "
            "of the --layer range.",
            choices=registry_choices("ssl_ser.classify.names", "COMBINE_NAMES"),
        ),
    ] = "each"
    condition: Annotated[str | None, Opt("Condition of the rows to fit on.")] = None
    model: Annotated[str | None, Opt("Use only caches of this model.")] = None
    seed: Annotated[int | None, Opt("Seed [default: 0, or RESULTS'].")] = None

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
    durations: Annotated[tuple[float, ...], Opt("Audio seconds.")] = (1.0, 5.0, 10.0, 20.0)
    repeats: Annotated[int, Opt("Timed runs per duration.")] = 10
    warmup: Annotated[int, Opt("Untimed runs first.")] = 2
    input_rate: Annotated[
        int, Opt("Sample rate of the synthetic input audio (resampled to the model's rate).")
    ] = 8000
    threads: Annotated[
        int | None,
        Opt("CPU threads of torch (default: torch's own, one per core).", minimum=1),
    ] = None
    output: Annotated[Path, Opt("CSV to write.", click_type=FILE_OUTPUT)] = Path(
        "bench_inference.csv"
    )
