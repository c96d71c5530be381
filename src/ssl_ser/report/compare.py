"""Paired comparisons, best-layer uncertainty and group breakdowns from stored predictions.

What ``ser compare`` and the report's statistics read: the per-utterance test
predictions ``ser classify`` (and ``ser finetune``) store beside the results,
never features or models, so they cost seconds. The statistics themselves are
:mod:`ssl_ser.classify.compare`.

Two report cells (all folds of one extractor, setting, layer, pooling and
classifier) are paired on the test utterances both predicted, matched by fold,
corpus and utterance id. Resampling is within speakers where the predictions
store them (``speaker`` column, written since ssl-ser stores it); older
predictions are resampled within their test fold instead, and the output says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ssl_ser.classify import compare
from ssl_ser.errors import ConfigError
from ssl_ser.report import tables
from ssl_ser.report.load import CELL, Results

KEY: tuple[str, ...] = ("fold", "corpus", "utt_id")
SPEAKER_STRATA = "speakers"
FOLD_STRATA = "test fold (speakers not stored with these predictions)"
# Short names a researcher may type in a selector, and the cell column each means.
ALIASES: dict[str, str] = {"model": "extractor", "clf": "classifier"}
BREAKDOWNS: tuple[str, ...] = ("speaker", "gender", "corpus")
# Naming a column in a selector frees these too (a fine-tune's setup comes with its classifier).
IMPLIED: dict[str, tuple[str, ...]] = {"classifier": ("finetune_setup",)}


@dataclass
class Aligned:
    """Cells' predictions on their shared test utterances, as class indices."""

    classes: list[str]
    true: np.ndarray
    preds: np.ndarray
    strata: np.ndarray
    folds: np.ndarray
    frame: pd.DataFrame
    strata_kind: str
    dropped: list[int] = field(default_factory=list)


def align(results: Results, cells: Sequence[pd.Series], classes: Sequence[str] = ()) -> Aligned:
    """The predictions of `cells` on the utterances all of them predicted.

    Raises:
        ConfigError: a cell has no stored predictions (or no utterance ids), the
            cells share no utterance, or they disagree on an utterance's label.
    """
    frames = [_predictions_of(results, cell) for cell in cells]
    joined = frames[0][[*KEY, "true", "pred", *_who(frames[0])]].rename(columns={"pred": "pred0"})
    for i, frame in enumerate(frames[1:], start=1):
        other = frame[[*KEY, "true", "pred"]].rename(columns={"true": "true_b", "pred": f"pred{i}"})
        joined = joined.merge(other, on=list(KEY), how="inner")
        wrong = joined["true"] != joined["true_b"]
        if wrong.any():
            utt = joined.loc[wrong].iloc[0]
            raise ConfigError(
                f"utterance {utt['utt_id']} (fold {utt['fold']}) is labelled {utt['true']} in "
                f"{label(cells[0])} but {utt['true_b']} in {label(cells[i])}; cells scored on "
                "other label sets cannot be paired"
            )
        joined = joined.drop(columns="true_b")
    if joined.empty:
        raise ConfigError(
            f"{label(cells[0])} and {label(cells[-1])} share no test utterance (matched by "
            "fold, corpus and utterance id); only cells tested on the same utterances pair"
        )
    names = list(classes) or sorted({*joined["true"], *(v for f in frames for v in f["pred"])})
    index = {name: i for i, name in enumerate(names)}
    encoded = joined[["true", *(f"pred{i}" for i in range(len(frames)))]].map(
        lambda v: index.get(v, -1)
    )
    if (encoded.to_numpy() < 0).any():
        raise ConfigError(f"predictions hold labels outside the classes {names}")
    kind, strata = _strata(joined)
    return Aligned(
        classes=names,
        true=encoded["true"].to_numpy(),
        preds=encoded.drop(columns="true").to_numpy().T.copy(),
        strata=compare.strata_codes(strata),
        folds=joined["fold"].to_numpy(),
        frame=joined,
        strata_kind=kind,
        dropped=[len(f) - len(joined) for f in frames],
    )


