"""The report's figures, drawn with matplotlib (Agg) and saved as PNG and SVG.

Every public function takes the per-cell summary of :func:`ssl_ser.report.tables.cell_summary`
(plus, for the confusion matrix, the stored predictions) and returns figure
items, or a :class:`~ssl_ser.report.document.NoteItem` saying why a figure was
left out when the results hold no data for it. Figures are built on
``matplotlib.figure.Figure`` objects, never through pyplot's global state, so
no interactive backend is ever touched; matplotlib is imported inside functions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ssl_ser.report.document import FigureItem, Item, NoteItem
from ssl_ser.report.tables import (
    cell_predictions,
    config_label,
    describe_setting,
    is_cross_corpus,
    setting_label,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

REFERENCE_CONDITION = "clean"
# Condition panels: one per extractor, corpora and split.
CORPUS_PANEL: list[str] = ["extractor", "train_corpus", "test_corpus", "split"]
WEIGHTED_LAYER = "weighted"
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
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def save_figure(fig: Figure, out_dir: Path, name: str, title: str, caption: str) -> FigureItem:
    """Write `fig` as ``<name>.png`` and ``<name>.svg`` (no dates or URLs in the metadata)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    fig.draw_without_rendering()  # run the constrained layout once, then keep it for both files
    fig.set_layout_engine("none")
    fig.savefig(png, dpi=PNG_DPI, metadata={"Software": None})
    fig.savefig(svg, metadata={"Date": None, "Creator": None})
    return FigureItem(name=name, title=title, caption=caption, png=png, svg=svg)


def slug(text: str) -> str:
    """A file-name-safe version of `text`: ``speaker-kfold`` -> ``speaker-kfold``."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "all"


def settings(frame: pd.DataFrame) -> pd.Series:
    """The :func:`~ssl_ser.report.tables.describe_setting` text of every row."""
    columns = ["train_corpus", "train_condition", "test_corpus", "test_condition"]
    texts = [describe_setting(*map(str, row)) for row in frame[columns].itertuples(index=False)]
    return pd.Series(texts, index=frame.index, dtype=object)


def layered_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """Cells of layered (SSL) extractors at single numbered layers, with ``layer_index``."""
    keep = ~cells["classic"].astype(bool) & cells["layer"].str.fullmatch(r"\d+")
    out = cells[keep].copy()
    out["layer_index"] = out["layer"].astype(int)
    out["setting"] = settings(out)
    return out


def split_title(rows: pd.DataFrame) -> str:
    """``speaker-kfold: speaker-independent, 5 folds`` for the rows of one split."""
    folds = sorted(set(rows["folds"].astype(int)))
    fold_text = "/".join(map(str, folds)) + (" fold" if folds == [1] else " folds")
    return f"{rows['split'].iloc[0]}: {rows['split_type'].iloc[0]}, {fold_text}"


def by_split(cells: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Rows grouped by split: mostly in-corpus splits first, cross-corpus ones after."""
    groups = [(str(split), rows) for split, rows in cells.groupby("split", sort=True)]
    cross = {s: is_cross_corpus(r).mean() > 0.5 for s, r in groups}
    return sorted(groups, key=lambda item: (cross[item[0]], item[0]))


def _panel_figure(
    n: int,
    columns: int,
    panel: tuple[float, float],
    margin: tuple[float, float],
    **kwargs: Any,
) -> tuple[Figure, list[Axes]]:
    """A figure of `n` panels in rows of at most `columns`, each `panel` inches plus `margin`."""
    ncols = min(columns, n)
    width = panel[0] * ncols + margin[0]
    height = panel[1] * math.ceil(n / ncols) + margin[1]
    fig = _new_figure(width, height)
    return fig, _grid(fig, n, columns, **kwargs)


