"""Fine-tuned models beside the probes: comparison numbers, fold pairs, curves, layer weights.

``ser finetune`` writes its rows into the same results tables as ``ser
classify`` (classifier ``finetune``; layer ``all``: the head reads the last
hidden state, or ``weighted``: a learned softmax-weighted sum of all hidden
states). Each fine-tuned cell is put beside three probes of the same extractor,
corpora and conditions (:func:`compare_cell`): the probe whose layer was chosen
per fold without the fold's test speakers (:func:`starting_probe`,
:func:`selected_layers`, else :func:`other_folds_layers`), the best probe by
mean test UA (optimistic) and the chosen probe's last layer. A split without a
way to choose gets no chosen layer and no difference, never a comparison with a
layer nobody chose.

Comparable probes share :data:`COMPARED`; probes with speaker z-normalisation
are left out (it uses the test speakers' own statistics, which the fine-tune
never sees), while a searched probe is kept (it chooses on training speakers
only, as the fine-tune chooses its epoch). Folds are paired by name and, where
both rows store one, by ``fold_digest`` (:func:`pair_folds`); the intervals are
:mod:`ssl_ser.report.paired`'s. Every number is a fraction in [0, 1];
formatting lives in :func:`format_comparison` and :func:`format_folds`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ssl_ser.errors import ConfigError
from ssl_ser.report import paired as paired_module
from ssl_ser.report.groups import Group, shots_number
from ssl_ser.report.load import (
    CELL,
    describe_cell,
    is_finetune,
    params_dict,
)
from ssl_ser.report.tables import (
    FINETUNE_INPUTS,
    bootstrap_intervals,
    cell_rows,
    collapsed_text,
    fold_predictions,
    interval,
    mean_std,
    percent,
    pooled_scores,
    setting_label,
)
from ssl_ser.results import WEIGHTED_LAYER

# Probes are compared with a fine-tuned cell when these agree (search may differ).
COMPARED: tuple[str, ...] = ("labels", "split", "seed", "shots", "speaker_norm")
# What a probe and a fine-tuned cell share to be put side by side.
MATCH: tuple[str, ...] = (
    "extractor",
    "train_corpus",
    "train_condition",
    "test_corpus",
    "test_condition",
)
# One probe "variant": its layers are compared with each other to choose one.
VARIANT: tuple[str, ...] = ("classifier", "pooling", "search")
KINDS: tuple[str, ...] = ("finetune", "selected", "best_test", "last")
WEIGHT_TOLERANCE = 1e-3
SAME = "same speakers (fold digest)"
NAME_ONLY = "paired by fold name (no digest stored)"
DIFFERENT = "⚠ different speakers: not paired"
MISSING = "no probe on this fold"
ONE_CLASS = "collapsed: one class predicted"
# Splits whose test folds partition the speakers: the other folds' test speakers are
# exactly this fold's training speakers.
PARTITION_SPLITS: tuple[str, ...] = ("speaker-kfold", "loso")
HOW_VALIDATION = "chosen per fold on validation UA (training speakers)"
HOW_OTHER_FOLDS = "chosen per fold on the other folds' test UA (this fold's training speakers)"
HOW_STARTED = (
    "the probe the fine-tune started from (--from-probe: its layer chosen on validation "
    "speakers of the training side)"
)
# The probe a ``--from-probe`` fine-tune copies into its head (see ssl_ser.finetune.probe_init).
STARTING_PROBE: dict[str, str] = {"classifier": "logreg", "pooling": "mean"}
NO_CHOICE = (
    "no layer can be chosen on training speakers: the probes store no validation UA "
    "and the split has no other folds whose test speakers this fold trained on"
)


@dataclass(frozen=True)
class Choice:
    """The per-fold result rows behind one number of the comparison, and how they were chosen.

    Attributes:
        rows: one result row per fold (empty: nothing to show).
        what: ``layers 4/5/5 · logreg · mean`` (the layer(s), classifier, pooling).
        how: how the layers were chosen (:data:`HOW_STARTED`, :data:`HOW_VALIDATION`,
            :data:`HOW_OTHER_FOLDS`).
    """

    rows: pd.DataFrame
    what: str
    how: str = ""


def finetune_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """The fine-tuned cells (or rows) of `cells`, whole test sets only (not pooled-fold slices)."""
    tuned = cells[is_finetune(cells)]
    return tuned[~tuned["slice"].astype(bool)] if "slice" in tuned.columns else tuned


def comparable_probes(table: pd.DataFrame, cell: pd.Series) -> pd.DataFrame:
    """Probe rows at single numbered layers comparable with fine-tuned `cell` (see module doc)."""
    keep = ~is_finetune(table) & table["layer"].astype(str).str.fullmatch(r"\d+")
    for column in (*COMPARED, *MATCH):
        if column == "shots":  # 5 and 5.0 are one few-shot count
            keep &= table[column].map(shots_number) == shots_number(cell[column])
        else:
            keep &= table[column].astype(str) == str(cell[column])
    return table[keep].assign(layer_index=lambda f: f["layer"].astype(int))


def selected_layers(probes: pd.DataFrame) -> Choice:
    """Per fold, the layer with the best validation UA, of the best-validating probe variant.

    Ties in validation UA go to the lowest layer (as ``summary.csv``'s ``selected``
    rows); a variant's score is the mean over folds of its chosen layers'
    validation UA, ties to the first in (classifier, pooling, search) order.
    Empty when no probe row holds a validation UA.
    """
    if "val_ua" not in probes.columns:
        return Choice(probes.iloc[0:0], "")
    scored = probes.assign(val_ua=pd.to_numeric(probes["val_ua"], errors="coerce"))
    scored = scored[scored["val_ua"].notna()].sort_values("layer_index", kind="stable")
    best_rows, best_score = None, -np.inf
    for _, part in scored.groupby(list(VARIANT), sort=True):
        chosen = part.loc[part.groupby("fold", sort=True)["val_ua"].idxmax()]
        if chosen["val_ua"].mean() > best_score:
            best_rows, best_score = chosen, chosen["val_ua"].mean()
    if best_rows is None:
        return Choice(probes.iloc[0:0], "")
    return Choice(best_rows, _chosen_text(best_rows), HOW_VALIDATION)


def starting_probe(probes: pd.DataFrame, tuned: pd.DataFrame) -> Choice:
    """The probe a ``--from-probe`` fine-tune started from: logreg on mean pooling at its layer.

    Empty unless every fold of `tuned` was started from a probe (``init`` ``probe``
    in its params) at one numbered layer and that probe is stored for every fold.
    """
    layers = tuned["layer"].astype(str)
    if tuned.empty or layers.nunique() != 1 or not layers.iloc[0].isdigit():
        return Choice(probes.iloc[0:0], "")
    if any(params_dict(params).get("init") != "probe" for params in tuned["params"]):
        return Choice(probes.iloc[0:0], "")
    keep = probes["layer_index"] == int(layers.iloc[0])
    for column, value in STARTING_PROBE.items():
        keep &= probes[column].astype(str) == value
    # one row per fold: the probe without a search where both are stored ("False" < "True")
    rows = probes[keep].sort_values("search", key=lambda s: s.astype(str), kind="stable")
    rows = rows.drop_duplicates("fold")
    if set(rows["fold"].astype(str)) != set(tuned["fold"].astype(str)):
        return Choice(probes.iloc[0:0], "")
    return Choice(rows, _chosen_text(rows), HOW_STARTED)


def other_folds_layers(probes: pd.DataFrame) -> Choice:
    """Per fold, the probe (variant and layer) with the best mean test UA over the *other* folds.

    For splits whose test folds partition the speakers (:data:`PARTITION_SPLITS`)
    the other folds' test speakers are this fold's training speakers, so the
    choice never looks at this fold's test speakers (their data did help train
    the other folds' probes). Only probes scored on every other fold compete;
    ties go to the first variant and the lowest layer. Empty for other splits
    or a single fold.
    """
    names = pd.Series(sorted(probes["fold"].astype(str).unique()), dtype=object)
    folds = names.sort_values(key=_fold_order, kind="stable").tolist()
    if probes.empty or len(folds) < 2 or not set(probes["split"]) <= set(PARTITION_SPLITS):
        return Choice(probes.iloc[0:0], "")
    keys = [*VARIANT, "layer_index"]
    probes = probes.assign(fold=probes["fold"].astype(str))
    chosen = []
    for fold in folds:
        others = probes[probes["fold"] != fold]
        scores = others.groupby(keys, sort=True)["ua"].agg(["mean", "count"])
        scores = scores[scores["count"] == len(folds) - 1]["mean"].dropna()
        mine = probes[probes["fold"] == fold].set_index(keys)
        scores = scores[scores.index.isin(mine.index)]
        if scores.empty:
            continue
        best = pd.Series(scores.idxmax(), index=keys)
        chosen.append(probes[(probes["fold"] == fold) & (probes[keys] == best).all(axis=1)].iloc[0])
    if not chosen:
        return Choice(probes.iloc[0:0], "")
    rows = pd.DataFrame(chosen)
    return Choice(rows, _chosen_text(rows), HOW_OTHER_FOLDS)


def _chosen_text(rows: pd.DataFrame) -> str:
    """``layer 3 · logreg · mean``, or ``layers 3/3/4 · …`` when folds chose differently."""
    rows = rows.sort_values("fold", key=_fold_order, kind="stable")
    layers = "/".join(rows["layer"].astype(str))
    noun = "layer" if rows["layer"].nunique() == 1 else "layers"
    shown = rows["layer"].iloc[0] if noun == "layer" else layers
    variants = list(dict.fromkeys(_variant_text(row) for _, row in rows.iterrows()))
    return f"{noun} {shown} · {' / '.join(variants)}"


def best_by_test(probes: pd.DataFrame) -> Choice:
    """The probe cell (variant and layer) with the highest mean test UA over folds."""
    if probes.empty:
        return Choice(probes, "")
    keys = [*VARIANT, "layer_index"]
    means = probes.groupby(keys, sort=True)["ua"].mean()
    if means.isna().all():
        return Choice(probes.iloc[0:0], "")
    best = means.idxmax()
    rows = probes[(probes[keys] == pd.Series(best, index=keys)).all(axis=1)]
    return Choice(rows, f"layer {best[-1]} · {_variant_text(rows.iloc[0])}")


def last_layer(probes: pd.DataFrame, variant: pd.Series) -> Choice:
    """The highest-numbered layer of one probe variant (the model's last hidden state)."""
    same = (probes[list(VARIANT)].astype(str) == variant[list(VARIANT)].astype(str)).all(axis=1)
    mine = probes[same]
    if mine.empty:
        return Choice(mine, "")
    rows = mine[mine["layer_index"] == mine["layer_index"].max()]
    return Choice(rows, f"layer {rows['layer'].iloc[0]} · {_variant_text(rows.iloc[0])}")


def _variant_text(row: pd.Series) -> str:
    """``logreg · mean`` (``· searched`` when the probe's hyperparameters were searched)."""
    searched = " · searched" if str(row["search"]) == "True" else ""
    return f"{row['classifier']} · {row['pooling']}{searched}"


def summarise(
    rows: pd.DataFrame,
    predictions: pd.DataFrame | None,
    classes: Sequence[str],
    *,
    n_boot: int,
    seed: int,
) -> dict[str, float]:
    """Mean, std (ddof=1) and count of UA over folds; pooled UA with its bootstrap 95% CI."""
    ua = rows["ua"].astype(float)
    out = {
        "mean": float(ua.mean()) if len(ua) else np.nan,
        "std": float(ua.std()) if len(ua) > 1 else np.nan,
        "folds": float(rows["fold"].nunique()),
        "pooled": np.nan,
        "low": np.nan,
        "high": np.nan,
    }
    predicted = fold_predictions(rows, predictions)
    if predicted.empty:
        return out
    labels = list(classes) or sorted(set(predicted["true"]) | set(predicted["pred"]))
    out["pooled"] = pooled_scores(predicted["true"], predicted["pred"], labels)["ua"]
    bounds = bootstrap_intervals(
        predicted["true"], predicted["pred"], labels, n_boot=n_boot, seed=seed
    )
    out["low"], out["high"] = bounds["ua"]
    return out


def pair_folds(tuned: pd.DataFrame, probe: pd.DataFrame) -> pd.DataFrame:
    """Fine-tuned and probe UA per fold, matched on the fold's name and checked by digest.

    Returns one row per fine-tuned fold: ``fold``, ``finetune`` and ``probe`` UA,
    the probe's layer (``probe_layer``), ``paired`` (whether the difference may be taken) and
    ``speakers`` (why: :data:`SAME`, :data:`NAME_ONLY`, :data:`DIFFERENT`, :data:`MISSING`).
    """
    probe_by_fold = {str(row["fold"]): row for _, row in probe.iterrows()}
    out = []
    ordered = tuned.sort_values("fold").sort_values("fold", key=_fold_order, kind="stable")
    for _, row in ordered.iterrows():
        other = probe_by_fold.get(str(row["fold"]))
        speakers = MISSING if other is None else _same_speakers(row, other)
        paired = speakers in (SAME, NAME_ONLY)
        out.append(
            {
                "fold": str(row["fold"]),
                "finetune": float(row["ua"]),
                "collapsed": bool(row.get("predicted_classes") == 1),  # one class predicted
                "probe": np.nan if other is None else float(other["ua"]),
                "probe_layer": "" if other is None else str(other["layer"]),
                "paired": paired,
                "speakers": speakers,
            }
        )
    return pd.DataFrame(
        out,
        columns=["fold", "finetune", "collapsed", "probe", "probe_layer", "paired", "speakers"],
    )


def _fold_order(folds: pd.Series) -> pd.Series:
    """Sort key: numeric fold names in numeric order (``2`` before ``10``), others after."""
    return pd.to_numeric(folds, errors="coerce").fillna(np.inf)


def _same_speakers(tuned: pd.Series, probe: pd.Series) -> str:
    """Whether two rows of one fold name hold the same speakers, by their fold digests."""
    mine, theirs = _digest(tuned), _digest(probe)
    if mine is None or theirs is None:
        return NAME_ONLY
    return SAME if mine == theirs else DIFFERENT


def _digest(row: pd.Series) -> str | None:
    value = row.get("fold_digest")
    if value is None or (isinstance(value, float) and np.isnan(value)) or str(value) == "":
        return None
    return str(value)


def compare_cell(
    cell: pd.Series,
    table: pd.DataFrame,
    predictions: pd.DataFrame | None,
    classes: Sequence[str],
    *,
    n_boot: int,
    seed: int,
) -> tuple[dict[str, object], pd.DataFrame]:
    """One fine-tuned cell beside its three probes: the summary row and the fold pairs."""
    probes = comparable_probes(table, cell)
    chosen = {"finetune": Choice(cell_rows(table, cell), "")}
    chosen["selected"] = starting_probe(probes, chosen["finetune"].rows)
    if chosen["selected"].rows.empty:
        chosen["selected"] = selected_layers(probes)
    if chosen["selected"].rows.empty:
        chosen["selected"] = other_folds_layers(probes)
    chosen["best_test"] = best_by_test(probes)
    reference = chosen["selected"] if not chosen["selected"].rows.empty else chosen["best_test"]
    if reference.rows.empty:
        chosen["last"] = Choice(probes.iloc[0:0], "")
    else:
        chosen["last"] = last_layer(probes, reference.rows.iloc[0])
    summary: dict[str, object] = {column: cell[column] for column in CELL}
    for kind, choice in chosen.items():
        numbers = summarise(choice.rows, predictions, classes, n_boot=n_boot, seed=seed)
        summary.update({f"{kind}_{name}": value for name, value in numbers.items()})
        summary[f"{kind}_what"] = choice.what
    pairs = pair_folds(chosen["finetune"].rows, chosen["selected"].rows)
    pairs = with_fold_intervals(
        pairs, chosen["finetune"].rows, chosen["selected"].rows, predictions, classes, n_boot, seed
    )
    summary["reference"] = chosen["selected"].how or NO_CHOICE
    summary["collapsed"] = collapsed_text(cell)
    pairs["reference"] = "chosen layer"
    return {**summary, **_difference(pairs)}, pairs.assign(**{c: cell[c] for c in CELL})


def _difference(pairs: pd.DataFrame) -> dict[str, object]:
    """Mean paired difference over folds with its t-interval; how the folds were paired."""
    paired = pairs[pairs["paired"]]
    difference = paired["finetune"] - paired["probe"]
    low, high = paired_module.t_interval(difference)
    return {
        "paired": len(paired),
        "different": int((pairs["speakers"] == DIFFERENT).sum()),
        "by_digest": bool(len(paired)) and bool((paired["speakers"] == SAME).all()),
        "difference": float(difference.mean()) if len(paired) else np.nan,
        "difference_low": low,
        "difference_high": high,
    }


def with_fold_intervals(
    pairs: pd.DataFrame,
    tuned: pd.DataFrame,
    probe: pd.DataFrame,
    predictions: pd.DataFrame | None,
    classes: Sequence[str],
    n_boot: int,
    seed: int,
) -> pd.DataFrame:
    """Per paired fold, the paired bootstrap interval of the difference (NaN without predictions).

    Both models' stored predictions of the fold must cover the same utterances
    (:func:`ssl_ser.report.paired.matched`).
    """
    low, high = [], []
    for _, pair in pairs.iterrows():
        bounds = (np.nan, np.nan)
        if pair["paired"]:
            both = paired_module.matched(
                fold_predictions(_of_fold(tuned, pair["fold"]), predictions),
                fold_predictions(_of_fold(probe, pair["fold"]), predictions),
            )
            if both is not None:
                labels = list(classes) or sorted(set(both["true"]))
                bounds = paired_module.fold_interval(both, labels, n_boot=n_boot, seed=seed)
        low.append(bounds[0])
        high.append(bounds[1])
    return pairs.assign(low=low, high=high)


def _of_fold(rows: pd.DataFrame, fold: str) -> pd.DataFrame:
    return rows[rows["fold"].astype(str) == str(fold)]


def comparison(
    cells: pd.DataFrame,
    table: pd.DataFrame,
    predictions: pd.DataFrame | None,
    group: Group,
    *,
    n_boot: int,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every fine-tuned cell of one group beside its probes: (summary rows, fold pairs).

    `table` holds all result rows of the report (probes may sit in another group:
    search); the group's classes score the pooled predictions.
    """
    rows, folds = [], []
    for _, cell in finetune_cells(cells).iterrows():
        summary, pairs = compare_cell(
            cell, table, predictions, group.classes, n_boot=n_boot, seed=seed
        )
        rows.append(summary)
        folds.append(pairs)
    if not rows:
        return pd.DataFrame(), pd.DataFrame()
    return pd.DataFrame(rows), pd.concat(folds, ignore_index=True)


# --- text ---------------------------------------------------------------------------


def shared_setup(frame: pd.DataFrame) -> str:
    """The fine-tune setup every row of `frame` shares ('' when they differ or none is stored)."""
    setups = set(frame["finetune_setup"].astype(str))
    return next(iter(setups)) if len(setups) == 1 else ""


def finetune_text(row: pd.Series, *, setup: bool = True) -> str:
    """``learned layer weights · mean``, then (second line, if asked) the fine-tune setup."""
    layer = str(row["layer"])
    what = f"{FINETUNE_INPUTS.get(layer, f'layer {layer}')} · {row['pooling']}"
    detail = str(row.get("finetune_setup", "") or "") if setup else ""
    return f"{what}\n{detail}" if detail else what


def _number(row: pd.Series, kind: str) -> str:
    """Mean ± std over folds; pooled UA; its 95% CI; then what was chosen (two lines)."""
    if pd.isna(row[f"{kind}_mean"]):
        return "n/a\n" + _absent(kind, probed=pd.notna(row["best_test_mean"]))
    folds = int(row[f"{kind}_folds"])
    lines = [
        mean_std(row[f"{kind}_mean"], row[f"{kind}_std"], folds),
        f"pooled {percent(row[f'{kind}_pooled'])}",
        f"95% CI {interval(row[f'{kind}_low'], row[f'{kind}_high'])}",
    ]
    what = str(row[f"{kind}_what"])
    lines += what.split(" · ", 1) if what else []
    if kind == "selected" and row["reference"] in HOW_SHORT:
        lines.append(HOW_SHORT[row["reference"]])
    return "\n".join(lines)


# How the chosen layer was chosen, in a few words (the caption says it in full).
HOW_SHORT: dict[str, str] = {
    HOW_VALIDATION: "on validation UA",
    HOW_OTHER_FOLDS: "on other folds",
    HOW_STARTED: "its starting probe",
}


def _absent(kind: str, *, probed: bool) -> str:
    """Why a number is missing: no comparable probe, or (chosen layer) nothing to choose on."""
    if not probed:
        return "no comparable probe"
    return "no validation UA stored,\nno other folds to choose on" if kind == "selected" else ""


def _pairing(row: pd.Series) -> str:
    """``−4.2 [−7.1, +1.3]`` (mean over paired folds, t-interval), the probe, folds paired, how."""
    folds = int(row["finetune_folds"])
    if row["paired"] == 0:
        reason = "no layer chosen on training speakers" if row["reference"] == NO_CHOICE else ""
        return "\n".join(["n/a", reason] if reason else ["n/a"])
    bounds = ""
    if pd.notna(row["difference_low"]):
        bounds = f"[{100 * row['difference_low']:+.1f}, {100 * row['difference_high']:+.1f}]"
    how = "by fold digest" if row["by_digest"] else "by fold name"
    lines = [
        f"{100 * row['difference']:+.1f}",
        bounds,
        "vs chosen layer",
        f"{int(row['paired'])}/{folds} folds paired",
        how,
    ]
    if row["different"]:
        lines.append(f"⚠ {int(row['different'])} fold(s) with other speakers, not paired")
    return "\n".join(line for line in lines if line)


FINETUNE_COLUMN = "Fine-tuned UA %\nmean ± std over folds; pooled, 95% bootstrap CI"
SELECTED_COLUMN = "Chosen layer UA %\nprobe layer chosen per fold on training speakers"
BEST_TEST_COLUMN = "Best test layer UA %\nprobe; optimistic: picked on the test folds"
LAST_COLUMN = "Last layer UA %\nthe chosen probe classifier"
DIFFERENCE_COLUMN = (
    "Δ points\nfine-tuned − chosen layer, mean over paired folds [95% t-interval over folds]"
)
FOLD_DIFFERENCE_COLUMN = (
    "Δ points\nfine-tuned − chosen layer [95% paired bootstrap CI over the fold's utterances]"
)


def format_comparison(frame: pd.DataFrame, names: Mapping[str, str]) -> pd.DataFrame:
    """The comparison as text: one row per fine-tuned cell, its three probes, the fold delta."""
    several = not shared_setup(frame)
    rows = []
    for _, row in frame.iterrows():
        rows.append(
            {
                "Extractor": names[row["extractor"]],
                "Train → test": setting_label(row),
                "Fine-tuned": finetune_text(row, setup=several),
                FINETUNE_COLUMN: _number(row, "finetune") + _warning(row.get("collapsed")),
                SELECTED_COLUMN: _number(row, "selected"),
                BEST_TEST_COLUMN: _number(row, "best_test"),
                LAST_COLUMN: _number(row, "last"),
                DIFFERENCE_COLUMN: _pairing(row),
            }
        )
    return pd.DataFrame(rows)


def format_folds(pairs: pd.DataFrame, names: Mapping[str, str]) -> pd.DataFrame:
    """Fold by fold: fine-tuned and chosen-probe UA on the same speakers, and their difference."""
    several = not shared_setup(pairs)
    rows = []
    for _, pair in pairs.iterrows():
        probe = "n/a" if pd.isna(pair["probe"]) else percent(pair["probe"])
        difference = pair["finetune"] - pair["probe"] if pair["paired"] else np.nan
        rows.append(
            {
                "Extractor": names[pair["extractor"]],
                "Train → test": setting_label(pair),
                "Fine-tuned": finetune_text(pair, setup=several),
                "Fold": pair["fold"],
                "Fine-tuned UA %": percent(pair["finetune"])
                + _warning(ONE_CLASS if pair.get("collapsed") else ""),
                "Probe UA %": probe + _layer_line(pair["reference"], pair["probe_layer"]),
                FOLD_DIFFERENCE_COLUMN: _fold_difference(difference, pair),
                "Speakers": pair["speakers"],
            }
        )
    return pd.DataFrame(rows)


def _fold_difference(difference: float, pair: pd.Series) -> str:
    """``-3.1 [-9.0, +2.6]`` in points; the interval only where predictions are paired."""
    if pd.isna(difference):
        return "n/a"
    text = f"{100 * difference:+.1f}"
    if pd.notna(pair.get("low")):
        text += f" [{100 * pair['low']:+.1f}, {100 * pair['high']:+.1f}]"
    return text


def _warning(text: object) -> str:
    """A last line ``⚠ <text>`` when there is something to warn of, else nothing."""
    return f"\n⚠ {text}" if isinstance(text, str) and text else ""


def _layer_line(reference: str, layer: str) -> str:
    """``chosen layer 3`` or ``last layer 12`` under a fold's probe UA."""
    return f"\n{reference} {layer}" if layer else ""


# --- training curves and layer weights ------------------------------------------------


CURVE_FIELDS: tuple[str, ...] = ("epoch", "train_loss", "val_ua", "val_loss", "lr")


def trained_rows(table: pd.DataFrame, group: Group) -> pd.DataFrame:
    """One fine-tuned result row per cell and fold of `group` (slices of pooled folds dropped)."""
    return finetune_cells(table[group.mask(table)])


def training_curves(rows: pd.DataFrame) -> pd.DataFrame:
    """Per fine-tuned row with a stored curve, one row per epoch (:data:`CURVE_FIELDS`).

    Carries the row's cell columns, ``fold`` and ``best_epoch``.

    Raises:
        ConfigError: a curve is not a JSON list of epochs, or the best epoch is not one of them.
    """
    if "training_curve" not in rows.columns:
        return pd.DataFrame()
    parts = []
    for _, row in rows[rows["training_curve"].notna()].iterrows():
        curve = _curve(row)
        best = _best_epoch(row, curve)
        keep = {column: row[column] for column in (*CELL, "fold")}
        parts.append(curve.assign(best_epoch=best, **keep))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _curve(row: pd.Series) -> pd.DataFrame:
    """The epochs of one row's ``training_curve`` JSON, as numbers."""
    try:
        data = json.loads(str(row["training_curve"]))
    except ValueError as error:
        raise ConfigError(f"{_where(row)}: training_curve is not JSON ({error})") from None
    if not isinstance(data, list) or not data or not all(isinstance(e, dict) for e in data):
        raise ConfigError(f"{_where(row)}: training_curve must be a non-empty list of epochs")
    frame = pd.DataFrame(data).reindex(columns=list(CURVE_FIELDS))
    frame = frame.apply(pd.to_numeric, errors="coerce")
    if frame["epoch"].isna().any():
        raise ConfigError(f"{_where(row)}: an epoch of training_curve has no epoch number")
    return frame.sort_values("epoch").reset_index(drop=True)


def _best_epoch(row: pd.Series, curve: pd.DataFrame) -> float:
    """The row's ``best_epoch``, checked against its curve (NaN when not stored)."""
    best = pd.to_numeric(pd.Series([row.get("best_epoch")]), errors="coerce").iloc[0]
    if pd.notna(best) and best not in set(curve["epoch"]):
        epochs = ", ".join(str(int(e)) for e in curve["epoch"])
        raise ConfigError(
            f"{_where(row)}: best_epoch {best:g} is not an epoch of its training_curve ({epochs})"
        )
    return float(best)


def layer_weights(rows: pd.DataFrame) -> pd.DataFrame:
    """Per weighted fine-tuned row, one row per hidden state: ``index`` and softmax ``weight``.

    Raises:
        ConfigError: weights that are not a list of non-negative numbers summing to 1.
    """
    if "layer_weights" not in rows.columns:
        return pd.DataFrame()
    weighted = rows[(rows["layer"] == WEIGHTED_LAYER) & rows["layer_weights"].notna()]
    parts = []
    for _, row in weighted.iterrows():
        weights = _weights(row)
        keep = {column: row[column] for column in (*CELL, "fold")}
        parts.append(pd.DataFrame({"index": np.arange(len(weights)), "weight": weights, **keep}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _weights(row: pd.Series) -> np.ndarray:
    try:
        data = json.loads(str(row["layer_weights"]))
        weights = np.asarray(data, dtype=float)
    except (ValueError, TypeError):
        raise ConfigError(f"{_where(row)}: layer_weights is not a JSON list of numbers") from None
    if weights.ndim != 1 or not len(weights) or not np.isfinite(weights).all():
        raise ConfigError(f"{_where(row)}: layer_weights must be a list of finite numbers")
    if (weights < 0).any() or abs(weights.sum() - 1) > WEIGHT_TOLERANCE:
        raise ConfigError(
            f"{_where(row)}: layer_weights are softmax weights, but they sum to "
            f"{weights.sum():.6g} (min {weights.min():.6g}); expected non-negative numbers "
            "summing to 1"
        )
    return weights


def _where(row: pd.Series) -> str:
    ident = f"cell {row['cell_id']} " if "cell_id" in row.index else ""
    return f"{ident}({describe_cell(row)}, fold {row['fold']})"
