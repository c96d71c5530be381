"""The report's statistics from stored predictions: layers against the best, who is served worst.

Two sections, "Layers against the best layer" and "Who the best cell serves worst"
(their intros, :data:`LAYERS_INTRO` and :data:`GROUPS_INTRO`, say what they show),
each present only when its data exist, so older results folders render as before.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ssl_ser.errors import ConfigError
from ssl_ser.report import compare, tables
from ssl_ser.report.document import FigureItem, Item, Section, TableItem
from ssl_ser.report.figures import (
    LAYER_AXIS,
    UA_AXIS,
    _chance_line,
    _new_figure,
    _style,
    save_figure,
    settings,
)
from ssl_ser.report.groups import Group, GroupNumbers, with_group_headings

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ssl_ser.report.load import Results

FIGURE_PATTERN = "layer-tests-*"
COLUMNS = 3
ALPHA = 0.05
SAME_COLOR = "#1f77b4"
WORSE_COLOR = "#9a9a9a"
LAYERS_TITLE = "Layers against the best layer"
LAYERS_INTRO = (
    "Is the best layer really better than its neighbours? For each model and setting, the "
    "line (pooling and classifier) of its best cell is compared layer by layer with its best "
    "layer on the same test utterances, from the stored predictions. Filled points: layers "
    f"not distinguishable from the best at level {ALPHA:g} (paired permutation test over "
    "utterances, Holm-corrected over the line's layers); hollow: worse. Bars: the share of "
    "bootstrap resamples (utterances drawn within speakers) in which each layer is best, "
    "i.e. how sure 'best layer = k' is. The best is picked on these same predictions, so the "
    "set of filled points tends to be too small."
)
GROUPS_TITLE = "Who the best cell serves worst"
GROUPS_INTRO = (
    "UA of each group's best cell per gender, corpus and speaker (pooled over its folds), "
    "with 95% percentile bootstrap intervals (utterances resampled within speakers). A "
    "group's UA averages recall over the classes present in that group's utterances. Small "
    "groups have wide intervals: the lowest point estimate is not necessarily the group the "
    "model serves worst."
)


@dataclass
class StatsItems:
    """The two sections' items and, per group, the worst-served text for its headline."""

    layers: list[Item] = field(default_factory=list)
    groups: list[Item] = field(default_factory=list)
    worst: list[str] = field(default_factory=list)


def stats_items(
    results: Results,
    numbers: Sequence[GroupNumbers],
    names: Mapping[str, str],
    figure_dir: Path,
    *,
    n_boot: int,
    seed: int,
) -> StatsItems:
    """Both sections' figures and tables for every group (empty where data are missing)."""
    out = StatsItems()
    if results.predictions is None or results.predictions.empty or n_boot <= 0:
        out.worst = ["" for _ in numbers]
        return out
    layers, groups = [], []
    for n in numbers:
        layers.append(_layer_items(results, n, names, figure_dir, n_boot, seed))
        table = compare.breakdown(results, n.top, n.group.classes, n_boot=n_boot, seed=seed)
        groups.append([_breakdown_table(table, n.top, names, n.group)] if len(table) else [])
        out.worst.append(compare.worst_served(table))
    out.layers = with_group_headings(numbers, layers)
    out.groups = with_group_headings(numbers, groups)
    return out


def _layer_items(
    results: Results,
    n: GroupNumbers,
    names: Mapping[str, str],
    figure_dir: Path,
    n_boot: int,
    seed: int,
) -> list[Item]:
    """One figure and one table of the group's best line per extractor and setting."""
    panels = []
    for line in best_lines(n.cells):
        try:
            found = compare.layers_versus_best(
                results, line, n.group.classes, n_boot=n_boot, seed=seed, alpha=ALPHA
            )
        except ConfigError:
            continue  # no stored predictions (or utterance ids) for this line
        panels.append((line.iloc[0], found))
    if not panels:
        return []
    with _style():
        figure = _figure(panels, names, n.group, figure_dir)
    return [figure, _layers_table(panels, names, n.group)]


def best_lines(cells: pd.DataFrame) -> list[pd.DataFrame]:
    """Per extractor and setting, the layers of the line holding its best numbered-layer cell."""
    keys = ["extractor", "train_corpus", "train_condition", "test_corpus", "test_condition"]
    chosen: dict[tuple[str, ...], pd.DataFrame] = {}
    for line in compare.layer_lines(cells):
        key = tuple(str(line.iloc[0][c]) for c in keys)
        if key not in chosen or line["ua_mean"].max() > chosen[key]["ua_mean"].max():
            chosen[key] = line
    return [chosen[key] for key in sorted(chosen)]


