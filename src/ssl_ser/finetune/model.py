"""The fine-tuned emotion model: a backbone, masked mean pooling and a classification head.

The backbone is the extraction backbone itself (:mod:`ssl_ser.extract.backbones`),
loaded the same way and run through the same masked forward
(:meth:`~ssl_ser.extract.backbones.TransformerBackbone.forward_states`), so
padding is never pooled and group-norm front ends see only valid frames. Each
utterance is pooled as extraction pools it: the mean over the valid frames of
all its windows. With ``weighted_layers`` the head reads a learned
softmax-weighted sum of every hidden state's pooled vector; with ``head_layer``
it reads that one state, and the backbone is cut above it
(:func:`truncate`); otherwise the last state's. The head's input is
standardised per state with fixed statistics (:class:`Standardiser`), as the
probes' ``StandardScaler`` standardises theirs. In training, SpecAugment-style
time masks (:func:`time_mask`) are drawn from a seed the trainer sets per
micro-batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ssl_ser.errors import ConfigError
from ssl_ser.extract.backbones import TransformerBackbone, load_backbone
from ssl_ser.extract.masking import MaskedGroupNorm
from ssl_ser.extract.pooling import frame_mask
from ssl_ser.extract.preprocess import Segment
from ssl_ser.finetune.config import LORA_TARGETS, FinetuneConfig

log = logging.getLogger(__name__)

# The learned mask embedding: used by SpecAugment, kept at its pretrained value (never trained).
UNUSED_PARAMETERS: tuple[str, ...] = ("masked_spec_embed",)


def make_head(dim: int, n_classes: int, config: FinetuneConfig) -> nn.Module:
    """A linear head, or one hidden layer with ReLU and dropout."""
    if config.head == "linear":
        return nn.Linear(dim, n_classes)
    return nn.Sequential(
        nn.Linear(dim, config.hidden),
        nn.ReLU(),
        nn.Dropout(config.dropout),
        nn.Linear(config.hidden, n_classes),
    )


class Standardiser(nn.Module):
    """(x - mean) / scale per hidden state with fixed statistics (buffers, never trained).

    With a ``float16`` dtype the input is first rounded to it, as the probe the
    head started from saw its features in a float16 cache.

    Identity until :meth:`set` is called (a model saved before standardising existed).
    """

    def __init__(self, states: int, dim: int, dtype: str = "float32"):
        super().__init__()
        self.rounding = None if dtype == "float32" else getattr(torch, dtype)
        self.register_buffer("mean", torch.zeros(states, 1, dim))
        self.register_buffer("scale", torch.ones(states, 1, dim))

    def set(self, mean: np.ndarray, scale: np.ndarray) -> None:
        """Take per-state statistics of shape (states, dim)."""
        with torch.no_grad():
            self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32)[:, None, :])
            self.scale.copy_(torch.as_tensor(scale, dtype=torch.float32)[:, None, :])

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """Standardise pooled vectors (states, batch, dim), first rounded as a cache stores them."""
        if self.rounding is not None:  # the cast passes gradients through unchanged
            pooled = pooled.to(self.rounding).float()
        return (pooled - self.mean) / self.scale


class EmotionModel(nn.Module):
    """Backbone + pooling + head; :meth:`forward` takes utterances as lists of segments."""

    def __init__(self, backbone: TransformerBackbone, n_classes: int, config: FinetuneConfig):
        super().__init__()
        self.backbone = backbone
        self.encoder = backbone.model
        # a learned mix of every hidden state, unless the head reads one (head_layer)
        self.weighted = config.head_layer is None and config.weighted_layers
        self.head_layer = config.head_layer
        self.n_classes = n_classes
        self.layer_logits = nn.Parameter(torch.zeros(backbone.states)) if self.weighted else None
        self.scaler = Standardiser(
            backbone.states if self.weighted else 1, backbone.dim, config.probe_dtype
        )
        self.head = make_head(backbone.dim, n_classes, config)
        self.masking = config.spec_augment
        self.mask_prob, self.mask_length = config.mask_time_prob, config.mask_time_length
        self.mask_seed: int | None = None  # set by the trainer before each training micro-batch
        self.to(backbone.device)

    def head_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters of the head and layer weights (the head's learning rate)."""
        return [p for n, p in self.named_parameters() if p.requires_grad and _is_head_parameter(n)]

    def backbone_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters of the backbone (adapters included): the backbone's rate."""
        return [
            p for n, p in self.named_parameters() if p.requires_grad and not _is_head_parameter(n)
        ]

    def layer_weights(self) -> np.ndarray | None:
        """The learned softmax weights over hidden states (None without ``weighted_layers``)."""
        if self.layer_logits is None:
            return None
        return torch.softmax(self.layer_logits.detach().float(), 0).cpu().numpy()

    def pooled(self, utterances: Sequence[Sequence[Segment]]) -> torch.Tensor:
        """Per utterance, the mean over valid frames of all its segments: (states, batch, dim).

        Only the last state when the head reads the last one (saves memory).
        """
        segments = [segment for utterance in utterances for segment in utterance]
        masking = self.training and self.masking
        whisper = is_whisper(self.encoder)
        if masking and whisper and self.mask_seed is not None:
            segments = mask_log_mel(segments, self.mask_seed, self.mask_prob, self.mask_length)
        # a wav2vec2-like model is always given its masks in training (none without a seed),
        # so that it never draws its own from the global RNG
        hook = (
            self.encoder.register_forward_pre_hook(self._time_mask_hook(segments), with_kwargs=True)
            if masking and not whisper
            else None
        )
        try:
            states, frames = self.backbone.forward_states(segments)
        finally:
            if hook is not None:
                hook.remove()
        return self.pool_states(states, frames, [len(u) for u in utterances])

    def _time_mask_hook(self, segments: Sequence[Segment]) -> Callable:
        """A pre-hook passing seeded ``mask_time_indices`` to a wav2vec2-like model's forward."""
        valid = [segment.frames for segment in segments]

        def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            values = args[0] if args else kwargs["input_values"]
            total = int(module._get_feat_extract_output_lengths(values.shape[-1]))
            mask = np.zeros((len(valid), total), dtype=bool)
            if self.mask_seed is not None:
                mask = time_mask(valid, total, self.mask_seed, self.mask_prob, self.mask_length)
            kwargs["mask_time_indices"] = torch.from_numpy(mask).to(values.device)
            return args, kwargs

        return hook

    def pool_states(
        self, states: Sequence[torch.Tensor], frames: np.ndarray, sizes: Sequence[int]
    ) -> torch.Tensor:
        """:meth:`pooled` from a forward pass's states: utterance i owns the next `sizes[i]` rows.

        Separate from the forward pass so that ``ser bench-inference`` can time them apart.
        """
        owners = torch.as_tensor(
            np.repeat(np.arange(len(sizes)), list(sizes)), device=self.backbone.device
        )
        if self.weighted:
            chosen = list(states)
        elif self.head_layer is not None:
            chosen = [states[self.head_layer]]
        else:
            chosen = list(states[-1:])
        lengths = torch.from_numpy(frames).to(self.backbone.device)
        mask = frame_mask(lengths, chosen[0].shape[1]).to(torch.float32)
        counts = torch.zeros(len(sizes), device=mask.device).index_add(0, owners, mask.sum(1))
        pooled = []
        for state in chosen:
            sums = torch.einsum("btd,bt->bd", state.float(), mask)
            total = torch.zeros(len(sizes), sums.shape[1], device=sums.device)
            pooled.append(total.index_add(0, owners, sums) / counts[:, None])
        return torch.stack(pooled)

    def forward(self, utterances: Sequence[Sequence[Segment]]) -> torch.Tensor:
        """Class logits (batch, classes), in float32."""
        return self.logits(self.pooled(utterances))

    def logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """Class logits (batch, classes) in float32 from :meth:`pooled` vectors."""
        pooled = self.scaler(pooled)
        if self.layer_logits is not None:
            weights = torch.softmax(self.layer_logits.float(), 0)
            features = torch.einsum("l,lbd->bd", weights, pooled)
        else:
            features = pooled[0]
        return self.head(features).float()

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The parameters that train (what checkpoints store), detached on the CPU."""
        return {
            name: parameter.detach().cpu().clone()
            for name, parameter in self.named_parameters()
            if parameter.requires_grad
        }

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        """Put stored trainable parameters back (names and shapes must match exactly)."""
        mine = {n: p for n, p in self.named_parameters() if p.requires_grad}
        if set(mine) != set(state):
            extra = sorted(set(state) ^ set(mine))[:3]
            raise ConfigError(f"checkpoint does not match the trainable parameters: {extra}")
        with torch.no_grad():
            for name, parameter in mine.items():
                parameter.copy_(state[name].to(parameter.device))


def _is_head_parameter(name: str) -> bool:
    return name.startswith(("head.", "layer_logits", "scaler."))


def is_whisper(encoder: nn.Module) -> bool:
    """Whether the backbone is Whisper's encoder (no masked embedding: its input is masked)."""
    return hasattr(encoder, "embed_positions")


