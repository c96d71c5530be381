"""Audio input: the one place that reads audio, picks channels, resamples, applies conditions.

Every stage gets its waveforms from :func:`load` (a path) or :func:`load_utterance`
(a manifest row): mono ``float32`` at the requested rate (16 kHz by default).
Features defined on the signal as recorded (eGeMAPS) use :func:`load_native` and
:func:`load_utterance_native` instead: the file's own rate for ``clean``, the
chain's own 8 kHz output (before resampling back) for ``telephone``.

Channels. A manifest row's ``channel`` says which channel to read. ``channel >= 0``
takes that channel alone; EMOVO's two-microphone recordings use channel 0 by corpus
policy, because averaging two microphones at different distances comb-filters the
voice. ``channel = -1`` (:data:`ssl_ser.manifest.DOWNMIX`) averages all channels with
equal weights, the usual downmix for stereo recordings of one talker.

Resampling. soxr at quality ``"HQ"`` (20-bit precision, passband to about 91 % of the
lower Nyquist frequency, linear phase). A file of ``n`` samples at rate ``r``
becomes ``round(n * sample_rate / r)`` samples.

Conditions. ``clean`` is the file as recorded. ``telephone`` simulates a
narrow-band (G.711) telephone channel with a fixed, deterministic chain
(:class:`TelephoneChain`, version 1), applied to the clean waveform at the
requested rate:

1. resample to 8 kHz (soxr HQ);
2. band-pass 300-3400 Hz: Butterworth design of order 6 (12 poles, second-order
   sections) run forward and backward (``scipy.signal.sosfiltfilt``), so zero
   phase, -6 dB at the two cut-offs and -44 dB at 200 Hz;
3. G.711 mu-law companding with mu = 255 and 8-bit codes (sign bit plus 7-bit
   magnitude of the companded value, as in G.711, whose zero code decodes to
   exactly 0); samples outside [-1, 1] are clipped first. The continuous mu-law
   curve is used, not G.711's 8-segment piecewise-linear approximation of it;
4. resample back to the requested rate (soxr HQ) and trim or zero-pad to the
   input length, so the output has as many samples as the clean waveform.

Measured on white noise (RMS 0.1, 16 kHz in and out): the energy below 200 Hz is
49 dB and the energy above 4 kHz 128 dB under the 300-3400 Hz energy, whose level
the chain keeps within 0.01 dB. The floor below 200 Hz is mu-law quantisation
noise (about 38 dB signal-to-noise ratio for loud signals), not the filter.

:func:`condition_params` returns these parameters as a JSON-serialisable dict,
which the feature cache folds into its key, so features of different chains never
mix. Corpora that ship a ready telephone copy (a ``wav_telephone`` folder) can use
it instead of the chain (``telephone_source="folder"``).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf
import soxr
from tqdm.auto import tqdm

from ssl_ser.atomic import write_file
from ssl_ser.choices import CONDITIONS, TELEPHONE_SOURCES
from ssl_ser.errors import AudioError, ConfigError, ManifestError, UnknownChoiceError
from ssl_ser.manifest import DOWNMIX
from ssl_ser.paths import existing_form, unreadable_reason

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# The file types the corpus readers and ``ser predict`` look for in a folder.
AUDIO_SUFFIXES: frozenset[str] = frozenset({".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff"})
DEFAULT_SAMPLE_RATE = 16000
RESAMPLE_QUALITY = "HQ"
CLEAN_VERSION = 1


@dataclass(frozen=True)
class TelephoneChain:
    """Parameters of the simulated telephone channel (see the module docstring).

    Attributes:
        version: bumped whenever the chain's code changes its output.
        rate: sample rate of the channel in Hz.
        low_hz: lower band edge (-6 dB after the zero-phase filter).
        high_hz: upper band edge (-6 dB after the zero-phase filter).
        filter_order: Butterworth design order (the band-pass has twice as many poles).
        mu: mu-law compression parameter.
        bits: bits per companded sample (one sign bit, the rest magnitude).
    """

    version: int = 1
    rate: int = 8000
    low_hz: float = 300.0
    high_hz: float = 3400.0
    filter_order: int = 6
    mu: int = 255
    bits: int = 8


TELEPHONE = TelephoneChain()


def condition_params(condition: str) -> dict[str, Any]:
    """Everything that defines a condition's audio, as a JSON-serialisable dict.

    Part of the feature cache key: two conditions give the same dict only if they
    produce the same samples from the same file.

    Raises:
        UnknownChoiceError: `condition` is not one of :data:`CONDITIONS`.
    """
    check_condition(condition)
    params: dict[str, Any] = {
        "condition": condition,
        "resampler": f"soxr-{RESAMPLE_QUALITY}",
    }
    if condition == "clean":
        params["version"] = CLEAN_VERSION
    else:
        params.update(dataclasses.asdict(TELEPHONE))
    return params


def check_condition(condition: str) -> None:
    """Refuse a condition name other than those in :data:`CONDITIONS`."""
    if condition not in CONDITIONS:
        raise UnknownChoiceError("condition", condition, CONDITIONS)


def check_telephone_source(source: str) -> None:
    """Refuse a telephone source other than those in :data:`TELEPHONE_SOURCES`."""
    if source not in TELEPHONE_SOURCES:
        raise UnknownChoiceError("telephone source", source, TELEPHONE_SOURCES)


def _check_sample_rate(sample_rate: int) -> None:
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ConfigError(f"sample rate {sample_rate!r} is not valid; expected a positive integer")


def load(
    path: str | Path,
    condition: str = "clean",
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    channel: int = DOWNMIX,
) -> np.ndarray:
    """Read an audio file as mono float32 at `sample_rate`, under a condition.

    Args:
        path: audio file (any format libsndfile reads).
        condition: ``clean`` or ``telephone`` (see the module docstring).
        sample_rate: output rate in Hz.
        channel: channel index to read, or -1 to average all channels.

    Raises:
        AudioError: the file is missing or unreadable, holds no samples, or lacks
            the channel; the message names the file.
        UnknownChoiceError: unknown condition.
        ConfigError: a channel below -1 or a non-positive sample rate.
    """
    check_condition(condition)
    _check_sample_rate(sample_rate)
    path, wave, file_rate = _read_mono(path, channel)
    wave = resample(wave, file_rate, sample_rate)
    if wave.size == 0:
        raise AudioError(path, f"too short to resample from {file_rate} to {sample_rate} Hz")
    return apply_condition(wave, sample_rate, condition)


def load_native(
    path: str | Path, condition: str = "clean", channel: int = DOWNMIX
) -> tuple[np.ndarray, int]:
    """Read an audio file as mono float32 at its own rate, under a condition; returns (wave, rate).

    ``clean`` is the file's samples at the file's rate. ``telephone`` is the
    chain's output at the chain's rate (8 kHz, :func:`telephone_narrowband`),
    what a telephone line carries, without the resampling back.

    Raises:
        AudioError, UnknownChoiceError, ConfigError: as :func:`load`.
    """
    check_condition(condition)
    path, wave, file_rate = _read_mono(path, channel)
    if condition == "clean":
        return wave, file_rate
    narrow = telephone_narrowband(wave, file_rate)
    if narrow.size == 0:
        raise AudioError(path, f"too short to resample from {file_rate} to {TELEPHONE.rate} Hz")
    return narrow, TELEPHONE.rate


def _read_mono(path: str | Path, channel: int) -> tuple[Path, np.ndarray, int]:
    """The existing path, the chosen channel (or downmix) as float32, and the file's rate."""
    if channel < DOWNMIX:
        raise ConfigError(
            f"channel {channel} is not valid; expected -1 (downmix) or a channel index >= 0"
        )
    path = _existing_path(Path(path))
    data, file_rate = _read(path)
    return path, _pick_channel(data, channel, path), file_rate


