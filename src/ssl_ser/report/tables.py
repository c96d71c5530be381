"""Numbers of the report: fold aggregates per cell, best cells, bootstrap intervals.

Every function here returns plain numeric DataFrames (metrics as fractions in
[0, 1]); turning them into text is left to :func:`format_best_table` and the
renderers, so tests can compare the numbers with an independent computation.

"Best" always means the highest mean UA over folds. The choice is made on the
test results the table holds, so a best cell is an optimistic summary of a
sweep, not a model selected on held-out data; the report says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ssl_ser.report.load import CELL, METRICS, SETTING
from ssl_ser.results import FINETUNE_CLASSIFIER, LAST_STATE_LAYER, WEIGHTED_LAYER

DEFAULT_BOOTSTRAP = 1000
INTERVAL_LEVEL = 0.95
# Resamples scored per block, to bound memory on large test sets.
BOOTSTRAP_BLOCK = 200
HYPERPARAMETER_COLUMNS: tuple[str, ...] = (
    "hyperparameters",
    "params",
    "chosen_params",
    "best_params",
)
EMPTY_VALUES: tuple[str, ...] = ("", "{}", "nan", "None")
METRIC_TITLES: dict[str, str] = {"ua": "UA", "wa": "WA", "macro_f1": "Macro-F1"}


def is_cross_corpus(frame: pd.DataFrame) -> pd.Series:
    """Rows whose test corpora are all absent from training (``emodb+cremad`` -> ``emovo``).

    A per-corpus row of a pooled run (train ``emodb+emovo``, test ``emodb``) is
    not cross-corpus.
    """
    pairs = zip(frame["train_corpus"].astype(str), frame["test_corpus"].astype(str), strict=True)
    flags = [not set(train.split("+")) & set(test.split("+")) for train, test in pairs]
    return pd.Series(flags, index=frame.index, dtype=bool)


def cell_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: mean and std (ddof=1) over folds of UA, WA and macro-F1.

    Also carries the number of folds, the summed test size, the cell's split
    type and extractor flags, and ``collapsed_folds`` (folds on which the
    classifier predicted a single class) of ``checked_folds`` (folds whose
    predictions were stored).
    """
    predicted = table.get("predicted_classes", pd.Series(np.nan, index=table.index))
    table = table.assign(collapsed_folds=predicted.eq(1), checked_folds=predicted.notna())
    grouped = table.groupby(list(CELL), sort=True, dropna=False)
    out = grouped[list(METRICS)].agg(["mean", "std"])
    out.columns = [f"{metric}_{stat}" for metric, stat in out.columns]
    out["folds"] = grouped["fold"].nunique()
    out["n_test"] = grouped["n_test"].sum() if "n_test" in table.columns else np.nan
    for flag in ("split_type", "classic", "untrained"):
        out[flag] = grouped[flag].first()
    out["slice"] = grouped["slice"].any() if "slice" in table.columns else False
    out[["collapsed_folds", "checked_folds"]] = grouped[["collapsed_folds", "checked_folds"]].sum()
    return out.reset_index()


def collapsed_text(cell: pd.Series) -> str:
    """``collapsed: one class predicted in 3/3 folds`` for a collapsed cell, else ``""``."""
    collapsed = int(cell.get("collapsed_folds", 0) or 0)
    if collapsed == 0:
        return ""
    return f"collapsed: one class predicted in {collapsed}/{int(cell['checked_folds'])} folds"


def best_cells(cells: pd.DataFrame, by: Sequence[str] = SETTING) -> pd.DataFrame:
    """The cell with the highest mean UA in every group of `by` (first of ties, in key order)."""
    ordered = cells.sort_values(list(CELL), kind="stable").reset_index(drop=True)
    ranked = ordered.dropna(subset=["ua_mean"])
    index = ranked.groupby(list(by), sort=True)["ua_mean"].idxmax()
    return ordered.loc[index.to_numpy()].reset_index(drop=True)


