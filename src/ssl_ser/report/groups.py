"""Comparable groups: cells whose numbers mean the same thing, reported side by side.

A number's meaning depends on more than the model: the label set (4-class UA
is not 7-class UA), the split (speaker-independent or not, in-corpus or
cross-corpus), speaker z-normalisation (it uses the test speakers' own
statistics), a hyperparameter search, and the seed of the folds. Cells that
differ in any of :data:`~ssl_ser.report.load.GROUP` are put in different
groups, and every table, figure, matrix, curve and headline of the report
holds one group only and names it.

Pooling is different: it belongs to an extractor's features (a classic
baseline pooled with mean+std may stand beside an SSL model pooled with the
mean). Within a group every row, line and matrix panel names its pooling, and
no line or matrix panel mixes two poolings of one extractor.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from ssl_ser.report.document import HeadingItem, Item
from ssl_ser.report.load import GROUP, SPEAKER_INDEPENDENT


@dataclass(frozen=True)
class Group:
    """One comparable group of cells.

    Attributes:
        values: the group's value of every :data:`GROUP` column (as text).
        classes: the classes its cells were scored on.
        label: the full description shown on its headings.
        short: a compact description for figure titles.
        tag: a file-name-safe name, unique within the report.
    """

    values: tuple[tuple[str, str], ...]
    classes: tuple[str, ...]
    label: str
    short: str
    tag: str

    def value(self, column: str) -> str:
        """The group's value of one :data:`GROUP` column."""
        return dict(self.values)[column]

    def mask(self, frame: pd.DataFrame) -> pd.Series:
        """Rows of `frame` (cells or result rows) that belong to this group."""
        return _mask(frame, self.values)

    @property
    def n_classes(self) -> int:
        """Number of classes (0 when the results record none)."""
        return len(self.classes)


def find_groups(cells: pd.DataFrame, table: pd.DataFrame, classes: Sequence[str]) -> list[Group]:
    """The comparable groups of `cells`, in report order.

    Speaker-independent splits come first, then in-corpus before cross-corpus
    splits, then by split name, label set, speaker norm, search and seed.

    Args:
        cells: the per-cell summary (:func:`ssl_ser.report.tables.cell_summary`).
        table: the result rows (for the classes each group was scored on).
        classes: every class of the results, in table order.
    """
    from ssl_ser.report.tables import is_cross_corpus

    keys = list(GROUP)
    varying = [c for c in keys if cells[c].nunique() > 1]
    found = []
    for values, rows in cells.groupby(keys, sort=True):
        pairs = tuple(zip(keys, map(str, values), strict=True))
        group_rows = table[_mask(table, pairs)]
        mine = tuple(
            c
            for c in classes
            if f"recall_{c}" in group_rows.columns and group_rows[f"recall_{c}"].notna().any()
        )
        order = (
            (rows["split_type"] != SPEAKER_INDEPENDENT).mean() > 0.5,
            is_cross_corpus(rows).mean() > 0.5,
            *(str(v) for v in values),
        )
        found.append((order, _group(dict(pairs), mine, varying)))
    return [group for _, group in sorted(found, key=lambda item: item[0])]


def _mask(frame: pd.DataFrame, pairs: tuple[tuple[str, str], ...]) -> pd.Series:
    keep = pd.Series(True, index=frame.index)
    for column, value in pairs:
        keep &= frame[column].astype(str) == value
    return keep


def _group(values: dict[str, str], classes: tuple[str, ...], varying: Sequence[str]) -> Group:
    labels = values["labels"] or "label set not recorded"
    listed = ", ".join(classes)
    if classes and labels.replace(" ", "") != ",".join(classes):
        labels = f"{labels}: {listed}"
    count = f"{len(classes)} classes ({labels})" if classes else labels
    norm = "speaker z-norm" if values["speaker_norm"] == "True" else "no speaker norm"
    search = "hyperparameter search" if values["search"] == "True" else "no search"
    seed = f" · seed {values['seed']}" if "seed" in varying and values["seed"] else ""
    shots = _shots(values.get("shots", ""))
    split = f"{values['split']} split{shots}"
    label = f"{count} · {split} · {norm} · {search}{seed}"
    short_labels = values["labels"] or f"{len(classes)} classes"
    short = f"{short_labels} · {split} · {norm} · {search}{seed}"
    parts = [values["split"]]
    if "labels" in varying:
        parts.append(values["labels"] or "labels")
    if "speaker_norm" in varying:
        parts.append("norm" if values["speaker_norm"] == "True" else "no-norm")
    if "search" in varying:
        parts.append("search" if values["search"] == "True" else "no-search")
    if "seed" in varying:
        parts.append(f"seed-{values['seed']}")
    if "shots" in varying and shots:
        parts.append(f"shots-{shots_number(values['shots'])}")
    tag = slug("-".join(parts))
    return Group(tuple(values.items()), classes, label, short, tag)


def shots_number(value: object) -> str:
    """``5.0`` or ``5`` -> ``5``; '' (or None, NaN) for cells that are not few-shot."""
    try:
        return str(int(float(value)))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""


def _shots(value: str) -> str:
    """`` (5 shots)`` for a few-shot cell, '' otherwise."""
    number = shots_number(value)
    return f" ({number} shots)" if number else ""


def slug(text: str) -> str:
    """A file-name-safe version of `text`: ``speaker-kfold`` -> ``speaker-kfold``."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "all"


@dataclass
class GroupNumbers:
    """The numbers of one comparable group: its cells, best cells (with intervals), top cell."""

    group: Group
    cells: pd.DataFrame
    best: pd.DataFrame
    top: pd.Series


def with_group_headings(
    numbers: Sequence[GroupNumbers], slots: Sequence[Sequence[Item]]
) -> list[Item]:
    """Each group's items after a heading naming the group (no heading for a lone group)."""
    out: list[Item] = []
    for n, items in zip(numbers, slots, strict=True):
        if items and len(numbers) > 1:
            out.append(HeadingItem(n.group.label))
        out.extend(items)
    return out
