"""Issue 8: the untrained badge comes from what the model is, not from its folder's name."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ssl_ser.report.load import normalise

from .conftest import Spec, build


def _tiny_model(folder: Path, *, marked: bool) -> Path:
    """A tiny random wav2vec2 saved like the demo saves its model (with or without the marker)."""
    import torch
    import transformers

    from ssl_ser.extract.backbones import write_random_weights_marker

    config = transformers.Wav2Vec2Config(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8, 8),
        conv_kernel=(10, 3),
        conv_stride=(5, 4),
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
    )
    torch.manual_seed(0)
    transformers.Wav2Vec2Model(config).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor().save_pretrained(folder)
    if marked:
        write_random_weights_marker(folder, seed=0)
    return folder


def test_the_cache_key_records_random_weights_whatever_the_folder_is_called(tmp_path) -> None:
    from ssl_ser.extract.backbones import load_backbone
    from ssl_ser.extract.config import ExtractorConfig
    from ssl_ser.extract.runner import cache_key

    mine = _tiny_model(tmp_path / "mymodel", marked=True)
    tuned = _tiny_model(tmp_path / "random-forest-tuned", marked=False)
    keys = {}
    for folder in (mine, tuned):
        config = ExtractorConfig(model=str(folder))
        keys[folder.name] = cache_key(
            load_backbone(config, "cpu").identity, config, "clean", "derived"
        )
    assert keys["mymodel"]["revision"].startswith("untrained:local:")
    assert keys["random-forest-tuned"]["revision"].startswith("local:")

    # the report reads the flag from the recorded key, never from the name
    table, _ = build(Spec(conditions=False, cross=False, ssl=False, predictions=False))
    rows = []
    for name, key in keys.items():
        model = str(tmp_path / name)
        rows.append(table.assign(extractor=model, cache_keys=json.dumps([key])))
    flags = normalise(pd.concat(rows, ignore_index=True)).groupby("extractor")["untrained"].all()
    assert flags.to_dict() == {str(mine): True, str(tuned): False}


def test_names_alone_no_longer_flag_or_hide_an_untrained_model() -> None:
    table, _ = build(Spec(conditions=False, cross=False, ssl=False, predictions=False))
    named = table.assign(
        extractor="/models/untrained-wav2vec2",
        cache_keys=json.dumps([{"model": "/models/untrained-wav2vec2", "revision": "local:1"}]),
    )
    explicit = table.assign(extractor="/models/plain", untrained=True)
    out = normalise(pd.concat([named, explicit], ignore_index=True))
    assert not out.loc[out["extractor"] == "/models/untrained-wav2vec2", "untrained"].any()
    assert out.loc[out["extractor"] == "/models/plain", "untrained"].all()


def test_the_demo_model_is_marked(tmp_path) -> None:
    from ssl_ser.extract.backbones import RANDOM_WEIGHTS_MARKER, has_random_weights
    from ssl_ser.pipelines.demo import build_model

    folder = build_model(tmp_path / "anything")
    assert has_random_weights(str(folder))
    # a demo folder from before the marker existed gets it, its weights unchanged
    (folder / RANDOM_WEIGHTS_MARKER).unlink()
    weights = (folder / "model.safetensors").read_bytes()
    build_model(folder)
    assert has_random_weights(str(folder))
    assert (folder / "model.safetensors").read_bytes() == weights