def overall_best(cells: pd.DataFrame) -> pd.Series:
    """The single best cell of `cells` (call it on one comparable group only).

    Speaker-independent cells are preferred when there are any, and whole test
    sets over one corpus's slice of a pooled test fold (a smaller, noisier set).
    """
    whole = cells[~cells["slice"].astype(bool)] if "slice" in cells.columns else cells
    cells = whole if not whole["ua_mean"].isna().all() else cells
    independent = cells[cells["split_type"] == "speaker-independent"]
    pool = independent if not independent["ua_mean"].isna().all() else cells
    return best_cells(pool.assign(_all=""), by=("_all",)).drop(columns="_all").iloc[0]


def cell_predictions(
    table: pd.DataFrame, predictions: pd.DataFrame | None, cell: pd.Series
) -> pd.DataFrame:
    """The stored test predictions of one cell (all its folds), possibly empty.

    Predictions are found through the ``cell_id`` of the cell's result rows; a
    per-corpus row of a pooled test fold keeps only that corpus's utterances.
    Tables without ids are matched on the cell columns they share.
    """
    if predictions is None or predictions.empty:
        return pd.DataFrame(columns=["true", "pred"])
    if "cell_id" in predictions.columns and "cell_id" in table.columns:
        return fold_predictions(cell_rows(table, cell), predictions)
    return cell_rows(predictions, cell, [c for c in CELL if c in predictions.columns])


def fold_predictions(rows: pd.DataFrame, predictions: pd.DataFrame | None) -> pd.DataFrame:
    """The stored test predictions of exactly these result rows (their cell ids and folds).

    A row of one corpus of a pooled test fold keeps only that corpus's utterances.
    """
    if predictions is None or rows.empty or "cell_id" not in rows or "cell_id" not in predictions:
        return pd.DataFrame(columns=["true", "pred"])
    wanted = set(zip(rows["cell_id"].astype(str), rows["fold"].astype(str), strict=True))
    chosen = predictions[predictions["cell_id"].isin({cell for cell, _ in wanted})]
    if "fold" in chosen.columns:  # a cell id names one fold in ser classify; make sure
        pairs = zip(chosen["cell_id"], chosen["fold"], strict=True)
        chosen = chosen[[pair in wanted for pair in pairs]]
    test_corpus = str(rows["test_corpus"].iloc[0])
    if "corpus" in chosen.columns and "+" not in test_corpus:
        chosen = chosen[chosen["corpus"] == test_corpus]
    return chosen


def cell_rows(frame: pd.DataFrame, cell: pd.Series, columns: Sequence[str] = CELL) -> pd.DataFrame:
    """The rows of `frame` (one per fold) whose `columns` hold the cell's values."""
    mask = np.ones(len(frame), dtype=bool)
    for column in columns:
        mask &= frame[column].astype(str).to_numpy() == str(cell[column])
    return frame[mask]


