"""The classifier registry: names -> scikit-learn pipelines with sensible defaults.

Every classifier is wrapped in a Pipeline whose first step is a StandardScaler,
so scaling statistics come from the training rows the pipeline is fit on and
nothing else. Each entry also lists a small search grid for ``--search`` and
whether a batched all-layer probe trains the same model (``linear``, ``mlp``).
Heavy libraries (torch, xgboost) are imported only when a pipeline is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ssl_ser.errors import ConfigError, UnknownChoiceError

Builder = Callable[[Mapping[str, Any], int, int], BaseEstimator]


@dataclass(frozen=True)
class ClassifierSpec:
    """A registered classifier: how to build it, its defaults and its search grid.

    Attributes:
        name: registry name (``logreg``...).
        description: one line for ``--help`` and reports.
        build: (params, seed, threads) -> the pipeline's steps after the scaler.
        defaults: default parameters (recorded in the results).
        grid: values tried by ``--search`` (on an inner split of training speakers).
        uses_groups: ``fit`` takes ``groups=`` (speakers) for an inner validation split.
        batched: the :class:`~ssl_ser.classify.batched.BatchedProbe` head that trains
            this same model for all layers at once, if any.
        per_layer: False for heads that take all layers at once (``mlp-weighted``).
    """

    name: str
    description: str
    build: Builder
    defaults: Mapping[str, Any] = field(default_factory=dict)
    grid: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    uses_groups: bool = False
    batched: str | None = None
    per_layer: bool = True


def _estimator(path: str, *, seeded: bool = True, threaded: bool = False, **fixed: Any) -> Builder:
    """A builder of the one estimator at dotted `path`, imported only when a pipeline is built."""
    module, name = path.rsplit(".", 1)

    def build(params: Mapping[str, Any], seed: int, threads: int) -> list:
        run = {"random_state": seed} if seeded else {}
        if threaded:
            run["n_jobs"] = threads
        estimator = getattr(importlib.import_module(module), name)
        return [("clf", estimator(**fixed, **run, **params))]

    return build


def _xgb(params: Mapping[str, Any], seed: int, threads: int) -> list:
    plain = {"early_stopping_rounds": None, "max_bin": 256, **params}
    return [("clf", HistXGB(random_state=seed, n_jobs=threads, **plain))]


def _xgb_fast(params: Mapping[str, Any], seed: int, threads: int) -> list:
    params = dict(params)
    components = params.pop("n_components")
    return [
        ("project", LowRankProjection(n_components=components, random_state=seed)),
        ("clf", HistXGB(random_state=seed, n_jobs=threads, **params)),
    ]


def _linear(params: Mapping[str, Any], seed: int, threads: int) -> list:
    from ssl_ser.classify.mlp import MLPClassifier

    if params.get("hidden_layer_sizes"):
        raise ConfigError(
            f"linear has no hidden layers (got hidden_layer_sizes={params['hidden_layer_sizes']}); "
            "use mlp for a hidden layer"
        )
    return [("clf", MLPClassifier(random_state=seed, **{**params, "hidden_layer_sizes": ()}))]


def _weighted(params: Mapping[str, Any], seed: int, threads: int) -> list:
    raise ConfigError(
        "mlp-weighted takes all layers at once and has no per-layer pipeline; "
        "use ssl_ser.classify.batched.WeightedLayerProbe"
    )


MLP_DEFAULTS: dict[str, Any] = {"hidden_layer_sizes": (256,), "dropout": 0.2, "lr": 1e-3}
# mlp since issue 20: larger minibatches and step, 3-5x fewer Adam steps and UA as good
# (benchmarks/classify_bench.py --parts mlp-sklearn). Being parameters, they change the
# cells' ids: cells of the former defaults are never read as cells of these.
MLP_FAST: dict[str, Any] = {**MLP_DEFAULTS, "lr": 3e-3, "batch_size": 256}

CLASSIFIERS: dict[str, ClassifierSpec] = {
    spec.name: spec
    for spec in (
        ClassifierSpec(
            "logreg",
            "multinomial logistic regression (L2, lbfgs)",
            _estimator("sklearn.linear_model.LogisticRegression", max_iter=2000),
            {"C": 1.0},
            {"C": [0.01, 0.1, 1.0, 10.0]},
        ),
        ClassifierSpec(
            "svm-linear",
            "linear SVM (liblinear)",
            _estimator("sklearn.svm.LinearSVC", max_iter=5000),
            {"C": 0.1},
            {"C": [0.01, 0.1, 1.0]},
        ),
        ClassifierSpec(
            "svm-rbf",
            "RBF-kernel SVM",
            _estimator("sklearn.svm.SVC", kernel="rbf"),
            {"C": 1.0, "gamma": "scale"},
            {"C": [0.1, 1.0, 10.0]},
        ),
        ClassifierSpec(
            "rf",
            "random forest",
            _estimator("sklearn.ensemble.RandomForestClassifier", threaded=True),
            {"n_estimators": 300, "max_features": "sqrt"},
            {"max_depth": [None, 20], "min_samples_leaf": [1, 5]},
        ),
        ClassifierSpec(
            "xgb",
            "gradient-boosted trees (xgboost, hist)",
            _xgb,
            {"n_estimators": 300, "learning_rate": 0.1, "max_depth": 6, "subsample": 0.8},
            {"max_depth": [4, 6], "learning_rate": [0.05, 0.1]},
        ),
        ClassifierSpec(
            "xgb-fast",
            "xgboost on a 128-d PCA projection, early stopping on training speakers",
            _xgb_fast,
            {
                "n_components": 128,
                "n_estimators": 400,
                "learning_rate": 0.15,
                "max_depth": 4,
                "max_bin": 64,
                "early_stopping_rounds": 20,
            },
            {"max_depth": [3, 4, 6]},
            uses_groups=True,
        ),
        ClassifierSpec(
            "knn",
            "k nearest neighbours (distance-weighted)",
            _estimator("sklearn.neighbors.KNeighborsClassifier", seeded=False, threaded=True),
            {"n_neighbors": 15, "weights": "distance"},
            {"n_neighbors": [5, 15, 45]},
        ),
        ClassifierSpec(
            "linear",
            "softmax-linear torch head, early stopping on training speakers",
            _linear,
            {"weight_decay": 1e-4, "lr": 1e-3},
            {"weight_decay": [1e-4, 1e-3, 1e-2]},
            uses_groups=True,
            batched="linear",
        ),
        ClassifierSpec(
            "mlp",
            "torch MLP head (ReLU, dropout, Adam), early stopping on training speakers",
            _estimator("ssl_ser.classify.mlp.MLPClassifier"),
            MLP_FAST,
            {"hidden_layer_sizes": [(128,), (256,)], "dropout": [0.1, 0.3]},
            uses_groups=True,
            batched="mlp",
        ),
        ClassifierSpec(
            "mlp-weighted",
            "SUPERB-style softmax-weighted sum of all layers into an MLP head",
            _weighted,
            MLP_DEFAULTS,
            {"hidden_layer_sizes": [(128,), (256,)], "dropout": [0.1, 0.3]},
            uses_groups=True,
            per_layer=False,
        ),
    )
}


def get(name: str) -> ClassifierSpec:
    """The registry entry called `name`."""
    if name not in CLASSIFIERS:
        raise UnknownChoiceError("classifier", name, CLASSIFIERS)
    return CLASSIFIERS[name]


def parse_classifiers(names: Sequence[str]) -> list[str]:
    """Classifier names, each checked against the registry; repeats dropped."""
    if not names:
        raise UnknownChoiceError("classifier", "", CLASSIFIERS)
    for name in names:
        get(name)
    return list(dict.fromkeys(names))


def build_pipeline(
    name: str, params: Mapping[str, Any] | None = None, *, seed: int = 0, threads: int = 1
) -> Pipeline:
    """The pipeline of classifier `name`: StandardScaler, then the classifier's steps.

    `params` override the registry defaults.
    """
    spec = get(name)
    merged = {**spec.defaults, **(params or {})}
    return Pipeline([("scale", StandardScaler()), *spec.build(merged, seed, threads)])


def fit_pipeline(
    pipeline: Pipeline, name: str, x: np.ndarray, y: np.ndarray, groups: np.ndarray | None
) -> Pipeline:
    """Fit, routing the speaker groups to classifiers that use them for validation."""
    if get(name).uses_groups and groups is not None:
        return pipeline.fit(x, y, clf__groups=groups)
    return pipeline.fit(x, y)


class LowRankProjection(TransformerMixin, BaseEstimator):
    """PCA onto at most `n_components` directions (fewer when the data has fewer)."""

    def __init__(self, n_components: int = 128, random_state: int = 0):
        self.n_components = n_components
        self.random_state = random_state

    def fit(self, X, y=None) -> LowRankProjection:  # noqa: N803 (scikit-learn naming)
        """Fit the principal directions of the training rows."""
        from sklearn.decomposition import PCA

        x = validate_data(self, X, dtype=[np.float64, np.float32])
        k = min(self.n_components, x.shape[0], x.shape[1])
        self.pca_ = PCA(n_components=k, random_state=self.random_state).fit(x)
        return self

    def transform(self, X) -> np.ndarray:  # noqa: N803
        """Coordinates of rows in the principal directions."""
        check_is_fitted(self)
        return self.pca_.transform(validate_data(self, X, reset=False))


class HistXGB(ClassifierMixin, BaseEstimator):
    """xgboost (hist) over any class labels, optionally early-stopped on training speakers.

    xgboost itself wants the codes 0..K-1, so a training fold that lacks a class
    (labels 0, 1, 3) stops a bare ``XGBClassifier``; here labels are encoded per fit,
    as scikit-learn's classifiers do, and ``classes_`` holds the labels seen. With
    ``early_stopping_rounds`` set, the validation speakers come from ``groups``
    passed to ``fit`` (whole speakers, as for the MLP) and the final model keeps the
    best round; with None, every round is kept and no rows are held out.
    """

    def __init__(
        self,
        n_estimators: int = 400,
        learning_rate: float = 0.15,
        max_depth: int = 4,
        max_bin: int = 64,
        subsample: float = 0.8,
        early_stopping_rounds: int | None = 20,
        validation_fraction: float = 0.15,
        n_jobs: int = 1,
        random_state: int = 0,
    ):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.max_bin = max_bin
        self.subsample = subsample
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X, y, groups=None) -> HistXGB:  # noqa: N803 (scikit-learn naming)
        """Fit, with early stopping on validation speakers drawn from `groups` if enabled."""
        from xgboost import XGBClassifier

        from ssl_ser.classify.mlp import validation_rows

        x, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        fraction = self.validation_fraction if self.early_stopping_rounds is not None else 0.0
        fit_rows, val_rows = validation_rows(codes, groups, fraction, self.random_state)
        has_val = len(val_rows) > 0 and len(np.unique(codes[fit_rows])) == len(self.classes_)
        self.booster_ = XGBClassifier(
            tree_method="hist",
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            max_depth=self.max_depth,
            max_bin=self.max_bin,
            subsample=self.subsample,
            early_stopping_rounds=self.early_stopping_rounds if has_val else None,
            n_jobs=self.n_jobs,
            random_state=self.random_state,
        )
        if has_val:
            self.booster_.fit(
                x[fit_rows],
                codes[fit_rows],
                eval_set=[(x[val_rows], codes[val_rows])],
                verbose=False,
            )
            self.best_iteration_ = int(self.booster_.best_iteration)
        else:
            self.booster_.fit(x, codes, verbose=False)
            self.best_iteration_ = self.n_estimators - 1
        return self

    def predict_proba(self, X) -> np.ndarray:  # noqa: N803
        """Class probabilities, columns in the order of ``classes_``."""
        check_is_fitted(self)
        x = validate_data(self, X, dtype=np.float32, reset=False)
        return self.booster_.predict_proba(x)

    def predict(self, X) -> np.ndarray:  # noqa: N803
        """Most probable class of each row."""
        probabilities = self.predict_proba(X)
        return self.classes_[np.argmax(probabilities, axis=1)]
