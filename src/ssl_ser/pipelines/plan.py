"""What running an experiment will do: manifests, cache states, sweeps and their cells.

:func:`make_plan` reads every corpus into a manifest, looks at each
(model, corpus, condition) cache file (complete, partial or missing), and lays
out the classify sweeps: one per variant (seed, few-shot count), model, corpus
group (each corpus alone, or all pooled) and (train, test) condition pair. It
also makes the folds of every split once, so a split that cannot work (too few
speakers, no preset split) fails here, before any model runs. Each model's
pooling is resolved here too (``auto`` per model, an explicit choice eGeMAPS
cannot give replaced by its functionals with a warning; see
:func:`ssl_ser.classify.features.resolve_poolings`), so a request that no model
stores fails before any extraction. With a ``finetune`` section, each sweep of
a fine-tuned model also gets a :class:`FinetuneUnit`: the same variant, corpus
group, condition pair and split settings, so its folds are the sweep's. ``ser
run --dry-run`` prints :meth:`Plan.lines`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ssl_ser.atomic import make_folder, write_file, write_text
from ssl_ser.classify.features import check_honoured, resolve_poolings
from ssl_ser.errors import ConfigError, CorpusError, SerError
from ssl_ser.extract.config import ExtractorConfig
from ssl_ser.finetune.config import FinetuneConfig
from ssl_ser.pipelines.experiment import Experiment

log = logging.getLogger(__name__)

RESULTS_FOLDER = "results"
REPORT_FILE = "report.html"
MANIFEST_FOLDER = "manifests"
FOLD_CLAMPED_SPLITS: tuple[str, ...] = ("speaker-kfold",)


@dataclass(frozen=True)
class Variant:
    """One run of the grid: a seed and, for few-shot splits, a number of target shots.

    Each variant has its own results folder and report, so that numbers of
    different seeds or shot counts are never averaged together.
    """

    seed: int
    shots: int | None
    label: str
    folder: Path

    @property
    def results_dir(self) -> Path:
        """The classify output folder."""
        return self.folder / RESULTS_FOLDER

    @property
    def report_path(self) -> Path:
        """The report's HTML file."""
        return self.folder / REPORT_FILE


def variants(experiment: Experiment) -> list[Variant]:
    """Every (seed, shots) run; a label and subfolder only where there is more than one."""
    few_shot = experiment.split.method == "few-shot"
    shots: tuple[int | None, ...] = experiment.split.shots if few_shot else (None,)
    out = []
    for seed in experiment.seeds:
        for count in shots:
            parts = []
            if len(experiment.seeds) > 1:
                parts.append(f"seed-{seed}")
            if few_shot and len(shots) > 1:
                parts.append(f"shots-{count}")
            label = "_".join(parts)
            folder = experiment.output_dir / label if label else experiment.output_dir
            out.append(Variant(seed, count, label, folder))
    return out


@dataclass
class CacheStatus:
    """The state of one (model, corpus, condition) cache file against its manifest."""

    model: str
    corpus: str
    condition: str
    path: Path
    total: int
    complete: int = 0
    failed: int = 0
    layers: list[str] | None = None
    exists: bool = False
    stale: str = ""

    @property
    def missing(self) -> int:
        """Manifest utterances neither complete nor recorded as failed."""
        return self.total - self.complete - self.failed

    @property
    def state(self) -> str:
        """``complete``, ``partial``, ``missing`` (no file yet) or ``stale`` (model changed)."""
        if not self.exists:
            return "missing"
        if self.stale:
            return "stale"
        return "complete" if self.missing == 0 else "partial"

    def line(self) -> str:
        """``mfcc emodb/clean: complete (535/535) <path>``."""
        failed = f", {self.failed} failed" if self.failed else ""
        action = "" if self.state == "complete" else f"; would extract {self.missing}"
        if self.stale:
            action = f"; {self.stale}: extraction will refuse it"
        return (
            f"{model_label(self.model)} {self.corpus}/{self.condition}: {self.state} "
            f"({self.complete}/{self.total}{failed}{action}) {self.path}"
        )


def model_label(model: str) -> str:
    """A model's short name for messages: the last part of a folder path."""
    return Path(model).name if Path(model).expanduser().is_dir() else model


@dataclass
class SweepUnit:
    """One ``run_sweep`` call: a variant, a model, a corpus group and a condition pair."""

    variant: Variant
    model: str
    corpora: tuple[str, ...]
    pair: tuple[str, str]
    folds: int
    n_folds: int
    poolings: tuple[str, ...]  # resolved for this model: never "auto"
    cells: int | None

    def describe(self, pooling: bool = True) -> str:
        """``wav2vec2-base on emodb, clean -> telephone, pooling mean (seed-1)``."""
        label = f" ({self.variant.label})" if self.variant.label else ""
        poolings = f", pooling {','.join(self.poolings)}" if pooling else ""
        return (
            f"{model_label(self.model)} on {'+'.join(self.corpora)}, "
            f"{self.pair[0]} -> {self.pair[1]}{poolings}{label}"
        )