def _predictions_of(results: Results, cell: pd.Series) -> pd.DataFrame:
    rows = tables.cell_predictions(results.table, results.predictions, cell)
    if rows.empty:
        raise ConfigError(f"{label(cell)} has no stored predictions; paired statistics need them")
    missing = [c for c in KEY if c not in rows.columns]
    if missing:
        raise ConfigError(
            f"the predictions of {label(cell)} lack column(s) {', '.join(missing)}; paired "
            "statistics match utterances by fold, corpus and utterance id"
        )
    repeated = rows.duplicated(subset=list(KEY))
    if repeated.any():
        utt = rows.loc[repeated].iloc[0]
        raise ConfigError(
            f"{label(cell)} predicts utterance {utt['utt_id']} twice in fold {utt['fold']}; "
            "its predictions cannot be paired"
        )
    return rows


def _who(frame: pd.DataFrame) -> list[str]:
    return [c for c in ("speaker", "gender") if c in frame.columns]


def _strata(joined: pd.DataFrame) -> tuple[str, np.ndarray]:
    """Speakers where every row names one, else the test fold, as the resampling strata."""
    if "speaker" in joined.columns and (joined["speaker"].astype(str) != "").all():
        return SPEAKER_STRATA, joined["speaker"].astype(str).to_numpy()
    return FOLD_STRATA, (joined["corpus"] + "|" + joined["fold"]).to_numpy()


def label(cell: pd.Series) -> str:
    """``wav2vec2-base layer 3 · mean · logreg · emodb clean`` (what a message names).

    Cells of another target than emotion (``--control``, ``--target speaker``) say
    so, else their lines read like the emotion cells'.
    """
    return (
        f"{cell['extractor']} layer {cell['layer']} · {cell['pooling']} · {cell['classifier']}"
        f" · {tables.setting_label(cell)}{_target(cell)}"
    )


def _target(cell: pd.Series) -> str:
    """`` · target speaker`` for cells of another target than emotion, else nothing."""
    value = str(cell.get("target", "emotion"))
    return "" if value in ("emotion", "", "nan") else f" · target {value}"


# --- selecting cells ---------------------------------------------------------------


def parse_selector(text: str) -> dict[str, str]:
    """``layer=3,classifier=logreg`` -> {"layer": "3", "classifier": "logreg"}.

    Raises:
        ConfigError: a part is not ``key=value`` or names no cell column.
    """
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = ALIASES.get(key.strip(), key.strip())
        if not sep or key not in CELL:
            raise ConfigError(
                f"selector part {part!r} is not KEY=VALUE with KEY one of "
                f"{', '.join([*CELL, *ALIASES])}"
            )
        out[key] = value.strip()
    return out


def matching(cells: pd.DataFrame, selector: Mapping[str, str]) -> pd.DataFrame:
    """The cells whose columns equal every value of `selector` (extractors also by last part)."""
    keep = pd.Series(True, index=cells.index)
    for key, value in selector.items():
        column = cells[key].astype(str)
        same = column == value
        if key == "extractor":
            same |= column.str.rsplit("/", n=1).str[-1] == value
        keep &= same
    return cells[keep]


