"""Run an experiment: extract where caches are incomplete, sweep, report. Resumable.

:func:`run_experiment` is what ``ser run`` and ``ser probe`` call. It plans
first (see :mod:`ssl_ser.pipelines.plan`), then:

1. saves each corpus's manifest and the resolved experiment under the output folder;
2. extracts, per model and condition, only the corpora whose cache lacks
   utterances (the extractor itself skips rows already complete); complete
   caches are not opened for writing and the model is not loaded;
3. runs every sweep into its variant's results folder; ``ser classify``'s
   cell store skips cells finished by an earlier run;
4. with a ``finetune`` section, fine-tunes each of its models on the same
   folds as that model's sweeps (:func:`~ssl_ser.finetune.run.run_finetune`,
   classifier ``finetune``) into the same results folder, after the variant's
   sweeps; folds already stored are skipped (the audio is read again, to check
   the stored folds were trained on today's files);
5. writes each variant's tables once, its report (again only when a sweep ran
   a cell, a fold was fine-tuned, or the report is missing) and ``summary.csv``
   over all variants.

A run killed at any point is finished by running it again.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ssl_ser.atomic import write_file
from ssl_ser.errors import ConfigError
from ssl_ser.pipelines.experiment import Experiment
from ssl_ser.pipelines.plan import (
    FinetuneUnit,
    Plan,
    SweepUnit,
    Variant,
    check_roots,
    make_plan,
    write_manifests,
)
from ssl_ser.results import FINETUNE_CLASSIFIER, SUMMARY_CSV

log = logging.getLogger(__name__)


@dataclass
class SweepOutcome:
    """What one sweep did."""

    unit: SweepUnit
    cells_run: int
    cells_skipped: int
    line: str

    def text(self) -> str:
        """One line for the command's output."""
        return (
            f"{self.unit.describe()}: {self.cells_run} cell(s) run, "
            f"{self.cells_skipped} already done; {self.line}"
        )


@dataclass
class FinetuneOutcome:
    """What one fine-tune run did."""

    unit: FinetuneUnit
    folds_run: int
    folds_skipped: int
    skipped_audio: int
    line: str

    def text(self) -> str:
        """One line for the command's output."""
        skipped = f", {self.skipped_audio} utterance(s) skipped" if self.skipped_audio else ""
        return (
            f"finetune {self.unit.describe()}: {self.folds_run} fold(s) trained, "
            f"{self.folds_skipped} already done{skipped}; {self.line}"
        )


@dataclass
class RunSummary:
    """What :func:`run_experiment` did (or, for a dry run, would do)."""

    plan: Plan
    dry_run: bool = False
    extracted: list[Any] = field(default_factory=list)
    sweeps: list[SweepOutcome] = field(default_factory=list)
    finetunes: list[FinetuneOutcome] = field(default_factory=list)
    reports: list[Path] = field(default_factory=list)
    summary_csv: Path | None = None
    seconds: float = 0.0

    @property
    def cells_run(self) -> int:
        """Classify cells computed by this run."""
        return sum(s.cells_run for s in self.sweeps)

    @property
    def cells_skipped(self) -> int:
        """Classify cells found finished and skipped."""
        return sum(s.cells_skipped for s in self.sweeps)

    def lines(self) -> list[str]:
        """The run's outcome as text."""
        if self.dry_run:
            return self.plan.lines()
        out = [summary.line() for summary in self.extracted]
        reused = len(self.plan.caches) - len(self.plan.to_extract())  # not opened for writing
        out.append(f"extraction: {len(self.extracted)} cache(s) updated, {reused} already complete")
        out += [sweep.text() for sweep in self.sweeps]
        out.append(f"classify: {self.cells_run} cell(s) run, {self.cells_skipped} already done")
        if self.finetunes:
            out += [tune.text() for tune in self.finetunes]
            trained = sum(t.folds_run for t in self.finetunes)
            done = sum(t.folds_skipped for t in self.finetunes)
            out.append(f"finetune: {trained} fold(s) trained, {done} already done")
        out += [f"report: {path}" for path in self.reports]
        if self.summary_csv is not None:
            out.append(f"summary: {self.summary_csv}")
        out.append(f"done in {self.seconds:.1f} s")
        return out


