"""Assemble the report from the results: numbers, figures, notes, header; then write it.

:func:`write_report` is the entry point behind ``ser report``: it reads the
results table(s), splits the cells into comparable groups, draws each group's
figures into a ``figures/`` folder beside the HTML file, and writes
``report.html`` (self-contained) and ``report.md`` (linking the PNG files).
Each section holds one sub-section per group (under a heading naming it when
there are several), and the header one headline per group.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from ssl_ser import __version__
from ssl_ser.atomic import make_folder, refuse_link, write_text
from ssl_ser.report import figures, finetune, finetune_figures, measures, stats_section, tables
from ssl_ser.report.document import (
    Document,
    ExtractorInfo,
    FigureItem,
    Item,
    NoteItem,
    Section,
    TableItem,
)
from ssl_ser.report.groups import Group, GroupNumbers, find_groups, with_group_headings
from ssl_ser.report.load import (
    CELL,
    SPEAKER_DEPENDENT,
    SPEAKER_INDEPENDENT,
    SPEAKERS_SHARED,
    Results,
    is_finetune,
    load_results,
)

log = logging.getLogger(__name__)

FIGURES_FOLDER = "figures"
DEFAULT_STEM = "report"
FIGURE_PATTERNS: tuple[str, ...] = (
    "layers-*",
    "heatmap-*",
    "cross-corpus*",
    "conditions*",
    "condition-drop*",
    "confusion*",
    "training-curves*",
    "layer-weights*",
    stats_section.FIGURE_PATTERN,
    "selectivity*",
    "codelength*",
    "speaker-information*",
)
SLUG_DIGEST = re.compile(r"-[0-9a-f]{10}$")
UNTRAINED_TAG = "untrained"


@dataclass
class ReportSummary:
    """What :func:`write_report` wrote."""

    html: Path
    markdown: Path
    figures: list[Path]
    n_tables: int
    left_out: list[str] = field(default_factory=list)
    best: str = ""

    def line(self) -> str:
        """One line for the command's output."""
        left = f", {len(self.left_out)} left out for lack of data" if self.left_out else ""
        best = f"; {self.best}" if self.best else ""
        return (
            f"wrote {self.html} ({len(self.figures)} figures, {self.n_tables} tables{left}) "
            f"and {self.markdown.name}{best}"
        )


def write_report(
    results_dir: str | Path | Sequence[str | Path],
    output_html: str | Path,
    *,
    title: str | None = None,
    n_boot: int = tables.DEFAULT_BOOTSTRAP,
    seed: int = 0,
    progress: bool = False,
) -> ReportSummary:
    """Write ``output_html``, the Markdown twin and the figures from one or more results folders.

    `results_dir`: ``ser classify`` output folder(s) holding ``results.parquet`` (or
    ``.csv``) and, optionally, ``predictions.parquet``; the other arguments are
    :class:`~ssl_ser.report.settings.ReportSettings`' fields.

    Raises:
        ConfigError: a folder holds no usable results table.
    """
    from ssl_ser.report import html, markdown

    folders = [results_dir] if isinstance(results_dir, str | Path) else list(results_dir)
    results = load_results(folders)
    output_html = Path(output_html)
    figure_dir = figures_folder(output_html)
    refuse_link(figure_dir)  # before drawing, and before stale figures are removed from it
    document = build_document(
        results, figure_dir, title=title, n_boot=n_boot, seed=seed, progress=progress
    )
    _remove_stale_figures(figure_dir, document)
    make_folder(output_html.parent)
    write_text(output_html, html.render(document))
    md_path = output_html.with_suffix(".md")
    write_text(md_path, markdown.render(document, output_html.parent))
    log.info("wrote %s and %s", output_html, md_path)
    return ReportSummary(
        html=output_html,
        markdown=md_path,
        figures=[item.png for item in document.figures],
        n_tables=len(document.tables),
        left_out=[note.title for note in document.notes],
        best=document.highlight,
    )


