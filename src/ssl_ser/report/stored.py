"""Results of a run that stopped early: its finished cells, read from ``cells/``, marked incomplete.

``ser classify`` and ``ser finetune`` store each finished cell (one fold) in
``cells/<cell id>.json`` and ``.parquet`` as soon as it is scored, and build
the results tables only when the run ends. A run that was interrupted leaves
finished cells without tables, or tables older than its cells (a resumed run
stopped again). The report then reads the cells themselves, which hold the
same rows and predictions the tables would, and says that the run is
incomplete: how many cells were read and which folds were still training
(``checkpoints/`` of ``ser finetune``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ssl_ser.results import CELLS_DIR

CHECKPOINTS_DIR = "checkpoints"  # ser finetune's folds in progress (ssl_ser.finetune.run)


def cell_files(folder: Path) -> list[Path]:
    """The finished cells stored in `folder` (superseded ones are not)."""
    cells = folder / CELLS_DIR
    return sorted(cells.glob("*.json")) if cells.is_dir() else []


def read_cells(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Result rows and predictions of every finished cell of `folder`, as the tables hold them."""
    rows: list[dict] = []
    predictions = []
    for path in cell_files(folder):
        rows += json.loads(path.read_text())
        table = path.with_suffix(".parquet")
        if table.exists():
            predictions.append(pd.read_parquet(table))
    frame = pd.DataFrame(rows)
    if "layer" in frame.columns:  # as read_table keeps them: text
        frame["layer"] = frame["layer"].astype(str)
    if "fold" in frame.columns:
        frame["fold"] = frame["fold"].astype(str)
    return frame, (pd.concat(predictions, ignore_index=True) if predictions else None)


def missing_from_table(folder: Path, table: pd.DataFrame) -> list[str]:
    """Ids of stored cells of `folder` that its results table lacks (the table is older)."""
    stored = [path.stem for path in cell_files(folder)]
    if not stored or "cell_id" not in table.columns:
        return []
    present = set(table["cell_id"].astype(str))
    return [cell for cell in stored if cell not in present]


def in_progress(folder: Path) -> list[str]:
    """Cell ids of ``ser finetune`` folds with checkpoints but no stored result."""
    checkpoints = folder / CHECKPOINTS_DIR
    if not checkpoints.is_dir():
        return []
    done = {path.stem for path in cell_files(folder)}
    return sorted(
        path.name
        for path in checkpoints.iterdir()
        if path.is_dir() and path.name not in done and any(path.glob("epoch-*"))
    )


def incomplete_text(folder: Path, rows: pd.DataFrame, why: str) -> str:
    """One sentence: which folder, why it is incomplete, what was read and what is missing."""
    folds = rows[["cell_id", "fold"]].drop_duplicates() if "cell_id" in rows.columns else rows
    running = in_progress(folder)
    training = f"; {len(running)} fold(s) were still training (checkpoints/)" if running else ""
    return (
        f"{folder} is incomplete ({why}): {len(folds)} finished cell(s), each one fold of "
        f"one setting, read from {folder / CELLS_DIR}{training}. Its numbers cover only "
        "those folds; run the command again to finish it."
    )