def bootstrap_intervals(
    true: Sequence[str],
    pred: Sequence[str],
    classes: Sequence[str],
    *,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    level: float = INTERVAL_LEVEL,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of UA, WA and macro-F1 over test utterances.

    Utterances are resampled with replacement; each resample's confusion matrix
    comes from one ``bincount``, scored as :mod:`ssl_ser.classify.metrics` scores
    a single matrix (UA over classes present in the resample's references,
    macro-F1 over classes present in its references or predictions).
    """
    index = {name: i for i, name in enumerate(classes)}
    true_idx = np.array([index[str(x)] for x in true], dtype=np.int64)
    pred_idx = np.array([index.get(str(x), -1) for x in pred], dtype=np.int64)
    if len(true_idx) == 0 or n_boot <= 0 or (pred_idx < 0).any():
        return {metric: (np.nan, np.nan) for metric in METRICS}
    rng = np.random.default_rng(seed)
    k = len(classes)
    scores = []
    for start in range(0, n_boot, BOOTSTRAP_BLOCK):
        draws = rng.integers(
            0, len(true_idx), size=(min(BOOTSTRAP_BLOCK, n_boot - start), len(true_idx))
        )
        scores.append(_resample_scores(true_idx[draws], pred_idx[draws], k))
    stacked = np.concatenate(scores, axis=1)
    tail = 100 * (1 - level) / 2
    bounds = np.nanpercentile(stacked, [tail, 100 - tail], axis=1)
    return {metric: (float(bounds[0, i]), float(bounds[1, i])) for i, metric in enumerate(METRICS)}


def _resample_scores(true_idx: np.ndarray, pred_idx: np.ndarray, k: int) -> np.ndarray:
    """(3, resamples) UA, WA and macro-F1 of row-wise resampled label pairs."""
    n_boot = true_idx.shape[0]
    offsets = (np.arange(n_boot) * k * k)[:, None]
    flat = (true_idx * k + pred_idx + offsets).ravel()
    confusion = np.bincount(flat, minlength=n_boot * k * k).reshape(n_boot, k, k)
    support = confusion.sum(axis=2)
    predicted = confusion.sum(axis=1)
    hits = np.einsum("bii->bi", confusion).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, hits / support, np.nan)
        precision = np.where(predicted > 0, hits / predicted, 0.0)
        both = precision + np.nan_to_num(recall)
        f1 = np.where(both > 0, 2 * precision * np.nan_to_num(recall) / both, 0.0)
    in_f1 = (support > 0) | (predicted > 0)
    ua = np.nanmean(recall, axis=1)
    wa = hits.sum(axis=1) / support.sum(axis=1)
    macro_f1 = (f1 * in_f1).sum(axis=1) / in_f1.sum(axis=1)
    return np.stack([ua, wa, macro_f1])


def with_intervals(
    best: pd.DataFrame,
    table: pd.DataFrame,
    predictions: pd.DataFrame | None,
    classes: Sequence[str],
    *,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> pd.DataFrame:
    """`best` with pooled scores and their bootstrap bounds (NaN without predictions).

    ``<metric>_pooled`` is the metric of all test predictions of the cell's folds
    pooled, the point estimate whose ``<metric>_low``/``<metric>_high`` 95%
    interval the bootstrap gives (the mean over folds is a different number).
    """
    out = best.copy()
    for metric in METRICS:
        for stat in ("pooled", "low", "high"):
            out[f"{metric}_{stat}"] = np.nan
    for position, cell in out.iterrows():
        rows = cell_predictions(table, predictions, cell)
        if rows.empty:
            continue
        labels = list(classes) or sorted(set(rows["true"]) | set(rows["pred"]))
        pooled = pooled_scores(rows["true"], rows["pred"], labels)
        bounds = bootstrap_intervals(rows["true"], rows["pred"], labels, n_boot=n_boot, seed=seed)
        for metric, (low, high) in bounds.items():
            out.loc[position, f"{metric}_pooled"] = pooled[metric]
            out.loc[position, f"{metric}_low"] = low
            out.loc[position, f"{metric}_high"] = high
    return out


def pooled_scores(
    true: Sequence[str], pred: Sequence[str], classes: Sequence[str]
) -> dict[str, float]:
    """UA, WA and macro-F1 of all given predictions at once (NaN for an unknown label)."""
    index = {name: i for i, name in enumerate(classes)}
    true_idx = np.array([index[str(x)] for x in true], dtype=np.int64)
    pred_idx = np.array([index.get(str(x), -1) for x in pred], dtype=np.int64)
    if len(true_idx) == 0 or (pred_idx < 0).any():
        return {metric: np.nan for metric in METRICS}
    scores = _resample_scores(true_idx[None, :], pred_idx[None, :], len(classes))[:, 0]
    return {metric: float(scores[i]) for i, metric in enumerate(METRICS)}


def hyperparameters(table: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    """Per fold, the hyperparameters a search chose for each best cell (empty without search)."""
    column = next((c for c in HYPERPARAMETER_COLUMNS if c in table.columns), None)
    if column is None:
        return pd.DataFrame()
    keys = best[list(CELL)]
    rows = table.merge(keys, on=list(CELL), how="inner")
    if "search" in rows.columns:
        rows = rows[rows["search"] == "True"]
    recorded = ~rows[column].astype(str).str.strip().isin(EMPTY_VALUES)
    rows = rows[recorded]
    return rows[[*CELL, "fold", column]].rename(columns={column: "hyperparameters"})


def config_label(cell: pd.Series) -> str:
    """``layer 7 · mean · logreg`` (classic one-layer extractors omit the layer).

    Speaker z-normalisation and a hyperparameter search are named when used. A
    fine-tuned model reads ``fine-tuned · learned layer weights · mean · <setup>``.
    """
    if str(cell["classifier"]) == FINETUNE_CLASSIFIER:
        return finetune_label(cell)
    parts = [] if cell.get("classic", False) else [f"layer {cell['layer']}"]
    parts += [str(cell["pooling"]), str(cell["classifier"])]
    if str(cell.get("speaker_norm", "False")) == "True":
        parts.append("speaker z-norm")
    if str(cell.get("search", "False")) == "True":
        parts.append("searched")
    return " · ".join(parts)


FINETUNE_INPUTS: dict[str, str] = {
    LAST_STATE_LAYER: "last hidden state",
    WEIGHTED_LAYER: "learned layer weights",
}


def finetune_label(cell: pd.Series) -> str:
    """``fine-tuned · last hidden state · mean · linear head · ...``: a fine-tuned model's setup."""
    layer = str(cell["layer"])
    parts = ["fine-tuned", FINETUNE_INPUTS.get(layer, f"layer {layer}"), str(cell["pooling"])]
    setup = str(cell.get("finetune_setup", "") or "")
    return " · ".join([*parts, setup] if setup else parts)


def finetune_lines(cell: pd.Series, per_line: int = 2) -> str:
    """:func:`finetune_label` without ``fine-tuned``, `per_line` parts a line (narrow cells)."""
    parts = finetune_label(cell).split(" · ")[1:]
    return "\n".join(" · ".join(parts[i : i + per_line]) for i in range(0, len(parts), per_line))


def describe_setting(
    train_corpus: str, train_condition: str, test_corpus: str, test_condition: str
) -> str:
    """``emodb · clean``, ``emodb · clean → telephone``, ``emodb → emovo · clean``.

    The fully spelled form ``emodb · clean → emovo · telephone`` is used when both
    the corpus and the condition change; one corpus's share of a pooled run reads
    ``emodb (of emodb+emovo) · clean``.
    """
    train = f"{train_corpus} · {train_condition}"
    pooled = set(test_corpus.split("+")) < set(train_corpus.split("+"))
    if pooled and train_condition == test_condition:
        return f"{test_corpus} (of {train_corpus}) · {test_condition}"
    if pooled:
        return f"{test_corpus} (of {train_corpus}) · {train_condition} → {test_condition}"
    if train_corpus != test_corpus and train_condition == test_condition:
        return f"{train_corpus} → {test_corpus} · {test_condition}"
    if train_corpus != test_corpus:
        return f"{train} → {test_corpus} · {test_condition}"
    return train if train_condition == test_condition else f"{train} → {test_condition}"


def setting_label(cell: pd.Series) -> str:
    """The :func:`describe_setting` text of one cell."""
    return describe_setting(
        str(cell["train_corpus"]),
        str(cell["train_condition"]),
        str(cell["test_corpus"]),
        str(cell["test_condition"]),
    )


def percent(value: float) -> str:
    """``0.6234`` -> ``62.3`` (``n/a`` for NaN)."""
    return "n/a" if pd.isna(value) else f"{100 * value:.1f}"


def mean_std(mean: float, std: float, folds: int) -> str:
    """``62.3 ± 2.1`` in percent; just ``62.3`` where there is no spread (one fold)."""
    if pd.isna(std) or folds < 2:
        return percent(mean)
    return f"{percent(mean)} ± {percent(std)}"


def interval(low: float, high: float) -> str:
    """``58.0–66.1`` in percent, or ``n/a`` without predictions."""
    if pd.isna(low) or pd.isna(high):
        return "n/a"
    return f"{percent(low)}–{percent(high)}"


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """In-corpus settings before cross-corpus ones, then by setting, SSL before classic, UA."""
    keys = ["_cross", "train_corpus", "train_condition", "test_corpus", "test_condition", "split"]
    ranked = frame.assign(_cross=is_cross_corpus(frame), _rank=-frame["ua_mean"])
    return ranked.sort_values([*keys, "classic", "_rank"], kind="stable")


def fold_text(folds: int | pd.Series) -> str:
    """``5 folds``, ``1 fold``; ``3/5 folds`` for cells of different fold counts."""
    counts = sorted({int(n) for n in np.atleast_1d(folds)})
    return "/".join(map(str, counts)) + (" fold" if counts == [1] else " folds")


def split_text(cell: pd.Series) -> str:
    """Split type, then (second line) the split's name and fold count."""
    return f"{cell['split_type']}\n{cell['split']} · {fold_text(cell['folds'])}"


FOLD_AND_POOLED = "mean ± std over folds; pooled predictions with their 95% bootstrap CI"


def metric_text(cell: pd.Series, metric: str) -> str:
    """``62.3 ± 2.1`` over folds, then ``pooled 61.8`` and its ``95% CI 57.0–66.4`` below it."""
    spread = mean_std(cell[f"{metric}_mean"], cell[f"{metric}_std"], int(cell["folds"]))
    pooled = percent(cell.get(f"{metric}_pooled", float("nan")))
    ci = interval(cell.get(f"{metric}_low", float("nan")), cell.get(f"{metric}_high", float("nan")))
    return f"{spread}\npooled {pooled}\n95% CI {ci}"


def format_best_table(best: pd.DataFrame, names: Mapping[str, str]) -> pd.DataFrame:
    """The best cells as text: split type beside the numbers, fold spread and pooled interval.

    Cells with two lines (a value and its detail) are separated by a newline; the
    renderers decide how to show it. A collapsed cell says so under its configuration.
    """
    rows = []
    for _, cell in _ordered(best).iterrows():
        collapsed = collapsed_text(cell)
        row = {
            "Extractor": names[cell["extractor"]],
            "Train → test": setting_label(cell),
            "Best configuration": config_label(cell) + (f"\n⚠ {collapsed}" if collapsed else ""),
            "Split type": split_text(cell),
        }
        for metric, title in METRIC_TITLES.items():
            row[f"{title} %\n{FOLD_AND_POOLED}"] = metric_text(cell, metric)
        row["Test utterances"] = "n/a" if pd.isna(cell["n_test"]) else f"{int(cell['n_test'])}"
        rows.append(row)
    return pd.DataFrame(rows)


def format_classifier_table(cells: pd.DataFrame, names: Mapping[str, str]) -> pd.DataFrame:
    """One row per extractor and setting, one column per classifier: best layer and UA."""
    rows: dict[tuple[str, ...], dict[str, str]] = {}
    for _, cell in _ordered(best_cells(cells, by=(*SETTING, "classifier"))).iterrows():
        key = (cell["extractor"], *(str(cell[c]) for c in SETTING[1:]))
        row = rows.setdefault(
            key,
            {
                "Extractor": names[cell["extractor"]],
                "Train → test": setting_label(cell),
                "Split type": split_text(cell),
            },
        )
        where = (
            f"{cell['pooling']}"
            if cell["classic"]
            else f"layer {cell['layer']} · {cell['pooling']}"
        )
        if str(cell["classifier"]) == FINETUNE_CLASSIFIER:
            where = finetune_lines(cell)
        ua = mean_std(cell["ua_mean"], cell["ua_std"], int(cell["folds"]))
        collapsed = f"\n⚠ collapsed in {int(cell['collapsed_folds'])}/{int(cell['checked_folds'])}"
        row[f"{cell['classifier']} UA %"] = f"{ua}\n{where}" + (
            collapsed if collapsed_text(cell) else ""
        )
    frame = pd.DataFrame(list(rows.values()))
    fixed = ["Extractor", "Train → test", "Split type"]
    classifiers = sorted(c for c in frame.columns if c not in fixed)
    return frame[fixed + classifiers].fillna("not run")