def figures_folder(output_html: Path) -> Path:
    """The report's own figure folder: ``figures/`` for ``report.html``, ``figures-<name>/`` else.

    Two reports in one folder (``a.html``, ``b.html``) never share figures: each
    draws into, and removes stale figures from, its own folder only.
    """
    stem = output_html.stem
    name = FIGURES_FOLDER if stem == DEFAULT_STEM else f"{FIGURES_FOLDER}-{stem}"
    return output_html.parent / name


def build_document(
    results: Results,
    figure_dir: Path,
    *,
    title: str | None = None,
    n_boot: int = tables.DEFAULT_BOOTSTRAP,
    seed: int = 0,
    progress: bool = False,
) -> Document:
    """Compute the numbers per comparable group, draw the figures and lay out the sections.

    Rows of other targets than emotion (control, speaker) reach only the probing
    measures section; a table holding no emotion rows is shown as it is.
    """
    emotion, with_targets = measures.split_targets(results)
    others = _other_targets(with_targets) if not len(emotion.table) else []
    results = emotion if len(emotion.table) else results
    cells = tables.cell_summary(results.table)
    names = extractor_names(cells)
    numbers = []
    for group in find_groups(cells, results.table, results.classes):
        mine = cells[group.mask(cells)].reset_index(drop=True)
        best = tables.with_intervals(
            tables.best_cells(mine),
            results.table,
            results.predictions,
            group.classes,
            n_boot=n_boot,
            seed=seed,
        )
        numbers.append(GroupNumbers(group, mine, best, _top_of(best, mine)))
    drawn = draw_figures(results, numbers, names, figure_dir, progress=progress)
    tuned = finetune_items(results, numbers, names, figure_dir, n_boot=n_boot, seed=seed)
    stats = stats_section.stats_items(results, numbers, names, figure_dir, n_boot=n_boot, seed=seed)
    measured = measures.measure_items(with_targets, names, figure_dir)
    sections = [
        Section("Layer-wise probing", LAYERS_INTRO, drawn["layers"]),
        *stats_section.sections(stats),
        *([Section(measures.TITLE, measures.INTRO, measured)] if measured else []),
        Section("Best results", BEST_INTRO, _best_tables(numbers, names)),
        *([Section(FINETUNE_TITLE, FINETUNE_INTRO, tuned)] if tuned else []),
        Section("Cross-corpus transfer", CROSS_INTRO, drawn["cross"]),
        Section("Clean vs telephone", CONDITIONS_INTRO, drawn["conditions"]),
        Section("Confusion matrix", CONFUSION_INTRO, drawn["confusion"]),
        Section("Details", DETAILS_INTRO, _detail_items(results, numbers, names)),
        Section("How to read these numbers", method_text(n_boot)),
    ]
    return Document(
        title=title or default_title(cells, names, others),
        extractors=extractor_infos(cells, names),
        facts=facts(results, cells, names, [n.group for n in numbers]),
        warnings=[*_target_warnings(others), *results.incomplete, *warning_lines(cells, names)],
        highlights=[
            _target_prefix(others)
            + stats_section.with_worst(highlight(n.top, names, n.group), worst)
            for n, worst in zip(numbers, stats.worst, strict=True)
        ],
        sections=sections,
    )


FINETUNE_TITLE = "Fine-tuned vs probes"
FINETUNE_INTRO = (
    "Each model fine-tuned end to end (ser finetune) beside probes of the same frozen model "
    "on the same corpus, condition, label set, split and seed: the probe whose layer was "
    "chosen per fold on the training speakers (on its validation UA, as the fine-tune "
    "chose its epoch, or where none is stored on the other folds), the probe layer with the "
    "best test UA (optimistic: picked on the test "
    "folds themselves) and the last layer. Probes with speaker z-normalisation are left out "
    "(it uses the test speakers' own statistics, which the fine-tune never sees); probes "
    "whose hyperparameters were searched are kept (the search uses training speakers only). "
    "Folds are paired by name and, where stored, by a digest of their train/test membership."
)


