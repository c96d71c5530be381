"""Deterministic features and keys shared by the cache tests and their subprocess writer."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

LAYERS = ["0", "1", "2", "3"]
DIM = 16
POOLINGS = ("mean", "std")
KEY = {
    "model": "tiny-wav2vec2",
    "revision": "0123abcd",
    "config_digest": "f" * 64,
    "condition": "clean",
    "condition_params": '{"band": [300, 3400]}',
    "sample_rate": 16000,
    "whisper_trim": False,
}


def utt_ids(n: int) -> list[str]:
    return [f"corpus/spk{i % 5}_{i:03d}" for i in range(n)]


def features(utt_id: str, pooling: str, layers: int = len(LAYERS), dim: int = DIM) -> np.ndarray:
    """(layers, dim) float32 values that depend only on the id and pooling."""
    rng = np.random.default_rng(zlib.crc32(f"{utt_id}|{pooling}".encode()))
    return (rng.standard_normal((layers, dim)) * 3).astype(np.float32)


def batch(ids: Sequence[str], poolings: Sequence[str] = POOLINGS, **shape: int) -> dict:
    """{pooling: (n, layers, dim)} for `ids`."""
    empty = np.zeros((0, shape.get("layers", len(LAYERS)), shape.get("dim", DIM)), np.float32)
    return {
        p: np.stack([features(u, p, **shape) for u in ids]) if len(ids) else empty for p in poolings
    }


def stored(ids: Sequence[str], pooling: str, dtype: str = "float16") -> np.ndarray:
    """What a cache must return for `ids`: the input cast to the storage dtype, as float32."""
    return batch(ids, (pooling,))[pooling].astype(dtype).astype(np.float32)


def is_failing(utt_id: str) -> bool:
    return int(utt_id[-3:]) % 11 == 5


def reason_of(utt_id: str) -> str:
    return f"cannot read audio {utt_id}.wav: File contains data in an unknown format."


def assert_changed_only_inside(before: bytes, after: bytes, regions: list[tuple[int, int]]) -> None:
    """The file kept its size, and every byte that changed lies inside one of `regions`."""
    import numpy as np

    assert len(after) == len(before)
    changed = np.flatnonzero(np.frombuffer(before, np.uint8) != np.frombuffer(after, np.uint8))
    inside = np.zeros(len(changed), dtype=bool)
    for start, stop in regions:
        inside |= (changed >= start) & (changed < stop)
    assert len(changed) > 0 and inside.all()
