"""The fine-tune recipe: cut backbones, seeded time masks, two learning rates, standardised head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssl_ser.errors import ConfigError
from ssl_ser.finetune import train
from ssl_ser.finetune.config import FinetuneConfig
from ssl_ser.finetune.distributed import World
from ssl_ser.finetune.model import build_model, time_mask, transformer_layers

from . import test_model as shared
from .test_model import WHISPER, config_of, utterances

model_dirs = shared.model_dirs  # the tiny models and 3-file corpus of test_model (fixtures)
corpus = shared.corpus

FAMILIES = ("wav2vec2-group", "wav2vec2-layer", "wavlm", "data2vec-audio", *WHISPER)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("layer", [0, 1, 2])  # 2: the top, nothing cut
def test_a_cut_backbone_computes_the_full_models_states_up_to_its_layer(
    model_dirs, corpus, family, layer
):
    full, _ = build_model(config_of(model_dirs, family, weighted_layers=True), 3, "cpu", 0)
    cut, _ = build_model(config_of(model_dirs, family, head_layer=layer), 3, "cpu", 0)
    assert len(transformer_layers(full.encoder)) == 2
    assert len(transformer_layers(cut.encoder)) == max(layer, 1)  # layers above are gone
    _, segments = utterances(full, corpus)
    with torch.no_grad():
        expected = full.eval().pooled(segments)[layer]
        (actual,) = cut.eval().pooled(segments)
    np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_a_layer_beyond_the_model_is_refused_by_name(model_dirs):
    with pytest.raises(ConfigError, match=r"head_layer=3 but the model has 3 hidden states"):
        build_model(config_of(model_dirs, "wav2vec2-group", head_layer=3), 3, "cpu", 0)


def test_top_layers_beyond_a_cut_backbone_are_refused_naming_the_cut(model_dirs):
    config = config_of(model_dirs, "wav2vec2-group", head_layer=1, freeze="top", top_layers=2)
    with pytest.raises(
        ConfigError, match=r"has 1 transformer layers below head_layer=1 \(the layers above"
    ):
        build_model(config, 3, "cpu", 0)


def test_time_masks_follow_the_seed_alone_and_stay_within_each_row():
    valid = [50, 23, 8]
    first = time_mask(valid, 60, seed=7, prob=0.2, length=5)
    assert np.array_equal(first, time_mask(valid, 60, seed=7, prob=0.2, length=5))
    assert not np.array_equal(first, time_mask(valid, 60, seed=8, prob=0.2, length=5))
    for row, frames in enumerate(valid):
        assert not first[row, frames:].any()  # never in the padding
        assert first[row].sum() >= 5 * 1  # at least one span of 5 frames
    # prob * frames / length spans on average (stochastic rounding), as transformers draws them
    many = [time_mask([1000], 1000, seed=s, prob=0.3, length=10)[0] for s in range(20)]
    starts = np.mean([np.sum(np.diff(m.astype(int)) == 1) + m[0] for m in many])
    assert 20 <= starts <= 30  # 30 spans drawn, overlapping ones merge


@pytest.mark.parametrize("family", ["wav2vec2-group", "whisper"])
def test_training_forward_masks_time_from_the_micro_batch_seed(model_dirs, corpus, family):
    config = config_of(model_dirs, family, mask_time_prob=0.5, mask_time_length=2)
    model, _ = build_model(config, 3, "cpu", 0)
    _, segments = utterances(model, corpus)
    model.train()

    def pooled(seed):
        model.mask_seed = seed
        torch.manual_seed(0)  # the same dropout each time
        with torch.no_grad():
            return model.pooled(segments).numpy()

    unmasked, masked, again, other = pooled(None), pooled(1), pooled(1), pooled(2)
    assert np.array_equal(masked, again)
    assert not np.allclose(masked, unmasked) and not np.allclose(masked, other)


@pytest.mark.parametrize("family", ["wav2vec2-group", "whisper"])
def test_evaluation_never_masks_time_even_with_a_seed_left_set(model_dirs, corpus, family):
    config = config_of(model_dirs, family, mask_time_prob=0.5, mask_time_length=2)
    model, _ = build_model(config, 3, "cpu", 0)
    _, segments = utterances(model, corpus)
    model.eval()

    def pooled(seed):
        model.mask_seed = seed
        with torch.no_grad():
            return model.pooled(segments).numpy()

    unmasked = pooled(None)
    assert np.array_equal(pooled(1), unmasked)  # validation and test rows are never masked


def test_head_and_backbone_train_at_their_own_learning_rates(model_dirs):
    rates = {"learning_rate": 2e-5, "head_learning_rate": 3e-3}
    config = config_of(model_dirs, "wav2vec2-group", weighted_layers=True, **rates)
    model, _ = build_model(config, 3, "cpu", 0)
    trainer = train.Trainer(model, config, None, 0, World())
    groups = {g["lr"]: {id(p) for p in g["params"]} for g in trainer.optimizer.param_groups}
    head = {id(p) for p in (*model.head.parameters(), model.layer_logits)}
    backbone = {id(p) for p in model.encoder.parameters() if p.requires_grad}
    assert groups == {2e-5: backbone, 3e-3: head}
    frozen = config_of(model_dirs, "wav2vec2-group", freeze="base", weighted_layers=False)
    model, _ = build_model(frozen, 3, "cpu", 0)
    trainer = train.Trainer(model, frozen, None, 0, World())
    (group,) = trainer.optimizer.param_groups  # head only
    assert group["lr"] == frozen.head_learning_rate


def test_the_head_standardises_its_input_with_the_statistics_it_is_given(model_dirs, corpus):
    config = config_of(model_dirs, "hubert", head_layer=1)
    model, _ = build_model(config, 3, "cpu", 0)
    _, segments = utterances(model, corpus)
    model.eval()
    with torch.no_grad():
        pooled = model.pooled(segments)
        mean, scale = pooled[0].mean(0).numpy(), pooled[0].std(0).numpy() + 0.5
        model.scaler.set(mean[None], scale[None])
        logits = model.logits(pooled)
        expected = model.head((pooled[0] - torch.from_numpy(mean)) / torch.from_numpy(scale))
    np.testing.assert_allclose(logits.numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"init": "probe", "head_layer": 2, "head": "mlp"}, ["head 'mlp'", "use head 'linear'"]),
        ({"head_layer": -1}, ["head_layer -1", ">= 0"]),
        ({"epochs": 0}, ["epochs 0", "probe"]),
        ({"head_learning_rate": 0}, ["head_learning_rate 0", "positive"]),
        ({"mask_time_prob": 1.0}, ["mask_time_prob 1.0", "[0, 1)"]),
        ({"init": "warm"}, ["warm"]),
    ],
)
def test_bad_recipe_settings_are_refused_by_name(fields, words):
    with pytest.raises((ConfigError, ValueError)) as caught:
        FinetuneConfig(model="m", **fields)
    for word in words:
        assert word in str(caught.value)


def test_a_head_started_from_a_float16_cache_probe_reads_float16_rounded_input():
    from ssl_ser.finetune.model import Standardiser

    pooled = torch.randn(1, 5, 8, dtype=torch.float32) * 3
    scaler = Standardiser(1, 8, "float16")
    scaler.set(np.full((1, 8), 0.25), np.full((1, 8), 2.0))
    rounded = torch.from_numpy(pooled.numpy().astype(np.float16).astype(np.float32))
    assert torch.equal(scaler(pooled), (rounded - 0.25) / 2.0)
    assert not torch.equal(Standardiser(1, 8)(pooled), rounded)  # float32: no rounding
    pooled.requires_grad_(True)
    scaler(pooled).sum().backward()  # the cast passes gradients through
    np.testing.assert_allclose(pooled.grad.numpy(), 0.5)


def test_a_frozen_backbone_trains_its_head_on_its_eval_mode_features(model_dirs, corpus):
    config = config_of(model_dirs, "wav2vec2-group", freeze="base", head_layer=1)
    model, _ = build_model(config, 3, "cpu", 0)
    audio, segments = utterances(model, corpus)
    trainer = train.Trainer(model, config, audio, 0, World())
    keys = [(utt_id, "clean") for utt_id in corpus["utt_id"]]
    features = train.pooled_features(trainer, keys)
    trainer.use_frozen_features(features, keys)
    model.train()  # dropout and masks would apply to a backbone run in training mode
    with torch.no_grad():
        cached = trainer.logits(keys[::-1])
        expected = model.eval()(segments[::-1])
    np.testing.assert_allclose(cached.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_the_recipe_flags_say_what_they_do_and_where_their_defaults_come_from():
    from click.testing import CliRunner

    from ssl_ser.cli.main import cli

    result = CliRunner().invoke(cli, ["finetune", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if "  --" in line}
    assert "Wav2Vec2Config default" in lines["--mask-time-prob"]
    assert "[default: 0.05]" in lines["--mask-time-prob"]
    assert "Default: the --from-probe layer" in lines["--head-layer"]
    assert "as the torch probes" in lines["--head-lr"] and "[default: 0.001]" in lines["--head-lr"]
