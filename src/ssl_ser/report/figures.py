"""The report's figures, drawn with matplotlib (Agg) and saved as PNG and SVG.

Every public function takes the per-cell summary of one comparable group
(:func:`ssl_ser.report.tables.cell_summary`, :class:`~ssl_ser.report.groups.Group`;
plus, for the confusion matrix, the stored predictions) and returns its figure
items, empty when the group holds no data for it (the report then says why in
a note). Figures are named ``<kind>-<group tag>`` and carry the group in their
titles; no panel, line or matrix mixes two groups or two poolings of one
extractor, and collapsed classifiers are marked (red crosses, dashed red boxes).
A figure grows until its titles, labels and legends fit inside it. Figures are built on
``matplotlib.figure.Figure`` objects, never through pyplot's global state, so
no interactive backend is ever touched; matplotlib is imported inside functions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ssl_ser.atomic import make_folder, write_file
from ssl_ser.report.document import FigureItem, Item
from ssl_ser.report.groups import Group, slug
from ssl_ser.report.load import is_finetune
from ssl_ser.report.tables import (
    FINETUNE_INPUTS,
    cell_predictions,
    collapsed_text,
    config_label,
    describe_setting,
    fold_text,
    is_cross_corpus,
    setting_label,
)
from ssl_ser.results import FINETUNE_CLASSIFIER, LAST_STATE_LAYER, WEIGHTED_LAYER

if TYPE_CHECKING:
    from collections.abc import Iterator

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

REFERENCE_CONDITION = "clean"
# Condition panels: one per extractor, corpora, split and pooling (never two poolings in one).
CORPUS_PANEL: list[str] = ["extractor", "train_corpus", "test_corpus", "split", "pooling"]
COLLAPSED_COLOR = "#d4001a"
# The diagonal of a cross-corpus matrix: in-corpus numbers belong to another split's group.
LAYER_SHORT: dict[str, str] = {LAST_STATE_LAYER: "last state", WEIGHTED_LAYER: "layer weights"}
IN_CORPUS_ELSEWHERE = "in-corpus:\nsee its\nown split"
COLLAPSED_LABEL = "collapsed: one class predicted on a test fold"
# A figure grows until every title, label and legend fits inside it (inches of slack).
FIT_TOLERANCE = 0.02
LEGEND_COLUMNS = 6
# Inches one legend entry takes, to choose how many fit side by side.
LEGEND_ENTRY_WIDTH = 2.1
FIT_ROUNDS = 4
PNG_DPI = 150
MAX_COLUMNS = 3
# More layer-curve panels than this: one figure per extractor.
MAX_PANELS = 12
CONDITION_COLUMNS = 4
ANNOTATE_MAX_LAYERS = 26
PALETTE: tuple[str, ...] = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
)
BASELINE_STYLES: tuple[tuple[str, Any], ...] = (
    ("#303030", (0, (7, 3))),
    ("#303030", (0, (4, 1.5, 1, 1.5))),
    ("#5a5a5a", (0, (10, 2, 2, 2, 2, 2))),
)
FINETUNE_COLORS: dict[str, str] = {LAST_STATE_LAYER: "#111111", WEIGHTED_LAYER: "#c98a00"}
# Dash patterns short enough that a legend handle (LEGEND_HANDLE_LENGTH) shows a whole cycle
# at the fine-tune lines' width (dashes scale with it): else two settings both read as solid.
FINETUNE_STYLES: tuple[Any, ...] = ("-", (0, (4, 1.5, 1, 1.5)), (0, (1.5, 1.2)))
FINETUNE_WIDTH = 2.2
LEGEND_HANDLE_LENGTH = 3.5
CHANCE_STYLE: dict[str, Any] = {"color": "#a0a0a0", "ls": (0, (1, 2)), "lw": 1.0}
POOLING_STYLES: tuple[Any, ...] = ("-", (0, (4, 2)), (0, (1, 1)), (0, (6, 2, 1, 2)))
STYLE: dict[str, Any] = {
    "font.size": 9.5,
    "axes.titlesize": 10,
    "axes.labelsize": 9.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "legend.frameon": False,
    "legend.fontsize": 9,
    "svg.fonttype": "path",
    "svg.hashsalt": "ssl-ser-report",
    "image.cmap": "viridis",
}
UA_AXIS = "UA (unweighted average recall, %)"
LAYER_AXIS = "layer (0 = input to the first transformer block)"


@contextmanager
def _style() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(STYLE):
        yield


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # a renderer to measure text with (see fit_contents)
    return fig


def save_figure(
    fig: Figure, out_dir: Path, name: str, title: str, caption: str, group: Group | None = None
) -> FigureItem:
    """Write `fig` as ``<name>.png`` and ``<name>.svg`` (no dates or URLs in the metadata).

    With `group`, the name ends in the group's tag and the title names the group.
    """
    import matplotlib

    if group is not None:
        name, title = f"{name}-{group.tag}", f"{title} ({group.short})"
    root = out_dir.parent  # the report's folder: out_dir below it must not be a link
    make_folder(out_dir, root=root)
    png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    fit_contents(fig)  # runs the constrained layout, then keeps it for both files
    # No engine at all: "none" leaves a placeholder engine that makes savefig lay out
    # (draw) the figure once more before each file, which is a third of the drawing.
    no_layout = {"figure.autolayout": False, "figure.constrained_layout.use": False}
    with matplotlib.rc_context(no_layout):
        fig.set_layout_engine(None)
    png_metadata = {"Software": None}
    svg_metadata = {"Date": None, "Creator": None}
    write_file(
        png, lambda p: fig.savefig(p, format="png", dpi=PNG_DPI, metadata=png_metadata), root=root
    )
    write_file(svg, lambda p: fig.savefig(p, format="svg", metadata=svg_metadata), root=root)
    return FigureItem(name=name, title=title, caption=caption, png=png, svg=svg)


def overflow(fig: Figure) -> tuple[float, float]:
    """Inches by which the drawn contents (titles, legends, labels) exceed the figure, (x, y).

    Constrained layout keeps most things inside, but not a title or legend wider
    than the figure, nor the labels of fixed-aspect panels (matrices). Centred
    artists (the suptitle, a legend below the panels) overflow on both sides, so
    the width needed is twice the larger side's overflow.
    """
    drawn = fig.get_tightbbox(fig.canvas.get_renderer())  # in inches
    width, height = fig.get_size_inches()
    x = 2 * max(0.0, -drawn.x0, drawn.x1 - width)
    y = max(0.0, -drawn.y0) + max(0.0, drawn.y1 - height)
    return float(x), float(y)


def fit_contents(fig: Figure) -> None:
    """Lay out `fig` and widen or heighten it until nothing is clipped at its edges."""
    fig.draw_without_rendering()
    for _ in range(FIT_ROUNDS):
        x, y = overflow(fig)
        if x <= FIT_TOLERANCE and y <= FIT_TOLERANCE:
            return
        width, height = fig.get_size_inches()
        fig.set_size_inches(width + x + FIT_TOLERANCE, height + y + FIT_TOLERANCE)
        fig.draw_without_rendering()


def settings(frame: pd.DataFrame) -> pd.Series:
    """The :func:`~ssl_ser.report.tables.describe_setting` text of every row."""
    columns = ["train_corpus", "train_condition", "test_corpus", "test_condition"]
    texts = [describe_setting(*map(str, row)) for row in frame[columns].itertuples(index=False)]
    return pd.Series(texts, index=frame.index, dtype=object)


def layered_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """Cells of layered (SSL) extractors at single numbered layers, with ``layer_index``."""
    # a fine-tune that read one layer (--head-layer, --from-probe) is a whole model, not a layer
    numbered = cells["layer"].str.fullmatch(r"\d+")
    keep = ~cells["classic"].astype(bool) & numbered & ~is_finetune(cells)
    out = cells[keep].copy()
    out["layer_index"] = out["layer"].astype(int)
    out["setting"] = settings(out)
    return out


def split_title(rows: pd.DataFrame) -> str:
    """``speaker-kfold: speaker-independent, 5 folds`` for the rows of one split."""
    return f"{rows['split'].iloc[0]}: {rows['split_type'].iloc[0]}, {fold_text(rows['folds'])}"


def _split_kind(rows: pd.DataFrame) -> str:
    """``speaker-independent, 5 folds``: the split's type and fold count (its name is known)."""
    return split_title(rows).split(": ", 1)[1]


