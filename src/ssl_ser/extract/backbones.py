"""Backbones: load a model (or a classic baseline) and pool all its hidden states per segment.

Transformer backbones load through ``transformers`` Auto classes by hub id or
local folder (``trust_remote_code`` stays off), run in eval mode under
``torch.inference_mode`` with layer drop off, and return, in one forward pass
with ``output_hidden_states=True``, every hidden state (input embedding plus
each layer, L+1 states) pooled over valid frames. Supported model types:
wav2vec2 (XLS-R included), HuBERT, WavLM, UniSpeech, UniSpeech-SAT,
data2vec-audio and Whisper (encoder only).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import pickle
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_ser.atomic import write_text
from ssl_ser.errors import ConfigError, UnknownChoiceError
from ssl_ser.extract.batching import pad_stack
from ssl_ser.extract.classic import EGEMAPS_DIM
from ssl_ser.extract.config import ExtractorConfig
from ssl_ser.extract.masking import (
    PaddingZeroer,
    install_masked_group_norms,
    masked_front_end,
    stacked_position_convs,
    valid_lengths,
    whisper_states,
)
from ssl_ser.extract.pooling import FrameStats, frame_mask, masked_stats
from ssl_ser.extract.preprocess import (
    ClassicPreprocessor,
    Preprocessor,
    Segment,
    WaveformPreprocessor,
    WhisperPreprocessor,
)

log = logging.getLogger(__name__)

WAVEFORM_MODEL_TYPES: tuple[str, ...] = (
    "wav2vec2",
    "hubert",
    "wavlm",
    "unispeech",
    "unispeech-sat",
    "data2vec-audio",
)
WHISPER_MODEL_TYPES: tuple[str, ...] = ("whisper",)
SUPPORTED_MODEL_TYPES: tuple[str, ...] = WAVEFORM_MODEL_TYPES + WHISPER_MODEL_TYPES
TORCH_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
# Files whose bytes identify a model stored in a local folder.
FINGERPRINT_PATTERNS: tuple[str, ...] = ("*.json", "*.safetensors", "*.bin")
# Written beside weights the toolkit initialised at random (write_random_weights_marker);
# save_pretrained does not copy it, so a model trained from such a folder loses it.
RANDOM_WEIGHTS_MARKER = "ssl_ser_random_weights.json"
# The revision of a local folder holding the marker: "untrained:local:<sha256>".
UNTRAINED_REVISION_PREFIX = "untrained:"


def write_random_weights_marker(folder: str | Path, seed: int | None = None) -> Path:
    """Mark `folder` as holding randomly initialised (untrained) weights saved by the toolkit.

    Extraction then records the folder's revision as ``untrained:local:<sha256>``
    in the cache key, and the report shows the model as untrained whatever the
    folder is called. Call it right after saving random weights.
    """
    path = Path(folder) / RANDOM_WEIGHTS_MARKER
    content = {"weights": "random initialisation, never trained", "seed": seed}
    write_text(path, json.dumps(content, sort_keys=True) + "\n")
    return path


def has_random_weights(model: str) -> bool:
    """Whether `model` is a local folder holding the toolkit's random-weights marker."""
    folder = Path(model).expanduser()
    return folder.is_dir() and (folder / RANDOM_WEIGHTS_MARKER).is_file()


def resolve_device(name: str) -> torch.device:
    """The torch device for ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        UnknownChoiceError: a name of another form.
        ConfigError: CUDA asked for but not available, or no such GPU index.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match is None:
        raise UnknownChoiceError("device", name, ("auto", "cpu", "cuda", "cuda:N"))
    if not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available; use cpu")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(
            f"device {name!r} does not exist; valid: cuda:0..cuda:{torch.cuda.device_count() - 1}"
        )
    return torch.device("cuda", index)


def compute_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The autocast dtype for `dtype` on `device`, refusing combinations that cannot run.

    Raises:
        ConfigError: float16 on CPU, or bfloat16 on a GPU without it.
    """
    if dtype == "float16" and device.type == "cpu":
        raise ConfigError("dtype 'float16' is not supported on CPU; use bfloat16 or float32")
    if dtype == "bfloat16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"dtype 'bfloat16' is not supported on {device}; use float16 or float32")
    return TORCH_DTYPES[dtype]


