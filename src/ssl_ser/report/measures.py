"""The report's probing measures (issue 21): selectivity, codelength and speaker information.

Rows of other targets than emotion (``ser classify --control``, ``--target
speaker``) are kept out of every other section (:func:`split_targets`); this
module lays them, and the codelengths of ``--mdl``, out per layer beside the
emotion UA. Each figure is drawn only where its data exist, so a report of a
plain sweep looks as it did before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ssl_ser.classify.measures import (
    CONTROL_TARGET,
    EMOTION_TARGET,
    SPEAKER_TARGET,
    TARGET_COLUMN,
)
from ssl_ser.report import figures
from ssl_ser.report.document import FigureItem, Item, TableItem
from ssl_ser.report.load import CELL, Results
from ssl_ser.report.tables import cell_summary, percent

TITLE = "Probing measures"
INTRO = (
    "What a probe's UA alone does not say. Selectivity (Hewitt & Liang 2019): UA on the "
    "emotion labels minus UA on a control labelling (each speaker's labels permuted among "
    "that speaker's utterances, same class sizes), from ser classify --control; a layer "
    "whose probe fits the control as well as the emotions shows probe capacity, not "
    "emotion. Compression (Voita & Titov 2020, online code): the uniform code's length of "
    "a fold's training labels over their online codelength given the layer, from --mdl; "
    "1 = no usable information, higher = the labels are easier to learn from the layer, "
    "below 1 = the probe overfits the first small blocks more than the layer helps it. "
    "Speaker UA (ser classify --target speaker): how well each layer identifies the "
    "speaker, on folds of utterances (speaker-dependent by construction)."
)
# Columns of one layer's row in the measures table, besides the panel's keys.
PANEL_KEYS: tuple[str, ...] = (
    "extractor",
    "setting",
    "pooling",
    "split",
    "labels",
    "seed",
    "shots",
    "speaker_norm",
    "search",
)
MAX_ROWS = 6  # figure rows (panels of settings); more are left out, and said so


def split_targets(results: Results) -> tuple[Results, pd.DataFrame]:
    """The emotion results (every other section's) and the full table with targets.

    Tables of older folders have no target column: all their rows are emotion.
    """
    table = results.table
    if TARGET_COLUMN not in table.columns:
        table = table.assign(**{TARGET_COLUMN: EMOTION_TARGET})
    emotion = table[TARGET_COLUMN].astype(str).eq(EMOTION_TARGET).to_numpy()
    if emotion.all():
        return results, table
    kept = table[emotion].reset_index(drop=True)
    # per-class columns of other targets' classes (speakers) are empty here
    unused = [c for c in kept.columns if c.startswith("recall_") and kept[c].isna().all()]
    kept = kept.drop(columns=unused)
    predictions = results.predictions
    if predictions is not None and "cell_id" in predictions.columns:
        predictions = predictions[predictions["cell_id"].isin(set(kept["cell_id"].astype(str)))]
    return replace(results, table=kept, predictions=predictions), table


def per_layer(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (panel, classifier, layer): UA of each target and the compression.

    Columns ``ua`` (emotion), ``control_ua``, ``selectivity``, ``speaker_ua``
    and ``compression`` (means over folds; NaN where not measured).
    """
    cells = cell_summary(table)
    if "compression" in table.columns:
        mean = table.groupby(list(CELL), dropna=False)["compression"].mean()
        cells = cells.merge(mean.rename("compression").reset_index(), on=list(CELL), how="left")
    else:
        cells["compression"] = np.nan
    cells = figures.layered_cells(cells)
    if cells.empty:
        return pd.DataFrame()
    keys = [*PANEL_KEYS, "classifier", "layer_index"]
    wide = cells.pivot_table(index=keys, columns=TARGET_COLUMN, values="ua_mean", aggfunc="first")
    out = pd.DataFrame(index=wide.index)
    for target, column in (
        (EMOTION_TARGET, "ua"),
        (CONTROL_TARGET, "control_ua"),
        (SPEAKER_TARGET, "speaker_ua"),
    ):
        out[column] = wide[target] if target in wide.columns else np.nan
    out["selectivity"] = out["ua"] - out["control_ua"]
    emotion = cells[cells[TARGET_COLUMN] == EMOTION_TARGET].set_index(keys)["compression"]
    out["compression"] = emotion.reindex(out.index)
    out = out.reset_index().dropna(subset=["ua"])
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


def measure_items(table: pd.DataFrame, names: Mapping[str, str], figure_dir: Path) -> list[Item]:
    """The section's figures and table, each only where its data exist (maybe none)."""
    if TARGET_COLUMN not in table.columns:
        table = table.assign(**{TARGET_COLUMN: EMOTION_TARGET})
    rows = per_layer(table)
    if rows.empty:
        return []
    items: list[Item] = []
    for column, draw in (
        ("control_ua", _selectivity_figure),
        ("compression", _codelength_figure),
        ("speaker_ua", _speaker_figure),
    ):
        present = rows.dropna(subset=[column])
        if not present.empty:
            items.append(draw(present, names, figure_dir))
    if items:
        items.append(_measure_table(rows, names))
    return items


def _panels(rows: pd.DataFrame, names: Mapping[str, str]) -> list[tuple[str, pd.DataFrame]]:
    """(title, rows) of each panel: one setting of one extractor and pooling (the first few)."""
    groups = rows.groupby(list(PANEL_KEYS), sort=True, dropna=False)
    panels = []
    for key, part in figures.ordered_panels(groups, names):
        values = dict(zip(PANEL_KEYS, key, strict=True))
        extractor = values["extractor"]
        title = f"{names.get(extractor, extractor)}: {values['setting']}, {values['pooling']}"
        flags = [n for n in ("speaker_norm", "search") if values[n] == "True"]
        panels.append((title + "".join(f", {f.replace('_', ' ')}" for f in flags), part))
    return panels[:MAX_ROWS]


def _left_out(rows: pd.DataFrame) -> str:
    """A caption's note of the settings beyond :data:`MAX_ROWS` (in the table only), or ``""``."""
    n = rows.groupby(list(PANEL_KEYS), sort=True, dropna=False).ngroups
    return f" {n - MAX_ROWS} more setting(s) are in the table only." if n > MAX_ROWS else ""


def _layer_axes(ax, part: pd.DataFrame) -> None:
    ax.set_xlabel(figures.LAYER_AXIS)
    layers = part["layer_index"].to_numpy()
    step = max(1, int(np.ceil((layers.max() - layers.min() + 1) / 13)))
    ax.set_xticks(np.arange(layers.min(), layers.max() + 1, step))


def _selectivity_figure(rows: pd.DataFrame, names: Mapping[str, str], out: Path) -> FigureItem:
    """Per panel: emotion UA, control UA and their difference per layer, one colour a probe."""
    caption = (
        "Solid: UA on the emotion labels; dashed: UA on the control labelling (labels "
        "permuted within each speaker, same class sizes); dotted: selectivity, their "
        "difference (Hewitt & Liang 2019). Means over folds."
    ) + _left_out(rows)
    series = {
        "control_ua": ("control UA", {"ls": "--", "lw": 1.2}),
        "selectivity": ("selectivity", {"ls": ":", "lw": 1.6}),
    }
    return _lines_figure(
        rows,
        names,
        out,
        series,
        "UA / selectivity (%)",
        zero_line=True,
        name="selectivity",
        title="Selectivity per layer",
        caption=caption,
    )


def _lines_figure(
    rows: pd.DataFrame,
    names: Mapping[str, str],
    out: Path,
    series: Mapping[str, tuple[str, Mapping[str, object]]],
    ylabel: str,
    *,
    zero_line: bool,
    name: str,
    title: str,
    caption: str,
) -> FigureItem:
    """Per panel: emotion UA (solid) and each of `series` (column: (legend text, line style))."""
    panels = _panels(rows, names)
    colors = figures._colors(rows["classifier"])
    with figures._style():
        fig, axes = figures._panel_figure(len(panels), 2, (5.4, 3.4), (0.4, 1.0))
        for ax, (panel_title, part) in zip(axes, panels, strict=True):
            for classifier, line in part.groupby("classifier", sort=True):
                x, color = line["layer_index"], colors[classifier]
                ax.plot(x, 100 * line["ua"], color=color, marker="o", ms=3, label=classifier)
                for column, (_, style) in series.items():
                    ax.plot(x, 100 * line[column], color=color, **style)
            if zero_line:
                ax.axhline(0.0, color="0.6", lw=0.8)
            ax.set_title(panel_title)
            ax.set_ylabel(ylabel)
            _layer_axes(ax, part)
        styles = {style["ls"]: text for text, style in series.values()}
        _legend(fig, axes, {"-": "emotion UA", **styles})
        return figures.save_figure(fig, out, name, title, caption)


def _codelength_figure(rows: pd.DataFrame, names: Mapping[str, str], out: Path) -> FigureItem:
    """Per panel: UA per layer (left) beside the compression of the online code (right)."""
    panels = _panels(rows, names)
    colors = figures._colors(rows["classifier"])
    with figures._style():
        fig, axes = figures._panel_figure(2 * len(panels), 2, (5.0, 3.2), (0.4, 1.0))
        for i, (title, part) in enumerate(panels):
            left, right = axes[2 * i], axes[2 * i + 1]
            for classifier, line in part.groupby("classifier", sort=True):
                x, color = line["layer_index"], colors[classifier]
                left.plot(x, 100 * line["ua"], color=color, marker="o", ms=3, label=classifier)
                right.plot(x, line["compression"], color=color, marker="s", ms=3)
            right.axhline(1.0, label="uniform code", **figures.CHANCE_STYLE)
            left.set_title(f"{title}: UA")
            right.set_title(f"{title}: compression")
            left.set_ylabel(figures.UA_AXIS)
            right.set_ylabel("uniform / online codelength")
            _layer_axes(left, part)
            _layer_axes(right, part)
        _legend(fig, axes, {})
        caption = (
            "Left: emotion UA per layer; right: compression of the online (prequential) code "
            "of each fold's training labels given the layer (Voita & Titov 2020), for the same "
            "probes. 1 (grey) is the uniform code: no usable information. Means over folds."
        ) + _left_out(rows)
        return figures.save_figure(
            fig, out, "codelength", "Description length (MDL) per layer", caption
        )


def _speaker_figure(rows: pd.DataFrame, names: Mapping[str, str], out: Path) -> FigureItem:
    """Per panel: emotion UA and speaker UA per layer, one colour a probe."""
    caption = (
        "Solid: emotion UA (the sweep's own split); dashed: speaker identification UA "
        "(mean recall over speakers) on folds of utterances, so every speaker is in "
        "training and test: a speaker-dependent split by construction. Means over folds."
    ) + _left_out(rows)
    series = {"speaker_ua": ("speaker UA", {"ls": "--", "marker": "^", "ms": 3})}
    return _lines_figure(
        rows,
        names,
        out,
        series,
        "UA (%)",
        zero_line=False,
        name="speaker-information",
        title="Speaker information per layer",
        caption=caption,
    )


def _legend(fig, axes: Sequence, styles: Mapping[str, str]) -> None:
    """One legend below the panels: the probes' colours, then the line styles' meanings."""
    from matplotlib.lines import Line2D

    handles, labels = [], []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    for style, label in styles.items():
        handles.append(Line2D([], [], color="0.3", ls=style))
        labels.append(label)
    fig.legend(handles, labels, loc="outside lower center", ncols=min(6, len(labels)))


def _measure_table(rows: pd.DataFrame, names: Mapping[str, str]) -> TableItem:
    """Every layer's measures as text, one row per panel, probe and layer."""
    frame = pd.DataFrame(
        {
            "extractor": rows["extractor"].map(lambda e: names.get(e, e)),
            "setting": rows["setting"] + ", " + rows["pooling"],
            "classifier": rows["classifier"],
            "layer": rows["layer_index"].astype(str),
            "UA": rows["ua"].map(percent),
        }
    )
    shown = {
        "control UA": ("control_ua", percent),
        "selectivity": ("selectivity", _points),
        "compression": ("compression", lambda v: f"{v:.3f}"),
        "speaker UA": ("speaker_ua", percent),
    }
    for title, (column, text) in shown.items():
        if rows[column].notna().any():
            frame[title] = rows[column].map(lambda v, t=text: "" if pd.isna(v) else t(v))
    caption = (
        "Means over folds. Selectivity in percentage points; compression = uniform / online "
        "codelength of the training labels; speaker UA on a speaker-dependent split."
    )
    return TableItem("measures", "Probing measures per layer", caption, frame)


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"