def _grid(fig: Figure, n: int, columns: int, **kwargs: Any) -> list[Axes]:
    ncols = min(columns, n)
    nrows = math.ceil(n / ncols)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return list(axes[:n])


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
    cells: pd.DataFrame, names: Mapping[str, str], out_dir: Path, n_classes: int
) -> list[Item]:
    """UA ± std against layer, one panel per extractor and setting, one figure per split."""
    layered = layered_cells(cells)
    if layered.empty:
        return [
            NoteItem(
                "UA by layer",
                "Left out: the results hold no per-layer rows of a layered (SSL) model, "
                "only classic baselines or combined layers.",
            )
        ]
    colors = _colors(cells["classifier"])
    references = cells[~cells.index.isin(layered.index)].copy()
    references["setting"] = settings(references)
    items: list[Item] = []
    for split, rows in by_split(layered):
        same_split = references[references["split"] == split]
        for part, name in _figure_parts(rows, names, f"layers-{slug(split)}"):
            with _style():
                items.append(
                    _layer_figure(part, same_split, names, colors, n_classes, out_dir, name)
                )
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
    n_classes: int,
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
        _chance_line(ax, n_classes)
        ax.set_title(f"{names[extractor]}\n{setting}\n{_best_text(panel)}")
    _y_limits(axes, rows, baselines, n_classes)
    for ax in _bottom_row(axes, MAX_COLUMNS):
        ax.set_xlabel(LAYER_AXIS)
    for ax in axes[:: min(MAX_COLUMNS, len(panels))]:
        ax.set_ylabel(UA_AXIS)
    _layer_legend(fig, axes)
    split = str(rows["split"].iloc[0])
    fig.suptitle(f"UA by layer · {split_title(rows)} · mean ± std over folds", fontweight="bold")
    caption = (
        f"Split {split_title(rows)}. Lines: mean UA over folds per classifier; shaded: ± one "
        "standard deviation over folds; stars: each line's best layer. Dashed horizontal "
        "lines: classic baselines (best classifier); coloured dotted lines: the same classifier "
        "on combined layers, where run; grey dotted: chance (1 / number of classes)."
    )
    return save_figure(fig, out_dir, name, f"UA by layer ({split})", caption)


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
    _reference_lines(ax, references, names, colors)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=13))


def _reference_lines(
    ax: Axes, references: pd.DataFrame, names: Mapping[str, str], colors: Mapping[str, str]
) -> None:
    """Classic baselines (grey, best classifier) and combined-layer cells (classifier colour)."""
    classic = references[references["classic"].astype(bool)]
    for i, (extractor, base) in enumerate(classic.groupby("extractor", sort=True)):
        best = base.loc[base["ua_mean"].idxmax()]
        color, dashes = BASELINE_STYLES[i % len(BASELINE_STYLES)]
        label = f"{names[extractor]} baseline"
        ax.axhline(100 * best["ua_mean"], color=color, ls=dashes, lw=1.3, label=label)
    combined = references[~references["classic"].astype(bool)]
    for (classifier, layer), rows in combined.groupby(["classifier", "layer"], sort=True):
        best = rows.loc[rows["ua_mean"].idxmax()]
        what = "learned layer weights" if layer == WEIGHTED_LAYER else f"layers {layer}"
        color = colors.get(classifier, "#555555")
        label = f"{classifier} · {what}"
        ax.axhline(100 * best["ua_mean"], color=color, ls=(0, (1, 1.5)), lw=1.8, label=label)


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


