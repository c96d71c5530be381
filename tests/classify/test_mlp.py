import numpy as np
import pytest
import torch
from sklearn.utils.estimator_checks import parametrize_with_checks

from ssl_ser.classify.mlp import MLPClassifier, validation_rows
from ssl_ser.testing.synthetic import synthetic_features, synthetic_manifest


@parametrize_with_checks([MLPClassifier(hidden_layer_sizes=(64,), max_epochs=20)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def data():
    table = synthetic_manifest(600, 12, seed=1)
    features = synthetic_features(table, 3, 24, poolings=("mean",), seed=1)
    x = features.arrays["mean"][:, 1]  # the informative middle layer
    return x, table["emotion"].to_numpy(), table["speaker"].to_numpy()


def test_learns_and_stops_early_on_validation_speakers(data):
    x, y, groups = data
    model = MLPClassifier(hidden_layer_sizes=(32,), max_epochs=200, patience=5).fit(x, y, groups)
    assert model.n_iter_ < 200  # stopped early
    assert model.n_iter_ == model.best_epoch_ + 5
    assert model.score(x, y) > 0.6
    assert 0 < model.validation_ua_ <= 1
    proba = model.predict_proba(x)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert list(model.classes_) == sorted(set(y))


def test_validation_rows_are_whole_training_speakers(data):
    _, y, groups = data
    codes = np.unique(y, return_inverse=True)[1]
    fit, val = validation_rows(codes, groups, 0.15, seed=0)
    assert len(val) > 0
    assert not set(groups[fit]) & set(groups[val])
    fit_rows, val_rows = validation_rows(codes[:8], groups[:8], 0.15, seed=0)
    assert len(val_rows) == 0 and len(fit_rows) == 8  # too small to hold out


def test_seeded_and_leaves_global_random_state_alone(data):
    x, y, groups = data
    torch.manual_seed(123)
    before = torch.get_rng_state()
    numpy_before = np.random.get_state()[1].copy()
    first = MLPClassifier(hidden_layer_sizes=(16,), max_epochs=5, random_state=3).fit(x, y, groups)
    second = MLPClassifier(hidden_layer_sizes=(16,), max_epochs=5, random_state=3).fit(x, y, groups)
    other = MLPClassifier(hidden_layer_sizes=(16,), max_epochs=5, random_state=4).fit(x, y, groups)
    assert torch.equal(torch.get_rng_state(), before)
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_before)
    np.testing.assert_array_equal(first.predict_proba(x), second.predict_proba(x))
    assert not np.allclose(first.predict_proba(x), other.predict_proba(x))


def test_mask_stream_equals_masks_drawn_batch_by_batch():
    """Chunked dropout masks are the ones a fresh draw per batch gives (same model)."""
    from ssl_ser.classify.heads import MaskStream

    stream = MaskStream(torch.Generator().manual_seed(5), 0.3)
    stream.CHUNK = 1000  # force refills across requests
    reference = torch.Generator().manual_seed(5)
    for rows in (128, 7, 300, 128):
        mask = stream.take(torch.Size((rows, 17)))
        expected = (torch.rand((rows, 17), generator=reference) < 0.7).to(torch.float32) / 0.7
        assert torch.equal(mask, expected)
