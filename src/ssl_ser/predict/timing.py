"""Time each part of inference on synthetic audio (``ser bench-inference``).

For every duration, a synthetic waveform of that many seconds at the input rate
goes through the parts of inference one at a time, each on its own clock:

- ``resample``: input rate -> the model's rate (:func:`ssl_ser.audio.resample`,
  the resampler extraction and ``ser predict`` use);
- ``preprocess``: the model's preprocessor (waveform -> segments: the feature
  extractor's normalisation, Whisper's log-mel, long-audio windows);
- ``transfer``: the padded numpy batch -> a tensor on the device
  (:meth:`~ssl_ser.extract.backbones.TransformerBackbone.to_device`; a no-op
  on the CPU). Stacking the batch is left to the forward pass, which does it;
- ``forward``: one forward pass with every hidden state
  (:meth:`~ssl_ser.extract.backbones.TransformerBackbone.forward_states`,
  fed the tensor already transferred);
- ``classifier``: for a fine-tuned bundle the masked pooling, the head and the
  softmax (what ``ser predict`` runs after the forward pass); for a bare model
  id or folder only the masked pooling of all hidden states that extraction
  runs (there is no head: the table says so).

Each part is timed as the median and 95th percentile over `repeats` runs after
`warmup` untimed ones; ``total`` is the sum of the parts of each run, and the
real-time factor is the median total over the audio seconds (below 1: faster
than real time). On CUDA the clock is read only after
:func:`torch.cuda.synchronize`, so queued kernels are counted in the part that
launched them.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import torch

from ssl_ser import audio
from ssl_ser.errors import ConfigError
from ssl_ser.extract.backbones import TransformerBackbone, load_backbone
from ssl_ser.extract.batching import pad_stack
from ssl_ser.extract.config import ExtractorConfig
from ssl_ser.testing import tone

PARTS: tuple[str, ...] = ("resample", "preprocess", "transfer", "forward", "classifier")
TOTAL = "total"
DEFAULT_DURATIONS: tuple[float, ...] = (1.0, 5.0, 10.0, 20.0)
DEFAULT_INPUT_RATE = 8000
DEFAULT_REPEATS = 10
DEFAULT_WARMUP = 2
PERCENTILE = 95.0
BUNDLE_CLASSIFIER = "masked pooling + head + softmax"
MODEL_CLASSIFIER = "masked pooling of all hidden states only (bare model: no head)"
PROBE_CLASSIFIER = "masked pooling + the probe's layer, scaler and classifier"
COLUMNS: tuple[str, ...] = (
    "model",
    "kind",
    "device",
    "input_rate",
    "model_rate",
    "duration_s",
    "part",
    "median_ms",
    "p95_ms",
    "rtf",
    "repeats",
    "warmup",
    "model_input_length",
    "note",
)

T = TypeVar("T")


@dataclass
class InferencePipeline:
    """What is timed: a transformer backbone and what runs on its hidden states.

    Attributes:
        name: the model id, model folder or bundle folder as given.
        kind: ``bundle`` (a fine-tuned model folder) or ``model`` (a bare model).
        backbone: the loaded backbone (its preprocessor, device and precision).
        classify: (hidden states, valid frames) of one utterance -> its output on the CPU.
        note: what ``classify`` runs, for the table.
    """

    name: str
    kind: str
    backbone: TransformerBackbone
    classify: Callable[[list[torch.Tensor], np.ndarray], np.ndarray]
    note: str

    @property
    def device(self) -> torch.device:
        """Where the forward pass runs."""
        return self.backbone.device

    @property
    def sample_rate(self) -> int:
        """The rate the model takes audio at."""
        return int(self.backbone.preprocessor.sample_rate)


def load_pipeline(
    target: str | Path, device: str = "auto", whisper_trim: bool = False
) -> InferencePipeline:
    """A fine-tuned or probe bundle, or a bare model id/folder, loaded.

    With `whisper_trim` a bare Whisper model is timed on the log-mel frames of
    the audio only, as extraction and ``ser finetune`` run it with
    ``--whisper-trim``; a bundle is timed as ``ser predict`` runs it, trimmed
    exactly when it was made with ``--whisper-trim``, so asking for it on a
    bundle made without is refused.

    Raises:
        ConfigError: a classic baseline (no forward pass to time), a model
            that cannot load, `whisper_trim` for a model that is not Whisper or
            a bundle made without it.
    """
    from ssl_ser.predict import integrity, load
    from ssl_ser.predict.bundle import ProbePredictor, is_probe
    from ssl_ser.predict.finetuned import is_finetuned

    folder = Path(target).expanduser()
    saved = (folder / integrity.INTEGRITY_FILE).is_file() or is_probe(folder)
    if not (folder.is_dir() and (saved or is_finetuned(folder))):
        return _bare_pipeline(target, device, whisper_trim)
    bundle: Any = load(folder, device)  # its files checked against its seal first
    if isinstance(bundle, ProbePredictor):
        if not isinstance(bundle.backbone, TransformerBackbone):
            raise ConfigError(f"{target!r} probes a classic baseline: no forward pass to time")
        classify = functools.partial(_probe_classifier, bundle)
        note = PROBE_CLASSIFIER
    else:
        classify = functools.partial(_head_classifier, bundle.model)
        note = BUNDLE_CLASSIFIER
    _check_bundle_trim(target, bundle.backbone, whisper_trim)
    return InferencePipeline(str(target), "bundle", bundle.backbone, classify, note)


def _bare_pipeline(target: str | Path, device: str, whisper_trim: bool) -> InferencePipeline:
    """A bare model id or folder: its forward pass and extraction's pooling, no head."""
    config = ExtractorConfig.for_model(str(target), whisper_trim=whisper_trim)
    config = config.with_absolute_model_path()
    if config.is_classic:
        raise ConfigError(
            f"{target!r} is a classic baseline computed entirely in preprocessing; "
            "bench-inference times transformer models and fine-tuned bundles"
        )
    backbone = load_backbone(config, device)
    if not isinstance(backbone, TransformerBackbone):
        raise ConfigError(f"{target!r} has no forward pass to time")
    classify = functools.partial(_pooling_only, backbone)
    return InferencePipeline(str(target), "model", backbone, classify, MODEL_CLASSIFIER)