def _layer_legend(fig: Figure, axes: Sequence[Axes]) -> None:
    """The panels' legend plus the best-layer star and the std band."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    star = Line2D([], [], ls="none", marker="*", ms=12, color="white", mec="black")
    band = Patch(color="0.5", alpha=0.25, lw=0)
    _figure_legend(fig, axes, {"best layer": star, "± std over folds": band})


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
    fig.legend(list(seen.values()), list(seen), loc="outside lower center", ncols=min(6, len(seen)))


# --- heatmaps ----------------------------------------------------------------------


def layer_heatmaps(cells: pd.DataFrame, names: Mapping[str, str], out_dir: Path) -> list[Item]:
    """Best UA over classifiers per layer (columns) and corpus/condition (rows), per split."""
    layered = layered_cells(cells)
    items: list[Item] = []
    for split, rows in by_split(layered):
        if rows.groupby("extractor")["setting"].nunique().max() < 2:
            continue
        with _style():
            items.append(_heatmap_figure(rows, names, out_dir, str(split)))
    if not items:
        items.append(
            NoteItem(
                "Layer × corpus heatmap",
                "Left out: every layered model was run on a single corpus and condition, "
                "so a heatmap would repeat the layer curves.",
            )
        )
    return items


def _heatmap_figure(
    rows: pd.DataFrame, names: Mapping[str, str], out_dir: Path, split: str
) -> FigureItem:
    best = rows.groupby(["extractor", "setting", "layer_index"])["ua_mean"].max() * 100
    extractors = [e for e in names if e in set(rows["extractor"])]
    grids = {e: best.loc[e].unstack("layer_index").sort_index(axis=1) for e in extractors}
    heights = [len(grid) for grid in grids.values()]
    width = max(6.5, 0.42 * max(grid.shape[1] for grid in grids.values()) + 3.8)
    fig = _new_figure(width, 0.42 * sum(heights) + 1.25 * len(extractors) + 0.6)
    axes = fig.subplots(len(extractors), 1, squeeze=False, height_ratios=heights).ravel()
    vmin, vmax = float(np.nanmin(best)), float(np.nanmax(best))
    for ax, extractor in zip(axes, extractors, strict=True):
        image = _heatmap(ax, grids[extractor], vmin, vmax)
        ax.set_title(names[extractor], loc="left", fontweight="bold")
    axes[-1].set_xlabel(LAYER_AXIS)
    fig.colorbar(image, ax=list(axes), label="UA (%)", shrink=0.9)
    title = f"Best UA per layer and corpus\n{split_title(rows)}"
    fig.suptitle(title, fontweight="bold")
    caption = (
        f"Split {split_title(rows)}. Each cell: mean UA over folds of the best classifier at "
        "that layer; the box marks each row's best layer."
    )
    return save_figure(fig, out_dir, f"heatmap-{slug(split)}", f"Layer × corpus ({split})", caption)


def _heatmap(ax: Axes, grid: pd.DataFrame, vmin: float, vmax: float) -> Any:
    from matplotlib.patches import Rectangle

    values = grid.to_numpy(dtype=float)
    image = ax.imshow(values, aspect="auto", vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks(range(len(grid.columns)), [str(c) for c in grid.columns])
    ax.set_yticks(range(len(grid.index)), list(grid.index))
    ax.grid(False)
    if values.shape[1] <= ANNOTATE_MAX_LAYERS:
        _annotate(ax, values, vmin, vmax, fmt="{:.0f}", size=7)
    for row, line in enumerate(values):
        if np.isfinite(line).any():
            col = int(np.nanargmax(line))
            box = Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, ec="#ff3b30", lw=2)
            ax.add_patch(box)
    return image


def _annotate(
    ax: Axes, values: np.ndarray, vmin: float, vmax: float, fmt: str, size: float = 8
) -> None:
    middle = (vmin + vmax) / 2
    for (row, col), value in np.ndenumerate(values):
        if np.isfinite(value):
            color = "white" if value < middle else "black"
            text = fmt.format(value)
            ax.text(col, row, text, ha="center", va="center", fontsize=size, color=color)
        else:
            ax.text(col, row, "not run", ha="center", va="center", fontsize=size, color="0.45")


# --- matrices: cross-corpus and conditions -----------------------------------------


def _best_by(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    index = frame.groupby(list(keys), sort=True)["ua_mean"].idxmax().dropna()
    return frame.loc[index.to_numpy()]


def _value_range(panels: Sequence[tuple[Any, pd.DataFrame]]) -> tuple[float, float]:
    """Colour scale (percent) shared by matrix panels: the data's range plus a margin."""
    values = pd.concat([best["ua_mean"] for _, best in panels]) * 100
    return max(0.0, math.floor(values.min() - 5)), min(100.0, math.ceil(values.max() + 5))


