"""Classify settings: what a sweep covers, how it splits, and how its cells run.

:class:`SweepGrid` (labels, layers, poolings, classifiers) is at the top level of
an experiment file, :class:`SplitSettings` is its ``split`` section and
:class:`SweepSettings` its ``classify`` section; ``ser classify``, ``ser
finetune`` and ``ser probe`` take their options from the same fields. The
little grammars (label sets, layers, poolings) are parsed here, once. This
module imports no numerical library.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import ValidationInfo, field_validator, model_validator

from ssl_ser.classify.names import (
    BACKEND_NAMES,
    CLASSIFIER_NAMES,
    COMBINE_NAMES,
    POOLING_NAMES,
    SPLIT_NAMES,
    TARGET_NAMES,
)
from ssl_ser.errors import ConfigError
from ssl_ser.settings import (
    CELL_ID,
    ExistingPaths,
    Opt,
    Settings,
    flag_of,
    invalid,
    setting,
    wrong_type,
)

LAYERS_HELP = "Layers the probes read: all, a range 0-6, or a list 3,6,9."
POOLING_HELP = (
    "Stored pooling the probes read: auto (per extractor: mean+std for mfcc/logmel, the "
    "functionals for egemaps, mean for SSL models), mean, std, mean+std; a comma list "
    "sweeps several."
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

    labels: str = setting("basic4", LABELS_HELP, enters=CELL_ID)
    layers: tuple[str, ...] = setting(("all",), LAYERS_HELP, enters=CELL_ID)
    pooling: tuple[str, ...] = setting(
        ("auto",), POOLING_HELP, choices=POOLING_NAMES, enters=CELL_ID
    )
    classifiers: tuple[str, ...] = setting(
        ("logreg",),
        f"Comma list of: {', '.join(CLASSIFIER_NAMES)}.",
        choices=CLASSIFIER_NAMES,
        enters=CELL_ID,
    )
    seeds: tuple[int, ...] = setting(
        (0,),
        "One run per seed (splits, initialisation). Repeatable.",
        flag="--seed",
        multiple=True,
        enters=CELL_ID,
    )

    @field_validator("seeds", mode="after")
    @classmethod
    def _seeds(cls, value: tuple[int, ...], info: ValidationInfo) -> tuple[int, ...]:
        from ssl_ser.classify.splits import check_seed

        where = (info.context or {}).get("where")
        for index, seed in enumerate(value):
            check_seed(seed, str(where.child("seeds").child(index)) if where else "--seed")
            if where is None and seed in value[:index]:  # files: check_experiment says so
                raise ConfigError(f"--seed {seed} is given twice; give each value once")
        return value

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

    method: str = setting(
        "speaker-kfold",
        "How to split: by speaker folds, leaving one speaker out, across corpora...",
        choices=SPLIT_NAMES,
        enters=CELL_ID,
        flag="--split",
    )
    folds: int = setting(5, "Folds (speaker-kfold, few-shot).", enters=CELL_ID, minimum=2)
    ratios: tuple[float, ...] = setting(
        (0.8, 0.1, 0.1), "train,val,test (random, speaker).", enters=CELL_ID
    )
    train: tuple[str, ...] = setting(
        (), "Training corpora (cross-corpus, few-shot).", enters=CELL_ID
    )
    test: tuple[str, ...] = setting((), "Test corpora (cross-corpus, few-shot).", enters=CELL_ID)
    shots: tuple[int, ...] = setting(
        (10,), "Target utterances (few-shot); a comma list runs each.", enters=CELL_ID, minimum=0
    )

    @field_validator("ratios", mode="after")
    @classmethod
    def _ratios(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if len(value) != 3 or min(value) < 0 or sum(value) <= 0:
            raise invalid(list(value), "three non-negative numbers, e.g. 0.8,0.1,0.1")
        return value

    @field_validator("shots", mode="after")
    @classmethod
    def _shots_once(cls, value: tuple[int, ...], info: ValidationInfo) -> tuple[int, ...]:
        """Refuse a shot count given twice (it would run the same sweep twice)."""
        for index, count in enumerate(value):
            if count in value[:index]:
                raise ConfigError(f"{cls.place(info)} lists {count} twice; give each value once")
        return value

    @model_validator(mode="after")
    def _used(self, info: ValidationInfo) -> SplitSettings:
        """Refuse an option the split method does not read (named by its flag or key)."""
        from ssl_ser.classify.splits import refuse_unused

        where = (info.context or {}).get("where")
        given = self.model_dump(exclude={"method"})
        if where is None:
            names = {name: flag_of(SplitSettings, name) for name in SplitSettings.model_fields}
            refuse_unused(self.method, given, names)
        else:
            names = {name: f"{self.section}.{name}" for name in SplitSettings.model_fields}
            refuse_unused(self.method, given, names, where=where.source)
        return self


class SweepSettings(Settings):
    """How a sweep's cells are fitted and where they run (the ``classify`` section)."""

    section = "classify"

    combine: str = setting(
        "each",
        "Sweep layers one by one, or concatenate/average the selected layers.",
        choices=COMBINE_NAMES,
        enters=CELL_ID,
    )
    search: bool = setting(
        False, "Grid search on training speakers.", enters=CELL_ID, negatable=True
    )
    speaker_norm: bool = setting(False, "Per-speaker z-norm.", enters=CELL_ID, negatable=True)
    batched: bool = setting(True, "All-layer probes (linear, mlp).", enters=CELL_ID)
    params: dict[str, Any] = setting(
        {}, "Classifier parameters, per classifier name.", enters=CELL_ID, cli=False
    )
    bootstrap: int = setting(1000, "Bootstrap resamples.", minimum=0)
    jobs: int = setting(
        1,
        "Parallel cells (processes); with --dask local, the local cluster's worker processes.",
        minimum=1,
    )
    dask: str | None = setting(
        None,
        "Run the cells on the workers of a Dask cluster: its scheduler address "
        "(tcp://host:8786), or 'local' for a cluster on the loopback interface. Results are "
        "the same as without.",
        metavar="ADDRESS|local",
    )
    backend: str = setting(
        "local",
        "Deprecated: --backend dask is --dask local (or --dask ADDRESS with --scheduler).",
        choices=BACKEND_NAMES,
        hidden=True,
    )
    scheduler: str | None = setting(
        None, "Deprecated: --backend dask --scheduler ADDRESS is --dask ADDRESS.", hidden=True
    )
    threads: int | None = setting(
        None,
        "BLAS/torch threads per cell. Part of each cell id: thread counts change the last "
        "digits of a fit.  [default: 1]",
        enters=CELL_ID,
        minimum=1,
    )
    target: str = setting(
        "emotion",
        "What the probes predict. speaker: speaker identity per layer, on folds of "
        "utterances (speaker-dependent by construction; --split speaker-kfold or random).",
        choices=TARGET_NAMES,
        enters=CELL_ID,
    )
    control: bool = setting(
        False,
        "Also run the sweep on a control labelling (emotion labels permuted within each "
        "speaker, seeded by --seed): selectivity = UA - control UA. Doubles the sweep.",
        enters=CELL_ID,
    )
    mdl: bool = setting(
        False,
        "Also compute each cell's online codelength (MDL, Voita & Titov 2020) of its "
        "training labels given the layer, and the compression against the uniform code.",
        enters=CELL_ID,
    )

    @model_validator(mode="wrap")
    @classmethod
    def _one_dask_spelling(cls, data: Any, handler: Any, info: ValidationInfo) -> SweepSettings:
        """Refuse both Dask spellings or a malformed address; warn of the deprecated one.

        Settings given already validated (``ser probe``'s, inside its experiment) are
        not checked again: pydantic reruns "after" validators on them, warning twice.
        """
        from ssl_ser.classify.sweep.plan import dask_placement

        settings = handler(data)
        if isinstance(data, SweepSettings):
            return settings
        where = (info.context or {}).get("where")
        fields = ("dask", "backend", "scheduler")
        if where is None:
            names = {name: flag_of(SweepSettings, name) for name in fields}
            dask_placement(settings.dask, settings.backend, settings.scheduler, names)
        else:
            names = {name: f"{settings.section}.{name}" for name in fields}
            dask_placement(settings.dask, settings.backend, settings.scheduler, names, where.source)
        return settings


