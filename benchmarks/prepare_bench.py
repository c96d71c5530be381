"""Benchmark: scan an ESD-sized corpus tree (35,000 files) into a manifest.

Generates the full ESD name set (20 speakers x 1,750 utterances, published layout with
split folders and transcripts) as short synthetic WAVs in a temporary folder, times
``ssl_ser.corpora.scan("esd", root)`` and, in the same run, a bare loop of
``soundfile.info`` over the same files. The ratio of the two shows what the scan adds on
top of reading the headers (finding files, parsing names, building the table).

Usage: ``python benchmarks/prepare_bench.py [--workdir DIR] [--seconds 0.05] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import soundfile as sf

from ssl_ser.corpora import scan
from ssl_ser.testing import esd


def generate(root: Path, seconds: float) -> list[Path]:
    """Write the full ESD name set under `root`; every speaker gets a UTF-8 transcript."""
    transcripts = dict.fromkeys(esd.ALL_SPEAKERS, "utf-8")
    return esd.make_tree(
        root,
        seconds=seconds,
        speakers=esd.ALL_SPEAKERS,
        offsets=esd.ALL_OFFSETS,
        transcripts=transcripts,
    )


def best_time(function: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Fastest wall time of `repeats` calls and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def bare_header_reads(paths: list[Path]) -> float:
    """Total duration of `paths` from soundfile headers alone."""
    return sum(info.frames / info.samplerate for info in map(sf.info, map(str, paths)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the temp tree")
    parser.add_argument("--seconds", type=float, default=0.05, help="length of each file")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (best is kept)")
    parser.add_argument("--keep", action="store_true", help="keep the generated tree")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="esd-bench-", dir=args.workdir))
    try:
        start = time.perf_counter()
        paths = generate(root, args.seconds)
        print(f"generated {len(paths)} files in {time.perf_counter() - start:.1f} s at {root}")

        scan_s, result = best_time(lambda: scan("esd", root), args.repeats)
        bare_s, total = best_time(lambda: bare_header_reads(paths), args.repeats)
        manifest = result.manifest
        if len(manifest) != len(paths) or abs(manifest["duration"].sum() - total) > 1e-3:
            raise RuntimeError(f"scan found {len(manifest)} of {len(paths)} files or wrong sums")

        n = len(paths)
        print(f"scan('esd'):        {scan_s:6.2f} s  {n / scan_s:8.0f} files/s")
        print(f"bare sf.info loop:  {bare_s:6.2f} s  {n / bare_s:8.0f} files/s")
        print(f"ratio scan / bare header reads: {scan_s / bare_s:.2f}")
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
