"""Synthetic manifests and features with a known, layer-dependent class signal.

Used by tests and benchmarks in place of real caches: every utterance gets a
class mean (strongest at a chosen layer, weaker towards the ends), a speaker
offset, noise shared across neighbouring layers and fresh noise per layer, so
that a layer sweep has a peak to find and speaker-independent evaluation is
harder than speaker-dependent evaluation, as with real SSL features.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ssl_ser import manifest
from ssl_ser.classify.features import InMemoryFeatures


def write_cache(
    path: str | Path, features: InMemoryFeatures, storage_dtype: str = "float32"
) -> Path:
    """An HDF5 cache holding `features` under their key, every row complete."""
    from ssl_ser.cache import CacheWriter

    with CacheWriter(
        path,
        key=features.key,
        layers=features.layers,
        dim=features.dim,
        poolings=features.poolings,
        storage_dtype=storage_dtype,
    ) as writer:
        writer.add_ids(features.ids)
        writer.write(features.ids, dict(features.arrays))
        writer.flush()
    return Path(path)


CREMAD_EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad")


def synthetic_manifest(
    n_utts: int,
    n_speakers: int,
    emotions: Sequence[str] = CREMAD_EMOTIONS,
    *,
    corpus: str = "synthetic",
    with_speakers: bool = True,
    seed: int = 0,
) -> pd.DataFrame:
    """A valid manifest of `n_utts` utterances spread evenly over speakers and emotions.

    Speakers alternate F/M; ``with_speakers=False`` leaves the speaker column empty
    (like MESD) while keeping the gender.
    """
    rng = np.random.default_rng(seed)
    speaker = np.arange(n_utts) % n_speakers
    emotion = rng.permutation(np.arange(n_utts) % len(emotions))
    rows = {
        "utt_id": [f"{corpus}/s{s:03d}_u{i:05d}" for i, s in enumerate(speaker)],
        "corpus": corpus,
        "path": [f"/synthetic/{corpus}/{i:05d}.wav" for i in range(n_utts)],
        "speaker": [f"{corpus}/s{s:03d}" if with_speakers else "" for s in speaker],
        "gender": ["F" if s % 2 == 0 else "M" for s in speaker],
        "language": "und",
        "emotion": [emotions[e] for e in emotion],
        "emotion_raw": [emotions[e] for e in emotion],
        "duration": 2.5,
        "sample_rate": 16000,
        "text": "",
        "split": "",
    }
    return manifest.validate(pd.DataFrame(rows))


def layer_signal(
    n_layers: int, peak: float = 0.6, width: float = 0.3, floor: float = 0.15
) -> np.ndarray:
    """Class-signal strength per layer: a bump at ``peak`` (fraction of depth) over a floor."""
    depth = np.linspace(0.0, 1.0, n_layers)
    return floor + (1.0 - floor) * np.exp(-(((depth - peak) / width) ** 2))


def synthetic_features(
    table: pd.DataFrame,
    n_layers: int,
    dim: int,
    *,
    separation: float = 3.5,
    speaker_effect: float = 0.6,
    rank: int = 16,
    poolings: Sequence[str] = ("mean", "std"),
    seed: int = 0,
    key: dict | None = None,
) -> InMemoryFeatures:
    """Features (n, layers, dim) for a manifest: class signal x layer curve + speaker + noise.

    `separation` is the distance between two class means at the peak layer, in
    units of the per-dimension noise; speaker offsets live in a random `rank`-dimensional subspace;
    noise is half shared across layers, half fresh, so adjacent layers correlate.
    The ``std`` pooling is a noisier, weaker copy of the same structure.
    """
    rng = np.random.default_rng(seed)
    classes, class_of = np.unique(table["emotion"].to_numpy(), return_inverse=True)
    speakers, speaker_of = np.unique(
        table["speaker"].to_numpy() + table["gender"].to_numpy(), return_inverse=True
    )
    n = len(table)
    strength = layer_signal(n_layers)
    arrays = {}
    for p, pooling in enumerate(poolings):
        scale = 1.0 if p == 0 else 0.6
        # Expected distance between two class means at the peak layer: `separation`.
        class_dirs = rng.standard_normal((len(classes), dim)).astype(np.float32)
        class_dirs *= separation / np.sqrt(2 * dim)
        basis = rng.standard_normal((rank, dim)).astype(np.float32) / np.sqrt(rank)
        speaker_dirs = rng.standard_normal((len(speakers), rank)).astype(np.float32) @ basis
        shared = rng.standard_normal((n, dim), dtype=np.float32)
        out = np.empty((n, n_layers, dim), dtype=np.float32)
        for layer in range(n_layers):
            fresh = rng.standard_normal((n, dim), dtype=np.float32)
            out[:, layer] = (
                scale * strength[layer] * class_dirs[class_of]
                + speaker_effect * speaker_dirs[speaker_of]
                + 0.7 * shared
                + 0.7 * fresh
            )
        arrays[pooling] = out
    key = key or {"model": "synthetic", "condition": "clean", "config_digest": f"synthetic-{seed}"}
    return InMemoryFeatures(
        table["utt_id"].tolist(), [str(i) for i in range(n_layers)], arrays, key
    )


def cremad_like(
    n_utts: int = 7442,
    n_speakers: int = 91,
    n_layers: int = 25,
    dim: int = 1024,
    seed: int = 0,
    **kwargs,
) -> tuple[pd.DataFrame, InMemoryFeatures]:
    """A manifest and features shaped like CREMA-D on wav2vec2-large (6 classes)."""
    table = synthetic_manifest(n_utts, n_speakers, CREMAD_EMOTIONS, corpus="cremad", seed=seed)
    return table, synthetic_features(table, n_layers, dim, seed=seed, **kwargs)