def time_mask(valid: Sequence[int], total: int, seed: int, prob: float, length: int) -> np.ndarray:
    """Boolean (rows, total) spans to mask, within each row's `valid` frames, from `seed` alone.

    As transformers' ``_compute_mask_indices`` (``mask_prob * frames / length``
    spans per row, stochastic rounding, at least 2 spans of `length` frames
    where a row holds them), but from a numpy ``Generator`` seeded here, never
    the global RNG, so a resumed run draws the same masks.
    """
    rng = np.random.default_rng(seed)
    mask = np.zeros((len(valid), total), dtype=bool)
    for row, frames in enumerate(valid):
        frames = min(int(frames), total)
        starts_possible = frames - length + 1
        if starts_possible < 1:
            continue
        spans = int(prob * frames / length + rng.random())
        spans = min(max(spans, 2), starts_possible) if prob > 0 else 0
        for start in rng.choice(starts_possible, size=spans, replace=False):
            mask[row, start : start + length] = True
    return mask


def mask_log_mel(segments: Sequence[Segment], seed: int, prob: float, length: int) -> list[Segment]:
    """Copies of Whisper segments with masked spans of log-mel frames set to zero.

    transformers' ``WhisperModel._mask_input_features`` masks the same way; the
    spans fall within each segment's real audio (2 log-mel frames per encoder frame).
    """
    valid = [min(2 * segment.frames, segment.values.shape[-1]) for segment in segments]
    total = max(segment.values.shape[-1] for segment in segments)
    mask = time_mask(valid, total, seed, prob, length)
    out = []
    for row, segment in enumerate(segments):
        values = segment.values.copy()
        values[..., mask[row, : values.shape[-1]]] = 0.0
        out.append(dataclasses.replace(segment, values=values))
    return out


