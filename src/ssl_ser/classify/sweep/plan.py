"""Planning a sweep: its settings, and the tasks (cells not yet stored) of each dataset.

A task is one unit of parallel work: one or more cells sharing a fold, a
classifier and a pooling. Every cell's description (what goes into its id) is
made here, and nowhere else.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ssl_ser.classify import registry
from ssl_ser.classify.dataset import Dataset
from ssl_ser.classify.features import (
    AUTO_POOLING,
    FeatureSpec,
    check_honoured,
    feature_specs,
    resolve_poolings,
    select_layers,
    stored_poolings,
)
from ssl_ser.classify.measures import (
    CONTROL_TARGET,
    EMOTION_TARGET,
    MDL_FRACTIONS,
    SPEAKER_TARGET,
    TARGET_COLUMN,
    TARGETS,
)
from ssl_ser.classify.results import CellStore
from ssl_ser.classify.splits import (
    SPEAKER_INDEPENDENT,
    Fold,
    SplitOptions,
    condition_folds,
    drop_unseen_classes,
    fold_corpora,
    fold_digest,
)
from ssl_ser.classify.sweep.score import Rows
from ssl_ser.classify.sweep.store import supersede_other_cells
from ssl_ser.errors import ConfigError, UnknownChoiceError
from ssl_ser.results import WEIGHTED_LAYER, cell_id
from ssl_ser.scheduler import check_address

log = logging.getLogger(__name__)


LOCAL_BACKEND = "local"  # this process, or joblib worker processes (--jobs)
DASK_BACKEND = "dask"  # the workers of a Dask cluster (a LocalCluster without an address)
BACKENDS: tuple[str, ...] = (LOCAL_BACKEND, DASK_BACKEND)
LOCAL_CLUSTER = "local"  # --dask local: a LocalCluster of --jobs worker processes here
DASK_FLAGS = {"dask": "--dask", "backend": "--backend", "scheduler": "--scheduler"}


def dask_placement(
    dask: str | None,
    backend: str = LOCAL_BACKEND,
    scheduler: str | None = None,
    names: Mapping[str, str] = DASK_FLAGS,
    where: str = "",
) -> tuple[str, str | None]:
    """SweepConfig's (backend, scheduler) of ``--dask ADDRESS|local`` (None: this machine).

    ``--backend dask [--scheduler ADDRESS]`` (experiment keys ``classify.backend``
    and ``classify.scheduler``) is the deprecated spelling of the same choice: it
    still works, with a warning naming the new one, until the next release.

    `names` say how the three options read in messages: flags, or experiment keys
    (then ``option: value``, as in the file); `where` is what they are in (an
    experiment file), prefixed to messages.

    Raises:
        ConfigError: both spellings given, or a malformed address.
    """
    if backend == LOCAL_BACKEND and scheduler is None:
        if dask is None or dask == LOCAL_CLUSTER:
            return (LOCAL_BACKEND if dask is None else DASK_BACKEND), None
        check_address(dask, names["dask"])  # a malformed address: refused before any work
        return DASK_BACKEND, dask
    sep = " " if names["dask"].startswith("-") else ": "
    prefix = f"{where}: " if where else ""
    old = f"{names['backend']}{sep}{backend}"
    old += f" {names['scheduler']}{sep}{scheduler}" if scheduler else ""
    new = f"{names['dask']}{sep}{scheduler or LOCAL_CLUSTER}"
    if dask is not None:
        raise ConfigError(
            f"{prefix}{names['dask']}{sep}{dask} and the deprecated {old} say the same thing "
            f"twice; give {names['dask']} alone"
        )
    if scheduler is not None:  # refused here, naming the option, before any work
        if backend != DASK_BACKEND:
            raise ConfigError(
                f"{prefix}{names['scheduler']} ({scheduler!r}) needs "
                f"{names['backend']}{sep}{DASK_BACKEND}, not {backend!r}"
            )
        check_address(scheduler, names["scheduler"])
    if backend == DASK_BACKEND:
        log.warning("%s%s is deprecated and goes in the next release; use %s", prefix, old, new)
    return backend, scheduler


# fields that hold several choices: tuples, never comma strings
TUPLE_FIELDS: tuple[str, ...] = ("layers", "poolings", "classifiers")


@dataclass(frozen=True)
class SweepConfig:
    """What to sweep; every field that changes results is part of each cell's id.

    The grammars of ``labels``, ``layers`` and ``poolings`` are those of
    :mod:`ssl_ser.classify.settings`; cell ids and results hold the label set's one
    spelling and the pooling each extractor actually used, never ``auto``. The seed
    of ``split_options`` also seeds the fits and the bootstrap. ``backend`` and
    ``scheduler`` (see :mod:`~ssl_ser.classify.sweep.cluster`) are not part of a
    cell's id: a cell's numbers do not depend on where it runs. The default emotion
    ``target`` and ``mdl=False`` leave cell ids as they were before these existed.

    Raises:
        ConfigError: a string given for a tuple field (``classifiers="logreg,mlp"``
            instead of ``("logreg", "mlp")``), naming the field.
    """

    labels: str | tuple[str, ...] = "basic4"
    layers: tuple[str, ...] = ("all",)
    combine: str = "each"
    poolings: tuple[str, ...] = (AUTO_POOLING,)
    classifiers: tuple[str, ...] = ("logreg",)
    split: str = "speaker-kfold"
    split_options: SplitOptions = field(default_factory=SplitOptions)
    train_condition: str | None = None
    test_condition: str | None = None
    search: bool = False
    speaker_norm: bool = False
    batched: bool = True
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    bootstrap: int = 1000
    jobs: int = 1
    threads: int | None = None
    force: bool = False
    allow_incomplete: bool = False
    backend: str = LOCAL_BACKEND
    scheduler: str | None = None
    target: str = EMOTION_TARGET
    control: bool = False
    mdl: bool = False

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise UnknownChoiceError("target", self.target, TARGETS)
        if self.control and self.target != EMOTION_TARGET:
            raise ConfigError(
                f"--control permutes emotion labels within speakers; it has no meaning for "
                f"--target {self.target}"
            )
        for name in TUPLE_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, tuple):
                raise ConfigError(
                    f"SweepConfig.{name} must be a tuple of names, got {value!r} "
                    f"(e.g. {name}=({value!r},) or split a comma list first)"
                )
        if self.backend not in BACKENDS:
            raise UnknownChoiceError("backend", self.backend, BACKENDS)
        if self.scheduler is not None:
            if self.backend != DASK_BACKEND:
                raise ConfigError(
                    f"a scheduler address ({self.scheduler!r}) needs backend {DASK_BACKEND!r}, "
                    f"not {self.backend!r}"
                )
            if self.jobs != 1:
                raise ConfigError(
                    f"--jobs {self.jobs} does not apply to the Dask cluster at {self.scheduler}: "
                    "its own workers run the cells (--jobs sizes the cluster of --dask local)"
                )
            check_address(self.scheduler, "--scheduler")  # refused before any work
        if not isinstance(self.split_options, SplitOptions):
            raise ConfigError(
                f"SweepConfig.split_options must be a SplitOptions, got {self.split_options!r}"
            )

    @property
    def seed(self) -> int:
        """The seed of the splits, the fits and the bootstrap."""
        return self.split_options.seed

    @property
    def targets(self) -> list[str]:
        """The targets the sweep runs: its own, then the control one with ``control``."""
        return [self.target, *([CONTROL_TARGET] if self.control else [])]

    @property
    def cell_threads(self) -> int:
        """BLAS/OpenMP/torch threads of one cell: ``threads``, else 1 whatever ``jobs`` is.

        The thread count changes a fit's arithmetic in its last digits (reduction
        order), so it is part of every cell's id; a fixed default keeps ``--jobs 1``
        and ``--jobs 2`` computing, and reusing, the same cells.
        """
        return self.threads or 1


@dataclass
class Task:
    """One unit of parallel work: one or more cells sharing a fold, classifier and pooling.

    The subclasses say how the cells are fitted (see :func:`~ssl_ser.classify.sweep.run.fit_task`).
    """

    classifier: str
    specs: list[FeatureSpec]
    cells: list[str]
    fold: Fold
    n_dropped: int
    meta: dict[str, Any]
    params: dict[str, Any]

    @property
    def uses_torch(self) -> bool:
        """Whether the fit runs torch code (so torch's thread count must be set)."""
        spec = registry.get(self.classifier)
        return spec.batched is not None or not spec.per_layer

    def layer_label(self, spec: FeatureSpec) -> str:
        """The ``layer`` a cell of `spec` is stored under."""
        return spec.label


@dataclass
class SingleTask(Task):
    """One cell fitted alone: a registry pipeline on one feature matrix."""


@dataclass
class BatchedTask(Task):
    """Cells of several single layers trained together by a batched torch probe (linear, mlp)."""


@dataclass
class WeightedTask(Task):
    """The one cell of a softmax-weighted sum of all layers (``mlp-weighted``)."""

    def layer_label(self, spec: FeatureSpec) -> str:
        """Stored under :data:`~ssl_ser.classify.results.WEIGHTED_LAYER`, not its layer list."""
        return WEIGHTED_LAYER


@dataclass
class DatasetPlan:
    """One dataset's share of a sweep: the layers, the rows and the tasks left to run."""

    layers: list[str]
    rows: Rows
    tasks: list[Task]
    total: int

    @property
    def pending(self) -> int:
        """Cells the tasks compute."""
        return sum(len(task.cells) for task in self.tasks)

    def needed_layers(self) -> list[str]:
        """The layers the tasks read, in the dataset's order."""
        wanted = {layer for task in self.tasks for spec in task.specs for layer in spec.layers}
        return [layer for layer in self.layers if layer in wanted]


def sweep_poolings(datasets: Sequence[Dataset], spec: str | Sequence[str]) -> list[list[str]]:
    """Each dataset's pooling choices, resolved before any cell runs (warnings logged).

    Raises:
        ConfigError: an explicit choice that no dataset's extractor stores.
        UnknownChoiceError: a choice that is not a pooling.
    """
    choices = [
        resolve_poolings(spec, dataset.extractor, stored_poolings(dataset.sources))
        for dataset in datasets
    ]
    check_honoured(choices, "the sweep")
    for choice in choices:
        for note in choice.notes:
            log.warning("%s", note)
    return [list(choice.poolings) for choice in choices]


def plan_dataset(
    dataset: Dataset,
    names: list[str],
    config: SweepConfig,
    store: CellStore,
    poolings: list[str],
) -> DatasetPlan:
    """The tasks of one dataset's cells not stored yet; superseded stored cells are moved aside."""
    layers = select_layers(config.layers, dataset.layers)
    specs = feature_specs(layers, config.combine, poolings)
    rows = Rows.of(dataset.table, dataset.classes)
    tasks = []
    total = 0
    described: dict[str, Mapping[str, Any]] = {}
    for train_condition, test_condition in _scenarios(dataset, config):
        # a cell's id depends on the sources its conditions read, not on every source given
        used = dataset.sources_of({train_condition, test_condition})
        identity = _data_identity(dataset, used)
        folds = condition_folds(
            dataset.table, train_condition, test_condition, config.split, config.split_options
        )
        log.info(
            "%s %s -> %s, %s folds (train/test rows): %s",
            dataset.extractor,
            train_condition,
            test_condition,
            config.split,
            ", ".join(f"{f.name}: {len(f.train)}/{len(f.test)}" for f in folds),
        )
        for fold in folds:
            fold, n_dropped = drop_unseen_classes(fold, dataset.table["label"].to_numpy())
            meta = _fold_meta(dataset, fold, config, train_condition, test_condition, identity)
            for name in names:
                new, count = _tasks_for(
                    name, specs, layers, poolings, fold, n_dropped, meta, config, store, described
                )
                tasks += new
                total += count
    supersede_other_cells(store, described, dataset.extractor)
    return DatasetPlan(layers, rows, tasks, total)


def _data_identity(dataset: Dataset, used: Sequence[int]) -> dict[str, str]:
    """The cell-id fields of the data read from sources `used`: keys, rows, contents."""
    return {
        "cache_keys": json.dumps(dataset.keys(used), sort_keys=True, default=str),
        "data_digest": dataset.digest(used),
        "features_digest": dataset.features_digest(used),
    }


def _scenarios(dataset: Dataset, config: SweepConfig) -> list[tuple[str, str]]:
    """(train condition, test condition) pairs: the requested one, else each matched."""
    present = dataset.conditions
    if config.train_condition is None and config.test_condition is None:
        return [(c, c) for c in present]
    train = config.train_condition or config.test_condition
    test = config.test_condition or config.train_condition
    for value in (train, test):
        if value not in present:
            raise UnknownChoiceError("condition", value, present, where="the feature sources")
    return [(train, test)]


def _fold_meta(
    dataset: Dataset,
    fold: Fold,
    config: SweepConfig,
    train_condition: str,
    test_condition: str,
    identity: Mapping[str, str],
) -> dict[str, Any]:
    """Columns shared by every cell of a fold (and, with layer/classifier, its id)."""
    train_corpus, test_corpus = fold_corpora(fold, dataset.table["corpus"])
    return {
        "extractor": dataset.extractor,
        "train_corpus": train_corpus,
        "train_condition": train_condition,
        "test_corpus": test_corpus,
        "test_condition": test_condition,
        "split": config.split,
        "fold": fold.name,
        "seed": config.seed,
        "labels": dataset.label_set,
        "speaker_norm": config.speaker_norm,
        "search": config.search,
        "speaker_independent": fold.speaker_independent
        and config.split in SPEAKER_INDEPENDENT
        and config.target != SPEAKER_TARGET,
        "grouping": ",".join(f"{k}:{v}" for k, v in sorted(dataset.grouping.items())),
        **identity,
        "split_options": asdict(config.split_options),
        "threads": config.cell_threads,
        "shots": config.split_options.shots if config.split == "few-shot" else None,
        "fold_digest": fold_digest(dataset.table["utt_id"].to_numpy(), fold),
        TARGET_COLUMN: config.target,
    }


def _cell_description(
    meta: Mapping[str, Any],
    layer: str,
    pooling: str,
    classifier: str,
    params,
    batched: bool,
    mdl: bool = False,
) -> dict:
    described = {**meta, "layer": layer, "pooling": pooling, "classifier": classifier}
    if described.get(TARGET_COLUMN) == EMOTION_TARGET:  # ids of emotion cells as before targets
        del described[TARGET_COLUMN]
    # all-layer batched torch heads train what per-layer ones do, but not bit for bit
    described = {**described, "params": params, **({"batched": True} if batched else {})}
    return {**described, "mdl": list(MDL_FRACTIONS)} if mdl else described


def _tasks_for(
    name: str,
    specs: list[FeatureSpec],
    layers: list[str],
    poolings: list[str],
    fold: Fold,
    n_dropped: int,
    meta: dict[str, Any],
    config: SweepConfig,
    store: CellStore,
    described: dict[str, Mapping[str, Any]],
) -> tuple[list[Task], int]:
    """Tasks of one classifier on one fold (finished cells left out) and the cell count.

    Every cell's description is added to `described` (cell id -> description).
    """
    spec = registry.get(name)
    params = {**spec.defaults, **config.params.get(name, {})}
    batch = (
        config.batched and spec.batched is not None and config.combine == "each" and len(layers) > 1
    )

    def pending(layer: str, pooling: str) -> tuple[str, bool]:
        description = _cell_description(meta, layer, pooling, name, params, batch, config.mdl)
        cell = cell_id(description)
        if not config.mdl and not config.force and not store.done(cell):
            # a cell stored with its codelength holds every number this one would
            with_mdl = _cell_description(meta, layer, pooling, name, params, batch, True)
            if store.done(cell_id(with_mdl)):
                description, cell = with_mdl, cell_id(with_mdl)
        described[cell] = description
        return cell, config.force or not store.done(cell)

    tasks: list[Task] = []
    if not spec.per_layer:
        for pooling in poolings:
            weighted = FeatureSpec(tuple(layers), "each", pooling)
            cell, todo = pending(WEIGHTED_LAYER, pooling)
            if todo:
                tasks.append(WeightedTask(name, [weighted], [cell], fold, n_dropped, meta, params))
        return tasks, len(poolings)
    by_pooling: dict[str, Task] = {}
    for feature in specs:
        cell, todo = pending(feature.label, feature.pooling)
        if not todo:
            continue
        if batch:
            task = by_pooling.setdefault(
                feature.pooling, BatchedTask(name, [], [], fold, n_dropped, meta, params)
            )
            task.specs.append(feature)
            task.cells.append(cell)
        else:
            tasks.append(SingleTask(name, [feature], [cell], fold, n_dropped, meta, params))
    return tasks + list(by_pooling.values()), len(specs)


def describe_task(task: Task) -> str:
    """What a finished task was, for a progress line: ``logreg mean, layers 0..12 (13), fold 2``."""
    labels = [spec.label for spec in task.specs]
    where = f"layer {labels[0]}" if len(labels) == 1 else f"layers {labels[0]}..{labels[-1]}"
    if len(labels) > 1:
        where += f" ({len(labels)})"
    return f"{task.classifier} {task.specs[0].pooling}, {where}, fold {task.fold.name}"
