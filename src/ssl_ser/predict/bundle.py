"""Probe bundles: a classifier over one layer choice of a model's pooled features, saved safely.

A bundle folder holds ``bundle.json`` (the extractor configuration and the
cache key its features came from, the label set and classes, the layer(s),
pooling and combination, the classifier and its parameters, how the layer was
chosen, and the versions of the libraries that fitted it) and the fitted
scikit-learn pipeline (scaler and classifier) as ``probe.skops``. For the
xgboost classifiers the scaler is in ``probe.skops`` and the booster in its own
JSON format (``booster.json``). Nothing is unpickled on load: skops refuses
every type outside :data:`TRUSTED_TYPES`, naming it.

On new audio the bundle runs the extraction backbone (the same masked, batched
forward and pooling as ``ser extract``), rounds the pooled vectors to the
cache's storage dtype, as the classifier saw them in training, and classifies.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ssl_ser.classify.measures import full_proba
from ssl_ser.errors import ConfigError
from ssl_ser.extract.preprocess import Segment
from ssl_ser.predict import integrity
from ssl_ser.predict.predictor import Predictor
from ssl_ser.versions import library_versions, warn_other_majors

log = logging.getLogger(__name__)

BUNDLE_FILE = "bundle.json"
ESTIMATOR_FILE = "probe.skops"
BOOSTER_FILE = "booster.json"
BUNDLE_KIND = "probe"
# Classifiers a bundle holds as one skops pipeline, and those whose booster goes to JSON.
SKOPS_CLASSIFIERS: tuple[str, ...] = ("logreg", "rf", "knn")
XGBOOST_CLASSIFIERS: tuple[str, ...] = ("xgb", "xgb-fast")
# Torch heads: the scaler in skops, the head's weights in safetensors, its settings in JSON.
TORCH_CLASSIFIERS: tuple[str, ...] = ("linear", "mlp")
HEAD_FILE = "head.safetensors"
SAVABLE: tuple[str, ...] = (*SKOPS_CLASSIFIERS, *XGBOOST_CLASSIFIERS, *TORCH_CLASSIFIERS)
# What each output column means: recorded in the seal and checked against bundle.json on load.
OUTPUT_FIELDS: tuple[str, ...] = (
    "classes",
    "label_set",
    "layers",
    "combine",
    "pooling",
    "classifier",
    "n_features",
    "storage_dtype",
)
# Types besides skops' defaults that these pipelines hold; any other type is refused.
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.tree._tree.Tree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "ssl_ser.classify.registry.LowRankProjection",
)


def check_savable(classifier: str) -> None:
    """Refuse classifiers a bundle cannot hold (yet), before any fitting."""
    if classifier not in SAVABLE:
        raise ConfigError(
            f"classifier {classifier!r} cannot be saved as a probe bundle (the SVMs give no "
            f"probabilities; mlp-weighted takes all layers); use one of: {', '.join(SAVABLE)}"
        )


def save(folder: str | Path, pipeline: Any, description: Mapping[str, Any]) -> Path:
    """Write a fitted pipeline and its description as a sealed bundle folder; returns the folder.

    The folder is written whole into a temporary sibling, sealed
    (:func:`ssl_ser.predict.integrity.seal`, last) and renamed into place.

    Raises:
        ConfigError: a classifier a bundle cannot hold, or `folder` holds other files.
    """
    classifier = description["classifier"]
    check_savable(classifier)
    folder = Path(folder)
    with integrity.fresh_folder(folder) as saving:
        extra = _save_estimator(saving, pipeline, classifier)
        content = {"kind": BUNDLE_KIND, **description, **extra, "versions": library_versions()}
        (saving / BUNDLE_FILE).write_text(json.dumps(content, indent=1, default=str))
        outputs = {k: content[k] for k in OUTPUT_FIELDS if k in content}
        integrity.seal(saving, BUNDLE_KIND, outputs, description.get("audio", {}))
    return folder


def _save_estimator(folder: Path, pipeline: Any, classifier: str) -> dict[str, Any]:
    """Write the fitted pipeline (skops, and the booster or torch head); what bundle.json adds."""
    import skops.io as sio

    if classifier in XGBOOST_CLASSIFIERS:
        sio.dump(pipeline[:-1], folder / ESTIMATOR_FILE)
        head = pipeline[-1]
        head.booster_.save_model(folder / BOOSTER_FILE)
        return {
            "xgb_classes": [int(c) for c in head.classes_],
            "xgb_features": int(head.n_features_in_),
        }
    if classifier in TORCH_CLASSIFIERS:
        sio.dump(pipeline[:-1], folder / ESTIMATOR_FILE)
        return {"torch_head": _save_torch_head(pipeline[-1], folder / HEAD_FILE)}
    sio.dump(pipeline, folder / ESTIMATOR_FILE)
    return {}


def is_probe(folder: Path) -> bool:
    """Whether `folder` looks like a probe bundle (loading checks that it is one, intact)."""
    return (folder / BUNDLE_FILE).is_file()


def load_estimator(folder: Path, description: Mapping[str, Any]) -> Any:
    """The fitted pipeline of a bundle, refusing untrusted types; warns on other versions."""
    import skops.io as sio

    path = folder / ESTIMATOR_FILE
    untrusted = [t for t in sio.get_untrusted_types(file=path) if t not in TRUSTED_TYPES]
    if untrusted:
        raise ConfigError(
            f"{path} holds type(s) a probe bundle never contains: {', '.join(untrusted)}; "
            "refused (loading them could run code). Export the probe again with ssl-ser"
        )
    estimator = sio.load(path, trusted=list(TRUSTED_TYPES))
    warn_other_majors(folder, description.get("versions", {}))
    if description["classifier"] in XGBOOST_CLASSIFIERS:
        estimator = _with_booster(estimator, folder, description)
    if description["classifier"] in TORCH_CLASSIFIERS:
        estimator = _with_torch_head(estimator, folder / HEAD_FILE, description["torch_head"])
    return estimator


def _save_torch_head(head: Any, path: Path) -> dict[str, Any]:
    """Write a fitted torch head's weights (safetensors); returns what rebuilds it."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in head.model_.state_dict().items()}
    save_file(state, str(path))
    params = head.get_params()
    params["hidden_layer_sizes"] = [int(v) for v in params["hidden_layer_sizes"]]
    return {
        "params": params,
        "classes": [int(c) for c in head.classes_],
        "n_features": int(head.n_features_in_),
    }