def finetune_items(
    results: Results,
    numbers: Sequence[GroupNumbers],
    names: dict[str, str],
    figure_dir: Path,
    *,
    n_boot: int,
    seed: int,
) -> list[Item]:
    """The fine-tune section's tables and figures per group ([] when nothing was fine-tuned)."""
    if not is_finetune(results.table).any():
        return []
    slots = [
        _finetune_group(results, n, names, figure_dir, _suffix(n, numbers), n_boot, seed)
        for n in numbers
    ]
    out = with_group_headings(numbers, slots)
    names_drawn = [item.name for item in out if isinstance(item, FigureItem)]
    for prefix, (title, text) in FINETUNE_NOTES.items():
        if not any(name.startswith(prefix) for name in names_drawn):
            out.append(NoteItem(title, text))
    return out


# Figure name prefix -> (note title, why it is missing) when no group drew it.
FINETUNE_NOTES: dict[str, tuple[str, str]] = {
    "training-curves-": (
        "Training curves",
        "Left out: no fine-tuned row stores its training_curve.",
    ),
    "layer-weights-": (
        "Learned layer weights",
        "Left out: no model was fine-tuned with a learned weighted sum of its hidden "
        "states (layer 'weighted'), so there are no layer weights to draw.",
    ),
}


def _finetune_group(
    results: Results,
    n: GroupNumbers,
    names: dict[str, str],
    figure_dir: Path,
    suffix: str,
    n_boot: int,
    seed: int,
) -> list[Item]:
    """One group's comparison table, fold-by-fold table, curves and layer weights."""
    summary, pairs = finetune.comparison(
        n.cells, results.table, results.predictions, n.group, n_boot=n_boot, seed=seed
    )
    if summary.empty:
        return []
    setup = finetune.shared_setup(summary)
    setup_text = f" Fine-tune setup of every row: {setup}." if setup else ""
    return [
        TableItem(
            f"finetune-vs-probes{suffix}",
            f"Fine-tuned vs probe layers · {n.group.short}",
            f"{n.group.label}. UA in percent: mean ± std over folds, then the UA of all folds' "
            "test predictions pooled with its 95% bootstrap interval, then what was chosen "
            "(layer per fold, probe classifier and pooling). The chosen layer is chosen per "
            "fold without its test speakers: on the probe's validation UA (training "
            "speakers), or where none is stored on the mean test UA of the other folds "
            "(whose test speakers are this fold's training speakers; their probes were "
            "trained with this fold's speakers among others). Last column: fine-tuned minus "
            "that probe, averaged over folds with the same speakers, with a 95% Student "
            "t-interval over folds." + setup_text,
            finetune.format_comparison(summary, names),
        ),
        TableItem(
            f"finetune-folds{suffix}",
            f"Fold by fold, with the same speakers · {n.group.short}",
            f"{n.group.label}. Each fine-tuned fold beside the probe layer chosen on that "
            "fold's training speakers (as in the table above); Δ with a 95% paired bootstrap "
            "interval over the fold's test utterances (both models scored on the same "
            "resamples of their stored predictions, drawn within each speaker where the "
            "predictions store speakers, as in ser compare). A fold whose stored membership digest "
            "differs from the probe's holds other speakers and is not paired." + setup_text,
            finetune.format_folds(pairs, names),
        ),
        *finetune_figures.training_curve_figures(results.table, names, figure_dir, n.group),
        *finetune_figures.layer_weight_figures(results.table, names, figure_dir, n.group),
    ]


def _top_of(best: pd.DataFrame, cells: pd.DataFrame) -> pd.Series:
    """A group's single best cell, with its pooled scores and intervals from `best`."""
    top = tables.overall_best(cells)
    same = (best[list(CELL)] == top[list(CELL)]).all(axis=1)
    return best[same].iloc[0] if same.any() else top


# The figure kinds drawn once per group; a kind only one group draws keeps its bare name.
SINGLE_KINDS: tuple[str, ...] = ("cross-corpus", "conditions", "condition-drop", "confusion")


