"""The names of the classify registries, without importing them (they pull scikit-learn).

Commands and settings list these as their choices; a test checks that each tuple
equals its registry's names in order, so the two cannot drift.
"""

from __future__ import annotations

# ssl_ser.classify.registry.CLASSIFIERS
CLASSIFIER_NAMES: tuple[str, ...] = (
    "logreg",
    "svm-linear",
    "svm-rbf",
    "rf",
    "xgb",
    "xgb-fast",
    "knn",
    "linear",
    "mlp",
    "mlp-weighted",
)
# ssl_ser.classify.splits.SPLITS
SPLIT_NAMES: tuple[str, ...] = (
    "preset",
    "random",
    "speaker",
    "speaker-kfold",
    "loso",
    "cross-corpus",
    "few-shot",
)