def _matrix_panel(
    ax: Axes, matrix: pd.DataFrame, layers: pd.DataFrame, scale: tuple[float, float]
) -> Any:
    values = 100 * matrix.to_numpy(dtype=float)
    masked = np.ma.masked_invalid(values)
    cmap = _cmap("viridis")
    vmin, vmax = scale
    image = ax.imshow(masked, vmin=vmin, vmax=vmax, cmap=cmap, interpolation="nearest")
    ax.set_xticks(range(matrix.shape[1]), list(matrix.columns), rotation=30, ha="right")
    ax.set_yticks(range(matrix.shape[0]), list(matrix.index))
    ax.grid(False)
    middle = (vmin + vmax) / 2
    for (row, col), value in np.ndenumerate(values):
        if not np.isfinite(value):
            ax.text(col, row, "not run", ha="center", va="center", fontsize=7.5, color="0.4")
            continue
        layer = layers.iat[row, col]
        text = f"{value:.1f}" + (f"\nlayer {layer}" if isinstance(layer, str) and layer else "")
        color = "white" if value < middle else "black"
        ax.text(col, row, text, ha="center", va="center", fontsize=8, color=color)
    return image


def _cmap(name: str) -> Any:
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad="#ececec")


def cross_corpus_matrices(
    cells: pd.DataFrame, names: Mapping[str, str], out_dir: Path
) -> list[Item]:
    """Train-corpus × test-corpus UA matrix per extractor (diagonal: in-corpus results)."""
    cross = cells[is_cross_corpus(cells)]
    if cross.empty:
        return [
            NoteItem(
                "Cross-corpus matrix",
                "Left out: no run trained on one corpus and tested on another "
                "(ser classify --split cross-corpus).",
            )
        ]
    keys = ["extractor", "train_condition", "test_condition"]
    panels = []
    for key, rows in ordered_panels(cross.groupby(keys), names):
        within = _in_corpus(cells, *key)
        panels.append((key, pd.concat([_best_by(rows, ["train_corpus", "test_corpus"]), within])))
    with _style():
        return [_cross_figure(panels, names, out_dir, cross)]


def _in_corpus(cells: pd.DataFrame, extractor: str, train: str, test: str) -> pd.DataFrame:
    mask = (
        (cells["extractor"] == extractor)
        & (cells["train_corpus"] == cells["test_corpus"])
        & (cells["train_condition"] == train)
        & (cells["test_condition"] == test)
        & (cells["split_type"] == "speaker-independent")
    )
    return _best_by(cells[mask], ["train_corpus", "test_corpus"])


def _cross_figure(
    panels: list[tuple[tuple[str, ...], pd.DataFrame]],
    names: Mapping[str, str],
    out_dir: Path,
    cross: pd.DataFrame,
) -> FigureItem:
    n_train = max(p["train_corpus"].nunique() for _, p in panels)
    n_test = max(p["test_corpus"].nunique() for _, p in panels)
    size = (max(3.2, 1.0 * n_test + 1.8), max(2.6, 0.7 * n_train + 1.6))
    fig, axes = _panel_figure(len(panels), MAX_COLUMNS, size, (1.0, 0.8))
    image, scale = None, _value_range(panels)
    for ax, ((extractor, train, test), best) in zip(axes, panels, strict=True):
        matrix = best.pivot(index="train_corpus", columns="test_corpus", values="ua_mean")
        layer = best.assign(layer=_layer_text(best))
        layers = layer.pivot(index="train_corpus", columns="test_corpus", values="layer")
        image = _matrix_panel(ax, matrix, layers.reindex_like(matrix), scale)
        conditions = train if train == test else f"{train} → {test}"
        ax.set_title(f"{names[extractor]} · {conditions}")
        ax.set_xlabel("test corpus")
        ax.set_ylabel("train corpus")
    fig.colorbar(image, ax=list(axes), label="UA (%)", shrink=0.9)
    fig.suptitle("Cross-corpus UA (best layer and classifier per cell)", fontweight="bold")
    caption = (
        f"Off-diagonal cells: {split_title(cross)} (train and test corpora disjoint). Diagonal "
        "cells: the best speaker-independent in-corpus result of the same extractor and "
        "conditions, where one was run. Each value is the best over layers and classifiers."
    )
    return save_figure(fig, out_dir, "cross-corpus", "Train corpus × test corpus", caption)