def _figure(
    panels: list[tuple[pd.Series, pd.DataFrame]],
    names: Mapping[str, str],
    group: Group,
    figure_dir: Path,
) -> FigureItem:
    columns = min(COLUMNS, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig = _new_figure(4.6 * columns + 0.3, 4.4 * rows + 0.9)
    grid = fig.add_gridspec(2 * rows, columns, height_ratios=[3, 1.2] * rows)
    for i, (cell, found) in enumerate(panels):
        r, c = divmod(i, columns)
        top = fig.add_subplot(grid[2 * r, c])
        bottom = fig.add_subplot(grid[2 * r + 1, c], sharex=top)
        _panel(top, bottom, found, group.n_classes)
        setting = settings(cell.to_frame().T).iloc[0]
        top.set_title(
            f"{names.get(cell['extractor'], cell['extractor'])}\n{setting}\n"
            f"{cell['pooling']} · {cell['classifier']}"
        )
        top.set_ylabel(UA_AXIS if c == 0 else "")
        bottom.set_ylabel("best in\nresamples (%)" if c == 0 else "")
        bottom.set_xlabel(LAYER_AXIS)
    _legend(fig)
    fig.suptitle(f"Layers against the best layer · {group.short}", fontweight="bold")
    within = panels[0][1]["resampled_within"].iloc[0]
    caption = (
        f"{group.label}. Line: UA of all folds' test predictions pooled, per layer; star: the "
        f"best layer; filled points: not distinguishable from it at {ALPHA:g} (paired "
        "permutation test over utterances, Holm-corrected over the layers of the line); "
        "hollow: distinguishably worse. Bars: share of bootstrap resamples (utterances drawn "
        f"within {within}) in which the layer has the highest UA (ties split). Grey dotted: "
        "chance."
    )
    return save_figure(fig, figure_dir, "layer-tests", "Layers against the best", caption, group)


def _panel(top: Axes, bottom: Axes, found: pd.DataFrame, n_classes: int) -> None:
    x = found["layer"].astype(int).to_numpy()
    y = 100 * found["ua"].to_numpy()
    same = found["indistinguishable"].to_numpy(dtype=bool)
    top.plot(x, y, color=SAME_COLOR, lw=1.4, zorder=1)
    top.scatter(x[same], y[same], s=36, color=SAME_COLOR, zorder=3)
    top.scatter(x[~same], y[~same], s=36, facecolor="white", edgecolor=WORSE_COLOR, zorder=3)
    best = found["best"].to_numpy(dtype=bool)
    top.plot(x[best], y[best], marker="*", ms=14, color=SAME_COLOR, mec="black", ls="none")
    _chance_line(top, n_classes)
    bottom.bar(x, 100 * found["share_best"].to_numpy(), color=SAME_COLOR, width=0.7)
    bottom.set_ylim(0, 100)
    from matplotlib.ticker import MaxNLocator

    bottom.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=13))


def _legend(fig: Any) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], ls="none", marker="*", ms=12, color=SAME_COLOR, mec="black"),
        Line2D([], [], ls="none", marker="o", color=SAME_COLOR),
        Line2D([], [], ls="none", marker="o", mfc="white", mec=WORSE_COLOR),
    ]
    labels = ["best layer", "not distinguishable from the best", "worse than the best"]
    fig.legend(handles, labels, loc="outside lower center", ncols=3)


def _layers_table(
    panels: list[tuple[pd.Series, pd.DataFrame]], names: Mapping[str, str], group: Group
) -> TableItem:
    rows = []
    for cell, found in panels:
        best = found[found["best"]].iloc[0]
        same = found.loc[found["indistinguishable"] & ~found["best"], "layer"]
        ranked = found[found["share_best"] > 0].sort_values("share_best", ascending=False)
        rows.append(
            {
                "Model": names.get(cell["extractor"], cell["extractor"]),
                "Setting": tables.setting_label(cell),
                "Line": f"{cell['pooling']} · {cell['classifier']}",
                "Best layer (UA %)": f"{best['layer']} ({tables.percent(best['ua'])})",
                "Not distinguishable from it": ", ".join(same) or "none",
                "Best in resamples": ", ".join(
                    f"{r['layer']}: {100 * r['share_best']:.0f}%"
                    for _, r in ranked.head(3).iterrows()
                ),
                "Utterances": int(best["n"]),
            }
        )
    return TableItem(
        f"layer-tests-{group.tag}",
        f"Layers against the best · {group.short}",
        f"{group.label}. Layers whose Holm-corrected paired permutation p-value against the "
        f"best layer is at least {ALPHA:g}, and the layers most often best in the bootstrap "
        "resamples. ser compare prints every layer's difference with its interval and the "
        "fold-level test.",
        pd.DataFrame(rows),
    )


def _breakdown_table(
    table: pd.DataFrame, cell: pd.Series, names: Mapping[str, str], group: Group
) -> TableItem:
    order = {by: i for i, by in enumerate(("gender", "corpus", "speaker"))}
    shown = table.assign(_o=table["by"].map(order)).sort_values(["_o", "ua"])
    frame = pd.DataFrame(
        {
            "By": shown["by"],
            "Group": shown["group"],
            "Utterances": shown["n"].astype(int),
            "UA %": shown["ua"].map(tables.percent),
            "95% CI": [
                tables.interval(lo, hi) for lo, hi in zip(shown["low"], shown["high"], strict=True)
            ],
        }
    )
    where = f"{names.get(cell['extractor'], cell['extractor'])} {tables.config_label(cell)}"
    return TableItem(
        f"breakdown-{group.tag}",
        f"UA per group of the best cell · {group.short}",
        f"{group.label}. The best cell: {where} on {tables.setting_label(cell)}. Lowest UA "
        "first within each kind of group.",
        frame,
    )


def sections(stats: StatsItems) -> list[Section]:
    """The statistics sections that have items (none for folders without the data)."""
    found = [
        (LAYERS_TITLE, LAYERS_INTRO, stats.layers),
        (GROUPS_TITLE, GROUPS_INTRO, stats.groups),
    ]
    return [Section(title, intro, items) for title, intro, items in found if items]


def with_worst(headline: str, worst: str) -> str:
    """The group's headline, then the worst-served groups of its best cell (when known)."""
    return f"{headline}; {worst}" if worst else headline
