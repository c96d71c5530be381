"""Tiny randomly initialised models of every supported family, saved to folders.

Tests and benchmarks load them back by path through the same code path a hub
id takes (``transformers`` Auto classes); each folder carries the toolkit's
random-weights marker.
"""

from __future__ import annotations

from pathlib import Path

COMMON = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": (16, 16, 16),
    "conv_kernel": (10, 3, 3),
    "conv_stride": (5, 4, 4),
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
}
CODEBOOK = {"num_codevector_groups": 2, "codevector_dim": 8, "proj_codevector_dim": 8}

# name -> (config class name, extra config fields, feature extractor fields)
FAMILIES: dict[str, tuple[str, dict, dict]] = {
    "wav2vec2-group": (
        "Wav2Vec2Config",
        {"feat_extract_norm": "group", "do_stable_layer_norm": False},
        {"do_normalize": False, "return_attention_mask": False},
    ),
    "wav2vec2-layer": (
        "Wav2Vec2Config",
        {"feat_extract_norm": "layer", "do_stable_layer_norm": True},
        {"do_normalize": True, "return_attention_mask": True},
    ),
    "hubert": ("HubertConfig", {"feat_extract_norm": "group"}, {"do_normalize": False}),
    "wavlm": (
        "WavLMConfig",
        {"feat_extract_norm": "group", "num_buckets": 8, "max_bucket_distance": 20},
        {"do_normalize": False},
    ),
    "unispeech": (
        "UniSpeechConfig",
        {"feat_extract_norm": "group", **CODEBOOK},
        {"do_normalize": False},
    ),
    "unispeech-sat": (
        "UniSpeechSatConfig",
        {"feat_extract_norm": "layer", "do_stable_layer_norm": True, **CODEBOOK},
        {"do_normalize": True, "return_attention_mask": True},
    ),
    "data2vec-audio": (
        "Data2VecAudioConfig",
        {"conv_pos_kernel_size": 5, "num_conv_pos_embeddings": 5},
        {"do_normalize": True, "return_attention_mask": True},
    ),
}
WAVEFORM_FAMILIES = tuple(FAMILIES)


def save_waveform_model(family: str, folder: Path, seed: int = 0) -> Path:
    """Build, randomly initialise and save a tiny model of a wav2vec2-like family (marked)."""
    import torch
    import transformers

    from ssl_ser.extract.backbones import write_random_weights_marker

    config_name, extra, extractor_fields = FAMILIES[family]
    config = getattr(transformers, config_name)(**{**COMMON, **extra})
    torch.manual_seed(seed)
    transformers.AutoModel.from_config(config).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(**extractor_fields).save_pretrained(folder)
    write_random_weights_marker(folder, seed)
    return folder


def save_whisper_model(folder: Path, seed: int = 0) -> Path:
    """A tiny Whisper (encoder of 2 layers, width 32) with its feature extractor."""
    import torch
    import transformers

    from ssl_ser.extract.backbones import write_random_weights_marker

    config = transformers.WhisperConfig(
        d_model=32,
        encoder_layers=2,
        encoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=64,
        num_mel_bins=80,
        vocab_size=100,
        max_source_positions=1500,
        max_target_positions=32,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
        suppress_tokens=None,
        begin_suppress_tokens=None,
    )
    torch.manual_seed(seed)
    transformers.AutoModel.from_config(config).save_pretrained(folder)
    transformers.WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    write_random_weights_marker(folder, seed)
    return folder
