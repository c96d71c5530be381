"""The fine-tune model against independent computations: pooling, freezing, checkpoints, saving.

Every family's pooled states equal a plain ``transformers`` forward of each
utterance alone and the features extraction stores in its cache; the head reads
a softmax-weighted mix of them; exactly the parameters a freezing mode names
train and change; gradient checkpointing changes nothing but memory; a saved
model loads back with ``transformers``/``peft`` and gives the same logits.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import load_file
from torch.nn import functional

from ssl_ser import manifest
from ssl_ser.cache import CacheReader, cache_path
from ssl_ser.errors import ConfigError
from ssl_ser.extract.runner import extract
from ssl_ser.finetune import train
from ssl_ser.finetune.config import FinetuneConfig
from ssl_ser.finetune.data import Audio, load_audio
from ssl_ser.finetune.distributed import World
from ssl_ser.finetune.model import build_model, save_model
from ssl_ser.testing import write_wav, written_duration
from ssl_ser.testing.models import WAVEFORM_FAMILIES, save_waveform_model, save_whisper_model

RATE = 16000
# Utterance lengths; with MAX_SECONDS the last is cut into 3 equal windows. Every
# piece has an even number of 10 ms log-mel frames (30, 52, 42), so that Whisper's
# own encoder can run each trimmed piece alone (its input must be 2 x positions).
SECONDS = (0.3, 0.52, 1.25)
MAX_SECONDS = 0.5
WHISPER = ("whisper", "whisper-trim")
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    """Folders of every tiny model family (built once for this module)."""
    root = tmp_path_factory.mktemp("finetune-models")
    dirs = {name: save_waveform_model(name, root / name) for name in WAVEFORM_FAMILIES}
    dirs["whisper"] = save_whisper_model(root / "whisper")
    return dirs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> pd.DataFrame:
    """A manifest of three WAV files of :data:`SECONDS` seconds."""
    folder = tmp_path_factory.mktemp("finetune-audio")
    rows = []
    for i, seconds in enumerate(SECONDS):
        path = write_wav(folder / f"u{i}.wav", seconds, RATE, frequency=130.0 + 45 * i, seed=i)
        rows.append(
            {
                "utt_id": f"toy/u{i}",
                "corpus": "toy",
                "path": str(path),
                "speaker": f"toy/s{i}",
                "gender": "",
                "language": "deu",
                "emotion": ("neutral", "angry", "sad")[i],
                "emotion_raw": "x",
                "duration": written_duration(seconds, RATE),
                "sample_rate": RATE,
                "text": "",
                "split": "",
            }
        )
    return manifest.validate(pd.DataFrame(rows))


def config_of(model_dirs: dict[str, Path], family: str, **fields) -> FinetuneConfig:
    """A fine-tune config of `family` (``whisper-trim``: Whisper with trimming).

    The head reads the last state unless `fields` say otherwise.
    """
    fields.setdefault("weighted_layers", False)
    folder = model_dirs["whisper" if family in WHISPER else family]
    trim = family == "whisper-trim"
    return FinetuneConfig(model=str(folder), max_seconds=MAX_SECONDS, whisper_trim=trim, **fields)


def utterances(model, corpus: pd.DataFrame) -> tuple[Audio, list]:
    """The corpus through the fine-tune audio path: (audio, one segment list per row)."""
    audio = load_audio(corpus, model.backbone.preprocessor, ["clean"], "derived", 0, False)
    assert not audio.failed
    return audio, [audio.segments[(utt_id, "clean")] for utt_id in corpus["utt_id"]]


def windows(path: str) -> list[np.ndarray]:
    """The file's samples cut into the fewest equal windows of at most MAX_SECONDS."""
    wave, rate = sf.read(path, dtype="float32")
    assert rate == RATE
    pieces = math.ceil(wave.size / (MAX_SECONDS * RATE))
    return np.array_split(wave, pieces)