def truncate(encoder: nn.Module, backbone: TransformerBackbone, layer: int) -> None:
    """Drop the transformer layers above `layer`, so that hidden state `layer` is computed last.

    The states kept equal the full model's. Whisper's encoder normalises its
    last state only, so a cut one's final norm becomes an identity
    (wav2vec2-like models in transformers >= 5 return their last state before
    any final norm). State 0, the input embedding, is captured as the first
    layer's input, so one layer is kept for it. The depth is recorded in the
    config (``ssl_ser_full_layers``), so that a saved cut model loads cut the same way.

    Raises:
        ConfigError: `layer` beyond the model's hidden states.
    """
    layers = transformer_layers(encoder)
    full = int(getattr(encoder.config, "ssl_ser_full_layers", len(layers)))
    if layer > full:
        raise ConfigError(
            f"head_layer={layer} but the model has {full + 1} hidden states (0..{full})"
        )
    kept = max(layer, 1)
    if kept < full and is_whisper(encoder):
        encoder.layer_norm = nn.Identity()
    if kept < len(layers):
        getattr(encoder, "encoder", encoder).layers = nn.ModuleList(list(layers)[:kept])
    for name in ("num_hidden_layers", "encoder_layers"):
        if hasattr(encoder.config, name):
            setattr(encoder.config, name, kept)
    encoder.config.ssl_ser_full_layers = full
    backbone.states = kept + 1


def build_model(
    config: FinetuneConfig, n_classes: int, device: str, seed: int
) -> tuple[EmotionModel, TransformerBackbone]:
    """Load the backbone, set what trains, add adapters and the head (seeded).

    Raises:
        ConfigError: a classic baseline (nothing to fine-tune), or a setting the
            model cannot take (top_layers beyond its depth).
    """
    extractor = config.extractor_config().with_absolute_model_path()
    if extractor.is_classic:
        raise ConfigError(f"{config.model!r} is a classic baseline; fine-tuning needs a model")
    backbone = load_backbone(extractor, device)
    if not isinstance(backbone, TransformerBackbone):
        raise ConfigError(f"{config.model!r} cannot be fine-tuned")
    encoder = backbone.model
    if config.head_layer is not None:
        truncate(encoder, backbone, config.head_layer)
    if config.spec_augment:
        allow_time_masks(encoder, config)
    freeze(encoder, config)
    torch.manual_seed(seed)
    if config.adapter == "lora":
        add_lora(encoder, config)
    keep_waveform_out_of_graph(encoder)
    if config.gradient_checkpointing:
        enable_checkpointing(encoder, backbone)
    model = EmotionModel(backbone, n_classes, config)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info("fine-tuning %d of %d parameters (%.1f%%)", trained, total, 100 * trained / total)
    return model, backbone