@dataclass
class FinetuneUnit:
    """One ``run_finetune`` call: a probe sweep's variant, model, corpora, pair and folds.

    Its split settings are those of `probe` (see
    :func:`ssl_ser.pipelines.run.finetune_settings`), so each fold holds the
    same speakers as the probe cells of that fold, in the same results folder.
    """

    probe: SweepUnit
    config: FinetuneConfig

    @property
    def variant(self) -> Variant:
        """The seed (and shots) of the run; its results folder."""
        return self.probe.variant

    @property
    def model(self) -> str:
        """The fine-tuned model, as the experiment names it."""
        return self.probe.model

    @property
    def pair(self) -> tuple[str, str]:
        """The (train condition, test condition) pair."""
        return self.probe.pair

    def describe(self) -> str:
        """``wav2vec2-base on emodb, clean -> telephone (seed-1)``."""
        return self.probe.describe(pooling=False)


@dataclass
class Plan:
    """Everything :func:`ssl_ser.pipelines.run.run_experiment` will do, before it does it."""

    experiment: Experiment
    configs: dict[str, ExtractorConfig]
    manifests: dict[str, pd.DataFrame]
    skipped: dict[str, pd.DataFrame]
    caches: list[CacheStatus]
    units: list[SweepUnit]
    variants: list[Variant] = field(default_factory=list)
    finetune_units: list[FinetuneUnit] = field(default_factory=list)

    def cache(self, model: str, corpus: str, condition: str) -> CacheStatus:
        """The status of one cache file."""
        for status in self.caches:
            if (status.model, status.corpus, status.condition) == (model, corpus, condition):
                return status
        raise KeyError((model, corpus, condition))

    def to_extract(self) -> list[CacheStatus]:
        """Caches with utterances still to extract."""
        return [s for s in self.caches if s.state != "complete"]

    def lines(self) -> list[str]:
        """The plan as text, for ``--dry-run``."""
        from ssl_ser.classify.results import count_finished

        e = self.experiment
        out = [f"experiment {e.name}" + (f": {e.description}" if e.description else "")]
        for name, rows in self.manifests.items():
            skipped = len(self.skipped.get(name, ()))
            note = f", {skipped} file(s) skipped" if skipped else ""
            out.append(f"corpus {name}: {len(rows)} utterances{note}")
        todo = self.to_extract()
        out.append(
            f"caches in {e.cache_dir}: {len(self.caches) - len(todo)} complete, "
            f"{len(todo)} to extract"
        )
        out += [f"  {status.line()}" for status in self.caches]
        planned = [u.cells for u in self.units]
        total = "?" if None in planned else str(sum(c or 0 for c in planned))
        unknown = " (a model's layer count is known once it is downloaded)" if total == "?" else ""
        out.append(f"classify: {len(self.units)} sweep(s), {total} cell(s) planned{unknown}")
        for unit in self.units:
            cells = "?" if unit.cells is None else str(unit.cells)
            out.append(f"  {unit.describe()}: {unit.n_folds} fold(s), {cells} cell(s)")
        if self.finetune_units:
            folds = sum(u.probe.n_folds for u in self.finetune_units)
            out.append(
                f"finetune: {len(self.finetune_units)} run(s), {folds} fold(s) planned "
                "(into the same results as the probes)"
            )
        for tune in self.finetune_units:
            config = tune.config
            out.append(
                f"  {tune.describe()}: {tune.probe.n_folds} fold(s), at most {config.epochs} "
                f"epoch(s), head {config.head}, freeze {config.freeze}, adapter {config.adapter}"
            )
        for variant in self.variants:
            done = count_finished(variant.results_dir)
            out.append(f"results {variant.results_dir}: {done} finished cell(s) stored")
        if e.report:
            out += [f"report {variant.report_path}" for variant in self.variants]
        return out


def check_roots(experiment: Experiment, source: str) -> None:
    """Refuse to start when a corpus root does not exist, naming every missing one.

    Raises:
        CorpusError: naming each corpus, its root and where to edit it.
    """
    missing = [c for c in experiment.corpora if not Path(c.root).expanduser().exists()]
    if missing:
        listed = "; ".join(f"{c.name}: {c.root} ('corpora.{c.name}' in {source})" for c in missing)
        raise CorpusError(
            f"corpus root(s) not found: {listed}. Edit the path(s) to where the corpora "
            "live (experiment files ship with placeholder paths)"
        )