def whisper_alone(encoder, extractor, window: np.ndarray, trim: bool) -> list[np.ndarray]:
    """Whisper's own encoder on one window: each state's frames of real audio."""
    inputs = extractor(window, sampling_rate=RATE, return_tensors="pt", return_attention_mask=True)
    features = inputs["input_features"]
    mel = int(inputs["attention_mask"].sum())
    if trim:  # an encoder whose window is exactly this piece (same weights, fewer positions)
        assert mel % 2 == 0
        short = copy.deepcopy(encoder)  # adapters, if any, included
        short.config = copy.deepcopy(encoder.config)
        short.config.max_source_positions = mel // 2
        positions = encoder.embed_positions.weight.detach()[: mel // 2]
        short.embed_positions = torch.nn.Embedding.from_pretrained(positions)
        encoder, features = short.eval(), features[:, :, :mel]
    frames = int(encoder._get_feat_extract_output_lengths(torch.tensor(mel)))
    with torch.no_grad():
        states = encoder(features, output_hidden_states=True).hidden_states
    return [s[0, :frames].numpy() for s in states]


def reference(folder: Path, path: str, family: str, encoder=None) -> np.ndarray:
    """(states, dim): mean over every frame of every window, each window run alone."""
    extractor = transformers.AutoFeatureExtractor.from_pretrained(folder)
    if encoder is None:
        encoder = transformers.AutoModel.from_pretrained(folder)
        encoder = encoder.get_encoder() if family in WHISPER else encoder
    encoder = encoder.eval()
    frames = []
    for window in windows(path):
        if family in WHISPER:
            frames.append(whisper_alone(encoder, extractor, window, family == "whisper-trim"))
            continue
        inputs = extractor(window, sampling_rate=RATE, return_tensors="pt")["input_values"]
        with torch.no_grad():
            states = encoder(inputs, output_hidden_states=True).hidden_states
        frames.append([s[0].numpy() for s in states])
    return np.stack([np.concatenate(layer).mean(0) for layer in zip(*frames, strict=True)])


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def cached(folder: Path, config: FinetuneConfig, corpus: pd.DataFrame, cache_dir: Path):
    """Mean-pooled features of every state as extraction stores them: (rows, states, dim)."""
    extractor_config = config.extractor_config()
    extract(corpus, extractor_config, cache_dir, device="cpu", workers=0, storage_dtype="float32")
    path = cache_path(cache_dir, extractor_config.with_absolute_model_path().slug(), "toy", "clean")
    with CacheReader(path) as reader:
        return reader.read_rows(list(corpus["utt_id"]))


@pytest.mark.parametrize("family", [*WAVEFORM_FAMILIES, *WHISPER])
def test_pooled_equals_transformers_alone_and_the_extraction_cache(
    model_dirs, corpus, tmp_path, family
):
    config = config_of(model_dirs, family, weighted_layers=True)
    model, backbone = build_model(config, 3, "cpu", 0)
    model.eval()
    _, batch = utterances(model, corpus)
    assert [len(u) for u in batch] == [len(windows(p)) for p in corpus["path"]] == [1, 2, 3]
    with torch.no_grad():
        pooled = model.pooled(batch).numpy()
    assert pooled.shape == (backbone.states, len(SECONDS), backbone.dim)
    folder = Path(config.model)
    for row, path in enumerate(corpus["path"]):
        expected = reference(folder, path, family)
        assert relative_error(pooled[:, row], expected) < TOLERANCE, row
    stored = cached(folder, config, corpus, tmp_path / "cache")
    assert relative_error(pooled.transpose(1, 0, 2), stored) < TOLERANCE
    # The last state alone, as the head reads it without weighted layers.
    last = config_of(model_dirs, family)
    plain, _ = build_model(last, 3, "cpu", 0)
    with torch.no_grad():
        only = plain.eval().pooled(batch).numpy()
    assert only.shape == (1, len(SECONDS), backbone.dim)
    assert relative_error(only[0], pooled[-1]) < TOLERANCE


def linear_head(weights: dict[str, torch.Tensor], features: np.ndarray) -> np.ndarray:
    """A linear head's logits from its stored weight and bias."""
    return features @ weights["head.weight"].numpy().T + weights["head.bias"].numpy()


def test_weighted_layers_mix_pooled_states_by_softmax_of_layer_logits(model_dirs, corpus):
    family = "wav2vec2-group"
    config = config_of(model_dirs, family, weighted_layers=True)
    model, backbone = build_model(config, 3, "cpu", 0)
    model.eval()
    logits_by_hand = torch.tensor([0.7, -1.2, 2.0])
    with torch.no_grad():
        model.layer_logits.copy_(logits_by_hand)
    _, batch = utterances(model, corpus)
    with torch.no_grad():
        logits = model(batch).numpy()
    mix = np.exp(logits_by_hand.numpy()) / np.exp(logits_by_hand.numpy()).sum()
    np.testing.assert_allclose(model.layer_weights(), mix, rtol=1e-6)
    head = {f"head.{k}": v for k, v in model.head.state_dict().items()}
    for row, path in enumerate(corpus["path"]):
        states = reference(Path(config.model), path, family)
        expected = linear_head(head, np.einsum("l,ld->d", mix, states))
        assert relative_error(logits[row], expected) < TOLERANCE
    # far (for the tolerance) from the last state's logits
    last = linear_head(head, reference(Path(config.model), corpus["path"][0], family)[-1])
    assert relative_error(logits[0], last) > 10 * TOLERANCE


def trainable_by_name(names: list[str], family: str, freeze: str) -> set[str]:
    """What a freezing mode trains, decided from parameter names alone."""
    whisper = family in WHISPER
    front = ("encoder.conv1.", "encoder.conv2.") if whisper else ("encoder.feature_extractor.",)
    last_layer = "encoder.layers.1." if whisper else "encoder.encoder.layers.1."
    fixed = ("masked_spec_embed", "embed_positions.weight")

    def backbone(name: str) -> bool:
        if name.endswith(fixed):
            return False
        if freeze == "none":
            return True
        if freeze == "feature-encoder":
            return not name.startswith(front)
        if freeze == "top":
            return name.startswith(last_layer)
        if freeze == "lora":
            return "lora_" in name
        return False  # base

    return {
        name
        for name in names
        if name.startswith(("head.", "layer_logits"))
        or (name.startswith("encoder.") and backbone(name))
    }


def one_step(model, config: FinetuneConfig, audio: Audio, keys: list) -> None:
    """One optimizer step through the trainer's own forward, backward and step."""
    trainer = train.Trainer(model, config, audio, 0, World())
    scheduler = train._schedule(trainer.optimizer, config, 1)
    model.train()
    logits = trainer.logits(keys)
    loss = functional.cross_entropy(logits, torch.tensor([0, 1, 2]))
    loss.backward()
    train._step(trainer, scheduler)


@pytest.mark.parametrize("family", ["wav2vec2-group", "whisper-trim"])
@pytest.mark.parametrize("freeze", ["feature-encoder", "base", "none", "top", "lora"])
def test_freezing_trains_and_changes_exactly_the_named_parameters(
    model_dirs, corpus, family, freeze
):
    fields = {"weighted_layers": True, "learning_rate": 1e-2, "warmup": 0.0}
    if freeze == "top":
        fields["top_layers"] = 1
    if freeze == "lora":
        fields.update(adapter="lora", freeze="feature-encoder")
    else:
        fields["freeze"] = freeze
    config = config_of(model_dirs, family, **fields)
    model, _ = build_model(config, 3, "cpu", 0)
    names = [name for name, _ in model.named_parameters()]
    expected = trainable_by_name(names, family, freeze)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == expected
    assert any(name.startswith("head.") for name in expected) and "layer_logits" in expected
    before = {k: v.clone() for k, v in model.state_dict().items()}
    audio, _ = utterances(model, corpus)
    one_step(model, config, audio, list(audio.segments))
    after = model.state_dict()
    assert set(after) == set(before)
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    # state dict names equal parameter names here (no buffers change in a step)
    assert changed == expected


def front_end_requires_grad(model, backbone, batch, family: str) -> list[bool]:
    """Whether each front-end convolution's output required grad in a training forward."""
    inner = backbone.model
    front = [inner.conv2] if family in WHISPER else list(inner.feature_extractor.conv_layers)
    seen: list[bool] = []
    handles = [
        module.register_forward_hook(lambda _m, _a, out: seen.append(out.requires_grad))
        for module in front
    ]
    model.train()
    model(batch).sum().backward()
    for handle in handles:
        handle.remove()
    return seen


@pytest.mark.parametrize("family", ["wav2vec2-group", "wav2vec2-layer", "whisper-trim"])
def test_frozen_front_end_stays_out_of_the_autograd_graph(model_dirs, corpus, family):
    """A frozen convolutional front end computes no gradients (no input grad either)."""
    model, backbone = build_model(config_of(model_dirs, family), 3, "cpu", 0)
    _, batch = utterances(model, corpus)
    seen = front_end_requires_grad(model, backbone, batch, family)
    assert seen and not any(seen)
    # With nothing frozen the front end is in the graph.
    full, backbone = build_model(config_of(model_dirs, family, freeze="none"), 3, "cpu", 0)
    seen = front_end_requires_grad(full, backbone, batch, family)
    assert seen and all(seen)


def without_dropout(folder: Path, out: Path) -> Path:
    """A copy of a model folder whose config turns every dropout off."""
    import shutil

    shutil.copytree(folder, out)
    config = transformers.AutoConfig.from_pretrained(out)
    for name, value in config.to_dict().items():
        if "dropout" in name and isinstance(value, float):
            setattr(config, name, 0.0)
    config.save_pretrained(out)
    return out


def sublayer(layer: torch.nn.Module) -> torch.nn.Module:
    """A module inside a transformer layer, called again when the layer is recomputed."""
    return layer.feed_forward if hasattr(layer, "feed_forward") else layer.fc1


@pytest.mark.parametrize("family", ["wav2vec2-group", "whisper-trim"])
def test_gradient_checkpointing_is_on_and_changes_neither_loss_nor_gradients(
    model_dirs, corpus, tmp_path, family
):
    source = model_dirs["whisper" if family in WHISPER else family]
    folder = without_dropout(source, tmp_path / "model")
    results, calls = [], []
    for checkpointing in (False, True):
        config = FinetuneConfig(
            model=str(folder),
            max_seconds=MAX_SECONDS,
            whisper_trim=family == "whisper-trim",
            freeze="none",
            dropout=0.0,
            gradient_checkpointing=checkpointing,
        )
        model, backbone = build_model(config, 3, "cpu", 0)
        layers = backbone.model.layers if family in WHISPER else backbone.model.encoder.layers
        assert [layer.gradient_checkpointing for layer in layers] == [checkpointing] * len(layers)
        assert backbone.model.is_activation_checkpointing is checkpointing
        count: list[int] = []
        sublayer(layers[0]).register_forward_hook(lambda *_, seen=count: seen.append(1))
        _, batch = utterances(model, corpus)
        model.train()
        loss = functional.cross_entropy(model(batch), torch.tensor([0, 1, 2]))
        loss.backward()
        calls.append(len(count))
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((float(loss.detach()), grads))
    # recomputed in backward: the layer ran twice with checkpoints, once without
    assert calls == [1, 2]
    (loss_off, grads_off), (loss_on, grads_on) = results
    assert loss_on == pytest.approx(loss_off, rel=1e-6)
    assert set(grads_on) == set(grads_off) and len(grads_on) > 10
    for name, grad in grads_off.items():
        torch.testing.assert_close(grads_on[name], grad, rtol=1e-4, atol=1e-7, msg=name)


def perturb(parameters, seed: int = 1) -> None:
    """Move the given parameters away from their loaded values (so a reload must find them)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in parameters:
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))


@pytest.mark.parametrize("family", ["wav2vec2-group", "hubert", "whisper-trim"])
def test_saved_model_loads_with_transformers_and_gives_the_same_logits(
    model_dirs, corpus, tmp_path, family
):
    config = config_of(model_dirs, family)
    model, _ = build_model(config, 3, "cpu", 0)
    perturb(p for p in model.parameters() if p.requires_grad)
    model.eval()
    _, batch = utterances(model, corpus)
    with torch.no_grad():
        logits = model(batch).numpy()
    save_model(model, config, tmp_path / "saved")
    backbone_dir = tmp_path / "saved" / "backbone"
    with safe_open(str(backbone_dir / "model.safetensors"), "pt") as handle:
        names = set(handle.keys())
    if family not in WHISPER:  # group norms under transformers' own names
        assert "feature_extractor.conv_layers.0.layer_norm.weight" in names
        assert not any(".layer_norm.norm." in name for name in names)
    if family in WHISPER:  # the encoder alone is saved
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        encoder = WhisperEncoder.from_pretrained(backbone_dir)
    else:
        encoder = transformers.AutoModel.from_pretrained(backbone_dir)
    head = load_file(str(tmp_path / "saved" / "head.safetensors"))
    for row, path in enumerate(corpus["path"]):
        states = reference(backbone_dir, path, family, encoder=encoder)
        assert relative_error(logits[row], linear_head(head, states[-1])) < TOLERANCE


@pytest.mark.parametrize("family", ["wav2vec2-group", "whisper-trim"])
def test_saved_lora_adapter_reinjected_into_a_fresh_backbone_gives_the_same_logits(
    model_dirs, corpus, tmp_path, family
):
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    config = config_of(model_dirs, family, adapter="lora", lora_rank=4)
    model, _ = build_model(config, 3, "cpu", 0)
    perturb(p for n, p in model.named_parameters() if "lora_B" in n or n.startswith("head."))
    model.eval()
    _, batch = utterances(model, corpus)
    with torch.no_grad():
        logits = model(batch).numpy()
    save_model(model, config, tmp_path / "saved")
    assert not (tmp_path / "saved" / "backbone").exists()
    fresh = transformers.AutoModel.from_pretrained(config.model)
    fresh = fresh.get_encoder() if family in WHISPER else fresh
    lora = LoraConfig.from_pretrained(str(tmp_path / "saved"))
    assert lora.r == 4
    inject_adapter_in_model(lora, fresh)
    adapter = load_file(str(tmp_path / "saved" / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(fresh, adapter)
    assert not result.unexpected_keys
    head = load_file(str(tmp_path / "saved" / "head.safetensors"))
    for row, path in enumerate(corpus["path"]):
        states = reference(Path(config.model), path, family, encoder=fresh)
        assert relative_error(logits[row], linear_head(head, states[-1])) < TOLERANCE
    # the adapter matters: the fresh backbone without it gives other logits
    plain = transformers.AutoModel.from_pretrained(config.model)
    plain = plain.get_encoder() if family in WHISPER else plain
    states = reference(Path(config.model), corpus["path"][0], family, encoder=plain)
    assert relative_error(logits[0], linear_head(head, states[-1])) > 10 * TOLERANCE


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total)"),
        RuntimeError("CUDA error: out of memory"),
    ],
    ids=["OutOfMemoryError", "RuntimeError", "cuda-error"],
)
def test_out_of_memory_names_batch_seconds_and_accumulation(model_dirs, corpus, monkeypatch, error):
    config = config_of(model_dirs, "wav2vec2-group", batch_seconds=12.0, accumulation=2)
    model, _ = build_model(config, 3, "cpu", 0)
    audio, _ = utterances(model, corpus)
    trainer = train.Trainer(model, config, audio, 0, World())

    def exhausted(*args, **kwargs):
        raise error

    monkeypatch.setattr(model, "forward", exhausted)
    with pytest.raises(ConfigError) as caught:
        trainer.logits(list(audio.segments))
    message = str(caught.value)
    assert "--batch-seconds (now 12)" in message and "--accumulation (now 2)" in message
    assert "3 utterance(s)" in message
    # other runtime errors pass through unchanged
    error = RuntimeError("shape mismatch")
    monkeypatch.setattr(model, "forward", exhausted)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        trainer.logits(list(audio.segments))