def _check_bundle_trim(target: str | Path, backbone: TransformerBackbone, trim: bool) -> None:
    """Refuse --whisper-trim for a bundle that ``ser predict`` runs on the whole 30 s window."""
    if trim and not getattr(backbone, "trim", False):
        raise ConfigError(
            f"--whisper-trim: {str(target)!r} was made without --whisper-trim, so ser predict "
            "runs it on the padded 30 s window (a non-Whisper model: on its audio as it is); "
            "bench-inference times it as ser predict runs it: leave --whisper-trim out"
        )


def _head_classifier(model: Any, states: list[torch.Tensor], frames: np.ndarray) -> np.ndarray:
    """Pooling, head and softmax of a fine-tuned :class:`~ssl_ser.finetune.model.EmotionModel`."""
    pooled = model.pool_states(states, frames, [len(frames)])
    return torch.softmax(model.logits(pooled), 1).cpu().numpy()


def _probe_classifier(probe: Any, states: list[torch.Tensor], frames: np.ndarray) -> np.ndarray:
    """Pooling, the bundle's layer choice and its fitted classifier (a probe bundle)."""
    stats = probe.backbone.pooled(states, frames)
    return probe.classify(probe.features_of(stats, [len(frames)]))


def _pooling_only(
    backbone: TransformerBackbone, states: list[torch.Tensor], frames: np.ndarray
) -> np.ndarray:
    """Extraction's masked statistics of every hidden state, moved to the CPU."""
    return backbone.pooled(states, frames).mean


def synthetic_audio(seconds: float, sample_rate: int) -> np.ndarray:
    """A harmonic tone with a little noise, `seconds` long at `sample_rate` (float32)."""
    return tone(seconds, sample_rate, frequency=180.0, seed=0)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA only), so that a clock read counts it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run: Callable[[], T], device: torch.device) -> tuple[T, float]:
    """`run`'s result and its wall seconds, the device synchronised before both clock reads."""
    synchronize(device)
    start = time.perf_counter()
    result = run()
    synchronize(device)
    return result, time.perf_counter() - start


@contextlib.contextmanager
def transferred(backbone: TransformerBackbone, tensor: torch.Tensor) -> Iterator[None]:
    """While inside, the backbone's batch transfer hands back `tensor` (already on the device).

    Lets the forward pass be timed without the transfer, through the very
    :meth:`forward_states` that extraction and prediction run.

    Raises:
        RuntimeError: the forward pass asked for a batch of another shape.
    """

    def ready(array: np.ndarray) -> torch.Tensor:
        if tuple(array.shape) != tuple(tensor.shape):
            raise RuntimeError(
                f"forward pass stacked a batch of {array.shape}, transferred {tuple(tensor.shape)}"
            )
        return tensor

    backbone.to_device = ready  # type: ignore[method-assign]
    try:
        yield
    finally:
        del backbone.to_device


@dataclass
class TimedRun:
    """One waveform through every part.

    Attributes:
        seconds: wall seconds per part (:data:`PARTS`).
        length: the model input's length on its last axis, summed over segments
            (samples at the model's rate, or Whisper's log-mel frames).
        output: what the classifier part returned (probabilities, or pooled means).
    """

    seconds: dict[str, float]
    length: int
    output: np.ndarray


