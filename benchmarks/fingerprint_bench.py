"""Benchmark of audio fingerprints: what hashing every file costs next to reading it.

    .venv/bin/python benchmarks/fingerprint_bench.py [--files 300] [--rate 16000] [--channels 1]

It writes FILES WAVs of 1.5-6 s (16-bit PCM, noise) and times, on a warm page
cache, best of REPEATS:

- decoding each file to 16 kHz mono (``ssl_ser.audio.load``): what a worker does anyway;
- ``os.stat`` of each file: what a re-run of ``ser extract`` and ``ser classify`` cost;
- BLAKE2b over the whole file (``ssl_ser.fingerprint.content_digest``);
- BLAKE2b over size + first and last 64 KiB (the cheaper alternative, which misses
  edits in the middle of a file);
- ``extract(..., model="mfcc", workers=0)`` with fingerprints as they are, and with
  hashing replaced by a stat, alternated REPEATS times.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from ssl_ser import audio, fingerprint, manifest
from ssl_ser.extract import ExtractorConfig, extract

HEAD_TAIL = 1 << 16


def write_files(folder: Path, count: int, rate: int, channels: int) -> list[Path]:
    """WAVs of 1.5-6 s of noise."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        seconds = rng.uniform(1.5, 6.0)
        data = (0.1 * rng.standard_normal((int(seconds * rate), channels))).astype(np.float32)
        path = folder / f"{i:04d}.wav"
        sf.write(path, data, rate, subtype="PCM_16")
        paths.append(path)
    return paths


def head_tail_digest(path: Path) -> str:
    """BLAKE2b over the size and the first and last 64 KiB."""
    digest = hashlib.blake2b(digest_size=fingerprint.DIGEST_BYTES)
    size = os.stat(path).st_size
    digest.update(str(size).encode())
    with open(path, "rb") as file:
        digest.update(file.read(HEAD_TAIL))
        file.seek(max(0, size - HEAD_TAIL))
        digest.update(file.read(HEAD_TAIL))
    return digest.hexdigest()


def best_of(repeats: int, paths: list[Path], work: Callable[[Path], object]) -> float:
    """Fastest of `repeats` passes of `work` over every path, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for path in paths:
            work(path)
        best = min(best, time.perf_counter() - started)
    return best


def manifest_of(paths: list[Path]) -> pd.DataFrame:
    rows = []
    for i, path in enumerate(paths):
        info = sf.info(path)
        rows.append(
            {
                "utt_id": f"bench/{i:04d}",
                "corpus": "bench",
                "path": str(path),
                "speaker": f"bench/s{i % 5}",
                "gender": "",
                "language": "und",
                "emotion": "neutral",
                "emotion_raw": "N",
                "duration": info.duration,
                "sample_rate": info.samplerate,
                "text": "",
                "split": "",
            }
        )
    return manifest.validate(pd.DataFrame(rows))


def extraction_times(paths: list[Path], folder: Path, repeats: int) -> dict[str, float]:
    """Best ``extract`` time (mfcc) with whole-file hashing and with a stat in its place."""
    table = manifest_of(paths)
    real = fingerprint.of_file

    def stat_only(path: str | Path) -> fingerprint.Fingerprint:
        size, mtime_ns = fingerprint.stat_of(path)
        return fingerprint.Fingerprint(size, mtime_ns, "0" * fingerprint.DIGEST_CHARS)

    best = {"hash": float("inf"), "stat": float("inf")}
    for _ in range(repeats):
        for label, function in (("stat", stat_only), ("hash", real)):
            shutil.rmtree(folder, ignore_errors=True)
            fingerprint.of_file = function
            try:
                started = time.perf_counter()
                extract(table, ExtractorConfig(model="mfcc"), folder, workers=0)
                best[label] = min(best[label], time.perf_counter() - started)
            finally:
                fingerprint.of_file = real
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--rate", type=int, default=16000)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = write_files(folder, args.files, args.rate, args.channels)
        megabytes = sum(p.stat().st_size for p in paths) / 1e6
        load = best_of(args.repeats, paths, lambda p: audio.load(p, "clean", 16000))
        stat = best_of(args.repeats, paths, fingerprint.stat_of)
        whole = best_of(args.repeats, paths, fingerprint.content_digest)
        partial = best_of(args.repeats, paths, head_tail_digest)
        runs = extraction_times(paths, folder / "cache", args.repeats)
    per_file = 1e3 / len(paths)
    print(f"{len(paths)} files, {args.rate} Hz x {args.channels}, {megabytes:.1f} MB")
    print(f"decode to 16 kHz      {load * per_file:7.3f} ms/file")
    print(f"stat                  {stat * per_file:7.3f} ms/file")
    print(
        f"blake2b whole file    {whole * per_file:7.3f} ms/file "
        f"({megabytes / whole:.0f} MB/s, {100 * whole / load:.0f} % of decoding)"
    )
    print(f"blake2b head+tail     {partial * per_file:7.3f} ms/file")
    print(
        f"extract mfcc: {runs['hash']:.2f} s with hashing, {runs['stat']:.2f} s with a stat "
        f"instead ({100 * (runs['hash'] / runs['stat'] - 1):+.0f} %)"
    )


if __name__ == "__main__":
    main()
