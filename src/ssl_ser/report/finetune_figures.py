"""Figures of fine-tuned models: training curves per fold and learned layer weights.

Like :mod:`ssl_ser.report.figures`, each function takes one comparable group
and returns its figure items, empty when the group holds nothing to draw (the
report then says why in a note). One panel per fine-tuned cell (extractor,
corpora and conditions, layer input, setup); folds are told apart by colour,
with the same colour for a fold in every panel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ssl_ser.errors import ConfigError
from ssl_ser.report.document import FigureItem, Item
from ssl_ser.report.figures import (
    CHANCE_STYLE,
    MAX_COLUMNS,
    PALETTE,
    _figure_legend,
    _new_figure,
    _panel_figure,
    _star_handle,
    _style,
    ordered_panels,
    save_figure,
    settings,
)
from ssl_ser.report.finetune import (
    layer_weights,
    trained_rows,
    training_curves,
)
from ssl_ser.report.groups import Group
from ssl_ser.report.load import CELL, describe_cell
from ssl_ser.report.tables import FINETUNE_INPUTS

if TYPE_CHECKING:
    from matplotlib.axes import Axes

# A panel: one fine-tuned cell (all of CELL but the columns fixed within a group).
PANEL: list[str] = ["extractor", "setting", "layer", "pooling", "finetune_setup"]
BEST_MARK: dict[str, Any] = {"marker": "*", "ms": 13, "mec": "black", "mew": 0.7, "zorder": 5}
UNIFORM_STYLE: dict[str, Any] = {"color": "#555555", "ls": (0, (4, 2)), "lw": 1.1}
WEIGHT_AXIS = "hidden state (0 = input to the first transformer block)"
# Characters per line of a panel title's setup (a longer one overflowed its panel).
TITLE_WIDTH = 44


def fold_colors(folds: Sequence[str]) -> dict[str, str]:
    """One colour per fold name, numeric names in numeric order."""
    ordered = sorted(set(folds), key=lambda f: (not f.isdigit(), int(f) if f.isdigit() else 0, f))
    return {fold: PALETTE[i % len(PALETTE)] for i, fold in enumerate(ordered)}


def _panel_title(names: Mapping[str, str], key: tuple[str, ...], shared: bool) -> str:
    """Extractor, setting, layer input; the setup too unless every panel shares it."""
    extractor, setting, layer, pooling, setup = key
    what = f"fine-tuned · {FINETUNE_INPUTS.get(layer, f'layer {layer}')} · {pooling}"
    own = f"\n{_wrapped(setup)}" if setup and not shared else ""
    return f"{names[extractor]}\n{setting}\n{what}{own}"


def _wrapped(setup: str) -> str:
    """A fine-tune setup on lines of at most TITLE_WIDTH characters, broken between its parts."""
    lines: list[str] = []
    for part in setup.split(" · "):
        if lines and len(lines[-1]) + 3 + len(part) <= TITLE_WIDTH:
            lines[-1] += f" · {part}"
        else:
            lines.append(part)
    return "\n".join(lines)


def _panels(
    rows: pd.DataFrame, names: Mapping[str, str]
) -> list[tuple[tuple[str, ...], pd.DataFrame]]:
    """Rows (curves or weights) with their setting, one panel per fine-tuned cell, in order."""
    if rows.empty:
        return []
    rows["setting"] = settings(rows)
    return ordered_panels(rows.groupby(PANEL, sort=True), names)


def _suptitle(title: str, panels: Sequence[tuple[tuple[str, ...], Any]], group: Group) -> str:
    """The figure title, the group, and the fine-tune setup when all panels share one."""
    setups = {key[-1] for key, _ in panels}
    shared = f"\n{next(iter(setups))}" if len(setups) == 1 and next(iter(setups)) else ""
    return f"{title}\n{group.short}{shared}"


# --- training curves ------------------------------------------------------------------


def training_curve_figures(
    table: pd.DataFrame, names: Mapping[str, str], out_dir: Path, group: Group
) -> list[Item]:
    """Train loss and validation UA against epoch, per fold, the chosen epoch starred."""
    panels = _panels(training_curves(trained_rows(table, group)), names)
    if not panels:
        return []
    with _style():
        return [_curve_figure(panels, names, out_dir, group)]


def _curve_figure(
    panels: list[tuple[tuple[str, ...], pd.DataFrame]],
    names: Mapping[str, str],
    out_dir: Path,
    group: Group,
) -> FigureItem:
    ncols = min(MAX_COLUMNS, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = _new_figure(4.7 * ncols + 0.3, 5.4 * nrows + 1.0)
    grid = fig.subplots(2 * nrows, ncols, squeeze=False)
    colors = fold_colors([str(f) for _, curve in panels for f in curve["fold"]])
    shared = len({key[-1] for key, _ in panels}) == 1
    used: list[Axes] = []
    for i, (key, curve) in enumerate(panels):
        top, bottom = grid[2 * (i // ncols), i % ncols], grid[2 * (i // ncols) + 1, i % ncols]
        _curve_panel(top, bottom, curve, colors)
        if group.n_classes > 1:
            bottom.axhline(100 / group.n_classes, label="chance", **CHANCE_STYLE)
        top.set_title(_panel_title(names, key, shared))
        used += [top, bottom]
    for i in range(len(panels), nrows * ncols):
        grid[2 * (i // ncols), i % ncols].set_visible(False)
        grid[2 * (i // ncols) + 1, i % ncols].set_visible(False)
    _figure_legend(fig, used, {"chosen epoch (best validation UA)": _star_handle()})
    fig.suptitle(
        _suptitle("Fine-tuning: training curves per fold", panels, group), fontweight="bold"
    )
    caption = (
        f"{group.label}. Per fold (colour): training loss (upper panel) and UA on the "
        "validation split of the training speakers (lower panel; dotted: chance) after each "
        "epoch; the star marks the epoch whose model was kept and scored once on the test fold."
    )
    return save_figure(fig, out_dir, "training-curves", "Fine-tuning curves", caption, group)


def _curve_panel(top: Axes, bottom: Axes, curve: pd.DataFrame, colors: Mapping[str, str]) -> None:
    from matplotlib.ticker import MaxNLocator

    for fold, line in curve.groupby("fold", sort=True):
        color = colors[str(fold)]
        label = f"fold {fold}"
        epochs = line["epoch"].to_numpy()
        top.plot(epochs, line["train_loss"], color=color, marker="o", ms=3, lw=1.5, label=label)
        bottom.plot(epochs, 100 * line["val_ua"], color=color, marker="o", ms=3, lw=1.5)
        best = line["best_epoch"].iloc[0]
        chosen = line[line["epoch"] == best]
        if len(chosen):
            top.plot(best, chosen["train_loss"].iloc[0], color=color, **BEST_MARK)
            bottom.plot(best, 100 * chosen["val_ua"].iloc[0], color=color, **BEST_MARK)
    top.set_ylabel("training loss")
    bottom.set_ylabel("validation UA (%)")
    bottom.set_xlabel("epoch")
    for ax in (top, bottom):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=10))
    top.sharex(bottom)
    top.tick_params(labelbottom=False)


# --- learned layer weights ------------------------------------------------------------


def layer_weight_figures(
    table: pd.DataFrame, names: Mapping[str, str], out_dir: Path, group: Group
) -> list[Item]:
    """The learned softmax weight of every hidden state: mean over folds, each fold a point."""
    panels = _panels(layer_weights(trained_rows(table, group)), names)
    if not panels:
        return []
    for _, panel in panels:
        _check_lengths(panel)
    with _style():
        return [_weight_figure(panels, names, out_dir, group)]


def _check_lengths(panel: pd.DataFrame) -> None:
    """Refuse folds of one cell whose weights cover different numbers of hidden states."""
    counts = panel.groupby("fold")["index"].size()
    if counts.nunique() > 1:
        first = panel.iloc[0]
        shown = ", ".join(f"fold {fold}: {n}" for fold, n in counts.items())
        raise ConfigError(
            f"{describe_cell(first[list(CELL)])}: the folds' layer_weights cover different "
            f"numbers of hidden states ({shown}); they cannot come from one model"
        )


def _weight_figure(
    panels: list[tuple[tuple[str, ...], pd.DataFrame]],
    names: Mapping[str, str],
    out_dir: Path,
    group: Group,
) -> FigureItem:
    states = max(int(panel["index"].max()) + 1 for _, panel in panels)
    width = max(4.7, 0.22 * states + 1.6)
    fig, axes = _panel_figure(len(panels), MAX_COLUMNS, (width, 3.9), (0.3, 1.1))
    colors = fold_colors([str(f) for _, panel in panels for f in panel["fold"]])
    shared = len({key[-1] for key, _ in panels}) == 1
    for ax, (key, panel) in zip(axes, panels, strict=True):
        _weight_panel(ax, panel, colors)
        ax.set_title(_panel_title(names, key, shared))
    _figure_legend(fig, axes)
    fig.suptitle(_suptitle("Fine-tuning: learned layer weights", panels, group), fontweight="bold")
    caption = (
        f"{group.label}. Softmax weight the fine-tuned model gives each hidden state in its "
        "weighted sum (weights of a fold sum to 1). Bars: mean over folds; points: each "
        "fold; dashed: equal weights (1 / number of hidden states)."
    )
    return save_figure(fig, out_dir, "layer-weights", "Learned layer weights", caption, group)


def _weight_panel(ax: Axes, panel: pd.DataFrame, colors: Mapping[str, str]) -> None:
    from matplotlib.ticker import MaxNLocator

    mean = panel.groupby("index")["weight"].mean()
    ax.bar(mean.index, mean.to_numpy(), color="#9bb7d4", width=0.8, label="mean over folds")
    folds = sorted(panel["fold"].unique(), key=lambda f: list(colors).index(str(f)))
    offsets = np.linspace(-0.25, 0.25, len(folds)) if len(folds) > 1 else [0.0]
    for offset, fold in zip(offsets, folds, strict=True):
        line = panel[panel["fold"] == fold]
        ax.plot(
            line["index"] + offset,
            line["weight"],
            ls="none",
            marker="o",
            ms=3.5,
            color=colors[str(fold)],
            mec="white",
            mew=0.4,
            label=f"fold {fold}",
        )
    ax.axhline(1 / len(mean), label="equal weights", **UNIFORM_STYLE)
    ax.set_xlabel(WEIGHT_AXIS)
    ax.set_ylabel("softmax weight")
    ax.set_ylim(0, max(float(panel["weight"].max()), 1 / len(mean)) * 1.12)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=13))
    ax.grid(axis="x", visible=False)
