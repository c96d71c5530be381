import numpy as np
import pytest

from ssl_ser.classify.features import (
    FeatureSpec,
    InMemoryFeatures,
    feature_specs,
    load_blocks,
    parse_layers,
    parse_poolings,
    speaker_znorm,
)
from ssl_ser.errors import ConfigError, UnknownChoiceError

LAYERS = [str(i) for i in range(13)]


def test_parse_layers():
    assert parse_layers("all", LAYERS) == LAYERS
    assert parse_layers("0-6", LAYERS) == LAYERS[:7]
    assert parse_layers("3,6,9", LAYERS) == ["3", "6", "9"]
    assert parse_layers("0-2,12,1", LAYERS) == ["0", "1", "2", "12"]
    assert parse_layers("egemaps", ["egemaps"]) == ["egemaps"]
    with pytest.raises(UnknownChoiceError, match="unknown layer '13'.*expected one of all, 0, 1"):
        parse_layers("13", LAYERS)
    with pytest.raises(UnknownChoiceError, match="layer '30' in range '0-30'"):
        parse_layers("0-30", LAYERS)
    with pytest.raises(ConfigError):
        parse_layers(",", LAYERS)


def test_parse_poolings():
    assert parse_poolings("mean,mean+std", ["mean", "std"]) == ["mean", "mean+std"]
    with pytest.raises(UnknownChoiceError, match="unknown pooling 'max'"):
        parse_poolings("max", ["mean", "std"])
    with pytest.raises(UnknownChoiceError, match="unknown pooling 'std' in the features"):
        parse_poolings("mean+std", ["mean"])


def _source(n=30, layers=4, dim=5, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {p: rng.standard_normal((n, layers, dim)).astype(np.float32) for p in ("mean", "std")}
    return InMemoryFeatures([f"u{i}" for i in range(n)], [str(i) for i in range(layers)], arrays)


def test_blocks_read_each_layer_once_and_build_matrices():
    first, second = _source(seed=0), _source(n=20, seed=1)
    reads = []
    for source in (first, second):
        original = source.read
        source.read = lambda layer, pooling, _o=original: (
            reads.append((layer, pooling)) or _o(layer, pooling)
        )
    source_of_row = np.array([0] * 30 + [1] * 20)
    position = np.concatenate([np.arange(30)[::-1], np.arange(20)])
    blocks = load_blocks([first, second], source_of_row, position, ["1", "3"], ["mean+std"])
    assert sorted(reads) == sorted(
        [(layer, p) for layer in ("1", "3") for p in ("mean", "std")] * 2
    )
    expected_mean = np.concatenate([first.arrays["mean"][::-1, 1], second.arrays["mean"][:, 1]])
    expected_std = np.concatenate([first.arrays["std"][::-1, 1], second.arrays["std"][:, 1]])
    single = blocks.matrix(FeatureSpec(("1",), "each", "mean+std"))
    np.testing.assert_array_equal(single, np.concatenate([expected_mean, expected_std], axis=1))
    mean_of_layers = blocks.matrix(FeatureSpec(("1", "3"), "mean", "mean"))
    layer3 = np.concatenate([first.arrays["mean"][::-1, 3], second.arrays["mean"][:, 3]])
    np.testing.assert_allclose(mean_of_layers, (expected_mean + layer3) / 2, rtol=1e-6)
    concat = blocks.matrix(FeatureSpec(("1", "3"), "concat", "mean"))
    np.testing.assert_array_equal(concat, np.concatenate([expected_mean, layer3], axis=1))
    assert blocks.stack("mean").shape == (2, 50, 5)


def test_feature_specs_labels():
    specs = feature_specs(["0", "1", "2", "3"], "each", ["mean"])
    assert [s.label for s in specs] == ["0", "1", "2", "3"]
    (combined,) = feature_specs(["0", "1", "2", "3"], "mean", ["mean"])
    assert combined.label == "0-3:mean"
    (listed,) = feature_specs(["3", "6", "9"], "concat", ["std"])
    assert listed.label == "3,6,9:concat"
    with pytest.raises(UnknownChoiceError, match="layer combination"):
        feature_specs(["0"], "sum", ["mean"])


def test_speaker_znorm_uses_each_speakers_own_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(3, 40, 6)).astype(np.float32)
    groups = np.repeat(["a", "b"], 20)
    normed = speaker_znorm(x, groups)
    for g in ("a", "b"):
        part = normed[:, groups == g]
        np.testing.assert_allclose(part.mean(axis=1), 0, atol=1e-5)
        np.testing.assert_allclose(part.std(axis=1), 1, atol=1e-4)
    changed = x.copy()
    changed[:, groups == "b"] *= 10
    np.testing.assert_array_equal(speaker_znorm(changed, groups)[:, :20], normed[:, :20])
