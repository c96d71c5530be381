"""Classify settings: what a sweep covers, how it splits, and how its cells run.

:class:`SweepGrid` (labels, layers, poolings, classifiers) is at the top level of
an experiment file, :class:`SplitSettings` is its ``split`` section and
:class:`SweepSettings` its ``classify`` section; ``ser classify``, ``ser
finetune`` and ``ser probe`` take their options from the same fields. The
little grammars (label sets, layers, poolings) are parsed here, once. This
module imports no numerical library.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ValidationInfo, field_validator

from ssl_ser.settings import CELL_ID, Opt, Settings, invalid, registry_choices, wrong_type

LAYERS_HELP = "all, a range 0-6, or a list 3,6,9."
POOLING_HELP = (
    "auto (per extractor: mean+std for mfcc/logmel, the functionals for egemaps, mean for "
    "SSL models), mean, std, mean+std; a comma list sweeps several."
)
LABELS_HELP = (
    "Label set: basic4, all, sentiment, or a comma list of canonical emotions "
    "(angry,happy,sad,neutral,fear,disgust); rows of other emotions are left out."
)


def parse_labels(value: object, where: str) -> str:
    """A label set name, or canonical emotions as a list or comma string: the set's spelling."""
    from ssl_ser.labels import label_set_name

    if isinstance(value, str) and value.strip():
        names = [part.strip() for part in value.split(",") if part.strip()]
        return label_set_name(names if "," in value else value.strip(), where=where)
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return label_set_name(list(value), where=where)
    raise wrong_type(
        value, "basic4, all, sentiment, or a list of canonical emotions (angry, happy...)", where
    )


def parse_layers(value: object, where: str) -> tuple[str, ...]:
    """``all``, ``0-6``, ``3,6,9``, one layer number or a list of them: the items."""
    if isinstance(value, str) and value.strip():
        items: list[Any] = value.split(",")
    elif isinstance(value, int) and not isinstance(value, bool):
        items = [str(value)]
    elif isinstance(value, list | tuple) and value and all(isinstance(v, int | str) for v in value):
        items = [str(v) for v in value]
    else:
        items = []
    layers = tuple(item.strip() for item in items if item.strip())
    if not layers:
        raise wrong_type(value, "all, a range like 0-6, or a list of layer numbers", where)
    return layers


def parse_poolings(value: object, where: str) -> tuple[str, ...]:
    """``auto``, ``mean``, ``std``, ``mean+std``, a comma string or a list of them."""
    items = list(value) if isinstance(value, list | tuple) else [value]
    names = ()
    if items and all(isinstance(v, str) for v in items):
        names = tuple(p.strip() for item in items for p in item.split(",") if p.strip())
    if not names:
        raise wrong_type(value, "auto, mean, std, mean+std or a list of them", where)
    return names


class SweepGrid(Settings):
    """What a sweep covers: the label set, layers, poolings and classifiers."""

    labels: Annotated[str, Opt(LABELS_HELP, enters=CELL_ID)] = "basic4"
    layers: Annotated[tuple[str, ...], Opt(LAYERS_HELP, enters=CELL_ID)] = ("all",)
    pooling: Annotated[
        tuple[str, ...],
        Opt(
            POOLING_HELP,
            choices=registry_choices("ssl_ser.classify.features", "POOLING_OPTIONS"),
            enters=CELL_ID,
        ),
    ] = ("auto",)
    classifiers: Annotated[
        tuple[str, ...],
        Opt(
            "Comma list of classifiers.",
            choices=registry_choices("ssl_ser.classify.registry", "CLASSIFIERS"),
            enters=CELL_ID,
        ),
    ] = ("logreg",)

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: object, info: ValidationInfo) -> str:
        return parse_labels(value, cls.place(info))

    @field_validator("layers", mode="before")
    @classmethod
    def _layers(cls, value: object, info: ValidationInfo) -> tuple[str, ...]:
        return parse_layers(value, cls.place(info))

    @field_validator("pooling", mode="before")
    @classmethod
    def _pooling(cls, value: object, info: ValidationInfo) -> tuple[str, ...]:
        return parse_poolings(value, cls.place(info))