def _panel_figure(
    n: int,
    columns: int,
    panel: tuple[float, float],
    margin: tuple[float, float],
    **kwargs: Any,
) -> tuple[Figure, list[Axes]]:
    """A figure of `n` panels in rows of at most `columns`, each `panel` inches plus `margin`."""
    ncols = min(columns, n)
    nrows = math.ceil(n / ncols)
    fig = _new_figure(panel[0] * ncols + margin[0], panel[1] * nrows + margin[1])
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, list(axes[:n])


def ordered_panels(
    groups: Any, names: Mapping[str, str]
) -> list[tuple[tuple[str, ...], pd.DataFrame]]:
    """``groupby`` groups keyed by (extractor, ...), in the order of `names`, then by key."""
    rank = {extractor: i for i, extractor in enumerate(names)}
    items = [(tuple(map(str, key)), frame) for key, frame in groups]
    return sorted(items, key=lambda item: (rank.get(item[0][0], len(rank)), item[0][1:]))


def _bottom_row(axes: Sequence[Axes], columns: int) -> list[Axes]:
    """The panels with no panel below them (they carry the x-axis label)."""
    ncols = min(columns, len(axes))
    return [ax for i, ax in enumerate(axes) if i + ncols >= len(axes)]


def _colors(names: Sequence[str]) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sorted(set(names)))}


# --- layer-wise curves -------------------------------------------------------------