def draw_figures(
    results: Results,
    numbers: Sequence[GroupNumbers],
    names: dict[str, str],
    figure_dir: Path,
    *,
    progress: bool = False,
) -> dict[str, list[Item]]:
    """Every figure of every group (or a left-out note), keyed by the section it belongs to."""

    def per_group_cells(draw: Callable[..., list[Item]]) -> Callable[[GroupNumbers], list[Item]]:
        return lambda n: draw(n.cells, names, figure_dir, n.group)

    def confusion(n: GroupNumbers) -> list[Item]:
        table, predictions = results.table, results.predictions
        return figures.confusion_figure(n.top, table, predictions, names, figure_dir, n.group)

    steps: list[tuple[str, str, Callable[[GroupNumbers], list[Item]]]] = [
        ("layers", "UA by layer", per_group_cells(figures.layer_curves)),
        ("layers", "Layer × corpus heatmap", per_group_cells(figures.layer_heatmaps)),
        ("cross", "Cross-corpus matrix", per_group_cells(figures.cross_corpus_matrices)),
        (
            "conditions",
            "Clean vs telephone: condition matrix",
            per_group_cells(figures.condition_matrices),
        ),
        (
            "conditions",
            "Clean vs telephone: drop per layer",
            per_group_cells(figures.condition_drops),
        ),
        ("confusion", "Confusion matrix", confusion),
    ]
    per_group: dict[str, list[list[Item]]] = {}
    notes: dict[str, list[Item]] = {}
    for key, kind, draw in tqdm(steps, desc="report figures", unit="figure", disable=not progress):
        found = [draw(n) for n in numbers]
        slots = per_group.setdefault(key, [[] for _ in numbers])
        notes.setdefault(key, [])
        if not any(found):
            notes[key].append(NoteItem(kind, left_out_text(kind, results.table)))
        for slot, items in zip(slots, found, strict=True):
            slot.extend(items)
    drawn = {
        key: [*with_group_headings(numbers, slots), *notes[key]] for key, slots in per_group.items()
    }
    return _bare_single_names(drawn, numbers)


def _bare_single_names(
    drawn: dict[str, list[Item]], numbers: Sequence[GroupNumbers]
) -> dict[str, list[Item]]:
    """Drop the group tag from a once-per-group figure that only one group drew."""
    items = [i for section in drawn.values() for i in section if isinstance(i, FigureItem)]
    renamed: dict[str, FigureItem] = {}
    for kind in SINGLE_KINDS:
        tagged = [i for i in items if i.name in {f"{kind}-{n.group.tag}" for n in numbers}]
        if len(tagged) == 1:
            renamed[tagged[0].name] = _rename(tagged[0], kind)
    return {
        key: [renamed.get(i.name, i) if isinstance(i, FigureItem) else i for i in section]
        for key, section in drawn.items()
    }


def _rename(item: FigureItem, name: str) -> FigureItem:
    png, svg = item.png.with_name(f"{name}.png"), item.svg.with_name(f"{name}.svg")
    item.png.replace(png)
    item.svg.replace(svg)
    return replace(item, name=name, png=png, svg=svg)


def left_out_text(kind: str, table: pd.DataFrame) -> str:
    """Why a figure kind is missing from the whole report."""
    conditions = sorted(set(table["train_condition"]) | set(table["test_condition"]))
    reasons = {
        "UA by layer": "the results hold no per-layer rows of a layered (SSL) model, only "
        "classic baselines or combined layers.",
        "Layer × corpus heatmap": "every layered model was run on a single corpus and "
        "condition per group, so a heatmap would repeat the layer curves.",
        "Cross-corpus matrix": "no run trained on one corpus and tested on another "
        "(ser classify --split cross-corpus).",
        "Clean vs telephone: condition matrix": "no corpus was run under more than one "
        f"train/test condition (conditions found: {', '.join(conditions)}).",
        "Clean vs telephone: drop per layer": f"no layered model has both "
        f"{figures.REFERENCE_CONDITION} → {figures.REFERENCE_CONDITION} and another condition "
        "on the same corpus, split and pooling.",
        "Confusion matrix": "the results folder holds no per-utterance predictions for the "
        "best configuration.",
    }
    return f"Left out: {reasons[kind]}"


