"""Caches across upgrades: feature versions in the key, storage dtypes, conversions."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

import ssl_ser
from ssl_ser import cache
from ssl_ser.errors import CacheKeyMismatchError
from ssl_ser.extract import ExtractorConfig, classic, config, extract, runner

from .helpers import make_manifest


@pytest.fixture
def table(tmp_path):
    return make_manifest(tmp_path / "audio", [0.35, 0.5, 0.65])


def rewrite_key(path, change) -> None:
    """Edit the stored key of a cache file in place, as another release would have written it."""
    with h5py.File(path, "r+") as file:
        key = json.loads(file.attrs["key"])
        change(key)
        file.attrs["key"] = json.dumps(key, sort_keys=True)


def test_a_cache_of_another_toolkit_version_is_reused(table, tmp_path, model_dirs, monkeypatch):
    settings = ExtractorConfig(model=str(model_dirs["hubert"]))
    monkeypatch.setattr(ssl_ser, "__version__", "0.1.0")
    (first,) = extract(table.iloc[:2], settings, tmp_path / "c", workers=0)
    monkeypatch.setattr(ssl_ser, "__version__", "0.1.1")  # a patch release
    monkeypatch.setattr(runner, "__version__", "0.1.1", raising=False)
    (second,) = extract(table, settings, tmp_path / "c", workers=0)
    assert second.path == first.path
    assert (second.already_done, second.extracted) == (2, 1)
    with cache.open(second.path) as reader:
        assert "toolkit_version" not in reader.key and reader.key["feature_version"] == 1
        assert reader.toolkit_version == "0.1.0"  # the release that built the file


def test_an_ssl_cache_written_by_ssl_ser_0_1_0_is_reused(table, tmp_path, model_dirs, monkeypatch):
    settings = ExtractorConfig(model=str(model_dirs["hubert"]))
    (first,) = extract(table.iloc[:2], settings, tmp_path / "c", workers=0)
    with cache.open(first.path) as reader:
        before = reader.read_rows(reader.ids, "mean")

    def as_0_1_0(key: dict) -> None:
        key.pop("feature_version", None)
        key["toolkit_version"] = "0.1.0"

    rewrite_key(first.path, as_0_1_0)
    monkeypatch.setattr(runner, "__version__", "0.2.0", raising=False)
    (second,) = extract(table, settings, tmp_path / "c", workers=0)
    assert (second.already_done, second.extracted) == (2, 1)
    with cache.open(second.path) as reader:
        np.testing.assert_array_equal(reader.read_rows(table.utt_id[:2], "mean"), before)
    assert cache.info(second.path)["feature_version"] == 1


def test_another_feature_version_is_refused_naming_both(table, tmp_path, model_dirs, monkeypatch):
    settings = ExtractorConfig(model=str(model_dirs["hubert"]))
    (first,) = extract(table.iloc[:2], settings, tmp_path / "c", workers=0)
    with cache.open(first.path) as reader:
        key, layers, dim = reader.key, reader.layers, reader.shape[2]
    assert key["feature_version"] == config.FEATURE_VERSIONS["ssl"] == 1
    with pytest.raises(CacheKeyMismatchError, match="feature_version: stored 1, requested 2"):
        cache.CacheWriter(first.path, {**key, "feature_version": 2}, layers, dim)
    # a run of a release whose SSL numbers changed writes a new folder, beside the old one
    monkeypatch.setitem(config.FEATURE_VERSIONS, "ssl", 2)
    (second,) = extract(table.iloc[:2], settings, tmp_path / "c", workers=0)
    assert second.path != first.path and second.extracted == 2
    assert cache.open(first.path).key["feature_version"] == 1


def test_the_classic_version_bump_leaves_ssl_digests_alone():
    # digests of ssl-ser 0.1.0: SSL caches keep their folders, classic ones move
    assert ExtractorConfig(model="facebook/wav2vec2-base").digest().startswith("bd0549ef0643f551")
    wavlm = ExtractorConfig(model="microsoft/wavlm-large", dtype="float16", poolings=("mean",))
    assert wavlm.digest().startswith("7e2da90c24d50b85")
    assert not ExtractorConfig(model="mfcc").digest().startswith("4f8b432807373418")
    assert not ExtractorConfig.for_model("egemaps").digest().startswith("d31707dd7a23f78c")
    assert ExtractorConfig(model="mfcc").feature_version == config.FEATURE_VERSIONS["mel"]
    assert ExtractorConfig(model="logmel").feature_family == "mel"
    assert ExtractorConfig(model="x/y").feature_family == "ssl"


def test_classic_baselines_are_stored_as_float32_and_models_as_float16(table, tmp_path, model_dirs):
    for model, dtype in (("mfcc", "float32"), ("egemaps", "float32"), ("hubert", "float16")):
        name = str(model_dirs[model]) if model in model_dirs else model
        (summary,) = extract(table, ExtractorConfig.for_model(name), tmp_path / "c", workers=0)
        with cache.open(summary.path) as reader:
            assert reader.storage_dtype == dtype, model


def test_egemaps_values_beyond_float16_are_stored(table, tmp_path, monkeypatch):
    functionals = classic.egemaps

    def with_a_huge_value(wave, sample_rate):
        values = functionals(wave, sample_rate)
        values[7] = -85058.0  # an eGeMAPS stddevNorm seen on EmoDB
        return values

    monkeypatch.setattr(classic, "egemaps", with_a_huge_value)
    (summary,) = extract(table, ExtractorConfig.for_model("egemaps"), tmp_path / "c", workers=0)
    assert summary.extracted == 3
    with cache.open(summary.path) as reader:
        assert (reader.read_rows(reader.ids, "mean")[:, 0, 7] == -85058.0).all()


def test_auto_keeps_a_caches_dtype_and_an_explicit_one_converts_it(table, tmp_path):
    settings, folder = ExtractorConfig(model="mfcc"), tmp_path / "c"
    (first,) = extract(table.iloc[:2], settings, folder, storage_dtype="float16", workers=0)
    with cache.open(first.path) as reader:
        old = reader.read_rows(reader.ids, "std")
    (resumed,) = extract(table, settings, folder, workers=0)  # auto: the file's own float16
    assert (resumed.already_done, resumed.extracted) == (2, 1)
    assert cache.open(first.path).storage_dtype == "float16"
    (converted,) = extract(table, settings, folder, storage_dtype="float32", workers=0)
    assert (converted.already_done, converted.extracted) == (3, 0)
    with cache.open(first.path) as reader:
        assert reader.storage_dtype == "float32"
        np.testing.assert_array_equal(reader.read_rows(table.utt_id[:2], "std"), old)
    assert cache.verify(first.path) == []


def test_unknown_storage_dtype_is_refused_naming_the_choices(table, tmp_path):
    with pytest.raises(ssl_ser.errors.UnknownChoiceError, match="float64.*auto"):
        extract(table, ExtractorConfig(model="mfcc"), tmp_path / "c", storage_dtype="float64")
