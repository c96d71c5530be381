import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ssl_ser.classify.batched import BatchedProbe, WeightedLayerProbe
from ssl_ser.classify.mlp import MLPClassifier
from ssl_ser.errors import UnknownChoiceError
from ssl_ser.testing.synthetic import synthetic_features, synthetic_manifest


@pytest.fixture(scope="module")
def layers():
    table = synthetic_manifest(900, 15, seed=2)
    features = synthetic_features(table, 5, 32, poolings=("mean",), seed=2)
    x = features.arrays["mean"].transpose(1, 0, 2)  # (layers, rows, dim)
    speaker = table["speaker"].to_numpy()
    test = np.isin(speaker, np.unique(speaker)[:3])
    return x, table["emotion"].to_numpy(), speaker, ~test, test


@pytest.mark.slow
@pytest.mark.parametrize("head,hidden", [("linear", ()), ("mlp", (32,))])
def test_batched_probe_matches_per_layer_training(layers, head, hidden):
    x, y, groups, train, test = layers
    settings = {"hidden_layer_sizes": hidden, "dropout": 0.2, "max_epochs": 60, "random_state": 5}
    probe = BatchedProbe(head, **settings).fit(x[:, train], y[train], groups[train])
    batched = probe.predict(x[:, test])
    for layer in range(x.shape[0]):
        alone = make_pipeline(StandardScaler(), MLPClassifier(**settings))
        alone.fit(x[layer, train], y[train], mlpclassifier__groups=groups[train])
        single = alone.predict(x[layer, test])
        ua_batched = balanced_accuracy_score(y[test], batched[layer])
        ua_single = balanced_accuracy_score(y[test], single)
        assert abs(ua_batched - ua_single) <= 0.01, (layer, ua_batched, ua_single)
        assert probe.best_epoch_[layer] == alone[-1].best_epoch_
        assert probe.validation_ua_[layer] == pytest.approx(alone[-1].validation_ua_, abs=0.01)
    uas = [balanced_accuracy_score(y[test], p) for p in batched]
    assert int(np.argmax(uas)) in (2, 3)  # the synthetic signal peaks at 60% depth


@pytest.mark.slow
def test_weighted_head_puts_weight_on_informative_layers(layers):
    x, y, groups, train, test = layers
    probe = WeightedLayerProbe(hidden_layer_sizes=(32,), random_state=0).fit(
        x[:, train], y[train], groups[train]
    )
    weights = probe.layer_weights_
    assert weights.sum() == pytest.approx(1.0, abs=1e-5)
    assert weights[2] + weights[3] > weights[0] + weights[4]
    probabilities = probe.predict_proba(x[:, test])
    assert probabilities.shape == (test.sum(), len(probe.classes_))
    assert balanced_accuracy_score(y[test], probe.predict(x[:, test])) > 0.5


def test_unknown_head_is_named():
    with pytest.raises(UnknownChoiceError, match="unknown probe head 'cnn'.*linear, mlp"):
        BatchedProbe("cnn")