def local_fingerprint(folder: Path) -> str:
    """``local:`` plus a SHA-256 over the names and bytes of a model folder's files."""
    digest = hashlib.sha256()
    files = sorted({p for pattern in FINGERPRINT_PATTERNS for p in folder.glob(pattern)})
    for path in files:
        digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
        content = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                content.update(block)
        digest.update(content.digest())
    return f"local:{digest.hexdigest()}"


def model_revision(model: str, model_config: Any, requested: str | None) -> str:
    """The commit a model was loaded from (hub), or a content fingerprint (local folder).

    A local folder marked as holding random weights (:data:`RANDOM_WEIGHTS_MARKER`)
    gets ``untrained:`` before its fingerprint, so the cache key, and through it
    the results and the report, say that the model is untrained.
    """
    folder = Path(model).expanduser()
    if folder.is_dir():
        untrained = UNTRAINED_REVISION_PREFIX if has_random_weights(model) else ""
        return untrained + local_fingerprint(folder)
    commit = getattr(model_config, "_commit_hash", None)
    if commit:
        return str(commit)
    log.warning("could not resolve the commit of %s; the cache key uses %r", model, requested)
    return f"unresolved:{requested or 'default'}"


class Backbone(ABC):
    """A feature extractor seen by the runner: preprocess in workers, pool in the main process.

    Attributes:
        states: hidden states per utterance (layers + 1; 1 for classic baselines).
        dim: size of each pooled vector.
        preprocessor: picklable waveform -> segments step for the DataLoader workers.
        identity: what identifies the model in the cache key (id, type, revision; the
            revision starts with ``untrained:`` for a folder of toolkit-made random weights).
        device: where :meth:`run` computes.
    """

    states: int
    dim: int
    preprocessor: Preprocessor
    identity: dict[str, Any]
    device: torch.device = torch.device("cpu")

    @abstractmethod
    def run(self, segments: Sequence[Segment]) -> FrameStats:
        """Per-segment statistics (count, mean, m2) of every hidden state, one batch."""

    def input_seconds(self, seconds: float) -> float:
        """Seconds of model input a segment of `seconds` of audio costs (for batch plans)."""
        return seconds


class TransformerBackbone(Backbone):
    """Shared device, precision and forward bookkeeping of the transformer backbones."""

    def __init__(self, model: torch.nn.Module, device: torch.device, dtype: torch.dtype):
        self.model = model.eval().to(device)
        self.device = device
        self.dtype = dtype

    @contextlib.contextmanager
    def precision(self) -> Iterator[None]:
        """Inference mode at the compute precision: autocast, or exact float32.

        In float32, cuDNN's TF32 convolutions (on by default in PyTorch) are turned
        off while inside, so that GPU features agree with CPU ones: the device is
        not part of the cache key.
        """
        exact = self.dtype == torch.float32
        saved = torch.backends.cudnn.allow_tf32
        if exact and self.device.type == "cuda":
            torch.backends.cudnn.allow_tf32 = False
        try:
            with (
                torch.inference_mode(),
                torch.autocast(self.device.type, dtype=self.dtype, enabled=not exact),
            ):
                yield
        finally:
            torch.backends.cudnn.allow_tf32 = saved

    def run(self, segments: Sequence[Segment]) -> FrameStats:
        """One forward pass for the batch at the compute precision, all states pooled."""
        with self.precision():
            states, frames = self.forward_states(segments)
            return self.pooled(states, frames)

    @abstractmethod
    def forward_states(self, segments: Sequence[Segment]) -> tuple[list[torch.Tensor], np.ndarray]:
        """Every hidden state of a padded batch (padding masked) and each row's valid frames.

        No precision or grad context of its own: :meth:`run` wraps it for
        extraction, and ``ser finetune`` calls it with gradients on.
        """

    def to_device(self, array: np.ndarray) -> torch.Tensor:
        """A numpy batch as a tensor on the compute device."""
        return torch.from_numpy(array).to(self.device)

    def pooled(self, hidden_states: Sequence[torch.Tensor], frames: np.ndarray) -> FrameStats:
        """Masked statistics of every state, moved to the CPU."""
        longest = int(frames.max())
        if hidden_states[0].shape[1] < longest:
            raise RuntimeError(
                f"model produced {hidden_states[0].shape[1]} frames, expected {longest}"
            )
        lengths = torch.from_numpy(frames).to(self.device)
        mean, m2 = masked_stats(hidden_states, lengths)
        return FrameStats(frames.astype(np.int64), mean.cpu().numpy(), m2.cpu().numpy())