def _with_torch_head(scaler: Any, path: Path, saved: Mapping[str, Any]) -> Any:
    """The scaler pipeline with the torch head rebuilt from its settings and weights."""
    from safetensors.torch import load_file
    from sklearn.pipeline import Pipeline

    from ssl_ser.classify.heads import StackedMLP
    from ssl_ser.classify.mlp import MLPClassifier

    params = dict(saved["params"])
    params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    head = MLPClassifier(**params)
    head.classes_ = np.array(saved["classes"])
    head.n_features_in_ = int(saved["n_features"])
    seed = 0 if head.random_state is None else int(head.random_state)
    hidden = head.hidden_layer_sizes
    head.model_ = StackedMLP(
        1, head.n_features_in_, hidden, len(head.classes_), head.dropout, [seed]
    )
    head.model_.load_state_dict(load_file(str(path)))
    return Pipeline([*scaler.steps, ("clf", head)])


def _with_booster(scaler: Any, folder: Path, description: Mapping[str, Any]) -> Any:
    """The scaler pipeline with the xgboost head rebuilt from its JSON model."""
    from sklearn.pipeline import Pipeline
    from xgboost import XGBClassifier

    from ssl_ser.classify.registry import HistXGB

    head = HistXGB()
    head.booster_ = XGBClassifier()
    head.booster_.load_model(folder / BOOSTER_FILE)
    head.classes_ = np.array(description["xgb_classes"])
    head.n_features_in_ = int(description["xgb_features"])
    return Pipeline([*scaler.steps, ("clf", head)])


