"""Exact batching for front ends that padding would change.

Group-norm front ends. wav2vec2-base, HuBERT-base, WavLM-base and other
``feat_extract_norm == "group"`` models normalise their first convolution's
output per channel over *time*. Zero padding adds frames to those statistics,
so a padded utterance comes out different from the same utterance alone, and
an attention mask cannot help (the front end takes none). Every convolution
output frame of a valid position depends only on valid input samples, so the
only leak is through those statistics. :class:`MaskedGroupNorm` replaces such a
``GroupNorm`` with one that computes them over each utterance's valid frames
only; with the transformer batched under its usual attention mask, the whole
batch then equals per-utterance runs (float rounding aside) at full batch speed,
for the price of one extra copy of the first convolution's output. The other
exact strategies give up batching: lengths rarely match to the sample, so
equal-length groups are mostly single utterances, and a per-utterance front end
runs about a third of wav2vec2-base's compute one utterance at a time.

Stacked positional convolutions (data2vec-audio) leak padding the same way;
:class:`PaddingZeroer` keeps their padded frames at zero.

Whisper trimming. Whisper's encoder insists on the full 3000-frame window;
:func:`whisper_states` runs the same layers on a shorter window (the
``--whisper-trim`` option), masking each utterance's padding so that a batch of
trimmed inputs equals trimmed single runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from ssl_ser.extract.pooling import frame_mask


class MaskedGroupNorm(nn.Module):
    """A ``GroupNorm`` over (batch, channels, time) whose statistics skip padded frames.

    Without lengths set it is the wrapped ``GroupNorm`` itself; inside
    :func:`valid_lengths` it normalises each row with statistics of its first
    ``lengths[b]`` frames only (biased variance and ``eps`` inside the root, as
    ``GroupNorm``), running the fused ``group_norm`` on each row's valid part.
    """

    def __init__(self, norm: nn.GroupNorm):
        super().__init__()
        self.norm = norm
        self.lengths: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise `x` (batch, channels, time); padded frames come out as zeros."""
        if self.lengths is None:
            return self.norm(x)
        norm = self.norm
        out = torch.empty_like(x)
        for row, length in enumerate(self.lengths.tolist()):
            valid = x[row : row + 1, :, :length]
            out[row, :, :length] = nn.functional.group_norm(
                valid, norm.num_groups, norm.weight, norm.bias, norm.eps
            )[0]
            out[row, :, length:] = 0
        return out


def install_masked_group_norms(feature_encoder: nn.Module) -> list[tuple[int, MaskedGroupNorm]]:
    """Swap every ``GroupNorm`` of a conv front end for a :class:`MaskedGroupNorm`.

    Returns:
        ``(conv layer index, masked norm)`` pairs, so callers know after how many
        convolutions each norm sits.
    """
    installed = []
    for index, layer in enumerate(feature_encoder.conv_layers):
        norm = getattr(layer, "layer_norm", None)
        if isinstance(norm, nn.GroupNorm):
            masked = MaskedGroupNorm(norm)
            layer.layer_norm = masked
            installed.append((index, masked))
    return installed


@contextlib.contextmanager
def masked_front_end(
    norms: Sequence[tuple[int, MaskedGroupNorm]],
    samples: torch.Tensor | None,
    kernels: Sequence[int],
    strides: Sequence[int],
) -> Iterator[None]:
    """Give each masked norm the valid frame count after its convolution, while inside.

    `norms` are the pairs :func:`install_masked_group_norms` returned; `samples` the
    valid input samples per row (``None`` when nothing is padded).
    """
    with contextlib.ExitStack() as stack:
        if samples is not None:
            for index, norm in norms:
                lengths = samples
                for kernel, stride in zip(kernels[: index + 1], strides[: index + 1], strict=True):
                    lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
                stack.enter_context(valid_lengths(norm, lengths))
        yield


class PaddingZeroer:
    """Zeroes the padded frames of some modules' (batch, channels, time) outputs while active.

    data2vec-audio's positional embedding stacks several same-padded convolutions;
    alone, an utterance meets zeros past its end at every one of them, but in a
    batch the later convolutions would read the earlier ones' outputs on padded
    frames. Zeroing those frames after each convolution restores the zeros.
    """

    def __init__(self, modules: Sequence[nn.Module]):
        self.lengths: torch.Tensor | None = None
        self.handles = [module.register_forward_hook(self._zero_padding) for module in modules]

    def _zero_padding(
        self, module: nn.Module, args: tuple, output: torch.Tensor
    ) -> torch.Tensor | None:
        if self.lengths is None:
            return None
        return output * frame_mask(self.lengths, output.shape[-1])[:, None, :].to(output.dtype)


@contextlib.contextmanager
def valid_lengths(
    holder: MaskedGroupNorm | PaddingZeroer, lengths: torch.Tensor | None
) -> Iterator[None]:
    """Let `holder` see only the first `lengths[b]` frames of row b while inside (None: all)."""
    holder.lengths = lengths
    try:
        yield
    finally:
        holder.lengths = None


def stacked_position_convs(encoder: nn.Module) -> list[nn.Module]:
    """The convolution layers of a positional embedding that stacks more than one."""
    layers = getattr(getattr(encoder, "pos_conv_embed", None), "layers", None)
    return list(layers) if layers is not None and len(layers) > 1 else []


def whisper_states(
    encoder: nn.Module, features: torch.Tensor, mel_lengths: torch.Tensor | None
) -> list[torch.Tensor]:
    """All hidden states of Whisper's encoder on a window of any length up to 30 s.

    The same computation as ``WhisperEncoder.forward(output_hidden_states=True)``
    (input embedding with positions, each layer's output, the last one after the
    final layer norm), without its fixed-length check. With `mel_lengths`, each
    row's padded log-mel frames are zeroed after the first convolution and its
    padded encoder frames are masked out of attention, so rows do not see their
    padding.

    Args:
        encoder: a ``WhisperEncoder``.
        features: log-mel input (batch, mels, frames), frames <= the encoder's window.
        mel_lengths: valid log-mel frames per row, or ``None`` when none is padded.
    """
    from transformers.masking_utils import create_bidirectional_mask

    hidden = nn.functional.gelu(encoder.conv1(features))
    if mel_lengths is not None:
        hidden = hidden * frame_mask(mel_lengths, hidden.shape[-1])[:, None, :]
    hidden = nn.functional.gelu(encoder.conv2(hidden)).permute(0, 2, 1)
    hidden = hidden + encoder.embed_positions.weight[: hidden.shape[1]]
    attention = None
    if mel_lengths is not None:
        valid = frame_mask((mel_lengths - 1) // 2 + 1, hidden.shape[1])
        attention = create_bidirectional_mask(
            config=encoder.config, inputs_embeds=hidden, attention_mask=valid
        )
    states = [hidden]
    for layer in encoder.layers:
        hidden = layer(hidden, attention)
        states.append(hidden)
    states[-1] = encoder.layer_norm(hidden)
    return states