class WaveformBackbone(TransformerBackbone):
    """wav2vec2-family models: raw waveform in, padded batches with an attention mask.

    Group-norm front ends get masked statistics (see :mod:`ssl_ser.extract.masking`),
    so a padded batch equals per-utterance runs for every supported model.
    """

    def __init__(
        self,
        model: Any,
        feature_extractor: Any,
        config: ExtractorConfig,
        device: torch.device,
        dtype: torch.dtype,
    ):
        super().__init__(model, device, dtype)
        model_config = model.config
        self.kernels = tuple(model_config.conv_kernel)
        self.strides = tuple(model_config.conv_stride)
        self.masked_norms = install_masked_group_norms(model.feature_extractor)
        norm = getattr(model_config, "feat_extract_norm", "layer")
        if norm == "group" and not self.masked_norms:
            raise ConfigError(
                f"{config.model}: feat_extract_norm is 'group' but no GroupNorm was found in its "
                "front end; this model cannot be batched exactly"
            )
        self.position_zeroer = PaddingZeroer(stacked_position_convs(model.encoder))
        self.pad_value = float(getattr(feature_extractor, "padding_value", 0.0))
        self.states = model_config.num_hidden_layers + 1
        self.dim = model_config.hidden_size
        self.preprocessor = WaveformPreprocessor(
            feature_extractor,
            self.kernels,
            self.strides,
            config.sample_rate,
            config.max_seconds,
            config.long_audio,
        )

    def forward_states(self, segments: Sequence[Segment]) -> tuple[list[torch.Tensor], np.ndarray]:
        """One forward pass for the padded batch under masking: (all hidden states, frames)."""
        values, samples = pad_stack([s.values for s in segments], self.pad_value)
        frames = np.array([s.frames for s in segments], dtype=np.int64)
        padded = bool(samples.min() != samples.max())
        inputs = self.to_device(values)
        attention_mask = valid_samples = valid_frames = None
        if padded:
            valid_samples = torch.from_numpy(samples).to(self.device)
            valid_frames = torch.from_numpy(frames).to(self.device)
            attention_mask = frame_mask(valid_samples, values.shape[1]).long()
        with (
            masked_front_end(self.masked_norms, valid_samples, self.kernels, self.strides),
            valid_lengths(self.position_zeroer, valid_frames),
        ):
            output = self.model(inputs, attention_mask=attention_mask, output_hidden_states=True)
        return list(output.hidden_states), frames