class SplitSettings(Settings):
    """How the data is split into training and test speakers (the ``split`` section)."""

    section = "split"

    method: Annotated[
        str,
        Opt(
            "How to split: by speaker folds, leaving one speaker out, across corpora...",
            choices=registry_choices("ssl_ser.classify.splits", "SPLITS"),
            enters=CELL_ID,
            flag="--split",
        ),
    ] = "speaker-kfold"
    folds: Annotated[int, Opt("Folds (speaker-kfold, few-shot).", enters=CELL_ID, minimum=2)] = 5
    ratios: Annotated[
        tuple[float, ...], Opt("train,val,test (random, speaker).", enters=CELL_ID)
    ] = (0.8, 0.1, 0.1)
    train: Annotated[
        tuple[str, ...], Opt("Training corpora (cross-corpus, few-shot).", enters=CELL_ID)
    ] = ()
    test: Annotated[
        tuple[str, ...], Opt("Test corpora (cross-corpus, few-shot).", enters=CELL_ID)
    ] = ()
    shots: Annotated[
        tuple[int, ...],
        Opt("Target utterances (few-shot); a comma list runs each.", enters=CELL_ID, minimum=0),
    ] = (10,)

    @field_validator("ratios", mode="after")
    @classmethod
    def _ratios(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if len(value) != 3 or min(value) < 0 or sum(value) <= 0:
            raise invalid(value, "three non-negative numbers, e.g. 0.8,0.1,0.1")
        return value


class SweepSettings(Settings):
    """How a sweep's cells are fitted and where they run (the ``classify`` section)."""

    section = "classify"

    combine: Annotated[
        str,
        Opt(
            "Sweep layers one by one, or concatenate/average the selected layers.",
            choices=registry_choices("ssl_ser.classify.features", "COMBINES"),
            enters=CELL_ID,
        ),
    ] = "each"
    search: Annotated[
        bool, Opt("Grid search on training speakers.", enters=CELL_ID, negatable=True)
    ] = False
    speaker_norm: Annotated[bool, Opt("Per-speaker z-norm.", enters=CELL_ID, negatable=True)] = (
        False
    )
    batched: Annotated[bool, Opt("All-layer probes (linear, mlp).", enters=CELL_ID)] = True
    params: Annotated[
        dict[str, Any],
        Opt("Classifier parameters, per classifier name.", enters=CELL_ID, cli=False),
    ] = {}
    bootstrap: Annotated[int, Opt("Bootstrap resamples.", minimum=0)] = 1000
    jobs: Annotated[
        int,
        Opt(
            "Parallel cells (processes); with --backend dask and no --scheduler, the local "
            "cluster's worker processes.",
            minimum=1,
        ),
    ] = 1
    backend: Annotated[
        str,
        Opt(
            "Where cells run: this machine's processes (local), or the workers of a Dask "
            "cluster (dask). Results are the same either way.",
            choices=registry_choices("ssl_ser.classify.sweep.plan", "BACKENDS"),
        ),
    ] = "local"
    scheduler: Annotated[
        str | None,
        Opt(
            "Dask scheduler address (tcp://host:8786) for --backend dask [default: a local "
            "cluster on the loopback interface]."
        ),
    ] = None
    threads: Annotated[
        int | None,
        Opt(
            "BLAS/torch threads per cell [default: 1]. Part of each cell id: thread counts "
            "change the last digits of a fit.",
            enters=CELL_ID,
            minimum=1,
        ),
    ] = None
    target: Annotated[
        str,
        Opt(
            "What the probes predict. speaker: speaker identity per layer, on folds of "
            "utterances (speaker-dependent by construction; --split speaker-kfold or random).",
            choices=registry_choices("ssl_ser.classify.measures", "REQUESTED_TARGETS"),
            enters=CELL_ID,
        ),
    ] = "emotion"
    control: Annotated[
        bool,
        Opt(
            "Also run the sweep on a control labelling (emotion labels permuted within each "
            "speaker, seeded by --seed): selectivity = UA - control UA. Doubles the sweep.",
            enters=CELL_ID,
        ),
    ] = False
    mdl: Annotated[
        bool,
        Opt(
            "Also compute each cell's online codelength (MDL, Voita & Titov 2020) of its "
            "training labels given the layer, and the compression against the uniform code.",
            enters=CELL_ID,
        ),
    ] = False
