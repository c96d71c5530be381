"""Extractor config round trips and digests; batch planning and long-audio windows."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssl_ser.errors import ConfigError, UnknownChoiceError
from ssl_ser.extract.batching import pad_stack, plan_batches, segment_seconds, split_long
from ssl_ser.extract.config import ExtractorConfig

CONFIGS = [
    ExtractorConfig(model="facebook/wav2vec2-base"),
    ExtractorConfig(model="openai/whisper-small", revision="main", whisper_trim=True),
    ExtractorConfig(model="/models/wavlm", dtype="bfloat16", poolings=("std",), max_seconds=20),
    ExtractorConfig(model="mfcc", n_mels=64, n_mfcc=30, long_audio="crop", max_seconds=8.0),
    ExtractorConfig.for_model("egemaps"),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.model)
def test_every_config_round_trips_through_json(config):
    data = json.loads(json.dumps(config.to_dict()))
    again = ExtractorConfig.from_dict(data)
    assert again == config and again.digest() == config.digest() and hash(again) == hash(config)


def test_digest_changes_with_every_field_and_slug_is_readable():
    base = ExtractorConfig(model="facebook/wav2vec2-base")
    changes = {
        "revision": "abc",
        "dtype": "bfloat16",
        "poolings": ("mean",),
        "sample_rate": 8000,
        "max_seconds": 10.0,
        "long_audio": "crop",
        "whisper_trim": True,
        "n_mels": 64,
        "n_mfcc": 13,
    }
    assert set(changes) | {"model"} == {f.name for f in dataclasses.fields(ExtractorConfig)}
    digests = {dataclasses.replace(base, **{k: v}).digest() for k, v in changes.items()}
    assert len(digests | {base.digest()}) == len(changes) + 1
    assert base.slug() == f"wav2vec2-base-{base.digest()[:10]}"
    assert ExtractorConfig(model="/tmp/my model/").slug().startswith("my-model-")


@pytest.mark.parametrize(
    ("fields", "error", "words"),
    [
        ({"dtype": "float64"}, UnknownChoiceError, "float32"),
        ({"poolings": ("max",)}, UnknownChoiceError, "mean"),
        ({"poolings": ()}, ConfigError, "non-empty"),
        ({"long_audio": "split"}, UnknownChoiceError, "window"),
        ({"max_seconds": 0}, ConfigError, "positive"),
        ({"n_mfcc": 50, "n_mels": 40}, ConfigError, "n_mels=40"),
        ({"model": "mfcc", "dtype": "bfloat16"}, ConfigError, "float32"),
    ],
)
def test_bad_config_values_are_named(fields, error, words):
    with pytest.raises(error, match=words):
        ExtractorConfig(**{"model": "x", **fields})


def test_from_dict_refuses_unknown_fields():
    with pytest.raises(UnknownChoiceError, match="batch_seconds"):
        ExtractorConfig.from_dict({"model": "x", "batch_seconds": 3})


@given(
    st.lists(st.floats(0.1, 20.0), max_size=60),
    st.floats(0.5, 60.0),
)
def test_batch_plan_covers_every_item_once_within_budget(costs, budget):
    batches = plan_batches(costs, budget)
    assert sorted(i for batch in batches for i in batch) == list(range(len(costs)))
    for batch in batches:
        longest = max(costs[i] for i in batch)
        assert len(batch) == 1 or len(batch) * longest <= budget
        assert min(costs[i] for i in batch) >= 0.8 * longest
    firsts = [costs[batch[0]] for batch in batches]
    assert firsts == sorted(firsts, reverse=True)  # longest batches first


def test_batch_plan_refuses_a_non_positive_budget():
    with pytest.raises(ConfigError, match="batch seconds"):
        plan_batches([1.0], 0)


@given(st.integers(1, 50_000), st.floats(0.05, 2.0), st.sampled_from(["window", "crop"]))
def test_long_audio_pieces(samples, max_seconds, policy):
    wave = np.arange(samples, dtype=np.float32)
    pieces = split_long(wave, 8000, max_seconds, policy)
    limit = int(np.floor(max_seconds * 8000))
    assert all(0 < p.size <= max(limit, 1) for p in pieces)
    if policy == "window":
        np.testing.assert_array_equal(np.concatenate(pieces), wave)
        assert max(p.size for p in pieces) - min(p.size for p in pieces) <= 1
    else:
        assert len(pieces) == 1 and pieces[0][0] == 0
    predicted = segment_seconds(samples / 8000, 8000, max_seconds, policy)
    assert len(predicted) == len(pieces)
    assert sum(predicted) == pytest.approx(sum(p.size for p in pieces) / 8000)


def test_no_limit_keeps_the_whole_wave():
    wave = np.ones(100, dtype=np.float32)
    assert split_long(wave, 16000, None, "window")[0] is wave


def test_pad_stack_pads_the_last_axis():
    batch, lengths = pad_stack([np.ones((2, 3)), np.ones((2, 5))], value=-1)
    assert batch.shape == (2, 2, 5) and lengths.tolist() == [3, 5]
    assert (batch[0, :, 3:] == -1).all() and (batch[1] == 1).all()
