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
# ssl_ser.classify.sweep.plan.BACKENDS (deprecated: --dask replaces --backend)
BACKEND_NAMES: tuple[str, ...] = ("local", "dask")
# ssl_ser.classify.measures.REQUESTED_TARGETS
TARGET_NAMES: tuple[str, ...] = ("emotion", "speaker")
# ssl_ser.classify.features.COMBINES and POOLING_OPTIONS
COMBINE_NAMES: tuple[str, ...] = ("each", "concat", "mean")
POOLING_NAMES: tuple[str, ...] = ("auto", "mean", "std", "mean+std")