def run_experiment(
    experiment: Experiment,
    *,
    source: str = "the experiment",
    dry_run: bool = False,
    progress: bool = False,
) -> RunSummary:
    """Run (or, with `dry_run`, only plan) an experiment; finished work is skipped.

    `source` names where the experiment came from in errors about corpus roots; a
    dry run reads the corpora and caches and writes nothing.

    Raises:
        CorpusError: a corpus root does not exist (every missing one is named).
        ConfigError: a split cannot be made, no model stores an explicit pooling, a
            model fails.
    """
    started = time.perf_counter()
    refuse_several_processes()
    check_roots(experiment, source)
    plan = make_plan(experiment, progress=progress)
    summary = RunSummary(plan, dry_run=dry_run)
    if dry_run:
        return summary
    write_manifests(plan)
    summary.extracted = extract_missing(plan, progress=progress)
    for variant in plan.variants:
        units = [u for u in plan.units if u.variant == variant]
        tunes = [u for u in plan.finetune_units if u.variant == variant]
        outcomes, tuned = run_variant(plan, units, tunes, progress=progress)
        summary.sweeps += outcomes
        summary.finetunes += tuned
        report = write_variant_report(plan, variant, outcomes, tuned, progress=progress)
        if report is not None:
            summary.reports.append(report)
    summary.summary_csv = write_summary(plan)
    summary.seconds = time.perf_counter() - started
    return summary


def refuse_several_processes() -> None:
    """Refuse to run a pipeline under torchrun: every process would extract and sweep it all.

    Raises:
        ConfigError: naming ``ser finetune``, which is what runs on several processes.
    """
    from ssl_ser.finetune.distributed import launched

    if launched():
        raise ConfigError(
            "ser run and ser probe run in one process, but this one was launched as one of "
            "several (WORLD_SIZE > 1, e.g. by torchrun); run the pipeline without torchrun, "
            "or fine-tune on several GPUs with `torchrun ... -m ssl_ser.cli.main finetune` "
            "and the experiment's split options (its folds are the probes')"
        )


def extract_missing(plan: Plan, *, progress: bool = False) -> list[Any]:
    """Extract the corpora whose caches are incomplete (all with rehash), one call per model.

    Returns the extractor's summaries (one per corpus and condition extracted).
    """
    experiment = plan.experiment
    settings = experiment.extract
    summaries = []
    # rehash: every cache, complete ones too, has each row's audio hashed again
    todo = plan.caches if settings.rehash else plan.to_extract()
    for model in experiment.models:
        # one call per model, so the model loads once for all its conditions; caches
        # that are already complete in that call only confirm they have every row
        mine = [s for s in todo if s.model == model]
        if not mine:
            continue
        corpora = sorted({s.corpus for s in mine})
        conditions = [c for c in experiment.conditions if any(s.condition == c for s in mine)]
        rows = pd.concat([plan.manifests[c] for c in corpora], ignore_index=True)
        log.info("extracting %s for %s/%s", model, "+".join(corpora), "+".join(conditions))
        extracted = settings.run(
            rows, plan.configs[model], experiment.cache_dir, conditions, progress=progress
        )
        wanted = {(s.corpus, s.condition) for s in mine}
        summaries += [done for done in extracted if (done.corpus, done.condition) in wanted]
    return summaries


def sweep_config(experiment: Experiment, unit: SweepUnit) -> Any:
    """The classify settings of one sweep (its variant's seed and shots, its unit's folds)."""
    from ssl_ser.classify.settings import sweep_config as config_of

    return config_of(
        experiment,
        experiment.split,
        experiment.classify,
        seed=unit.variant.seed,
        shots=unit.variant.shots,
        folds=unit.folds,
        poolings=tuple(unit.poolings),
        train_condition=unit.pair[0],
        test_condition=unit.pair[1],
    )