def time_once(pipeline: InferencePipeline, wave: np.ndarray, input_rate: int) -> TimedRun:
    """Run one waveform at `input_rate` through every part, each on its own clock."""
    backbone, device = pipeline.backbone, pipeline.device
    seconds: dict[str, float] = {}
    resampled, seconds["resample"] = timed(
        lambda: audio.resample(wave, input_rate, pipeline.sample_rate), device
    )
    segments, seconds["preprocess"] = timed(lambda: backbone.preprocessor(resampled), device)
    # the padded batch the forward pass stacks (same padding value)
    batch, _ = pad_stack([s.values for s in segments], getattr(backbone, "pad_value", 0.0))
    tensor, seconds["transfer"] = timed(lambda: backbone.to_device(batch), device)
    with backbone.precision(), transferred(backbone, tensor):
        (states, frames), seconds["forward"] = timed(
            lambda: backbone.forward_states(segments), device
        )
    with backbone.precision():
        output, seconds["classifier"] = timed(lambda: pipeline.classify(states, frames), device)
    return TimedRun(seconds, sum(int(s.values.shape[-1]) for s in segments), output)


def time_duration(
    pipeline: InferencePipeline, seconds: float, input_rate: int, repeats: int, warmup: int
) -> tuple[dict[str, np.ndarray], int]:
    """Per part (and ``total``), the seconds of each of `repeats` runs after `warmup` runs.

    Also the model input's length (see :class:`TimedRun`).
    """
    wave = synthetic_audio(seconds, input_rate)
    for _ in range(warmup):
        time_once(pipeline, wave, input_rate)
    runs = [time_once(pipeline, wave, input_rate) for _ in range(repeats)]
    times = {part: np.array([run.seconds[part] for run in runs]) for part in PARTS}
    times[TOTAL] = np.sum([times[part] for part in PARTS], axis=0)
    return times, runs[-1].length


def check_settings(durations: Sequence[float], input_rate: int, repeats: int, warmup: int) -> None:
    """Refuse settings that cannot be timed, naming the bad value."""
    if not durations or any(not d > 0 for d in durations):
        raise ConfigError(f"durations {list(durations)!r} must be positive seconds")
    if int(input_rate) != input_rate or input_rate <= 0:
        raise ConfigError(f"input rate {input_rate!r} must be a positive integer (Hz)")
    if repeats < 1:
        raise ConfigError(f"repeats {repeats!r} must be at least 1")
    if warmup < 0:
        raise ConfigError(f"warmup {warmup!r} must be 0 or more")


def bench(
    pipeline: InferencePipeline,
    durations: Sequence[float] = DEFAULT_DURATIONS,
    input_rate: int = DEFAULT_INPUT_RATE,
    repeats: int = DEFAULT_REPEATS,
    warmup: int = DEFAULT_WARMUP,
) -> pd.DataFrame:
    """The timing table: one row per duration and part (``total`` last), columns :data:`COLUMNS`.

    ``rtf`` is the row's median over the audio seconds; that of ``total`` is
    the real-time factor.
    """
    check_settings(durations, input_rate, repeats, warmup)
    rows = []
    for seconds in durations:
        times, length = time_duration(pipeline, float(seconds), int(input_rate), repeats, warmup)
        for part in (*PARTS, TOTAL):
            median, p95 = np.median(times[part]), np.percentile(times[part], PERCENTILE)
            rows.append(
                {
                    "model": pipeline.name,
                    "kind": pipeline.kind,
                    "device": str(pipeline.device),
                    "input_rate": int(input_rate),
                    "model_rate": pipeline.sample_rate,
                    "duration_s": float(seconds),
                    "part": part,
                    "median_ms": 1000.0 * median,
                    "p95_ms": 1000.0 * p95,
                    "rtf": median / float(seconds),
                    "repeats": repeats,
                    "warmup": warmup,
                    "model_input_length": length,
                    "note": pipeline.note if part == "classifier" else "",
                }
            )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def format_table(table: pd.DataFrame) -> str:
    """The timing table as text: a line per duration, median / p95 in ms per part, RTF."""
    first = table.iloc[0]
    header = [
        f"{first['model']} ({first['kind']}) on {first['device']}; "
        f"{first['input_rate']} Hz input -> {first['model_rate']} Hz model; "
        f"median / p95 ms over {first['repeats']} runs after {first['warmup']} warm-up",
        f"classifier: {table.loc[table['part'] == 'classifier', 'note'].iloc[0]}",
    ]
    names = ["audio s", *PARTS, TOTAL, "RTF"]
    lines = []
    for seconds, rows in table.groupby("duration_s", sort=False):
        by_part = rows.set_index("part")
        cells = [f"{seconds:g}"]
        cells += [
            f"{_ms(by_part.loc[p, 'median_ms'])} / {_ms(by_part.loc[p, 'p95_ms'])}"
            for p in (*PARTS, TOTAL)
        ]
        cells.append(f"{by_part.loc[TOTAL, 'rtf']:.4f}")
        lines.append(cells)
    widths = [max(len(n), *(len(c[i]) for c in lines)) for i, n in enumerate(names)]
    text = ["  ".join(n.rjust(w) for n, w in zip(names, widths, strict=True))]
    text += ["  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) for cells in lines]
    return "\n".join(header + text)


def _ms(value: float) -> str:
    """Milliseconds with two decimals, whole ones from 100 ms."""
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"
