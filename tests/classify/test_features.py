import numpy as np
import pytest

from ssl_ser.classify.features import (
    FeatureSpec,
    InMemoryFeatures,
    check_honoured,
    feature_specs,
    load_blocks,
    resolve_poolings,
    select_layers,
    speaker_znorm,
    stored_poolings,
)
from ssl_ser.errors import ConfigError, UnknownChoiceError

LAYERS = [str(i) for i in range(13)]


def test_parse_layers():
    assert select_layers("all", LAYERS) == LAYERS
    assert select_layers("0-6", LAYERS) == LAYERS[:7]
    assert select_layers("3,6,9", LAYERS) == ["3", "6", "9"]
    assert select_layers("0-2,12,1", LAYERS) == ["0", "1", "2", "12"]
    assert select_layers("egemaps", ["egemaps"]) == ["egemaps"]
    with pytest.raises(UnknownChoiceError, match="unknown layer '13'.*expected one of all, 0, 1"):
        select_layers("13", LAYERS)
    with pytest.raises(UnknownChoiceError, match="layer '30' in range '0-30'"):
        select_layers("0-30", LAYERS)
    with pytest.raises(ConfigError):
        select_layers(",", LAYERS)


BOTH = ("mean", "std")


@pytest.mark.parametrize(
    "model,stored,expected",
    [
        ("mfcc", BOTH, ("mean+std",)),
        ("logmel", BOTH, ("mean+std",)),
        ("egemaps", ("mean",), ("mean",)),  # its 88 functionals, stored as "mean"
        ("facebook/wav2vec2-base", BOTH, ("mean",)),
        ("/models/tiny-untrained", BOTH, ("mean",)),
    ],
)
def test_auto_pooling_resolves_per_extractor(model, stored, expected):
    choice = resolve_poolings("auto", model, stored)
    assert choice.poolings == expected
    assert choice.notes == () and choice.honoured == ()


def test_auto_pooling_of_an_mfcc_cache_without_std_uses_mean_and_says_so():
    choice = resolve_poolings("auto", "mfcc", ("mean",))
    assert choice.poolings == ("mean",)
    assert len(choice.notes) == 1 and "mfcc stores only 'mean'" in choice.notes[0]
    assert "'mean+std'" in choice.notes[0]


def test_explicit_pooling_is_kept_where_stored_and_replaced_where_it_is_the_only_option():
    mfcc = resolve_poolings("mean", "mfcc", BOTH)
    assert mfcc.poolings == ("mean",) and mfcc.honoured == ("mean",) and mfcc.notes == ()
    egemaps = resolve_poolings("mean+std", "egemaps", ("mean",))
    assert egemaps.poolings == ("mean",) and egemaps.honoured == ()
    assert egemaps.notes == (
        "egemaps stores only 'mean' (its 88 eGeMAPS functionals): pooling 'mean+std' does "
        "not apply, using 'mean'",
    )
    swept = resolve_poolings("mean,std,mean+std", "egemaps", ("mean",))
    assert swept.poolings == ("mean",) and swept.honoured == ("mean",) and len(swept.notes) == 2
    mixed = resolve_poolings("auto,mean", "mfcc", BOTH)
    assert mixed.poolings == ("mean+std", "mean")


def test_unknown_or_empty_pooling_is_refused_naming_the_choices():
    with pytest.raises(UnknownChoiceError, match="unknown pooling 'max'.*auto, mean, std, mean"):
        resolve_poolings("max", "mfcc", BOTH)
    with pytest.raises(ConfigError, match=r"poolings must be auto, mean, std, mean\+std or a list"):
        resolve_poolings(" , ", "mfcc", BOTH)


def test_an_explicit_pooling_no_extractor_stores_is_refused_naming_each():
    egemaps = resolve_poolings("std", "egemaps", ("mean",))
    with pytest.raises(ConfigError) as error:
        check_honoured([egemaps], "the sweep")
    message = str(error.value)
    assert "pooling 'std' is not stored for any extractor of the sweep" in message
    assert "egemaps stores 'mean' (its 88 eGeMAPS functionals)" in message
    assert "pooling auto" in message
    check_honoured([egemaps, resolve_poolings("std", "mfcc", BOTH)])  # mfcc honours it
    check_honoured([resolve_poolings("auto", "egemaps", ("mean",))])  # auto never refuses


def test_stored_poolings_are_those_every_source_holds():
    both = _source()
    mean_only = InMemoryFeatures(both.ids, both.layers, {"mean": both.arrays["mean"]})
    assert stored_poolings([both]) == BOTH
    assert stored_poolings([both, mean_only]) == ("mean",)


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