def layer_curves(
    cells: pd.DataFrame, names: Mapping[str, str], out_dir: Path, group: Group
) -> list[Item]:
    """UA ± std against layer, one panel per extractor and setting, for one comparable group."""
    layered = layered_cells(cells)
    if layered.empty:
        return []
    colors = _colors(cells.loc[~is_finetune(cells), "classifier"])
    references = cells[~cells.index.isin(layered.index)].copy()
    references["setting"] = settings(references)
    items: list[Item] = []
    for part, name in _figure_parts(layered, names, f"layers-{group.tag}"):
        with _style():
            items.append(_layer_figure(part, references, names, colors, group, out_dir, name))
    return items


def _figure_parts(
    rows: pd.DataFrame, names: Mapping[str, str], name: str
) -> list[tuple[pd.DataFrame, str]]:
    """One figure of all panels, or one per extractor when there are too many panels."""
    if len(rows[["extractor", "setting"]].drop_duplicates()) <= MAX_PANELS:
        return [(rows, name)]
    return [
        (rows[rows["extractor"] == extractor], f"{name}-{slug(Path(extractor).name)}")
        for extractor in names
        if (rows["extractor"] == extractor).any()
    ]


def _layer_figure(
    rows: pd.DataFrame,
    baselines: pd.DataFrame,
    names: Mapping[str, str],
    colors: Mapping[str, str],
    group: Group,
    out_dir: Path,
    name: str,
) -> FigureItem:
    panels = ordered_panels(rows.groupby(["extractor", "setting"]), names)
    fig, axes = _panel_figure(len(panels), MAX_COLUMNS, (4.7, 3.5), (0.3, 1.1), sharey=True)
    variants = _variants(rows)
    for ax, ((extractor, setting), panel) in zip(axes, panels, strict=True):
        same = baselines["setting"] == setting
        mine = baselines["classic"].astype(bool) | (baselines["extractor"] == extractor)
        _layer_panel(ax, panel, baselines[same & mine], names, colors, variants)
        _chance_line(ax, group.n_classes)
        ax.set_title(f"{names[extractor]}\n{setting}\n{_best_text(panel)}")
    _y_limits(axes, rows, baselines, group.n_classes)
    for ax in _bottom_row(axes, MAX_COLUMNS):
        ax.set_xlabel(LAYER_AXIS)
    for ax in axes[:: min(MAX_COLUMNS, len(panels))]:
        ax.set_ylabel(UA_AXIS)
    _layer_legend(fig, axes, collapsed=bool(rows["collapsed_folds"].gt(0).any()))
    split = str(rows["split"].iloc[0])
    fig.suptitle(
        f"UA by layer · mean ± std over folds\n{group.short} · {_split_kind(rows)}",
        fontweight="bold",
    )
    caption = (
        f"{group.label}; split {split_title(rows)}. Lines: mean UA over folds per classifier "
        "and pooling; shaded: ± one standard deviation over folds; stars: each line's best "
        "layer; red crosses: layers where the classifier collapsed (predicted one class for a "
        "whole test fold). Dashed horizontal lines: classic baselines of the same group (best "
        "classifier, pooling named); coloured dotted lines: the same classifier on combined "
        "layers, where run; grey dotted: chance (1 / number of classes)."
        + FINETUNE_CAPTION
        * bool(is_finetune(baselines).any())
    )
    return save_figure(fig, out_dir, name, f"UA by layer ({split}; {group.short})", caption)


FINETUNE_CAPTION = (
    " Thick solid horizontal lines: the same extractor fine-tuned end to end on the same "
    "corpus and condition (mean UA over folds; black: head on the last hidden state, gold: "
    "learned layer weights), a whole model rather than a layer."
)
LINE_KEYS: list[str] = ["classifier", "pooling", "speaker_norm", "search"]


def _variant(pooling: str, speaker_norm: str, search: str) -> str:
    """``mean+std · z-norm · searched``: how a line's inputs and fitting differ."""
    extras = [
        " · z-norm" if speaker_norm == "True" else "",
        " · searched" if search == "True" else "",
    ]
    return pooling + "".join(extras)


def _variants(rows: pd.DataFrame) -> dict[str, list[str]]:
    """Per classifier, its line variants (pooling, z-norm, search) in the figure."""
    out: dict[str, set[str]] = {}
    for classifier, *rest in rows[LINE_KEYS].itertuples(index=False):
        out.setdefault(classifier, set()).add(_variant(*rest))
    return {classifier: sorted(found) for classifier, found in out.items()}


def _layer_panel(
    ax: Axes,
    panel: pd.DataFrame,
    references: pd.DataFrame,
    names: Mapping[str, str],
    colors: Mapping[str, str],
    variants: Mapping[str, list[str]],
) -> None:
    for (classifier, *rest), line in panel.groupby(LINE_KEYS, sort=True):
        line = line.sort_values("layer_index")
        x = line["layer_index"].to_numpy()
        y = 100 * line["ua_mean"].to_numpy()
        spread = 100 * line["ua_std"].fillna(0.0).to_numpy()
        variant = _variant(*rest)
        mine = variants[classifier]
        label = f"{classifier} · {variant}" if len(mine) > 1 else str(classifier)
        style = POOLING_STYLES[mine.index(variant) % len(POOLING_STYLES)]
        color = colors[classifier]
        ax.plot(x, y, color=color, ls=style, lw=1.6, marker="o", ms=3, label=label)
        ax.fill_between(x, y - spread, y + spread, color=color, alpha=0.15, lw=0)
        top = int(np.nanargmax(y))
        ax.plot(x[top], y[top], marker="*", ms=13, color=color, mec="black", mew=0.7)
        _mark_collapsed(ax, x, y, line["collapsed_folds"].to_numpy())
    _reference_lines(ax, references, names, colors)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=13))
    _whole_layers(ax, panel["layer_index"])