BEST_INTRO = (
    "The best cell (layer, pooling and classifier with the highest mean UA over folds) of "
    "every extractor, corpus, condition and split. UA is the mean recall over classes, WA the "
    "accuracy, macro-F1 the mean F1 over classes; all in percent."
)
LAYERS_INTRO = (
    "How much emotion information each layer carries, as a linear or small probe sees it."
)
CROSS_INTRO = "Train on one corpus, test on another: how well the layers transfer."
CONDITIONS_INTRO = (
    "Telephone-band audio (narrow band, codec) against clean audio, in training and test."
)
CONFUSION_INTRO = "Which emotions the best configuration confuses."
DETAILS_INTRO = "Every classifier's best layer, and the hyperparameters chosen per fold."


def method_text(n_boot: int) -> str:
    """The method notes shown at the end of the report."""
    return (
        "Mean ± std: over the folds of a split (sample standard deviation; a one-fold split "
        "has none). Pooled: the metric of all folds' test predictions taken together; its 95% "
        f"CI is a percentile bootstrap over those pooled test utterances ({n_boot} resamples) "
        "from the stored predictions. The mean over folds and the pooled number differ (the "
        "mean of per-fold macro-F1 is not the macro-F1 of the pooled predictions), so an "
        "interval belongs to the pooled number printed beside it. Groups: cells that differ "
        "in label set, split, speaker normalisation, hyperparameter search or seed measure "
        "different things, so every table, figure and headline holds one group and names it; "
        "pooling is named on every row, line and matrix panel. Collapsed: the classifier "
        "predicted one class for a whole test fold (counted from the stored predictions), so "
        "its UA is chance whatever the features hold. Best cells are picked on these "
        "same test results, so they are an optimistic summary of a sweep, not a model chosen "
        f"on held-out data. '{SPEAKER_INDEPENDENT}': no speaker appears in both training and "
        f"test. '{SPEAKER_DEPENDENT}': utterances were shuffled regardless of speaker, so "
        "test speakers were also heard in training and the numbers are higher than a new "
        f"speaker would see; '{SPEAKERS_SHARED}' likewise (e.g. a corpus's preset split)."
    )


def _best_tables(numbers: Sequence[GroupNumbers], names: dict[str, str]) -> list[Item]:
    return with_group_headings(numbers, [[_best_table(n, names, numbers)] for n in numbers])


def _suffix(n: GroupNumbers, numbers: Sequence[GroupNumbers]) -> str:
    """``-<group tag>`` for a table name when the report holds several groups."""
    return f"-{n.group.tag}" if len(numbers) > 1 else ""


def _best_table(
    n: GroupNumbers, names: dict[str, str], numbers: Sequence[GroupNumbers]
) -> TableItem:
    return TableItem(
        f"best-cells{_suffix(n, numbers)}",
        f"Best cell per extractor and setting · {n.group.short}",
        f"{n.group.label}. Each metric: mean ± std over folds; below it the metric of all "
        "folds' test predictions pooled, and the 95% bootstrap interval of that pooled number; "
        "the split type is given beside every number.",
        tables.format_best_table(n.best, names),
    )


def _detail_items(
    results: Results, numbers: Sequence[GroupNumbers], names: dict[str, str]
) -> list[Item]:
    slots: list[list[Item]] = []
    searched = False
    for n in numbers:
        suffix = _suffix(n, numbers)
        items: list[Item] = [
            TableItem(
                f"best-per-classifier{suffix}",
                f"Best layer per classifier · {n.group.short}",
                f"{n.group.label}. For every classifier: mean UA ± std over folds at its best "
                "layer and pooling.",
                tables.format_classifier_table(n.cells, names),
            )
        ]
        chosen = tables.hyperparameters(results.table, n.best)
        if not chosen.empty:
            searched = True
            items.append(_hyperparameter_table(chosen, names, n, suffix))
        slots.append(items)
    out = with_group_headings(numbers, slots)
    if not searched:
        out.append(
            NoteItem(
                "Chosen hyperparameters",
                "Left out: the results record no hyperparameter search (ser classify --search).",
            )
        )
    return out


