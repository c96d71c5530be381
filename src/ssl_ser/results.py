"""The results table's schema: file names, grouping columns, special layers, cell ids.

Classify sweeps and fine-tune runs write results tables of one shape, and a
report is drawn from those tables alone, so the names they share live here:
the cell store's folders and table files, the columns a summary groups by, the
layer names that are not hidden-state numbers, the fine-tune's classifier name
and the cell id. This module imports neither torch nor scikit-learn.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

CELLS_DIR = "cells"
SUPERSEDED_DIR = "superseded"
DAMAGED_DIR = "damaged"
RESULTS_PARQUET = "results.parquet"
RESULTS_CSV = "results.csv"
PREDICTIONS_PARQUET = "predictions.parquet"
SUMMARY_CSV = "summary.csv"
GROUP_COLUMNS: tuple[str, ...] = (
    "extractor",
    "train_corpus",
    "train_condition",
    "test_corpus",
    "test_condition",
    "layer",
    "pooling",
    "classifier",
    "split",
    "labels",
    "speaker_norm",
    "search",
    "seed",
    "shots",
    "setting",
)
# Layer names that are not hidden-state numbers: the summary's layer chosen on
# validation speakers, a learned mix of every layer, a fine-tuned model's last state.
SELECTED_LAYER = "selected"
WEIGHTED_LAYER = "weighted"
LAST_STATE_LAYER = "all"
# The classifier name of fine-tuned models' cells (ssl_ser.finetune).
FINETUNE_CLASSIFIER = "finetune"


def cell_id(description: Mapping[str, Any]) -> str:
    """A stable 16-hex id of everything that determines a cell's result."""
    canonical = json.dumps(description, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