def _whole_layers(ax: Axes, layers: pd.Series) -> None:
    """One layer only: an axis from the layer before to the one after (not 2.85..3.15)."""
    if layers.nunique() == 1:
        ax.set_xlim(layers.iloc[0] - 1, layers.iloc[0] + 1)


def _mark_collapsed(ax: Axes, x: Any, y: Any, collapsed: np.ndarray) -> None:
    """Red crosses on the points of cells that collapsed on at least one test fold."""
    hit = np.asarray(collapsed, dtype=float) > 0
    if hit.any():
        ax.plot(
            np.asarray(x)[hit],
            np.asarray(y)[hit],
            ls="none",
            marker="X",
            ms=8,
            color=COLLAPSED_COLOR,
            mec="white",
            mew=0.6,
            zorder=5,
        )


def _reference_lines(
    ax: Axes, references: pd.DataFrame, names: Mapping[str, str], colors: Mapping[str, str]
) -> None:
    """Classic baselines (grey, best classifier) and combined-layer cells (classifier colour)."""
    classic = references[references["classic"].astype(bool)]
    for i, (extractor, base) in enumerate(classic.groupby("extractor", sort=True)):
        best = base.loc[base["ua_mean"].idxmax()]
        color, dashes = BASELINE_STYLES[i % len(BASELINE_STYLES)]
        label = f"{names[extractor]} baseline ({best['pooling']})"
        ax.axhline(100 * best["ua_mean"], color=color, ls=dashes, lw=1.3, label=label)
    combined = references[~references["classic"].astype(bool) & ~is_finetune(references)]
    for (classifier, layer), rows in combined.groupby(["classifier", "layer"], sort=True):
        best = rows.loc[rows["ua_mean"].idxmax()]
        what = "learned layer weights" if layer == WEIGHTED_LAYER else f"layers {layer}"
        color = colors.get(classifier, "#555555")
        label = f"{classifier} · {what}"
        ax.axhline(100 * best["ua_mean"], color=color, ls=(0, (1, 1.5)), lw=1.8, label=label)
    _finetune_lines(ax, references[is_finetune(references)])


def _finetune_lines(ax: Axes, tuned: pd.DataFrame) -> None:
    """Fine-tuned models of the panel's extractor and setting: horizontal lines at their mean UA.

    They are whole models, not layers, so they never sit on the layer axis. Dark
    solid: the head read the last hidden state; gold: learned layer weights;
    several setups of one kind get their own dash pattern and name their setup.
    """
    several = tuned["finetune_setup"].nunique() > 1
    for (layer, setup), rows in tuned.groupby(["layer", "finetune_setup"], sort=True):
        color = FINETUNE_COLORS.get(str(layer), FINETUNE_COLORS[LAST_STATE_LAYER])
        index = sorted(tuned.loc[tuned["layer"] == layer, "finetune_setup"].unique()).index(setup)
        what = FINETUNE_INPUTS.get(str(layer), f"layer {layer}")
        label = f"fine-tuned · {what}" + (f" · {setup}" if several and setup else "")
        style = FINETUNE_STYLES[index % len(FINETUNE_STYLES)]
        for _, cell in rows.iterrows():
            ax.axhline(100 * cell["ua_mean"], color=color, ls=style, lw=FINETUNE_WIDTH, label=label)


def _best_text(panel: pd.DataFrame) -> str:
    best = panel.loc[panel["ua_mean"].idxmax()]
    return f"best: layer {best['layer']}, {best['classifier']}, {100 * best['ua_mean']:.1f}% UA"


def _chance_line(ax: Axes, n_classes: int) -> None:
    if n_classes > 1:
        ax.axhline(100 / n_classes, label="chance", **CHANCE_STYLE)


def _y_limits(
    axes: Sequence[Axes], rows: pd.DataFrame, baselines: pd.DataFrame, n_classes: int
) -> None:
    spread = rows["ua_std"].fillna(0.0)
    values = [*(rows["ua_mean"] - spread), *(rows["ua_mean"] + spread), *baselines["ua_mean"]]
    if n_classes > 1:
        values.append(1 / n_classes)
    low, high = 100 * np.nanmin(values), 100 * np.nanmax(values)
    margin = max(2.0, 0.08 * (high - low))
    axes[0].set_ylim(max(0.0, low - margin), min(100.0, high + margin))