def _hyperparameter_table(
    chosen: pd.DataFrame, names: dict[str, str], n: GroupNumbers, suffix: str
) -> TableItem:
    frame = pd.DataFrame(
        {
            "Extractor": chosen["extractor"].map(names),
            "Train → test": chosen.apply(tables.setting_label, axis=1),
            "Split": chosen["split"],
            "Configuration": chosen.apply(tables.config_label, axis=1),
            "Fold": chosen["fold"],
            "Chosen values": chosen["hyperparameters"].astype(str),
        }
    )
    return TableItem(
        f"hyperparameters{suffix}",
        f"Chosen hyperparameters of the best cells · {n.group.short}",
        "Chosen per fold on an inner split of the training speakers only.",
        frame.reset_index(drop=True),
    )


def extractor_names(cells: pd.DataFrame) -> dict[str, str]:
    """Short display names, SSL models first, then classic baselines.

    The last part of a local path, the slug digest dropped (unless that makes two
    names equal), ``[untrained]`` appended for random-weight models.
    """
    classic = cells.groupby("extractor")["classic"].any()
    untrained = cells.groupby("extractor")["untrained"].any()
    raw = list(classic.index)
    short = {e: SLUG_DIGEST.sub("", Path(e).name if e.count("/") > 1 else e) or e for e in raw}
    if len(set(short.values())) < len(short):
        short = {e: e for e in raw}
    order = sorted(raw, key=lambda e: (bool(classic[e]), short[e].lower()))
    return {e: f"{short[e]} [{UNTRAINED_TAG}]" if untrained[e] else short[e] for e in order}


def extractor_infos(cells: pd.DataFrame, names: dict[str, str]) -> list[ExtractorInfo]:
    """One entry per extractor: name, kind (classic or SSL with its layer count), untrained."""
    infos = []
    for extractor in names:
        rows = cells[cells["extractor"] == extractor]
        name = names[extractor].removesuffix(f" [{UNTRAINED_TAG}]")
        if rows["classic"].any():
            kind = "classic baseline"
        else:
            layers = rows.loc[rows["layer"].str.fullmatch(r"\d+"), "layer"].nunique()
            kind = f"SSL model, {layers} layers probed" if layers else "SSL model"
            if is_finetune(rows).any():
                kind += ", fine-tuned"
        infos.append(ExtractorInfo(name, kind, bool(rows["untrained"].any())))
    return infos


def default_title(cells: pd.DataFrame, names: dict[str, str], targets: Sequence[str] = ()) -> str:
    """``Layer-wise emotion probing: wav2vec2-base, mfcc on emodb, emovo``.

    `targets` names what a folder without emotion rows probes instead (``speaker``).
    """
    extractors = ", ".join(name.removesuffix(f" [{UNTRAINED_TAG}]") for name in names.values())
    corpora = ", ".join(corpus_names(cells))
    what = " and ".join(targets) or "emotion"
    return f"Layer-wise {what} probing: {extractors} on {corpora}"


def _other_targets(table: pd.DataFrame) -> list[str]:
    """The targets of a table that holds no emotion rows (speaker, control), sorted."""
    return sorted(table[measures.TARGET_COLUMN].astype(str).unique())


def _target_prefix(targets: Sequence[str]) -> str:
    """``speaker target · `` before a headline of a folder without emotion rows, else ''."""
    return f"{' and '.join(targets)} target · " if targets else ""


def _target_warnings(targets: Sequence[str]) -> list[str]:
    """A warning that every number is of another target than emotion, where so."""
    if not targets:
        return []
    return [
        f"These results hold no emotion rows: every UA below is of the {' and '.join(targets)} "
        "target (ser classify --target speaker: mean recall over speakers; --control: the "
        "permuted labelling), not of emotion; the class lists name that target's classes."
    ]


