"""Assemble the report from the results: numbers, figures, notes, header; then write it.

:func:`write_report` is the entry point behind ``ser report``: it reads the
results table(s), draws the figures into a ``figures/`` folder beside the HTML
file, and writes ``report.html`` (self-contained) and ``report.md`` (linking
the PNG files).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from ssl_ser import __version__
from ssl_ser.report import figures, tables
from ssl_ser.report.document import Document, ExtractorInfo, Item, NoteItem, Section, TableItem
from ssl_ser.report.load import (
    CELL,
    SPEAKER_DEPENDENT,
    SPEAKER_INDEPENDENT,
    SPEAKERS_SHARED,
    Results,
    load_results,
)

log = logging.getLogger(__name__)

FIGURES_FOLDER = "figures"
FIGURE_PATTERNS: tuple[str, ...] = (
    "layers-*",
    "heatmap-*",
    "cross-corpus.*",
    "conditions.*",
    "condition-drop.*",
    "confusion.*",
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

    Args:
        results_dir: ``ser classify`` output folder(s) holding ``results.parquet``
            (or ``.csv``) and, optionally, ``predictions.parquet``.
        output_html: the HTML file to write; ``.md`` and ``figures/`` go beside it.
        title: the report's title (default: names the extractors and corpora).
        n_boot: bootstrap resamples for the 95% intervals of the best cells.
        seed: seed of the bootstrap resampling.
        progress: show a progress bar while drawing.

    Raises:
        ConfigError: a folder holds no usable results table.
    """
    from ssl_ser.report import html, markdown

    folders = [results_dir] if isinstance(results_dir, str | Path) else list(results_dir)
    results = load_results(folders)
    output_html = Path(output_html)
    figure_dir = output_html.parent / FIGURES_FOLDER
    document = build_document(
        results, figure_dir, title=title, n_boot=n_boot, seed=seed, progress=progress
    )
    _remove_stale_figures(figure_dir, document)
    output_html.parent.mkdir(parents=True, exist_ok=True)
    output_html.write_text(html.render(document), encoding="utf-8")
    md_path = output_html.with_suffix(".md")
    md_path.write_text(markdown.render(document, output_html.parent), encoding="utf-8")
    log.info("wrote %s and %s", output_html, md_path)
    return ReportSummary(
        html=output_html,
        markdown=md_path,
        figures=[item.png for item in document.figures],
        n_tables=len(document.tables),
        left_out=[note.title for note in document.notes],
        best=document.highlight,
    )


def build_document(
    results: Results,
    figure_dir: Path,
    *,
    title: str | None = None,
    n_boot: int = tables.DEFAULT_BOOTSTRAP,
    seed: int = 0,
    progress: bool = False,
) -> Document:
    """Compute the numbers, draw the figures and lay out the sections."""
    cells = tables.cell_summary(results.table)
    names = extractor_names(cells)
    best = tables.with_intervals(
        tables.best_cells(cells),
        results.table,
        results.predictions,
        results.classes,
        n_boot=n_boot,
        seed=seed,
    )
    top = tables.overall_best(cells)
    drawn = draw_figures(results, cells, names, top, figure_dir, progress=progress)
    sections = [
        Section("Layer-wise probing", LAYERS_INTRO, drawn["layers"]),
        Section("Best results", BEST_INTRO, [_best_table(best, names)]),
        Section("Cross-corpus transfer", CROSS_INTRO, drawn["cross"]),
        Section("Clean vs telephone", CONDITIONS_INTRO, drawn["conditions"]),
        Section("Confusion matrix", CONFUSION_INTRO, drawn["confusion"]),
        Section("Details", DETAILS_INTRO, _detail_items(results, cells, best, names)),
        Section("How to read these numbers", method_text(n_boot)),
    ]
    return Document(
        title=title or default_title(cells, names),
        extractors=extractor_infos(cells, names),
        facts=facts(results, cells),
        warnings=warning_lines(cells, names),
        highlight=highlight(best, top, names),
        sections=sections,
    )


def draw_figures(
    results: Results,
    cells: pd.DataFrame,
    names: dict[str, str],
    top: pd.Series,
    figure_dir: Path,
    *,
    progress: bool = False,
) -> dict[str, list[Item]]:
    """Every figure (or its left-out note), keyed by the section it belongs to."""
    n_classes = len(results.classes)
    steps: list[tuple[str, Callable[[], list[Item]]]] = [
        ("layers", lambda: figures.layer_curves(cells, names, figure_dir, n_classes)),
        ("layers", lambda: figures.layer_heatmaps(cells, names, figure_dir)),
        ("cross", lambda: figures.cross_corpus_matrices(cells, names, figure_dir)),
        ("conditions", lambda: figures.condition_matrices(cells, names, figure_dir)),
        ("conditions", lambda: figures.condition_drops(cells, names, figure_dir)),
        (
            "confusion",
            lambda: figures.confusion_figure(
                top, results.table, results.predictions, results.classes, names, figure_dir
            ),
        ),
    ]
    drawn: dict[str, list[Item]] = {}
    for key, draw in tqdm(steps, desc="report figures", unit="figure", disable=not progress):
        drawn.setdefault(key, []).extend(draw())
    return drawn


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
        f"has none). 95% CI: percentile bootstrap over the pooled test utterances of all folds "
        f"({n_boot} resamples) from the stored predictions. Best cells are picked on these "
        "same test results, so they are an optimistic summary of a sweep, not a model chosen "
        f"on held-out data. '{SPEAKER_INDEPENDENT}': no speaker appears in both training and "
        f"test. '{SPEAKER_DEPENDENT}': utterances were shuffled regardless of speaker, so "
        "test speakers were also heard in training and the numbers are higher than a new "
        f"speaker would see; '{SPEAKERS_SHARED}' likewise (e.g. a corpus's preset split)."
    )