def _layer_legend(fig: Figure, axes: Sequence[Axes], *, collapsed: bool = False) -> None:
    """The panels' legend plus the best-layer star, the std band and (if any) collapse marks."""
    from matplotlib.patches import Patch

    band = Patch(color="0.5", alpha=0.25, lw=0)
    extra: dict[str, Any] = {"best layer": _star_handle(), "± std over folds": band}
    if collapsed:
        extra[COLLAPSED_LABEL] = _collapsed_handle()
    _figure_legend(fig, axes, extra)


def _collapsed_handle() -> Any:
    from matplotlib.lines import Line2D

    return Line2D([], [], ls="none", marker="X", ms=8, color=COLLAPSED_COLOR, mec="white")


def _star_handle() -> Any:
    from matplotlib.lines import Line2D

    return Line2D([], [], ls="none", marker="*", ms=12, color="white", mec="black")


def _figure_legend(
    fig: Figure, axes: Sequence[Axes], extra: Mapping[str, Any] | None = None
) -> None:
    """One legend below the panels: each labelled line once (in order), then `extra`."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if not label.startswith("_"):
                seen.setdefault(label, handle)
    seen.update(extra or {})
    columns = max(1, min(LEGEND_COLUMNS, len(seen), int(fig.get_figwidth() // LEGEND_ENTRY_WIDTH)))
    fig.legend(
        list(seen.values()),
        list(seen),
        loc="outside lower center",
        ncols=columns,
        handlelength=LEGEND_HANDLE_LENGTH,
    )


# --- heatmaps ----------------------------------------------------------------------


def layer_heatmaps(
    cells: pd.DataFrame, names: Mapping[str, str], out_dir: Path, group: Group
) -> list[Item]:
    """Best UA over classifiers per layer (columns) and corpus/condition (rows), one group."""
    layered = layered_cells(cells)
    if layered.empty or layered.groupby(["extractor", "pooling"])["setting"].nunique().max() < 2:
        return []
    with _style():
        return [_heatmap_figure(layered, names, out_dir, group)]


def _heatmap_figure(
    rows: pd.DataFrame, names: Mapping[str, str], out_dir: Path, group: Group
) -> FigureItem:
    keys = ["extractor", "pooling", "setting", "layer_index"]
    best = rows.groupby(keys)["ua_mean"].max() * 100
    rank = {extractor: i for i, extractor in enumerate(names)}
    panels = sorted(best.index.droplevel([2, 3]).unique(), key=lambda k: (rank.get(k[0], 0), k))
    several = rows.groupby("extractor")["pooling"].nunique().gt(1)
    grids = {k: best.loc[k].unstack("layer_index").sort_index(axis=1) for k in panels}
    heights = [len(grid) for grid in grids.values()]
    width = max(6.5, 0.42 * max(grid.shape[1] for grid in grids.values()) + 3.8)
    fig = _new_figure(width, 0.42 * sum(heights) + 1.25 * len(panels) + 0.9)
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=heights).ravel()
    vmin, vmax = float(np.nanmin(best)), float(np.nanmax(best))
    for ax, (extractor, pooling) in zip(axes, panels, strict=True):
        image = _heatmap(ax, grids[(extractor, pooling)], vmin, vmax)
        title = f"{names[extractor]} · {pooling}" if several[extractor] else names[extractor]
        ax.set_title(title, loc="left", fontweight="bold")
    axes[-1].set_xlabel(LAYER_AXIS)
    fig.colorbar(image, ax=list(axes), label="UA (%)", shrink=0.9)
    fig.suptitle(
        f"Best UA per layer and corpus\n{group.short} · {_split_kind(rows)}", fontweight="bold"
    )
    caption = (
        f"{group.label}; split {split_title(rows)}. Each cell: mean UA over folds of the best "
        "classifier at that layer; the box marks each row's best layer."
    )
    return save_figure(fig, out_dir, "heatmap", "Layer × corpus", caption, group)


def _heatmap(ax: Axes, grid: pd.DataFrame, vmin: float, vmax: float) -> Any:
    from matplotlib.patches import Rectangle

    values = grid.to_numpy(dtype=float)
    image = ax.imshow(values, aspect="auto", vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks(range(len(grid.columns)), [str(c) for c in grid.columns])
    ax.set_yticks(range(len(grid.index)), list(grid.index))
    ax.grid(False)
    if values.shape[1] <= ANNOTATE_MAX_LAYERS:
        _annotate(ax, values, vmin, vmax)
    for row, line in enumerate(values):
        if np.isfinite(line).any():
            col = int(np.nanargmax(line))
            box = Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, ec="#ff3b30", lw=2)
            ax.add_patch(box)
    return image


def _annotate(ax: Axes, values: np.ndarray, vmin: float, vmax: float) -> None:
    middle = (vmin + vmax) / 2
    for (row, col), value in np.ndenumerate(values):
        if np.isfinite(value):
            color = "white" if value < middle else "black"
            ax.text(col, row, f"{value:.0f}", ha="center", va="center", fontsize=7, color=color)
        else:
            ax.text(col, row, "not run", ha="center", va="center", fontsize=7, color="0.45")


# --- matrices: cross-corpus and conditions -----------------------------------------


def _best_by(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    index = frame.groupby(list(keys), sort=True)["ua_mean"].idxmax().dropna()
    return frame.loc[index.to_numpy()]


def _value_range(panels: Sequence[tuple[Any, pd.DataFrame]]) -> tuple[float, float]:
    """Colour scale (percent) shared by matrix panels: the data's range plus a margin."""
    values = pd.concat([best["ua_mean"] for _, best in panels]) * 100
    return max(0.0, math.floor(values.min() - 5)), min(100.0, math.ceil(values.max() + 5))


