import pandas as pd
import pytest

from ssl_ser.classify.features import InMemoryFeatures
from ssl_ser.testing.synthetic import synthetic_features, synthetic_manifest

BASIC4 = ("angry", "happy", "sad", "neutral")
SMALL_MLP = {"hidden_layer_sizes": (16,), "max_epochs": 40, "patience": 5}
SMALL_LINEAR = {"max_epochs": 40, "patience": 5}


def corpus(name: str, n_utts=240, n_speakers=8, emotions=BASIC4, seed=0, condition="clean"):
    """A synthetic corpus: manifest and 4-layer, 12-dim features (mean and std)."""
    table = synthetic_manifest(n_utts, n_speakers, emotions, corpus=name, seed=seed)
    key = {"model": "tiny-model", "condition": condition, "config_digest": "abc123"}
    features = synthetic_features(table, 4, 12, seed=seed, key=key)
    return table, features


def relabel(features: InMemoryFeatures, **key) -> InMemoryFeatures:
    """The same features under another key (another condition or model)."""
    return InMemoryFeatures(features.ids, features.layers, features.arrays, {**features.key, **key})


@pytest.fixture(scope="module")
def alpha():
    return corpus("alpha")


@pytest.fixture(scope="module")
def alpha_beta():
    a_table, a_features = corpus("alpha", seed=0)
    b_table, b_features = corpus("beta", n_utts=200, emotions=(*BASIC4, "fear"), seed=1)
    return pd.concat([a_table, b_table], ignore_index=True), [a_features, b_features]