def run_variant(
    plan: Plan,
    units: list[SweepUnit],
    tunes: Sequence[FinetuneUnit] = (),
    *,
    progress: bool = False,
) -> tuple[list[SweepOutcome], list[FinetuneOutcome]]:
    """Run a variant's sweeps, then its fine-tune runs, into its results folder; tables once.

    Rebuilding the tables (with their bootstrap) after every sweep would redo the
    work of all earlier sweeps each time.
    """
    from ssl_ser.classify.results import CellStore, write_tables

    if not units:
        return [], []
    config = sweep_config(plan.experiment, units[0])
    results_dir = units[0].variant.results_dir

    def tables() -> None:
        write_tables(CellStore(results_dir), n_boot=config.bootstrap, seed=config.seed)

    counts = [run_unit(plan, unit, progress=progress) for unit in units]
    try:
        results = [run_finetune_unit(plan, tune, progress=progress) for tune in tunes]
    except Exception:
        if any(ran for ran, _ in counts):
            tables()  # the sweeps' new cells reach the tables even when fine-tuning fails
        raise
    ran_any = any(ran for ran, _ in counts) or any(r.folds_run for r in results)
    if ran_any or not (results_dir / SUMMARY_CSV).exists():
        tables()
    table = pd.read_csv(results_dir / SUMMARY_CSV)
    outcomes = []
    for unit, (ran, skipped) in zip(units, counts, strict=True):
        line = unit_summary_line(table, plan.configs[unit.model].model, unit)
        outcomes.append(SweepOutcome(unit, ran, skipped, line))
        log.info("%s", outcomes[-1].text())
    tuned = []
    for tune, result in zip(tunes, results, strict=True):
        line = unit_summary_line(table, tune.config.model, tune.probe, FINETUNE_CLASSIFIER)
        counts = (result.folds_run, result.folds_skipped, result.skipped_audio)
        tuned.append(FinetuneOutcome(tune, *counts, line))
        log.info("%s", tuned[-1].text())
    return outcomes, tuned


def finetune_settings(plan: Plan, unit: FinetuneUnit) -> Any:
    """The :class:`~ssl_ser.finetune.run.RunOptions` of a fine-tune run.

    Labels, split method and split options (folds, seed, ratios, corpora, shots)
    are those of the probe sweep it sits beside (:func:`sweep_config`), and the
    audio is loaded as that sweep's caches were extracted (its conditions,
    telephone source, device and workers), so both make the same folds.
    """
    from ssl_ser.finetune.run import RunOptions
    from ssl_ser.finetune.settings import FinetuneSettings

    experiment = plan.experiment
    config = sweep_config(experiment, unit.probe)
    train_condition, test_condition = unit.pair
    tuning = experiment.finetune or FinetuneSettings()
    return RunOptions(
        **experiment.extract.fields_of(RunOptions),  # telephone source, device, workers
        **tuning.fields_of(
            RunOptions,
            labels=config.labels,
            split=config.split,
            split_options=config.split_options,
            conditions=tuple(sorted({train_condition, test_condition})),
            train_condition=train_condition,
            test_condition=test_condition,
            bootstrap=config.bootstrap,
        ),
    )


def run_finetune_unit(plan: Plan, unit: FinetuneUnit, *, progress: bool = False) -> Any:
    """Fine-tune one model on one sweep's folds into its results folder (tables left to the caller).

    Returns the :class:`~ssl_ser.finetune.run.FinetuneResult`.
    """
    from ssl_ser.finetune.probe_init import ProbeMismatchError
    from ssl_ser.finetune.run import run_finetune

    rows = pd.concat([plan.manifests[c] for c in unit.probe.corpora], ignore_index=True)
    log.info("finetune %s", unit.describe())
    settings = finetune_settings(plan, unit)
    config = unit.config
    folder = unit.variant.results_dir
    # the sweep beside it (same folds) fits logreg probes on mean-pooled single layers; the
    # fine-tune starts from them when it reads a layer they can choose, with a linear head
    probes_at_hand = (
        "logreg" in plan.experiment.classifiers
        and "mean" in unit.probe.poolings
        and (config.head, config.init, config.head_layer) == ("linear", "random", None)
    )
    if probes_at_hand:
        from ssl_ser.classify.results import CellStore, write_tables

        # the probes' rows as --from-probe reads them: the tables the run writes after
        # its sweeps (same resamples and seed), written early
        write_tables(CellStore(folder), n_boot=settings.bootstrap, seed=settings.seed)
        start = dataclasses.replace(settings, from_probe=str(folder))
        try:
            return run_finetune(rows, config, start, folder, progress=progress, tables=False)
        except ProbeMismatchError as error:
            log.warning("finetune %s: not started from its probes: %s", unit.describe(), error)
    return run_finetune(rows, config, settings, folder, progress=progress, tables=False)