def _matrix_panel(
    ax: Axes,
    best: pd.DataFrame,
    rows: str,
    columns: str,
    scale: tuple[float, float],
    diagonal: str = "not run",
) -> Any:
    """One UA matrix: best cells pivoted to `rows` × `columns`, each with its configuration.

    An empty cell reads "not run", an empty diagonal cell `diagonal`.
    """
    labelled = best.assign(_text=_matrix_text(best))
    matrix = best.pivot(index=rows, columns=columns, values="ua_mean")
    if rows.endswith("condition"):
        order = _condition_order([*best[rows], *best[columns]])
        matrix = matrix.reindex(index=order, columns=order)
    texts = labelled.pivot(index=rows, columns=columns, values="_text").reindex_like(matrix)
    values = 100 * matrix.to_numpy(dtype=float)
    masked = np.ma.masked_invalid(values)
    vmin, vmax = scale
    image = ax.imshow(masked, vmin=vmin, vmax=vmax, cmap=_cmap("viridis"), interpolation="nearest")
    ax.set_xticks(range(matrix.shape[1]), list(matrix.columns), rotation=30, ha="right")
    ax.set_yticks(range(matrix.shape[0]), list(matrix.index))
    ax.grid(False)
    middle = (vmin + vmax) / 2
    for (row, col), value in np.ndenumerate(values):
        if not np.isfinite(value):
            same = matrix.index[row] == matrix.columns[col]
            text = diagonal if same else "not run"
            ax.text(col, row, text, ha="center", va="center", fontsize=7.5, color="0.4")
            continue
        detail, collapsed = texts.iat[row, col]
        color = "white" if value < middle else "black"
        text = f"{value:.1f}\n{detail}" if detail else f"{value:.1f}"
        ax.text(col, row, text, ha="center", va="center", fontsize=7.5, color=color)
        if collapsed:
            _collapsed_box(ax, row, col)
    return image


def _matrix_text(best: pd.DataFrame) -> list[tuple[str, bool]]:
    """Per best cell: its layer (SSL) and classifier, and whether it collapsed."""
    out = []
    for _, cell in best.iterrows():
        where = str(cell["classifier"])
        if str(cell["classifier"]) == FINETUNE_CLASSIFIER:
            where = f"fine-tuned\n{LAYER_SHORT.get(str(cell['layer']), cell['layer'])}"
        elif not cell["classic"]:
            where = f"layer {cell['layer']}\n{where}"
        collapsed = bool(collapsed_text(cell))
        out.append((where + ("\ncollapsed" if collapsed else ""), collapsed))
    return out


def _collapsed_box(ax: Axes, row: int, col: int) -> None:
    from matplotlib.patches import Rectangle

    box = Rectangle((col - 0.46, row - 0.46), 0.92, 0.92, fill=False, ec=COLLAPSED_COLOR, lw=2.2)
    box.set_linestyle((0, (3, 2)))
    ax.add_patch(box)


def _cmap(name: str) -> Any:
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad="#ececec")


def _panel_title(names: Mapping[str, str], extractor: str, pooling: str, where: str) -> str:
    return f"{names[extractor]} · {pooling}\n{where}"


def cross_corpus_matrices(
    cells: pd.DataFrame, names: Mapping[str, str], out_dir: Path, group: Group
) -> list[Item]:
    """Train-corpus × test-corpus UA matrix per extractor, pooling and condition pair."""
    cross = cells[is_cross_corpus(cells)]
    if cross.empty:
        return []
    keys = ["extractor", "pooling", "train_condition", "test_condition"]
    panels = [
        (key, _best_by(rows, ["train_corpus", "test_corpus"]))
        for key, rows in ordered_panels(cross.groupby(keys), names)
    ]
    with _style():
        return [_cross_figure(panels, names, out_dir, cross, group)]