class WhisperBackbone(TransformerBackbone):
    """Whisper's encoder: fixed 30 s log-mel windows, pooling only frames of real audio."""

    def __init__(
        self,
        encoder: Any,
        feature_extractor: Any,
        config: ExtractorConfig,
        device: torch.device,
        dtype: torch.dtype,
    ):
        super().__init__(encoder, device, dtype)
        model_config = encoder.config
        window = model_config.max_source_positions * 2
        if feature_extractor.nb_max_frames != window:
            raise ConfigError(
                f"{config.model}: preprocessor makes {feature_extractor.nb_max_frames} log-mel "
                f"frames but the encoder expects {window}"
            )
        self.trim = config.whisper_trim
        self.window_seconds = feature_extractor.n_samples / feature_extractor.sampling_rate
        self.states = model_config.encoder_layers + 1
        self.dim = model_config.d_model
        self.preprocessor = WhisperPreprocessor(
            feature_extractor,
            config.whisper_trim,
            config.sample_rate,
            config.max_seconds,
            config.long_audio,
        )

    def input_seconds(self, seconds: float) -> float:
        """Untrimmed, every segment costs a full window."""
        return seconds if self.trim else self.window_seconds

    def forward_states(self, segments: Sequence[Segment]) -> tuple[list[torch.Tensor], np.ndarray]:
        """One encoder pass for the batch: (all hidden states, frames of real audio per row)."""
        features, mel_frames = pad_stack([s.values for s in segments])
        frames = np.array([s.frames for s in segments], dtype=np.int64)
        inputs = self.to_device(features)
        if self.trim:
            padded = bool(mel_frames.min() != mel_frames.max())
            lengths = torch.from_numpy(mel_frames).to(self.device) if padded else None
            return list(whisper_states(self.model, inputs, lengths)), frames
        return list(self.model(inputs, output_hidden_states=True).hidden_states), frames


class ClassicBackbone(Backbone):
    """eGeMAPS, MFCC or log-mel: features come ready from the workers; only statistics here."""

    def __init__(self, config: ExtractorConfig):
        self.kind = config.model
        self.states = 1
        self.dim = {"egemaps": EGEMAPS_DIM, "mfcc": config.n_mfcc, "logmel": config.n_mels}[
            self.kind
        ]
        self.preprocessor = ClassicPreprocessor(
            self.kind,
            config.n_mels,
            config.n_mfcc,
            config.sample_rate,
            config.max_seconds,
            config.long_audio,
        )
        self.identity = {"model": self.kind, "model_type": "classic", "revision": "builtin"}
        if self.kind == "egemaps":
            import opensmile

            self.identity["revision"] = f"opensmile-{opensmile.__version__}-eGeMAPSv02"

    def run(self, segments: Sequence[Segment]) -> FrameStats:
        """Mean and squared deviations over frames of each segment's feature matrix."""
        count = np.array([s.frames for s in segments], dtype=np.int64)
        means = [s.values.mean(axis=1) for s in segments]
        m2 = [
            np.square(s.values - m[:, None]).sum(axis=1)
            for s, m in zip(segments, means, strict=True)
        ]
        return FrameStats(count, np.stack(means)[:, None, :], np.stack(m2)[:, None, :])


@contextlib.contextmanager
def library_progress_bars(show: bool) -> Iterator[None]:
    """Let transformers' and huggingface_hub's own bars (loading weights, downloads) follow `show`.

    ``--no-progress`` must silence every bar, including those the libraries draw
    while a model loads; their previous setting is restored afterwards.
    """
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )
    from transformers.utils import logging as hf_logging

    was_shown = hf_logging.is_progress_bar_enabled(), not are_progress_bars_disabled()
    if not show:
        hf_logging.disable_progress_bar()
        disable_progress_bars()
    try:
        yield
    finally:
        if not show:
            if was_shown[0]:
                hf_logging.enable_progress_bar()
            if was_shown[1]:
                enable_progress_bars()


def identity_of(config: ExtractorConfig) -> dict[str, Any]:
    """The identity :func:`load_backbone` gives a config's model, from its config file only.

    Reads the model's configuration (not its weights), so a caller can tell which
    cache key a run would write without loading the model.

    Raises:
        ConfigError: the model's configuration cannot be read.
    """
    if config.is_classic:
        return dict(ClassicBackbone(config).identity)
    return _identity(config, _model_config(config))