def select_pairs(
    cells: pd.DataFrame,
    a: Mapping[str, str],
    b: Mapping[str, str],
    where: Mapping[str, str] | None = None,
) -> list[tuple[pd.Series, pd.Series]]:
    """Pairs (A, B): A matches `a`, B matches `b`, and they agree on every column neither names.

    Raises:
        ConfigError: a selector matches no cell, or no A and B agree elsewhere.
    """
    pool = matching(cells, where or {})
    side_a, side_b = matching(pool, a), matching(pool, b)
    for name, selector, side in (("--a", a, side_a), ("--b", b, side_b)):
        if side.empty:
            shown = ", ".join(f"{k}={v}" for k, v in selector.items()) or "(nothing)"
            raise ConfigError(f"{name} {shown} matches no cell{_choices(pool, selector)}")
    named = {*a, *b}
    named |= {implied for key in named for implied in IMPLIED.get(key, ())}
    free = [c for c in CELL if c not in named]
    merged = side_a.reset_index(drop=True).merge(
        side_b.reset_index(drop=True), on=free, suffixes=("_a", "_b")
    )
    pairs = []
    for _, row in merged.iterrows():
        first = _side(row, "_a", free)
        second = _side(row, "_b", free)
        if not all(str(first[c]) == str(second[c]) for c in CELL):
            pairs.append((first, second))
    if not pairs:
        raise ConfigError(
            "no cell matching --a agrees with a cell matching --b on every other column ("
            + ", ".join(free)
            + "); name the columns that differ in both selectors"
        )
    return pairs


def _side(row: pd.Series, suffix: str, free: Sequence[str]) -> pd.Series:
    values = {c: row[c] if c in free else row[f"{c}{suffix}"] for c in CELL}
    return pd.Series(values)


def _choices(cells: pd.DataFrame, selector: Mapping[str, str]) -> str:
    parts = [
        f"{key}: {', '.join(sorted(cells[key].astype(str).unique())[:12])}"
        for key in selector
        if key in cells.columns
    ]
    return "; values found: " + "; ".join(parts) if parts else ""


# --- the numbers -----------------------------------------------------------------