def _cross_figure(
    panels: list[tuple[tuple[str, ...], pd.DataFrame]],
    names: Mapping[str, str],
    out_dir: Path,
    cross: pd.DataFrame,
    group: Group,
) -> FigureItem:
    n_train = max(p["train_corpus"].nunique() for _, p in panels)
    n_test = max(p["test_corpus"].nunique() for _, p in panels)
    size = (max(3.2, 1.0 * n_test + 1.8), max(2.8, 0.8 * n_train + 1.6))
    fig, axes = _panel_figure(len(panels), MAX_COLUMNS, size, (1.0, 0.8))
    image, scale = None, _value_range(panels)
    for ax, ((extractor, pooling, train, test), best) in zip(axes, panels, strict=True):
        image = _matrix_panel(ax, best, "train_corpus", "test_corpus", scale, IN_CORPUS_ELSEWHERE)
        conditions = train if train == test else f"{train} → {test}"
        ax.set_title(_panel_title(names, extractor, pooling, conditions))
        ax.set_xlabel("test corpus")
        ax.set_ylabel("train corpus")
    fig.colorbar(image, ax=list(axes), label="UA (%)", shrink=0.9)
    fig.suptitle(
        f"Cross-corpus UA (best layer and classifier per cell)\n{group.short}",
        fontweight="bold",
    )
    caption = (
        f"{group.label}; split {split_title(cross)} (train and test corpora disjoint). Each "
        "value is the best mean UA over layers and classifiers (named below it); in-corpus "
        "numbers come from another split, so they are not drawn here but in their own group."
    )
    return save_figure(fig, out_dir, "cross-corpus", "Train corpus × test corpus", caption, group)


def condition_matrices(
    cells: pd.DataFrame, names: Mapping[str, str], out_dir: Path, group: Group
) -> list[Item]:
    """Train-condition × test-condition UA matrix per extractor, corpus and pooling."""
    inside = cells[~is_cross_corpus(cells)]
    panels = [
        (key, _best_by(rows, ["train_condition", "test_condition"]))
        for key, rows in ordered_panels(inside.groupby(CORPUS_PANEL), names)
        if len(rows[["train_condition", "test_condition"]].drop_duplicates()) >= 2
    ]
    if not panels:
        return []
    with _style():
        return [_condition_figure(panels, names, out_dir, group)]


def _corpora(train: str, test: str) -> str:
    """``emodb``; ``emodb (of emodb+emovo)`` for one corpus's share of a pooled run."""
    if train == test:
        return train
    pooled = set(test.split("+")) < set(train.split("+"))
    return f"{test} (of {train})" if pooled else f"{train} → {test}"


def _condition_order(values: Sequence[str]) -> list[str]:
    unique = sorted(set(values))
    return sorted(unique, key=lambda c: (c != REFERENCE_CONDITION, c))


def _condition_figure(
    panels: list[tuple[tuple[str, ...], pd.DataFrame]],
    names: Mapping[str, str],
    out_dir: Path,
    group: Group,
) -> FigureItem:
    fig, axes = _panel_figure(len(panels), CONDITION_COLUMNS, (3.4, 3.2), (1.0, 0.8))
    image, scale = None, _value_range(panels)
    for ax, ((extractor, train, test, split, pooling), best) in zip(axes, panels, strict=True):
        image = _matrix_panel(ax, best, "train_condition", "test_condition", scale)
        ax.set_title(_panel_title(names, extractor, pooling, f"{_corpora(train, test)} · {split}"))
        ax.set_xlabel("test condition")
        ax.set_ylabel("train condition")
    fig.colorbar(image, ax=list(axes), label="UA (%)", shrink=0.9)
    fig.suptitle(f"UA by train and test condition\n{group.short}", fontweight="bold")
    caption = (
        f"{group.label}. Rows: the condition of the training audio; columns: of the test "
        "audio. Each value is the best mean UA over layers and classifiers (named below it); "
        "a red dashed box marks a classifier that collapsed (one class predicted on a test "
        "fold)."
    )
    return save_figure(
        fig, out_dir, "conditions", "Train condition × test condition", caption, group
    )


def condition_drops(
    cells: pd.DataFrame, names: Mapping[str, str], out_dir: Path, group: Group
) -> list[Item]:
    """Per layer, the UA change of each condition pair against clean → clean."""
    layered = layered_cells(cells)
    layered = layered[~is_cross_corpus(layered)]
    panels = []
    for key, rows in ordered_panels(layered.groupby(CORPUS_PANEL), names):
        drops = _drops(rows)
        if drops is not None:
            panels.append((key, drops))
    if not panels:
        return []
    with _style():
        return [_drop_figure(panels, names, out_dir, group)]


def _drops(rows: pd.DataFrame) -> pd.DataFrame | None:
    """UA minus the reference's UA per layer, for the reference's best classifier/pooling."""
    is_reference = (rows["train_condition"] == REFERENCE_CONDITION) & (
        rows["test_condition"] == REFERENCE_CONDITION
    )
    reference, others = rows[is_reference], rows[~is_reference]
    if reference.empty or others.empty:
        return None
    best = reference.loc[reference["ua_mean"].idxmax()]
    same = (rows[LINE_KEYS] == best[LINE_KEYS]).all(axis=1)
    chosen = rows[same]
    base = chosen[is_reference[same]].set_index("layer_index")["ua_mean"]
    out = chosen[~is_reference[same]].copy()
    out["drop"] = 100 * (out["ua_mean"].to_numpy() - base.reindex(out["layer_index"]).to_numpy())
    out["pair"] = out["train_condition"] + " → " + out["test_condition"]
    return out.dropna(subset=["drop"])