class ClassifyRun(Settings):
    """What one ``ser classify`` run reads and writes (an experiment file sets these itself)."""

    caches: Annotated[
        tuple[str, ...],
        Opt("Feature cache(s), comma-separated.", flag="--cache", file=False),
        ExistingPaths,
    ]
    manifests: Annotated[
        tuple[str, ...],
        Opt("Manifest(s) of the cached corpora (CSV/parquet).", flag="--manifest", file=False),
        ExistingPaths,
    ]
    model: str | None = setting(None, "Refuse caches of any other model.", file=False)
    condition: str | None = setting(None, "Refuse caches of any other condition.", file=False)
    train_condition: str | None = setting(
        None, "Train on this condition (its features; its audio for finetune).", enters=CELL_ID
    )
    test_condition: str | None = setting(None, "Test on this condition.", enters=CELL_ID)
    output: Annotated[Path, Opt("Results folder.", file=False)]
    force: bool = setting(False, "Redo cells already in the output folder.", file=False)
    allow_incomplete: bool = setting(
        False,
        "Classify the complete rows of a cache that lacks some of the manifest's utterances "
        "(refused by default).",
        file=False,
    )
    save_probe: Path | None = setting(
        None,
        "Also save a probe for `ser predict` here: the first classifier and pooling on the "
        "layer chosen on held-out training speakers among --layers (or the --combine of "
        "them), refit on all training rows (a cross-corpus split's --train corpora).",
        file=False,
    )