def _existing_path(path: Path) -> Path:
    """The path as given, or its NFC/NFD twin when only that exists on disk."""
    found = existing_form(path)
    if found is None:
        raise AudioError(path, "file does not exist")
    return found


def _read(path: Path) -> tuple[np.ndarray, int]:
    """All samples as a (frames, channels) float32 array, and the file's rate."""
    try:
        data, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # libsndfile reports bad files with several types
        raise AudioError(path, unreadable_reason(path, error)) from error
    if data.shape[0] == 0:
        raise AudioError(path, "zero samples")
    _check_finite(data, int(file_rate), path)
    return data, int(file_rate)


def _check_finite(data: np.ndarray, rate: int, path: Path) -> None:
    """Refuse NaN or infinite samples, which a float WAV can hold.

    Every extractor would turn them into NaN features (or finite nonsense), and a
    sweep would stop later; refused here, the utterance is recorded as failed.
    """
    finite = np.isfinite(data)
    if not finite.all():
        first = int(np.flatnonzero(~finite.all(axis=1))[0])
        raise AudioError(
            path,
            f"{int((~finite).sum())} non-finite sample(s) (NaN or inf), the first at "
            f"{first / rate:.3f} s",
        )


def _pick_channel(data: np.ndarray, channel: int, path: Path) -> np.ndarray:
    """One channel of a (frames, channels) array, or the mean of all for DOWNMIX."""
    channels = data.shape[1]
    if channel == DOWNMIX:
        return np.ascontiguousarray(data.mean(axis=1, dtype=np.float32))
    if channel >= channels:
        raise AudioError(
            path,
            f"channel {channel} out of range: the file has {channels} channel(s) "
            f"(valid: 0..{channels - 1}, or -1 to downmix)",
        )
    return np.ascontiguousarray(data[:, channel])