def _drop_figure(
    panels: list[tuple[tuple[str, ...], pd.DataFrame]],
    names: Mapping[str, str],
    out_dir: Path,
    group: Group,
) -> FigureItem:
    from matplotlib.ticker import MaxNLocator

    fig, axes = _panel_figure(len(panels), MAX_COLUMNS, (4.9, 3.4), (0.6, 1.3), sharey=True)
    colors = _colors([pair for _, drops in panels for pair in drops["pair"]])
    for ax, ((extractor, train, test, split, _), drops) in zip(axes, panels, strict=True):
        for pair, line in drops.groupby("pair", sort=True):
            line = line.sort_values("layer_index")
            x, y = line["layer_index"], line["drop"]
            ax.plot(x, y, marker="o", ms=3, color=colors[pair], label=pair)
            _mark_collapsed(ax, x, y, line["collapsed_folds"].to_numpy())
        ax.axhline(0, color="black", lw=0.8)
        first = drops.iloc[0]
        classifier = f"{first['classifier']} · {_variant(*first[LINE_KEYS[1:]])}"
        ax.set_title(f"{names[extractor]}\n{_corpora(train, test)} · {split}\n({classifier})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=13))
        _whole_layers(ax, drops["layer_index"])
    for ax in _bottom_row(axes, MAX_COLUMNS):
        ax.set_xlabel(LAYER_AXIS)
    axes[0].set_ylabel(f"UA change vs {REFERENCE_CONDITION} → {REFERENCE_CONDITION}\n(points)")
    collapsed = any(drops["collapsed_folds"].gt(0).any() for _, drops in panels)
    _figure_legend(fig, axes, {COLLAPSED_LABEL: _collapsed_handle()} if collapsed else None)
    title = f"UA change per layer when the condition changes\n{group.short}"
    fig.suptitle(title, fontweight="bold")
    caption = (
        f"{group.label}. Mean UA over folds minus the {REFERENCE_CONDITION} → "
        f"{REFERENCE_CONDITION} UA at the same layer, in percentage points, for the classifier "
        "and pooling that are best on clean audio. Below zero: the condition costs accuracy at "
        "that layer; red crosses: the classifier collapsed (one class predicted on a test fold)."
    )
    return save_figure(fig, out_dir, "condition-drop", "Drop per layer", caption, group)


# --- confusion matrix --------------------------------------------------------------


def confusion_figure(
    best: pd.Series,
    table: pd.DataFrame,
    predictions: pd.DataFrame | None,
    names: Mapping[str, str],
    out_dir: Path,
    group: Group,
) -> list[Item]:
    """Counts and row-normalised confusion matrix of a group's best cell, folds pooled."""
    rows = cell_predictions(table, predictions, best)
    if rows.empty:
        return []
    classes = group.classes
    seen = set(rows["true"]) | set(rows["pred"])
    labels = [c for c in classes if c in seen] + sorted(seen - set(classes))
    counts = pd.crosstab(rows["true"], rows["pred"]).reindex(
        index=labels, columns=labels, fill_value=0
    )
    with _style():
        return [_confusion_figure(best, counts, names, out_dir, group)]


def _confusion_figure(
    best: pd.Series,
    counts: pd.DataFrame,
    names: Mapping[str, str],
    out_dir: Path,
    group: Group,
) -> FigureItem:
    k = len(counts)
    side = max(3.4, 0.55 * k + 1.8)
    fig = _new_figure(2 * side + 0.8, side + 0.9)
    left, right = fig.subplots(1, 2)
    values = counts.to_numpy(dtype=float)
    support = values.sum(axis=1, keepdims=True)
    share = 100 * np.divide(values, support, out=np.zeros_like(values), where=support > 0)
    for ax, data, title, vmax in (
        (left, values, "counts", values.max()),
        (right, share, "row-normalised (% of each true class)", 100.0),
    ):
        ax.imshow(data, cmap="Blues", vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_xticks(range(k), list(counts.columns), rotation=35, ha="right")
        ax.set_yticks(range(k), list(counts.index))
        ax.grid(False)
        ax.set_xlabel("predicted emotion")
        ax.set_ylabel("true emotion")
        ax.set_title(title)
        _annotate_confusion(ax, data, vmax)
    where = f"{names[best['extractor']]} · {config_label(best)}"
    n, folds = int(values.sum()), fold_text(best["folds"])
    fig.suptitle(
        f"Confusion matrix: {where}\n{setting_label(best)} · {best['split']} "
        f"({best['split_type']}), {folds} pooled\n{group.short}",
        fontweight="bold",
    )
    caption = (
        f"{group.label}. {where}, {setting_label(best)}, {best['split']} split "
        f"({best['split_type']}): test predictions of all {folds} pooled, n = {n} "
        "utterances."
    )
    return save_figure(
        fig, out_dir, "confusion", "Confusion matrix of the best cell", caption, group
    )


def _annotate_confusion(ax: Axes, data: np.ndarray, vmax: float) -> None:
    for (row, col), value in np.ndenumerate(data):
        color = "white" if value > 0.55 * vmax else "black"
        ax.text(col, row, f"{value:.0f}", ha="center", va="center", fontsize=8.5, color=color)