def cache_status(
    model: str,
    config: ExtractorConfig,
    corpus: str,
    condition: str,
    rows: pd.DataFrame,
    cache_dir: Path,
    folder_revision: Callable[[ExtractorConfig], str] | None = None,
) -> CacheStatus:
    """How much of `rows` the cache file of (config, corpus, condition) already holds.

    `folder_revision` gives a local model folder's revision now (hashing its files);
    a planner passes one that remembers it, so each folder is hashed once per plan.
    """
    from ssl_ser import cache

    path = cache.cache_path(cache_dir, config.slug(), corpus, condition)
    status = CacheStatus(model, corpus, condition, path, total=len(rows))
    if not path.exists():
        return status
    status.exists = True
    with cache.open(path) as reader:
        wanted = set(rows["utt_id"])
        status.complete = len(wanted.intersection(reader.ids))
        status.failed = len(wanted.intersection(reader.failures["utt_id"]))
        status.layers = list(reader.layers)
        status.stale = _changed_model_folder(config, reader.key, folder_revision)
    return status


def local_revision(config: ExtractorConfig) -> str:
    """A local model folder's revision as extraction will key it (its files hashed)."""
    from ssl_ser.extract.backbones import model_revision

    return model_revision(config.model, None, config.revision)


def _changed_model_folder(
    config: ExtractorConfig,
    key: Mapping[str, Any],
    folder_revision: Callable[[ExtractorConfig], str] | None,
) -> str:
    """Why a cache of a local model folder no longer matches the folder ('' if it does).

    The cache path follows the config, not the weights, so a folder whose files
    changed (new weights, the random-weights marker) maps to the same file; its
    features must not be reused. Hub models are checked when they load.
    """
    if config.is_classic or not Path(config.model).expanduser().is_dir():
        return ""
    now = (folder_revision or local_revision)(config)
    stored = str(key.get("revision", ""))
    return "" if stored == now else f"model folder changed (revision {stored} -> {now})"


def model_layers(
    model: str, config: ExtractorConfig, caches: list[CacheStatus]
) -> list[str] | None:
    """Layer names of a model: from a cache, a classic baseline, or the model's config file."""
    for status in caches:
        if status.model == model and status.layers:
            return status.layers
    if config.is_classic:
        return ["0"]
    try:
        from transformers import AutoConfig

        model_config = AutoConfig.from_pretrained(
            config.model, revision=config.revision, local_files_only=True
        )
    except (OSError, ValueError, ImportError):
        return None  # a hub model not downloaded yet: known after extraction
    if model_config.model_type == "whisper":
        layers = model_config.encoder_layers
    else:
        layers = model_config.num_hidden_layers
    return [str(i) for i in range(int(layers) + 1)]


def split_table(rows: pd.DataFrame, labels: str) -> pd.DataFrame:
    """Manifest rows as the split methods see them: labelled (excluded emotions dropped)."""
    from ssl_ser.classify.splits import speaker_groups
    from ssl_ser.labels import get_label_set

    label_set = get_label_set(labels)
    table = rows[["utt_id", "corpus", "speaker", "gender", "split", "emotion"]].copy()
    table["label"] = table["emotion"].map(label_set.label)
    table = table[table["label"].notna()].reset_index(drop=True)
    groups, _ = speaker_groups(table)
    table["group"] = groups.to_numpy()
    return table


def unit_folds(
    experiment: Experiment, variant: Variant, table: pd.DataFrame, corpora: tuple[str, ...]
) -> tuple[int, int]:
    """(folds setting, number of folds) of a corpus group's split.

    A speaker k-fold split over fewer speakers (or fallback groups) than folds
    uses one fold per group instead, with a warning (MESD has three voice types).

    Raises:
        ConfigError: the split cannot be made (names the corpora).
    """
    from ssl_ser.classify.settings import split_options
    from ssl_ser.classify.splits import make_folds

    split = experiment.split
    folds = split.folds
    groups = table["group"].nunique()
    if split.method in FOLD_CLAMPED_SPLITS and 2 <= groups < folds:
        log.warning(
            "%s has %d speaker group(s), fewer than %d folds: using %d folds (one per group)",
            "+".join(corpora),
            groups,
            folds,
            groups,
        )
        folds = groups
    options = split_options(split, variant.seed, variant.shots, folds)
    try:
        made = make_folds(table, split.method, options)
    except SerError as error:
        raise ConfigError(f"split {split.method!r} of {'+'.join(corpora)}: {error}") from error
    return folds, len(made)