def sweep_config(
    grid: SweepGrid,
    split: SplitSettings,
    sweep: SweepSettings,
    *,
    seed: int,
    shots: int | None = None,
    folds: int | None = None,
    **fields: Any,
) -> Any:
    """The :class:`~ssl_ser.classify.sweep.SweepConfig` of one sweep, from the settings.

    Args:
        grid: labels, layers, poolings and classifiers.
        split: the split method and its options.
        sweep: how cells are fitted and where they run (``dask``, or the deprecated
            ``backend``/``scheduler``, which are warned about where they are read).
        seed: the run's seed (of several).
        shots: the run's target shots (of several); None: the default.
        folds: the folds to use, where a planner clamped them; None: ``split.folds``.
        **fields: further SweepConfig fields (conditions, force, poolings...).
    """
    from ssl_ser.classify.sweep.plan import SweepConfig, dask_placement

    backend, scheduler = (sweep.backend, sweep.scheduler)
    if sweep.dask is not None:
        backend, scheduler = dask_placement(sweep.dask)
    values = {k: v for k, v in grid.fields_of(SweepConfig).items() if k in SweepGrid.model_fields}
    values |= sweep.fields_of(SweepConfig, backend=backend, scheduler=scheduler)
    values |= {"poolings": grid.pooling, "split": split.method} | fields
    return SweepConfig(**values, split_options=split_options(split, seed, shots, folds))


def split_options(
    split: SplitSettings, seed: int, shots: int | None = None, folds: int | None = None
) -> Any:
    """The :class:`~ssl_ser.classify.splits.SplitOptions` of one run (its seed and shots).

    Args:
        split: the split settings.
        seed: the run's seed (of several).
        shots: the run's target shots (of several); None: the default.
        folds: the folds to use, where a planner clamped them; None: ``split.folds``.
    """
    from ssl_ser.classify.splits import SplitOptions

    options = split.fields_of(
        SplitOptions,
        seed=seed,
        folds=split.folds if folds is None else folds,
        shots=SplitOptions.shots if shots is None else shots,
        train_corpora=split.train,
        test_corpora=split.test,
    )
    return SplitOptions(**options)