def _layer_text(best: pd.DataFrame) -> pd.Series:
    return best["layer"].where(~best["classic"].astype(bool), "")


def condition_matrices(cells: pd.DataFrame, names: Mapping[str, str], out_dir: Path) -> list[Item]:
    """Train-condition × test-condition UA matrix per extractor, corpus and split."""
    inside = cells[~is_cross_corpus(cells)]
    groups = inside.groupby(CORPUS_PANEL)
    panels = [
        (key, _best_by(rows, ["train_condition", "test_condition"]))
        for key, rows in ordered_panels(groups, names)
        if len(rows[["train_condition", "test_condition"]].drop_duplicates()) >= 2
    ]
    if not panels:
        found = sorted(set(cells["train_condition"]) | set(cells["test_condition"]))
        return [
            NoteItem(
                "Clean vs telephone: condition matrix",
                f"Left out: no corpus was run under more than one train/test condition "
                f"(conditions found: {', '.join(found)}).",
            )
        ]
    with _style():
        return [_condition_figure(panels, names, out_dir)]


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
    panels: list[tuple[tuple[str, ...], pd.DataFrame]], names: Mapping[str, str], out_dir: Path
) -> FigureItem:
    fig, axes = _panel_figure(len(panels), CONDITION_COLUMNS, (3.3, 3.0), (1.0, 0.8))
    image, scale = None, _value_range(panels)
    for ax, ((extractor, train, test, split), best) in zip(axes, panels, strict=True):
        order = _condition_order([*best["train_condition"], *best["test_condition"]])
        matrix = best.pivot(index="train_condition", columns="test_condition", values="ua_mean")
        matrix = matrix.reindex(index=order, columns=order)
        layers = best.assign(layer=_layer_text(best)).pivot(
            index="train_condition", columns="test_condition", values="layer"
        )
        layers = layers.reindex(index=order, columns=order)
        image = _matrix_panel(ax, matrix, layers, scale)
        ax.set_title(f"{names[extractor]}\n{_corpora(train, test)} · {split}")
        ax.set_xlabel("test condition")
        ax.set_ylabel("train condition")
    fig.colorbar(image, ax=list(axes), label="UA (%)", shrink=0.9)
    fig.suptitle("UA by train and test condition", fontweight="bold")
    caption = (
        "Rows: the condition of the training audio; columns: of the test audio. Each value is "
        "the best mean UA over layers and classifiers (its layer below it)."
    )
    return save_figure(fig, out_dir, "conditions", "Train condition × test condition", caption)


def condition_drops(cells: pd.DataFrame, names: Mapping[str, str], out_dir: Path) -> list[Item]:
    """Per layer, the UA change of each condition pair against clean → clean."""
    layered = layered_cells(cells)
    layered = layered[~is_cross_corpus(layered)]
    panels = []
    groups = layered.groupby(CORPUS_PANEL)
    for key, rows in ordered_panels(groups, names):
        drops = _drops(rows)
        if drops is not None:
            panels.append((key, drops))
    if not panels:
        return [
            NoteItem(
                "Clean vs telephone: drop per layer",
                f"Left out: no layered model has both {REFERENCE_CONDITION} → "
                f"{REFERENCE_CONDITION} and another condition on the same corpus and split.",
            )
        ]
    with _style():
        return [_drop_figure(panels, names, out_dir)]


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
    panels: list[tuple[tuple[str, ...], pd.DataFrame]], names: Mapping[str, str], out_dir: Path
) -> FigureItem:
    fig, axes = _panel_figure(len(panels), MAX_COLUMNS, (4.7, 3.2), (0.3, 1.0), sharey=True)
    colors = _colors([pair for _, drops in panels for pair in drops["pair"]])
    for ax, ((extractor, train, test, split), drops) in zip(axes, panels, strict=True):
        for pair, line in drops.groupby("pair", sort=True):
            line = line.sort_values("layer_index")
            x, y = line["layer_index"], line["drop"]
            ax.plot(x, y, marker="o", ms=3, color=colors[pair], label=pair)
        ax.axhline(0, color="black", lw=0.8)
        first = drops.iloc[0]
        classifier = f"{first['classifier']} · {_variant(*first[LINE_KEYS[1:]])}"
        ax.set_title(f"{names[extractor]}\n{_corpora(train, test)} · {split} ({classifier})")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=13))
    for ax in _bottom_row(axes, MAX_COLUMNS):
        ax.set_xlabel(LAYER_AXIS)
    axes[0].set_ylabel(f"UA change vs {REFERENCE_CONDITION} → {REFERENCE_CONDITION} (points)")
    _figure_legend(fig, axes)
    fig.suptitle("Change in UA per layer when the audio condition changes", fontweight="bold")
    caption = (
        f"Mean UA over folds minus the {REFERENCE_CONDITION} → {REFERENCE_CONDITION} UA at the "
        "same layer, in percentage points, for the classifier that is best on clean audio. "
        "Below zero: the condition costs accuracy at that layer."
    )
    return save_figure(fig, out_dir, "condition-drop", "Drop per layer", caption)