def cells_per_fold(
    experiment: Experiment, layers: list[str] | None, poolings: Sequence[str]
) -> int | None:
    """Cells one fold of one condition pair runs over every classifier, or None if unknown."""
    from ssl_ser.classify import registry
    from ssl_ser.classify.features import feature_specs, select_layers

    if layers is None:
        return None
    chosen = select_layers(experiment.layers, layers, "layers")
    specs = feature_specs(chosen, experiment.classify.combine, list(poolings))
    n_poolings = len(poolings)
    return sum(
        len(specs) if registry.get(name).per_layer else n_poolings
        for name in experiment.classifiers
    )


def make_plan(experiment: Experiment, *, progress: bool = False) -> Plan:
    """Read the corpora, inspect the caches and lay out the sweeps (nothing is written).

    Raises:
        CorpusError, ManifestError: a corpus cannot be read.
        ConfigError: a split cannot be made, or an explicit pooling is stored by no model.
    """
    from ssl_ser import corpora

    configs = {m: c.with_absolute_model_path() for m, c in experiment.extractor_configs().items()}
    manifests, skipped = {}, {}
    for spec in experiment.corpora:  # scanned by its reader, or read from a manifest file
        options = {"on_error": spec.on_error, "progress": progress, **spec.options}
        read = corpora.read_source(
            Path(spec.root).expanduser(), spec.reader, name=spec.name, **options
        )
        manifests[spec.name], skipped[spec.name] = read.manifest, read.skipped
    cache_dir = Path(experiment.cache_dir)
    revisions = functools.cache(local_revision)  # each model folder hashed once per plan
    caches = [
        cache_status(model, configs[model], corpus, condition, rows, cache_dir, revisions)
        for model in experiment.models
        for corpus, rows in manifests.items()
        for condition in experiment.conditions
    ]
    plan = Plan(experiment, configs, manifests, skipped, caches, [], variants(experiment))
    plan.units = sweep_units(plan)
    plan.finetune_units = finetune_units(plan)
    return plan


def sweep_units(plan: Plan) -> list[SweepUnit]:
    """Every sweep of the plan, in run order (variant, corpus group, model, condition pair)."""
    experiment = plan.experiment
    per_model = {}  # model -> (poolings, cells per fold): the same for every variant and group
    # each model's choices resolved for its cache ("auto" per model; a choice the model does
    # not store, with a warning, replaced by its only stored pooling: eGeMAPS)
    choices = {
        m: resolve_poolings(experiment.pooling, plan.configs[m].model, plan.configs[m].poolings)
        for m in experiment.models
    }
    for choice in choices.values():
        for note in choice.notes:
            log.warning("%s", note)
    check_honoured(list(choices.values()), "the experiment's models")
    for model, choice in choices.items():
        layers = model_layers(model, plan.configs[model], plan.caches)
        per_model[model] = (choice.poolings, cells_per_fold(experiment, layers, choice.poolings))
    names = experiment.corpus_names  # all pooled, or each corpus alone
    groups = [names] if experiment.mode == "pooled" else [(name,) for name in names]
    tables = {
        group: split_table(
            pd.concat([plan.manifests[c] for c in group], ignore_index=True), experiment.labels
        )
        for group in groups
    }
    units = []
    for variant in plan.variants:
        for group, table in tables.items():
            folds, n_folds = unit_folds(experiment, variant, table, group)
            for model, (poolings, per_fold) in per_model.items():
                for pair in experiment.pairs:
                    cells = None if per_fold is None else per_fold * n_folds
                    units.append(
                        SweepUnit(variant, model, group, pair, folds, n_folds, poolings, cells)
                    )
    return units


def finetune_units(plan: Plan) -> list[FinetuneUnit]:
    """A fine-tune run beside every sweep of a fine-tuned model, in the sweeps' order.

    Each model is named as its probe features name it (a local folder by its
    absolute path), so fine-tune and probe rows carry the same extractor.
    """
    configs = {
        model: dataclasses.replace(config, model=plan.configs[model].model)
        for model, config in plan.experiment.finetune_configs().items()
    }
    return [FinetuneUnit(unit, configs[unit.model]) for unit in plan.units if unit.model in configs]


def write_manifests(plan: Plan) -> Path:
    """Save every corpus's manifest (and skipped files) under the output folder."""
    root = plan.experiment.output_dir
    folder = make_folder(root / MANIFEST_FOLDER, root=root)
    from ssl_ser import manifest

    for name, rows in plan.manifests.items():
        manifest.write(rows, folder / f"{name}.csv")
        if len(skipped := plan.skipped.get(name, ())):
            write_file(
                folder / f"{name}.skipped.csv", lambda p, s=skipped: s.to_csv(p, index=False)
            )
    write_text(root / "experiment.json", json.dumps(plan.experiment.to_dict(), indent=1))
    return folder