def compare_pairs(
    results: Results,
    pairs: Sequence[tuple[pd.Series, pd.Series]],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """One row per pair: UAs, ΔUA with its interval, permutation and fold-level p-values."""
    rows = []
    for a, b in pairs:
        aligned = align(results, [a, b], results.classes)
        k = len(aligned.classes)
        found = compare.paired_bootstrap(
            aligned.true, aligned.preds[0], aligned.preds[1], aligned.strata, k,
            n_boot=n_boot, seed=seed,
        )  # fmt: skip
        folds = compare.per_fold_ua(aligned.true, aligned.preds, aligned.folds, k)
        rows.append(
            {
                "a": label(a),
                "b": label(b),
                **dict(zip(("shared", "what_a", "what_b"), describe_pair(a, b), strict=True)),
                "n": found.n,
                "folds": len(folds),
                "ua_a": found.ua_a,
                "ua_b": found.ua_b,
                "delta": found.delta,
                "low": found.low,
                "high": found.high,
                "p": found.p,
                "p_folds": compare.sign_flip_test(folds[:, 0] - folds[:, 1], seed=seed),
                "distinguishable": bool(found.p < alpha),
                "resampled_within": aligned.strata_kind,
                "unpaired_a": aligned.dropped[0],
                "unpaired_b": aligned.dropped[1],
            }
        )
    frame = pd.DataFrame(rows)
    frame.insert(frame.columns.get_loc("p_folds"), "p_holm", compare.holm(frame["p"]))
    return frame


LINE: tuple[str, ...] = tuple(c for c in CELL if c != "layer")


def layer_lines(cells: pd.DataFrame) -> list[pd.DataFrame]:
    """Cells of one line (every column but the layer equal), at 2+ numbered layers, by layer."""
    numbered = cells[cells["layer"].astype(str).str.fullmatch(r"\d+")]
    out = []
    for _, line in numbered.groupby(list(LINE), sort=True, dropna=False):
        if len(line) > 1:
            out.append(
                line.assign(_i=line["layer"].astype(int)).sort_values("_i").drop(columns="_i")
            )
    return out


def layers_versus_best(
    results: Results,
    line: pd.DataFrame,
    classes: Sequence[str] = (),
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Per layer of one line: pooled UA, difference to the best with tests, share of resamples best.

    Raises:
        ConfigError: as :func:`align` (no predictions, nothing shared).
    """
    layers = [row for _, row in line.iterrows()]
    aligned = align(results, layers, classes or results.classes)
    found = compare.versus_best(
        aligned.true, aligned.preds, aligned.strata, aligned.folds, len(aligned.classes),
        n_boot=n_boot, seed=seed, alpha=alpha,
    )  # fmt: skip
    return pd.DataFrame(
        {
            "layer": [str(row["layer"]) for row in layers],
            "ua": found.ua,
            "best": [i == found.best for i in range(len(layers))],
            "delta": [c.delta for c in found.comparisons],
            "low": [c.low for c in found.comparisons],
            "high": [c.high for c in found.comparisons],
            "p": [c.p for c in found.comparisons],
            "p_holm": found.p_holm,
            "p_folds": found.p_folds,
            "share_best": found.shares,
            "indistinguishable": found.indistinguishable,
            "n": len(aligned.true),
            "resampled_within": aligned.strata_kind,
        }
    )


def breakdown(
    results: Results,
    cell: pd.Series,
    classes: Sequence[str] = (),
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """UA of one cell per speaker, gender and corpus (those stored and with 2+ values).

    Columns: ``by``, ``group``, ``n``, ``ua``, ``low``, ``high``; empty when the
    cell's predictions store no such column.
    """
    try:
        aligned = align(results, [cell], classes or results.classes)
    except ConfigError:
        return pd.DataFrame(columns=["by", "group", "n", "ua", "low", "high"])
    frame, rows = aligned.frame, []
    for by in BREAKDOWNS:
        if by not in frame.columns or frame[by].astype(str).eq("").any() or frame[by].nunique() < 2:
            continue
        for group, n, ua, low, high in compare.group_intervals(
            aligned.true, aligned.preds[0], frame[by].astype(str).to_numpy(), aligned.strata,
            len(aligned.classes), n_boot=n_boot, seed=seed,
        ):  # fmt: skip
            rows.append({"by": by, "group": group, "n": n, "ua": ua, "low": low, "high": high})
    return pd.DataFrame(rows, columns=["by", "group", "n", "ua", "low", "high"])


def worst_served(table: pd.DataFrame) -> str:
    """``worst-served gender F (UA 48.0%, 95% CI 40.1–55.2, 120 utterances), speaker ...``."""
    parts = []
    for by in ("gender", "corpus", "speaker"):
        rows = table[table["by"] == by]
        if rows.empty:
            continue
        worst = rows.loc[rows["ua"].idxmin()]
        parts.append(
            f"{by} {worst['group']} (UA {tables.percent(worst['ua'])}%, 95% CI "
            f"{tables.interval(worst['low'], worst['high'])}, {int(worst['n'])} utterances)"
        )
    return "worst-served " + ", ".join(parts) if parts else ""


# --- ser compare -----------------------------------------------------------------


@dataclass
class Compared:
    """What ``ser compare`` prints (text) and may write (one tidy frame)."""

    text: str
    frame: pd.DataFrame


def run_compare(
    folders: Sequence[str | Path],
    side_a: str | None,
    side_b: str | None,
    where: str = "",
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> Compared:
    """Pairs of cells (``--a``/``--b``), or every layer against its line's best.

    Raises:
        ConfigError: unreadable folders, selectors matching nothing, cells without
            stored predictions or without shared utterances.
    """
    from ssl_ser.report.load import load_results

    results = load_results(list(folders))
    cells = matching(tables.cell_summary(results.table), parse_selector(where))
    if side_a is not None and side_b is not None:
        pairs = select_pairs(cells, parse_selector(side_a), parse_selector(side_b))
        frame = compare_pairs(results, pairs, n_boot=n_boot, seed=seed, alpha=alpha)
        return Compared(pairs_text(frame, alpha), frame)
    lines = layer_lines(cells)
    if not lines:
        raise ConfigError(
            "no line of two or more numbered layers matches "
            f"{where or 'the results'}; give --a and --b to compare other cells"
        )
    frames, blocks = [], []
    for line in lines:
        found = layers_versus_best(results, line, n_boot=n_boot, seed=seed, alpha=alpha)
        name = label(line.iloc[0]).split(" · ", 1)[1]
        title = f"{line.iloc[0]['extractor']} · {name} (layers {', '.join(found['layer'])})"
        blocks.append(f"{title}\n{layers_text(found, alpha)}")
        frames.append(found.assign(**{c: line.iloc[0][c] for c in LINE}))
    return Compared("\n\n".join(blocks), pd.concat(frames, ignore_index=True))


def _p(value: float) -> str:
    return "—" if pd.isna(value) else ("<0.001" if value < 0.001 else f"{value:.3f}")


def _delta(row: pd.Series) -> str:
    ci = "" if pd.isna(row["low"]) else f" [{100 * row['low']:+.1f}, {100 * row['high']:+.1f}]"
    return f"{100 * row['delta']:+.1f}{ci}"


def pairs_text(frame: pd.DataFrame, alpha: float) -> str:
    """Each pair as two lines: what differs, then the numbers and how to read them."""
    blocks = []
    for _, row in frame.iterrows():
        verdict = "distinguishable" if row["distinguishable"] else "not distinguishable"
        blocks.append(
            f"{row['shared']}: {row['what_a']} vs {row['what_b']}\n"
            f"  {row['n']} shared utterances, {row['folds']} folds: UA "
            f"{tables.percent(row['ua_a'])}% vs {tables.percent(row['ua_b'])}%, difference "
            f"{_delta(row)} points (95% CI); p {_p(row['p'])} (paired permutation over "
            f"utterances), p {_p(row['p_folds'])} (sign-flip over folds): {verdict} at {alpha:g}"
            + _unpaired(row)
        )
    note = (
        "CI: paired percentile bootstrap, utterances resampled within "
        f"{frame['resampled_within'].iloc[0]}."
    )
    if len(frame) > 1:
        note += (
            f" {len(frame)} pairs: each p is uncorrected; where they answer one question, use "
            "the Holm-adjusted p_holm (written with -o): "
            + ", ".join(_p(v) for v in frame["p_holm"])
            + "."
        )
    return "\n".join(blocks) + "\n" + note


def _unpaired(row: pd.Series) -> str:
    """A note on utterances only one cell predicted (other folds or corpora), if any."""
    if not row["unpaired_a"] and not row["unpaired_b"]:
        return ""
    return (
        f"\n  left out, no partner in the other cell: {row['unpaired_a']} utterance(s) of A, "
        f"{row['unpaired_b']} of B"
    )


def describe_pair(a: pd.Series, b: pd.Series) -> tuple[str, str, str]:
    """(what the cells share, what A is, what B is): ``layer 1``, ``layer 3``."""
    differ = [c for c in CELL if str(a[c]) != str(b[c])]
    what = [" · ".join(f"{c} {cell[c]}" for c in differ) for cell in (a, b)]
    parts = {
        ("extractor",): str(a["extractor"]),
        ("layer",): f"layer {a['layer']}",
        ("pooling",): str(a["pooling"]),
        ("classifier",): str(a["classifier"]),
        ("train_corpus", "train_condition", "test_corpus", "test_condition"): (
            tables.setting_label(a)
        ),
        ("split",): f"{a['split']} split",
        ("target",): _target(a).removeprefix(" · "),
    }
    common = " · ".join(
        text for keys, text in parts.items() if text and not set(keys) & set(differ)
    )
    return common, what[0], what[1]


def layers_text(found: pd.DataFrame, alpha: float) -> str:
    """One line's layers against its best as text."""
    shown = pd.DataFrame(
        {
            "layer": found["layer"],
            "UA %": found["ua"].map(tables.percent),
            "best-layer points [95% CI]": found.apply(_delta, axis=1).where(~found["best"], "best"),
            "p": found["p"].map(_p),
            "p Holm": found["p_holm"].map(_p),
            "p folds": found["p_folds"].map(_p),
            "share best %": found["share_best"].map(lambda v: f"{100 * v:.1f}"),
            f"≈ best at {alpha:g}": found["indistinguishable"].map({True: "yes", False: "no"}),
        }
    )
    return shown.to_string(index=False)