# --- confusion matrix --------------------------------------------------------------


def confusion_figure(
    best: pd.Series,
    table: pd.DataFrame,
    predictions: pd.DataFrame | None,
    classes: Sequence[str],
    names: Mapping[str, str],
    out_dir: Path,
) -> list[Item]:
    """Counts and row-normalised confusion matrix of the best cell, folds pooled."""
    rows = cell_predictions(table, predictions, best)
    if rows.empty:
        return [
            NoteItem(
                "Confusion matrix",
                "Left out: the results folder holds no per-utterance predictions for the "
                "best configuration.",
            )
        ]
    seen = set(rows["true"]) | set(rows["pred"])
    labels = [c for c in classes if c in seen] + sorted(seen - set(classes))
    counts = pd.crosstab(rows["true"], rows["pred"]).reindex(
        index=labels, columns=labels, fill_value=0
    )
    with _style():
        return [_confusion_figure(best, counts, names, out_dir)]


def _confusion_figure(
    best: pd.Series, counts: pd.DataFrame, names: Mapping[str, str], out_dir: Path
) -> FigureItem:
    k = len(counts)
    side = max(3.4, 0.55 * k + 1.8)
    fig = _new_figure(2 * side + 0.8, side + 0.9)
    left, right = fig.subplots(1, 2)
    values = counts.to_numpy(dtype=float)
    support = values.sum(axis=1, keepdims=True)
    share = 100 * np.divide(values, support, out=np.zeros_like(values), where=support > 0)
    for ax, data, title, fmt, vmax in (
        (left, values, "counts", "{:.0f}", values.max()),
        (right, share, "row-normalised (% of each true class)", "{:.0f}", 100.0),
    ):
        ax.imshow(data, cmap="Blues", vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_xticks(range(k), list(counts.columns), rotation=35, ha="right")
        ax.set_yticks(range(k), list(counts.index))
        ax.grid(False)
        ax.set_xlabel("predicted emotion")
        ax.set_ylabel("true emotion")
        ax.set_title(title)
        _annotate_confusion(ax, data, vmax, fmt)
    where = f"{names[best['extractor']]} · {config_label(best)}"
    n = int(values.sum())
    fig.suptitle(
        f"Confusion matrix: {where}\n{setting_label(best)} · {best['split']} "
        f"({best['split_type']}), {_folds(best)} pooled",
        fontweight="bold",
    )
    caption = (
        f"{where}, {setting_label(best)}, {best['split']} split ({best['split_type']}): test "
        f"predictions of all {_folds(best)} pooled, n = {n} utterances."
    )
    return save_figure(fig, out_dir, "confusion", "Confusion matrix of the best cell", caption)


def _annotate_confusion(ax: Axes, data: np.ndarray, vmax: float, fmt: str) -> None:
    for (row, col), value in np.ndenumerate(data):
        color = "white" if value > 0.55 * vmax else "black"
        ax.text(col, row, fmt.format(value), ha="center", va="center", fontsize=8.5, color=color)


def _folds(cell: pd.Series) -> str:
    folds = int(cell["folds"])
    return f"{folds} fold{'s' if folds != 1 else ''}"