def load_backbone(config: ExtractorConfig, device: str = "auto") -> Backbone:
    """Load the backbone a config names, on `device`, ready to :meth:`Backbone.run`.

    Raises:
        ConfigError: the model cannot be loaded, or its preprocessor disagrees with
            the config (sample rate, Whisper window); device/dtype problems.
        UnknownChoiceError: a model type other than :data:`SUPPORTED_MODEL_TYPES`.
    """
    if config.is_classic:
        return ClassicBackbone(config)
    torch_device = resolve_device(device)
    dtype = compute_dtype(config.dtype, torch_device)
    model_config, feature_extractor, model = _load_transformer(config)
    model_type = model_config.model_type
    if model_type == "whisper":
        backbone: TransformerBackbone = WhisperBackbone(
            model.get_encoder(), feature_extractor, config, torch_device, dtype
        )
    else:
        if config.whisper_trim:
            raise ConfigError(f"--whisper-trim applies to Whisper models only, not {model_type}")
        backbone = WaveformBackbone(model, feature_extractor, config, torch_device, dtype)
    backbone.identity = _identity(config, model_config)
    log.info(
        "loaded %s (%s, %d hidden states x %d) on %s",
        config.model,
        model_type,
        backbone.states,
        backbone.dim,
        torch_device,
    )
    return backbone


def _load_transformer(config: ExtractorConfig) -> tuple[Any, Any, Any]:
    """(model config, feature extractor, model), layer drop off, float32 weights."""
    from transformers import AutoFeatureExtractor

    options = {"revision": config.revision, "trust_remote_code": False}
    model_config = _model_config(config)
    if model_config.model_type not in SUPPORTED_MODEL_TYPES:
        raise UnknownChoiceError("model type", model_config.model_type, SUPPORTED_MODEL_TYPES)
    _disable_layer_drop(model_config)
    try:
        feature_extractor = AutoFeatureExtractor.from_pretrained(config.model, **options)
        model = _model_class(model_config).from_pretrained(
            config.model, config=model_config, dtype=torch.float32, **options
        )
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot load model {config.model!r}: {error}") from error
    except pickle.UnpicklingError as error:
        raise ConfigError(_unsafe_pickle_message(config.model, error)) from error
    rate = getattr(feature_extractor, "sampling_rate", config.sample_rate)
    if rate != config.sample_rate:
        raise ConfigError(
            f"{config.model} expects {rate} Hz audio but the sample rate is {config.sample_rate}"
        )
    if hasattr(model, "encoder") and hasattr(model.encoder, "layerdrop"):
        model.encoder.layerdrop = 0.0
    return model_config, feature_extractor, model


def _model_config(config: ExtractorConfig) -> Any:
    """The model's configuration (not its weights), read by ``transformers``."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(
            config.model, revision=config.revision, trust_remote_code=False
        )
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot load model {config.model!r}: {error}") from error


def _identity(config: ExtractorConfig, model_config: Any) -> dict[str, Any]:
    """What identifies the model in the cache key: its id, type and revision."""
    return {
        "model": config.model,
        "model_type": model_config.model_type,
        "revision": model_revision(config.model, model_config, config.revision),
    }


def _model_class(model_config: Any) -> Any:
    """``AutoModel``, or ``WhisperEncoder`` for a folder holding a Whisper encoder alone.

    ``ser finetune`` saves a fine-tuned Whisper encoder without its decoder;
    ``AutoModel`` would build the whole Whisper model and leave that encoder's
    weights unloaded (their names lack the ``encoder.`` prefix).
    """
    from transformers import AutoModel

    if model_config.model_type == "whisper" and list(model_config.architectures or []) == [
        "WhisperEncoder"
    ]:
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        return WhisperEncoder
    return AutoModel


def _unsafe_pickle_message(model: str, error: Exception) -> str:
    """Why a pickled weights file was refused, with torch's own line naming what it holds."""
    lines = [line.strip() for line in str(error).splitlines() if "GLOBAL" in line]
    what = f" ({lines[0].rstrip('.')})" if lines else ""
    return (
        f"model {model!r}: its pickled weights file (.bin) holds more than tensors{what}; "
        "it was refused, since loading it could run code. Use a safetensors copy of the "
        "weights, or convert the file where you trust its source"
    )


def _disable_layer_drop(model_config: Any) -> None:
    """Layer drop and SpecAugment off (eval mode skips them too; this makes it explicit)."""
    for name in ("layerdrop", "encoder_layerdrop", "decoder_layerdrop"):
        if hasattr(model_config, name):
            setattr(model_config, name, 0.0)
    if hasattr(model_config, "apply_spec_augment"):
        model_config.apply_spec_augment = False