class ProbePredictor(Predictor):
    """Extraction backbone + the bundle's layer choice + its fitted classifier."""

    def __init__(
        self, folder: str | Path, device: str = "auto", seal: integrity.Seal | None = None
    ):
        from ssl_ser.extract.backbones import load_backbone
        from ssl_ser.extract.config import ExtractorConfig

        folder = Path(folder)
        seal = seal or integrity.verify(folder)
        self.description = _description_of(folder, seal)
        self.reading = dict(seal.audio)
        with integrity.loading(folder):
            self.estimator = load_estimator(folder, self.description)
        self.classes = tuple(self.description["classes"])
        _check_estimator(self.estimator, self.description, folder)
        config = ExtractorConfig.from_dict(self.description["extractor_config"])
        self.backbone = load_backbone(config, device)
        _check_revision(self.backbone.identity, self.description["cache_key"], folder)
        self.preprocessor = self.backbone.preprocessor
        self.layers = [str(i) for i in range(self.backbone.states)]
        self.check_reading(folder)

    def features(self, utterances: Sequence[Sequence[Segment]]) -> np.ndarray:
        """The classifier's input rows, as a cache would have stored them."""
        segments = [segment for utterance in utterances for segment in utterance]
        return self.features_of(self.backbone.run(segments), [len(u) for u in utterances])

    def features_of(self, segment_stats: Any, segments_per_utterance: Sequence[int]) -> np.ndarray:
        """The classifier's input rows from the backbone's per-segment statistics."""
        from ssl_ser.classify.features import FeatureBlocks, FeatureSpec
        from ssl_ser.extract.pooling import finalize
        from ssl_ser.extract.runner import utterance_stats

        stats = utterance_stats(segment_stats, segments_per_utterance)
        poolings = list(dict.fromkeys(self.description["pooling"].split("+")))
        stored = np.dtype(self.description["storage_dtype"])
        pooled = finalize(stats, poolings)
        blocks = {p: pooled[p].astype(stored).astype(np.float32).transpose(1, 0, 2) for p in pooled}
        spec = FeatureSpec(
            tuple(self.description["layers"]),
            self.description["combine"],
            self.description["pooling"],
        )
        return FeatureBlocks(self.layers, blocks).matrix(spec)

    def probabilities(self, utterances: Sequence[Sequence[Segment]]) -> np.ndarray:
        """Class probabilities, one column per class of the label set (0 for unseen ones)."""
        return self.classify(self.features(utterances))

    def classify(self, x: np.ndarray) -> np.ndarray:
        """Probabilities of feature rows `x`, columns in the bundle's class order."""
        raw = self.estimator.predict_proba(x)
        return full_proba(raw, self.estimator.classes_, len(self.classes))


def _description_of(folder: Path, seal: integrity.Seal) -> dict[str, Any]:
    """bundle.json of a verified bundle, checked against the seal's output meaning."""
    path = folder / BUNDLE_FILE
    if seal.kind != BUNDLE_KIND or not path.is_file():
        raise ConfigError(f"{folder} is a saved {seal.kind} model, not a probe bundle")
    description = json.loads(path.read_text())
    integrity.check_outputs(seal, description, path, OUTPUT_FIELDS)
    return description


def _check_estimator(estimator: Any, description: Mapping[str, Any], folder: Path) -> None:
    """Refuse a classifier whose outputs or inputs are not those bundle.json describes."""
    classes = np.asarray(estimator.classes_)
    n_classes = len(description["classes"])
    if classes.size and (classes.min() < 0 or classes.max() >= n_classes):
        raise ConfigError(
            f"{folder}: the classifier outputs class indices {classes.tolist()}, but "
            f"{BUNDLE_FILE} names {n_classes} classes {description['classes']}; refused"
        )
    expected = description.get("n_features")
    found = getattr(estimator, "n_features_in_", expected)
    if expected is not None and int(found) != int(expected):
        raise ConfigError(
            f"{folder}: the classifier takes {found} features, but {BUNDLE_FILE} describes "
            f"{expected}; refused"
        )


def _check_revision(identity: Mapping[str, Any], key: Mapping[str, Any], folder: Path) -> None:
    """Refuse a model whose weights are not those the probe's features came from."""
    if str(identity.get("revision")) != str(key.get("revision")):
        raise ConfigError(
            f"{folder}: the probe was fitted on features of {key.get('model')} at revision "
            f"{key.get('revision')}, but the model loads at revision {identity.get('revision')}; "
            "its predictions would not be the probe's"
        )