def allow_time_masks(encoder: nn.Module, config: FinetuneConfig) -> None:
    """Let a wav2vec2-like model apply the masks the trainer passes, and draw none itself.

    Loading turns ``apply_spec_augment`` off; here it is on again. The model
    draws masks of its own (from the global numpy RNG) only in a training
    forward given none, and every training forward is given
    :func:`time_mask`'s seeded spans; its feature-axis masking is turned off.

    Raises:
        ConfigError: a model without a learned mask embedding (masking cannot apply).
    """
    if is_whisper(encoder):
        return
    if getattr(encoder, "masked_spec_embed", None) is None:
        raise ConfigError(
            f"{config.model} has no masked_spec_embed (its config sets no masking), so "
            "SpecAugment cannot be applied: use --no-spec-augment"
        )
    encoder.config.apply_spec_augment = True
    encoder.config.mask_feature_prob = 0.0


def enable_checkpointing(encoder: nn.Module, backbone: TransformerBackbone) -> None:
    """Recompute the transformer layers' activations in backward (non-reentrant checkpoints).

    Non-reentrant, so that layers above a frozen front end still get gradients.
    ``transformers`` checkpoints the convolution layers of a wav2vec2-like front
    end too; their masked group norms (and data2vec's padding zeroer) read the
    batch's valid lengths from a context that has closed by the time backward
    recomputes them, so each checkpoint restores the lengths of its own forward
    while it recomputes (:func:`_masking_restorer`). Without that, a trained
    group-norm front end recomputed a plain ``GroupNorm`` over the padding
    (torch refused it: a different number of saved tensors).
    """
    options = {"use_reentrant": False, "context_fn": _masking_restorer(backbone)}
    enable = getattr(encoder, "activation_checkpointing_enable", None)
    if enable is not None:  # transformers >= 5.x
        enable(activation_checkpointing_kwargs=options)
    else:
        encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)


def _masking_restorer(
    backbone: TransformerBackbone,
) -> Callable[[], tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]]:
    """A checkpoint ``context_fn``: recompute under the masking lengths of the forward pass."""
    holders = [norm for _, norm in getattr(backbone, "masked_norms", [])]
    zeroer = getattr(backbone, "position_zeroer", None)
    if zeroer is not None:
        holders.append(zeroer)

    def context_fn() -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
        saved = [holder.lengths for holder in holders]

        @contextlib.contextmanager
        def recompute() -> Iterator[None]:
            current = [holder.lengths for holder in holders]
            for holder, lengths in zip(holders, saved, strict=True):
                holder.lengths = lengths
            try:
                yield
            finally:
                for holder, lengths in zip(holders, current, strict=True):
                    holder.lengths = lengths

        return contextlib.nullcontext(), recompute()

    return context_fn


def keep_waveform_out_of_graph(encoder: nn.Module) -> None:
    """Stop wav2vec2-like front ends from making the input waveform require grad.

    In training mode ``transformers``' feature encoder sets ``requires_grad`` on
    its input (so that reentrant checkpointing works) unless it was frozen with
    its own ``freeze_feature_encoder``. With the front end frozen here, that
    made backward run through the whole convolution stack (with the masked group
    norms), computing a gradient for the waveform that nothing uses. Checkpoints
    here are non-reentrant (:func:`enable_checkpointing`), which need no input
    gradient, and a trained front end is in the graph through its weights anyway.
    """
    front = getattr(encoder, "feature_extractor", None)
    if front is not None and hasattr(front, "_requires_grad"):
        front._requires_grad = False


def transformer_layers(encoder: nn.Module) -> nn.ModuleList:
    """The stack of transformer layers of a wav2vec2-like model or a Whisper encoder."""
    inner = getattr(encoder, "encoder", encoder)
    return inner.layers