def run_unit(plan: Plan, unit: SweepUnit, *, progress: bool = False) -> tuple[int, int]:
    """Run one sweep over the unit's caches: (cells run, cells already stored)."""
    from ssl_ser.classify.features import CacheFeatures
    from ssl_ser.classify.sweep import run_sweep_cells

    conditions = sorted(set(unit.pair))
    paths = [plan.cache(unit.model, c, cond).path for c in unit.corpora for cond in conditions]
    sources = [CacheFeatures(path) for path in paths]
    rows = pd.concat([plan.manifests[c] for c in unit.corpora], ignore_index=True)
    try:
        result = run_sweep_cells(
            sources,
            rows,
            sweep_config(plan.experiment, unit),
            unit.variant.results_dir,
            progress=progress,
        )
    finally:
        for source in sources:
            source.reader.close()
    return result.cells_run, result.cells_skipped


def unit_summary_line(
    summary: pd.DataFrame, extractor: str, unit: SweepUnit, classifier: str | None = None
) -> str:
    """Best layer and UA per classifier of one sweep's rows of the results summary.

    `classifier` keeps one classifier's rows (``finetune`` for a fine-tune run);
    otherwise every probe classifier's (fine-tune rows have their own line).
    """
    from ssl_ser.classify.results import summary_line

    if summary.empty:
        return summary_line(summary)
    if classifier is None:
        chosen = summary["classifier"] != FINETUNE_CLASSIFIER
    else:
        chosen = summary["classifier"] == classifier
    mine = summary[
        chosen
        & (summary["extractor"] == extractor)
        & (summary["train_condition"] == unit.pair[0])
        & (summary["test_condition"] == unit.pair[1])
    ]
    if len(unit.corpora) == 1:  # one sweep per corpus: only this corpus's rows
        mine = mine[mine["train_corpus"] == unit.corpora[0]]
    return summary_line(mine)


def write_variant_report(
    plan: Plan,
    variant: Variant,
    outcomes: list[SweepOutcome],
    tuned: Sequence[FinetuneOutcome] = (),
    *,
    progress: bool = False,
) -> Path | None:
    """Write a variant's report when the experiment asks for one and something changed."""
    if not plan.experiment.report or not outcomes:
        return None
    path = variant.report_path
    changed = any(o.cells_run for o in outcomes) or any(t.folds_run for t in tuned)
    if path.exists() and not changed:
        log.info("report %s is up to date", path)
        return path
    from ssl_ser.report import write_report

    name = plan.experiment.name + (f", {variant.label}" if variant.label else "")
    title = f"{name}: layer-wise emotion probing"
    if plan.finetune_units:
        title += " and end-to-end fine-tuning"
    summary = write_report(
        variant.results_dir,
        path,
        title=title,
        n_boot=plan.experiment.classify.bootstrap,
        seed=variant.seed,
        progress=progress,
    )
    log.info("%s", summary.line())
    return path


def write_summary(plan: Plan) -> Path | None:
    """``summary.csv`` over every variant (seed and shots as columns), for seeds and few-shot."""
    parts = []
    for variant in plan.variants:
        path = variant.results_dir / SUMMARY_CSV
        if path.is_file():
            table = pd.read_csv(path)
            # the variant's seed and shots lead the columns (classify records them too)
            table = table.drop(columns=["seed", "shots"], errors="ignore")
            table.insert(0, "shots", variant.shots)
            table.insert(0, "seed", variant.seed)
            parts.append(table)
    if not parts:
        return None
    out = plan.experiment.output_dir / SUMMARY_CSV  # the variants' summaries in one
    table = pd.concat(parts, ignore_index=True)
    write_file(out, lambda p: table.to_csv(p, index=False))
    return out