def resample(wave: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample a mono waveform with soxr (quality :data:`RESAMPLE_QUALITY`) as float32."""
    wave = np.asarray(wave, dtype=np.float32)
    if rate_in == rate_out:
        return wave
    return soxr.resample(wave, rate_in, rate_out, quality=RESAMPLE_QUALITY).astype(np.float32)


def apply_condition(wave: np.ndarray, sample_rate: int, condition: str) -> np.ndarray:
    """Apply a condition to an in-memory mono waveform; same rate and length out.

    Raises:
        UnknownChoiceError: unknown condition.
    """
    check_condition(condition)
    _check_sample_rate(sample_rate)
    wave = np.asarray(wave, dtype=np.float32)
    if condition == "clean":
        return wave
    return telephone(wave, sample_rate)


def telephone(wave: np.ndarray, sample_rate: int, chain: TelephoneChain = TELEPHONE) -> np.ndarray:
    """Pass a mono waveform through the telephone chain; same rate and length out."""
    narrow = telephone_narrowband(wave, sample_rate, chain)
    out = resample(narrow, chain.rate, sample_rate)
    return _fit_length(out, len(wave))


def telephone_narrowband(
    wave: np.ndarray, sample_rate: int, chain: TelephoneChain = TELEPHONE
) -> np.ndarray:
    """Steps 1-3 of the telephone chain: the float32 signal at the chain's own rate (8 kHz)."""
    narrow = resample(wave, sample_rate, chain.rate).astype(np.float64)
    narrow = band_pass(narrow, chain)
    narrow = mu_law_decode(mu_law_encode(narrow, chain.mu, chain.bits), chain.mu, chain.bits)
    return narrow.astype(np.float32)


def band_pass(wave: np.ndarray, chain: TelephoneChain = TELEPHONE) -> np.ndarray:
    """Zero-phase Butterworth band-pass of a waveform at the chain's rate."""
    from scipy import signal  # scipy.signal takes about a second to import

    if wave.size == 0:
        return wave
    sos = _band_pass_sections(chain)
    padlen = min(3 * (2 * len(sos) + 1), wave.size - 1)
    return signal.sosfiltfilt(sos, wave, padlen=padlen)


@functools.cache
def _band_pass_sections(chain: TelephoneChain) -> np.ndarray:
    """Second-order sections of the chain's band-pass, designed once per chain."""
    from scipy import signal

    return signal.butter(
        chain.filter_order,
        [chain.low_hz, chain.high_hz],
        btype="bandpass",
        fs=chain.rate,
        output="sos",
    )


def mu_law_encode(wave: np.ndarray, mu: int = 255, bits: int = 8) -> np.ndarray:
    """Companded codes of samples in [-1, 1] (clipped): sign bit, then magnitude bits.

    The code's top bit is 1 for negative samples; the low ``bits - 1`` bits hold
    ``round(levels * ln(1 + mu |x|) / ln(1 + mu))`` with ``levels = 2**(bits-1) - 1``.
    """
    levels = 2 ** (bits - 1) - 1
    x = np.clip(np.asarray(wave, dtype=np.float64), -1.0, 1.0)
    companded = np.log1p(mu * np.abs(x)) / math.log1p(mu)
    magnitude = np.rint(companded * levels).astype(np.int64)
    sign = (x < 0).astype(np.int64) << (bits - 1)
    dtype = np.uint8 if bits <= 8 else np.uint16
    return (sign | magnitude).astype(dtype)


def mu_law_decode(codes: np.ndarray, mu: int = 255, bits: int = 8) -> np.ndarray:
    """Samples in [-1, 1] from codes of :func:`mu_law_encode` (its inverse up to rounding)."""
    codes = np.asarray(codes, dtype=np.int64)
    levels = 2 ** (bits - 1) - 1
    magnitude = (codes & levels) / levels
    sign = np.where(codes >> (bits - 1), -1.0, 1.0)
    return sign * np.expm1(magnitude * math.log1p(mu)) / mu


def _fit_length(wave: np.ndarray, length: int) -> np.ndarray:
    """Trim or zero-pad a waveform to `length` samples."""
    if wave.size >= length:
        return np.ascontiguousarray(wave[:length])
    return np.pad(wave, (0, length - wave.size))


def load_utterance(
    row: Mapping[str, Any],
    condition: str = "clean",
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    telephone_source: str = "derived",
) -> np.ndarray:
    """Read one manifest row's audio under a condition.

    Args:
        row: a manifest row (pandas Series or mapping) with ``path`` and optionally
            ``channel``, ``telephone_path`` and ``utt_id``.
        condition: ``clean`` or ``telephone``.
        sample_rate: output rate in Hz.
        telephone_source: for ``telephone``, ``derived`` applies the chain to the
            clean file; ``folder`` reads the corpus's ready ``telephone_path`` copy.

    Raises:
        AudioError: unreadable audio, or no ready telephone copy for ``folder``
            (the message names the utterance).
        UnknownChoiceError: unknown condition or telephone source.
    """
    path, applied = _utterance_source(row, condition, telephone_source)
    return load(path, applied, sample_rate, _row_channel(row))


def load_utterance_native(
    row: Mapping[str, Any], condition: str = "clean", telephone_source: str = "derived"
) -> tuple[np.ndarray, int]:
    """Read one manifest row's audio at its own rate (see :func:`load_native`); (wave, rate).

    A ready telephone copy (``telephone_source="folder"``) is read at its own rate.

    Raises:
        AudioError, UnknownChoiceError: as :func:`load_utterance`.
    """
    path, applied = _utterance_source(row, condition, telephone_source)
    return load_native(path, applied, _row_channel(row))


def utterance_path(
    row: Mapping[str, Any], condition: str = "clean", telephone_source: str = "derived"
) -> str:
    """The file :func:`load_utterance` reads for a row under a condition (what gets fingerprinted).

    Raises:
        AudioError, UnknownChoiceError: as :func:`load_utterance`.
    """
    return _utterance_source(row, condition, telephone_source)[0]


def _utterance_source(
    row: Mapping[str, Any], condition: str, telephone_source: str
) -> tuple[str, str]:
    """The file to read for a row under a condition, and the condition still to apply to it."""
    check_condition(condition)
    check_telephone_source(telephone_source)
    if condition == "telephone" and telephone_source == "folder":
        ready = _row_text(row, "telephone_path")
        if not ready:
            utt_id = _row_text(row, "utt_id") or _row_text(row, "path")
            raise AudioError(
                _row_text(row, "path"),
                f"utterance {utt_id!r} has no ready telephone copy (empty telephone_path); "
                "use telephone_source 'derived' to apply the telephone chain instead",
            )
        return ready, "clean"
    return row["path"], condition


def _row_value(row: Mapping[str, Any], key: str, default: Any) -> Any:
    """A row's `key`, or `default` where it is missing, None, empty or NaN."""
    value = row.get(key, default)
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return default
    return value


def _row_text(row: Mapping[str, Any], key: str) -> str:
    return str(_row_value(row, key, ""))


def _row_channel(row: Mapping[str, Any]) -> int:
    return int(_row_value(row, "channel", DOWNMIX))


def render_condition(
    manifest_df: pd.DataFrame,
    condition: str,
    out_dir: str | Path,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    telephone_source: str = "derived",
    progress: bool = False,
) -> list[Path]:
    """Write every utterance under a condition as 16-bit WAV, for listening; the paths, in order.

    Files go to ``out_dir/<utt_id>.wav`` (``emodb/03a01Fa`` becomes the subfolder
    ``emodb``); samples beyond [-1, 1] are clipped.
    """
    check_condition(condition)
    check_telephone_source(telephone_source)
    out_dir = Path(out_dir).resolve()
    written: list[Path] = []
    rows = manifest_df.to_dict("records")
    for row in tqdm(rows, desc=f"render {condition}", unit="utt", disable=not progress):
        wave = load_utterance(row, condition, sample_rate, telephone_source)
        target = _render_path(out_dir, str(row["utt_id"]))
        clipped = np.clip(wave, -1.0, 1.0)
        write_file(
            target,
            lambda p, w=clipped: sf.write(str(p), w, sample_rate, subtype="PCM_16", format="WAV"),
            root=out_dir,
        )
        written.append(target)
    log.info("rendered %d %s file(s) to %s", len(written), condition, out_dir)
    return written


def _render_path(out_dir: Path, utt_id: str) -> Path:
    """``out_dir/<utt_id>.wav``, refusing ids that would leave `out_dir`."""
    target = (out_dir / f"{utt_id}.wav").resolve()
    if not target.is_relative_to(out_dir):
        raise ManifestError(f"utt_id {utt_id!r} points outside the output folder {out_dir}")
    return target


# WAV data-chunk sizes that streaming writers leave as placeholders: the length is unknown.
UNKNOWN_WAV_SIZES: frozenset[int] = frozenset({0, 0xFFFFFFFF})


def check_complete(path: str | Path) -> None:
    """Refuse a WAV file whose header declares more frames than its data holds (truncated).

    libsndfile silently decodes what is there, so a WAV cut to 3,000 bytes whose
    header says 2 s reads as 0.09 s of audio. Other formats, and WAV headers
    with a placeholder size (streamed files), are left to the decoder.

    Raises:
        AudioError: naming the declared and the decodable duration.
    """
    path = Path(path)
    if not path.is_file():
        return  # reading it says why
    frames = _wav_declared(path)
    if frames is None:
        return
    try:
        info = sf.info(str(path))
    except Exception:  # unreadable: the decoder's own error says why
        return
    if frames > info.frames:
        raise AudioError(
            path,
            f"truncated: its header declares {frames} frames ({frames / info.samplerate:.3f} s) "
            f"but only {info.frames} ({info.frames / info.samplerate:.3f} s) are in the file; "
            "not used",
        )


def _wav_declared(path: Path) -> int | None:
    """The frames a RIFF/WAVE file's data chunk declares (None: not WAV, or unknown)."""
    with open(path, "rb") as file:
        if file.read(4) != b"RIFF" or not file.read(4) or file.read(4) != b"WAVE":
            return None
        block_align = 0
        while len(header := file.read(8)) == 8:
            name, size = header[:4], int.from_bytes(header[4:], "little")
            if name == b"fmt ":
                block_align = int.from_bytes(file.read(16)[12:14], "little")
                file.seek(size - 16 + (size & 1), 1)
            elif name == b"data":
                if size in UNKNOWN_WAV_SIZES or block_align == 0:
                    return None
                return size // block_align
            else:
                file.seek(size + (size & 1), 1)
    return None