def freeze(encoder: nn.Module, config: FinetuneConfig) -> None:
    """Set ``requires_grad`` on the backbone's parameters per ``config.freeze`` (and adapter)."""
    for name, parameter in encoder.named_parameters():
        parameter.requires_grad_(config.freeze == "none" and not _unused(name))
    if config.freeze == "feature-encoder" and config.adapter == "none":
        for name, parameter in encoder.named_parameters():
            parameter.requires_grad_(not _front_end(name) and not _unused(name))
    if config.freeze == "top":
        layers = transformer_layers(encoder)
        if config.top_layers > len(layers):
            cut = (
                f" below head_layer={config.head_layer} (the layers above it are cut off)"
                if config.head_layer is not None
                else ""
            )
            raise ConfigError(
                f"top_layers={config.top_layers} but {config.model} has {len(layers)} "
                f"transformer layers{cut}"
            )
        for layer in layers[len(layers) - config.top_layers :]:
            layer.requires_grad_(True)
    if hasattr(encoder, "embed_positions"):  # Whisper's sinusoidal positions stay fixed
        encoder.embed_positions.weight.requires_grad_(False)


def _front_end(name: str) -> bool:
    """Whether a parameter belongs to the convolutional front end (wav2vec2-like or Whisper)."""
    return name.startswith(("feature_extractor.", "conv1.", "conv2."))


def _unused(name: str) -> bool:
    return name.split(".")[-1] in UNUSED_PARAMETERS


def add_lora(encoder: nn.Module, config: FinetuneConfig) -> None:
    """Inject LoRA adapters (peft) into the attention projections; only they train there."""
    from peft import inject_adapter_in_model

    inject_adapter_in_model(lora_config(config), encoder)
    for name, parameter in encoder.named_parameters():
        parameter.requires_grad_("lora_" in name)


def lora_config(config: FinetuneConfig) -> Any:
    """The peft ``LoraConfig`` of a run's adapters (injected, and saved beside them)."""
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        target_modules=list(LORA_TARGETS),
        lora_dropout=0.0,
    )


@contextlib.contextmanager
def plain_norms(encoder: nn.Module) -> Iterator[None]:
    """Swap masked group norms back to the model's own while inside (for ``save_pretrained``).

    Extraction wraps each front-end ``GroupNorm`` (see
    :mod:`ssl_ser.extract.masking`), which renames its weights; a saved model
    must carry the original names to load with ``transformers``.
    """
    swapped = []
    for layer in getattr(getattr(encoder, "feature_extractor", None), "conv_layers", []):
        norm = getattr(layer, "layer_norm", None)
        if isinstance(norm, MaskedGroupNorm):
            layer.layer_norm = norm.norm
            swapped.append((layer, norm))
    try:
        yield
    finally:
        for layer, norm in swapped:
            layer.layer_norm = norm


def save_model(model: EmotionModel, config: FinetuneConfig, folder: Path) -> None:
    """Save the fine-tuned backbone (``save_pretrained``, or the adapter), head and preprocessor.

    ``backbone/`` loads with ``transformers.AutoModel`` (group norms under their
    own names, see :func:`plain_norms`); Whisper's is its encoder alone, which
    loads with ``WhisperEncoder.from_pretrained`` (and ssl_ser's own loader), not
    ``AutoModel``. A LoRA adapter (``adapter_model.safetensors`` and
    ``adapter_config.json``) holds names relative to the backbone module, which
    for Whisper is its encoder: inject it with ``peft.inject_adapter_in_model``
    into ``AutoModel.from_pretrained(base)`` (Whisper: ``.get_encoder()``) and
    load it with ``peft.set_peft_model_state_dict``. ``head.safetensors`` holds
    ``head.*``, ``scaler.*`` (the input standardisation) and, with weighted
    layers, ``layer_logits``.
    """
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    encoder = model.encoder
    if config.adapter == "lora":
        from peft import get_peft_model_state_dict

        adapter = _contiguous(get_peft_model_state_dict(encoder))
        save_file(adapter, folder / "adapter_model.safetensors")
        lora_config(config).save_pretrained(str(folder))
    else:
        with plain_norms(encoder):
            encoder.save_pretrained(folder / "backbone")
        model.backbone.preprocessor.feature_extractor.save_pretrained(folder / "backbone")
    head = {f"head.{k}": v for k, v in model.head.state_dict().items()}
    head.update({f"scaler.{k}": v for k, v in model.scaler.state_dict().items()})
    if model.layer_logits is not None:
        head["layer_logits"] = model.layer_logits.detach()
    save_file(_contiguous(head), folder / "head.safetensors")


def output_meaning(
    classes: Sequence[str], label_set: str, config: FinetuneConfig
) -> dict[str, Any]:
    """What a saved model's output columns mean and what feeds them (sealed with the folder)."""
    return {
        "classes": list(classes),
        "label_set": label_set,
        "head": config.head,
        "weighted_layers": config.weighted_layers,
        "layer": config.layer,
        "pooling": "mean",
        "adapter": config.adapter,
    }


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}