def facts(
    results: Results, cells: pd.DataFrame, names: dict[str, str], groups: Sequence[Group]
) -> list[tuple[str, str]]:
    """The header's what-was-run lines (extractors are listed separately).

    A value of several lines (groups, results files) is one string with newlines.
    """
    table = results.table
    splits = [
        f"{split} ({rows['split_type'].iloc[0]}, {tables.fold_text(rows['folds'])})"
        for split, rows in cells.groupby("split", sort=True)
    ]
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    written = max(path.stat().st_mtime for path in results.sources)
    run_date = dt.datetime.fromtimestamp(written, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        ("Corpora", ", ".join(corpus_names(cells))),
        (
            "Conditions",
            ", ".join(sorted(set(cells["train_condition"]) | set(cells["test_condition"]))),
        ),
        ("Splits", "; ".join(splits)),
        ("Classifiers", ", ".join(sorted(cells["classifier"].unique()))),
        ("Poolings", pooling_text(cells, names)),
        ("Label set", _distinct(table, "labels", separator="; ")),
        ("Classes", ", ".join(results.classes) or "not recorded"),
        ("Compared groups", "\n".join(group.label for group in groups)),
        ("Speaker grouping", speaker_groupings(table)),
        ("Seed", _distinct(table, "seed")),
        ("Toolkit version", f"results: {toolkit_versions(table)}; report: ssl-ser {__version__}"),
        ("Date", f"results written {run_date}; report written {now}"),
        ("Results", results_text(results.sources)),
    ]
    if results.duplicates:
        lines.append(("Duplicates", "\n".join(results.duplicates)))
    return lines


def pooling_text(cells: pd.DataFrame, names: dict[str, str]) -> str:
    """``mean`` when every extractor used the same poolings, else per extractor."""
    per = cells.groupby("extractor")["pooling"].agg(lambda s: ", ".join(sorted(set(s))))
    if per.nunique() <= 1:
        return ", ".join(sorted(cells["pooling"].unique()))
    shown = {e: names[e].removesuffix(f" [{UNTRAINED_TAG}]") for e in names}
    return "; ".join(f"{shown[e]}: {per[e]}" for e in names if e in per.index)


def speaker_groupings(table: pd.DataFrame) -> str:
    """Each corpus's speaker grouping once (``emodb:speaker, emovo:speaker``)."""
    if "grouping" not in table.columns:
        return "not recorded"
    parts = {
        part.strip()
        for text in table["grouping"].dropna().astype(str).unique()
        for part in text.split(",")
        if part.strip()
    }
    return ", ".join(sorted(parts)) or "not recorded"


def results_text(sources: Sequence[Path]) -> str:
    """The results files read, one per line, below their common folder when there are several."""
    if len(sources) == 1:
        return str(sources[0])
    paths = [path.absolute() for path in sources]
    common = Path(os.path.commonpath([str(p.parent) for p in paths]))
    return "\n".join([f"in {common}:", *(str(p.relative_to(common)) for p in paths)])


def corpus_names(cells: pd.DataFrame) -> list[str]:
    """Every corpus named in a train or test column (pooled ``a+b`` split into its parts)."""
    joined = set(cells["train_corpus"]) | set(cells["test_corpus"])
    return sorted({part for name in joined for part in str(name).split("+")})


def _distinct(table: pd.DataFrame, column: str, separator: str = ", ") -> str:
    """The distinct values of a column (labels: ``; ``, since a label list holds commas)."""
    if column not in table.columns:
        return "not recorded"
    values = sorted({str(v) for v in table[column].dropna()})
    return separator.join(values) or "not recorded"


def toolkit_versions(table: pd.DataFrame) -> str:
    """Toolkit versions that made the results: a column, or inside the cache keys."""
    if "toolkit_version" in table.columns:
        return _distinct(table, "toolkit_version")
    found: set[str] = set()
    for column in (c for c in table.columns if "cache_key" in c):
        for text in table[column].dropna().astype(str).unique():
            found |= set(re.findall(r'"toolkit_version"\s*:\s*"([^"]+)"', text))
            found |= _versions_in_json(text)
    return ", ".join(sorted(found)) or "not recorded"


def _versions_in_json(text: str) -> set[str]:
    try:
        data = json.loads(text)
    except (ValueError, TypeError):
        return set()
    items = data if isinstance(data, list) else [data]
    return {
        str(d["toolkit_version"]) for d in items if isinstance(d, dict) and "toolkit_version" in d
    }