def _best_table(best: pd.DataFrame, names: dict[str, str]) -> TableItem:
    return TableItem(
        "best-cells",
        "Best cell per extractor, setting and split",
        "Mean ± std over folds, with the bootstrap 95% interval below it; the split type is "
        "given beside every number.",
        tables.format_best_table(best, names),
    )


def _detail_items(
    results: Results, cells: pd.DataFrame, best: pd.DataFrame, names: dict[str, str]
) -> list[Item]:
    items: list[Item] = [
        TableItem(
            "best-per-classifier",
            "Best layer per classifier",
            "For every classifier: mean UA ± std over folds at its best layer and pooling.",
            tables.format_classifier_table(tables.best_per_classifier(cells), names),
        )
    ]
    chosen = tables.hyperparameters(results.table, best)
    if chosen.empty:
        items.append(
            NoteItem(
                "Chosen hyperparameters",
                "Left out: the results record no hyperparameter search (ser classify --search).",
            )
        )
    else:
        items.append(_hyperparameter_table(chosen, names))
    return items


def _hyperparameter_table(chosen: pd.DataFrame, names: dict[str, str]) -> TableItem:
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
        "hyperparameters",
        "Chosen hyperparameters of the best cells",
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
            kind = f"SSL model, {layers} layers probed"
        infos.append(ExtractorInfo(name, kind, bool(rows["untrained"].any())))
    return infos


def default_title(cells: pd.DataFrame, names: dict[str, str]) -> str:
    """``Layer-wise emotion probing: wav2vec2-base, mfcc on emodb, emovo``."""
    extractors = ", ".join(name.removesuffix(f" [{UNTRAINED_TAG}]") for name in names.values())
    corpora = ", ".join(corpus_names(cells))
    return f"Layer-wise emotion probing: {extractors} on {corpora}"


def facts(results: Results, cells: pd.DataFrame) -> list[tuple[str, str]]:
    """The header's what-was-run lines (extractors are listed separately)."""
    table = results.table
    splits = [
        f"{split} ({rows['split_type'].iloc[0]}, {_fold_text(rows)})"
        for split, rows in cells.groupby("split", sort=True)
    ]
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    written = max(path.stat().st_mtime for path in results.sources)
    run_date = dt.datetime.fromtimestamp(written, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [
        ("Corpora", ", ".join(corpus_names(cells))),
        (
            "Conditions",
            ", ".join(sorted(set(cells["train_condition"]) | set(cells["test_condition"]))),
        ),
        ("Splits", "; ".join(splits)),
        ("Classifiers", ", ".join(sorted(cells["classifier"].unique()))),
        ("Poolings", ", ".join(sorted(cells["pooling"].unique()))),
        ("Label set", _distinct(table, "labels")),
        ("Classes", ", ".join(results.classes) or "not recorded"),
        ("Speaker grouping", _distinct(table, "grouping")),
        ("Seed", _distinct(table, "seed")),
        ("Toolkit version", f"results: {toolkit_versions(table)}; report: ssl-ser {__version__}"),
        ("Date", f"results written {run_date}; report written {now}"),
        ("Results", ", ".join(str(path) for path in results.sources)),
    ]


def corpus_names(cells: pd.DataFrame) -> list[str]:
    """Every corpus named in a train or test column (pooled ``a+b`` split into its parts)."""
    joined = set(cells["train_corpus"]) | set(cells["test_corpus"])
    return sorted({part for name in joined for part in str(name).split("+")})


def _fold_text(rows: pd.DataFrame) -> str:
    folds = sorted(set(rows["folds"].astype(int)))
    return "/".join(map(str, folds)) + (" fold" if folds == [1] else " folds")


def _distinct(table: pd.DataFrame, column: str) -> str:
    if column not in table.columns:
        return "not recorded"
    values = sorted({str(v) for v in table[column].dropna()})
    return ", ".join(values) or "not recorded"


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
    """Banners: untrained models, speaker-dependent splits."""
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
    return out


def highlight(best: pd.DataFrame, top: pd.Series, names: dict[str, str]) -> str:
    """One sentence on the overall best cell, with its split type and interval."""
    same = (best[list(CELL)] == top[list(CELL)]).all(axis=1)
    cell = best[same].iloc[0] if same.any() else top
    spread = tables.mean_std(cell["ua_mean"], cell["ua_std"], int(cell["folds"]))
    ci = tables.interval(cell.get("ua_low", float("nan")), cell.get("ua_high", float("nan")))
    ci_text = f", 95% CI {ci}" if ci != "n/a" else ""
    folds = int(cell["folds"])
    return (
        f"best UA {spread}%{ci_text} ({cell['split_type']}, {cell['split']} split, "
        f"{folds} fold{'s' if folds != 1 else ''}): {names[cell['extractor']]} "
        f"{tables.config_label(cell)} on {tables.setting_label(cell)}"
    )


def _remove_stale_figures(figure_dir: Path, document: Document) -> None:
    """Delete report figures from an earlier run that this run did not draw."""
    current = {path for item in document.figures for path in (item.png, item.svg)}
    for pattern in FIGURE_PATTERNS:
        for path in figure_dir.glob(pattern):
            if path.suffix in (".png", ".svg") and path not in current:
                path.unlink()