def warning_lines(cells: pd.DataFrame, names: dict[str, str]) -> list[str]:
    """Banners: untrained models, speaker-dependent splits, collapsed classifiers."""
    out = []
    for extractor in sorted(cells.loc[cells["untrained"].astype(bool), "extractor"].unique()):
        name = names[extractor].removesuffix(f" [{UNTRAINED_TAG}]")
        out.append(
            f"{name} has random weights (untrained): its results show that the "
            "pipeline runs end to end, not what a trained model knows about emotion."
        )
    for split_type in (SPEAKER_DEPENDENT, SPEAKERS_SHARED):
        dependent = sorted(cells.loc[cells["split_type"] == split_type, "split"].unique())
        if dependent:
            out.append(
                f"Split {', '.join(dependent)} is {split_type}: test speakers were also heard "
                "in training, so its numbers are optimistic and not comparable with "
                "speaker-independent ones."
            )
    collapsed = collapse_warning(cells, names)
    return out + ([collapsed] if collapsed else [])


def collapse_warning(cells: pd.DataFrame, names: dict[str, str]) -> str:
    """A banner on cells whose classifier predicted one class for a whole test fold, or ``""``.

    It names the worst settings and suggests ``--speaker-norm`` where the
    collapsed cells were run without it.
    """
    hit = cells[cells["collapsed_folds"] > 0]
    if hit.empty:
        return ""
    settings = hit.assign(where=hit.apply(_where, axis=1, names=names))
    shown = list(dict.fromkeys(settings["where"]))
    more = f" and {len(shown) - COLLAPSE_EXAMPLES} more" if len(shown) > COLLAPSE_EXAMPLES else ""
    advice = ""
    if (hit["speaker_norm"] != "True").any():
        advice = (
            " Train and test audio that differ in channel or level (e.g. clean → telephone) "
            "often cause this; try ser classify --speaker-norm (each speaker's features "
            "z-normalised with its own rows) and compare in its own group."
        )
    return (
        f"{len(hit)} cell(s) collapsed: the classifier predicted a single class for a whole "
        f"test fold, so their UA sits at chance whatever the features hold ("
        f"{'; '.join(shown[:COLLAPSE_EXAMPLES])}{more}). They are marked in the tables and "
        f"figures.{advice}"
    )


COLLAPSE_EXAMPLES = 3


def _where(cell: pd.Series, names: dict[str, str]) -> str:
    return f"{names[cell['extractor']]} {tables.setting_label(cell)} · {cell['classifier']}"


def highlight(cell: pd.Series, names: dict[str, str], group: Group | None = None) -> str:
    """One sentence on a group's best cell, naming its group: fold spread, pooled score, CI."""
    folds = int(cell["folds"])
    spread = tables.mean_std(cell["ua_mean"], cell["ua_std"], folds)
    pooled = tables.percent(cell.get("ua_pooled", float("nan")))
    ci = tables.interval(cell.get("ua_low", float("nan")), cell.get("ua_high", float("nan")))
    pooled_text = f"; pooled {pooled}%, 95% CI {ci}" if ci != "n/a" else ""
    collapsed = tables.collapsed_text(cell)
    prefix = f"{group.label}: " if group is not None else ""
    return (
        f"{prefix}best UA {spread}% (mean ± std over {tables.fold_text(folds)}{pooled_text}; "
        f"{cell['split_type']}, {cell['split']} split): {names[cell['extractor']]} "
        f"{tables.config_label(cell)} on {tables.setting_label(cell)}"
        + (f" ({collapsed})" if collapsed else "")
    )


def _remove_stale_figures(figure_dir: Path, document: Document) -> None:
    """Delete report figures from an earlier run that this run did not draw."""
    current = {path for item in document.figures for path in (item.png, item.svg)}
    for pattern in FIGURE_PATTERNS:
        for path in figure_dir.glob(pattern):
            if path.suffix in (".png", ".svg") and path not in current:
                path.unlink()
