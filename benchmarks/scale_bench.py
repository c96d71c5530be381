"""Benchmark of running ssl-ser past one machine: measured per-item costs and a wall-time model.

Parts (``--parts extract[,...]``; each part lives in its own functions):

``sweep`` — classify sweeps locally and on a Dask ``LocalCluster``, the per-cell
overhead Dask adds, and a wall-time model for 60,000 utterances x 25 layers on N
workers: see ``benchmarks/scale_sweep.py`` (its own file; it also runs alone).

``extract`` — sharded extraction (``ser extract --shard K/N``, ``ser cache merge``,
``--dask``). Measured in one run on this machine, with the demo's tiny random
wav2vec2 (5 hidden states of 64) on CPU over synthetic 1-6 s WAV files:

1. a single-process extraction: wall time, model start-up (wall minus the
   extraction itself), per-utterance extraction cost and audio-seconds per second;
2. the same manifest as N shards run one after another in this process: each
   shard's start-up (its wall time minus its extraction), the per-utterance cost in
   shards against the single run's (ratio), and how balanced the shards' audio is;
3. ``ser cache merge`` of those shards: seconds per utterance and MB/s of features
   copied; the merged file is checked equal to the single-process file;
4. ``--dask local`` (a LocalCluster with one worker process) with the same N: the
   extra wall time over the manual shards + merge (cluster start, task transfer);
5. the duration-balanced assignment of a synthetic 60,000-utterance, 70-hour
   manifest (durations drawn from a gamma distribution with a 4.2 s mean) to N
   shards: time to assign, and the longest shard against a perfect 1/N split and
   against equal file counts.

Extrapolated (not measured): wall time for 60,000 utterances (70 h) on N GPUs,
``T(N) = start-up + longest shard's audio / R + merge``, where the longest shard's
audio comes from (5), the merge from the MB/s of (3) applied to a large model's
feature size (``--layers`` x ``--dim`` x mean+std x float16), the start-up from
``--model-load-s`` (a large model's load, not measurable with the tiny one) plus
the measured cache start-up, and R, one GPU's extraction rate in audio-seconds per
second, is ``--gpu-rate`` (an assumption: set it from one measured `ser extract`
summary line of your model on your GPU). The same model is printed with this
machine's measured tiny-model CPU rate, as a check of the formula's parts.

Run: ``.venv/bin/python benchmarks/scale_bench.py --parts extract [--utterances 96] [--shards 4]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd

from scale_sweep import add_sweep_arguments, run_sweep_part  # the sweep part, its own file
from ssl_ser import cache, manifest
from ssl_ser.cache import shards
from ssl_ser.extract import ExtractorConfig, extract
from ssl_ser.extract.sharding import assign_shards, shard_seconds
from ssl_ser.testing import write_wav, written_duration

SAMPLE_RATE = 16000
TARGET_UTTERANCES = 60_000
TARGET_HOURS = 70.0
GPU_COUNTS = (1, 2, 4, 8, 16, 32)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="extract", help=f"comma list of {', '.join(PARTS)}")
    parser.add_argument("--utterances", type=int, default=96)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--no-dask", action="store_true", help="skip the --dask local timing")
    parser.add_argument(
        "--merge-utterances", type=int, default=1000, help="rows of the large-model merge timing"
    )
    parser.add_argument("--repeats", type=int, default=2, help="best of this many timings")
    parser.add_argument("--layers", type=int, default=25, help="hidden states of the large model")
    parser.add_argument("--dim", type=int, default=1024, help="hidden size of the large model")
    parser.add_argument(
        "--gpu-rate",
        type=float,
        default=100.0,
        help="ASSUMED audio s/s of one GPU for the large model (not measured here)",
    )
    parser.add_argument(
        "--model-load-s", type=float, default=20.0, help="ASSUMED large-model load time per shard"
    )
    add_sweep_arguments(parser)
    return parser.parse_args()


# ----------------------------------------------------------------------- extract


@dataclass
class ExtractCosts:
    """What the extract part measured on this machine."""

    utterances: int
    audio_seconds: float
    single_wall: float
    single_extract: float
    shard_walls: list[float]
    shard_extracts: list[float]
    shard_audio: list[float]
    tiny_merge_seconds: float
    merge_seconds: float
    merge_rows: int
    merge_bytes: int
    dask_wall: float | None
    difference: float
    batches: tuple[int, int]  # forward batches planned: single run, all shards

    @property
    def per_utterance(self) -> float:
        return self.single_extract / self.utterances

    @property
    def single_startup(self) -> float:
        return self.single_wall - self.single_extract

    @property
    def shard_startups(self) -> list[float]:
        return [w - e for w, e in zip(self.shard_walls, self.shard_extracts, strict=True)]

    @property
    def merge_rate(self) -> float:
        """Bytes of features the merge copies per second."""
        return self.merge_bytes / self.merge_seconds


def make_corpus(folder: Path, count: int, seed: int = 0) -> pd.DataFrame:
    """`count` WAV files of 1-6 s and their manifest."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, seconds in enumerate(rng.uniform(1.0, 6.0, count)):
        path = write_wav(folder / f"utt{i:04d}.wav", float(seconds), SAMPLE_RATE, 90 + i, seed=i)
        rows.append(
            {
                "utt_id": f"bench/utt{i:04d}",
                "corpus": "bench",
                "path": str(path),
                "speaker": f"bench/s{i % 4}",
                "gender": "",
                "language": "eng",
                "emotion": "neutral",
                "emotion_raw": "n",
                "duration": written_duration(float(seconds), SAMPLE_RATE),
                "sample_rate": SAMPLE_RATE,
                "text": "",
                "split": "",
            }
        )
    return manifest.validate(pd.DataFrame(rows))


def measure_extract(args: argparse.Namespace, root: Path) -> ExtractCosts:
    """Single run, N shards, merge and --dask local on the tiny model (see the docstring)."""
    from ssl_ser.pipelines.demo import build_model

    model = build_model(root / "model")
    table = make_corpus(root / "audio", args.utterances)
    config = ExtractorConfig(model=str(model))
    n = args.shards

    best = None
    for repeat in range(args.repeats):  # best of `repeats`: the machine is shared
        started = time.perf_counter()
        (single,) = extract(table, config, root / f"single{repeat}", workers=0)
        wall = time.perf_counter() - started
        if best is None or wall < best[0]:
            best = (wall, single)
    single_wall, single = best

    walls, extracts, audio = [], [], []
    for number in range(1, n + 1):
        timings = []
        for repeat in range(args.repeats):
            folder = root / ("sharded" if repeat == 0 else f"sharded{repeat}")
            started = time.perf_counter()
            (part,) = extract(table, config, folder, workers=0, shard=(number, n))
            timings.append((time.perf_counter() - started, part))
        wall, part = min(timings, key=lambda timing: timing[0])
        walls.append(wall)
        extracts.append(part.seconds)
        audio.append(part.audio_seconds)
    started = time.perf_counter()
    summaries, errors = shards.merge_all(root / "sharded")
    tiny_merge = time.perf_counter() - started
    assert not errors and len(summaries) == 1, errors
    difference = check_equal(single.path, summaries[0].path)
    merge_seconds, merged_rows = measure_merge_at_scale(args, root)

    dask_wall = None
    if not args.no_dask:
        from ssl_ser.extract.cluster import extract_on_dask

        started = time.perf_counter()
        (merged,) = extract_on_dask(
            table, config, root / "dask", address="local", shards_count=n, workers=0
        )
        dask_wall = time.perf_counter() - started
        difference = max(difference, check_equal(single.path, merged.path))
    return ExtractCosts(
        len(table),
        float(table["duration"].sum()),
        single_wall,
        single.seconds,
        walls,
        extracts,
        audio,
        tiny_merge,
        merge_seconds,
        merged_rows,
        merged_rows * args.layers * args.dim * 2 * 2,
        dask_wall,
        difference,
        count_batches(table, n),
    )


def count_batches(table: pd.DataFrame, n: int) -> tuple[int, int]:
    """Batches the runner plans (cost ~ duration) for the single run and for all N shards."""
    from ssl_ser.extract.batching import plan_batches
    from ssl_ser.extract.config import DEFAULT_BATCH_SECONDS

    durations = table["duration"].astype(float)
    single = len(plan_batches(durations.tolist(), DEFAULT_BATCH_SECONDS))
    assignment = assign_shards(table, n)
    parts = sum(
        len(plan_batches(durations[assignment == k].tolist(), DEFAULT_BATCH_SECONDS))
        for k in range(1, n + 1)
    )
    return single, parts


def check_equal(expected: Path, actual: Path) -> float:
    """The merged file holds the single-process file's ids; the largest relative difference.

    Shards batch other utterances together than one process does, and batched output
    equals unbatched output to about 1e-4 relative, so a float16 value may differ in
    its last bit (as between two single runs with different --batch-seconds).
    """
    worst = 0.0
    with cache.open(expected) as a, cache.open(actual) as b:
        assert a.all_ids == b.all_ids and a.ids == b.ids
        for pooling in a.poolings:
            for layer in a.layers:
                x, y = a.read(layer, pooling), b.read(layer, pooling)
                worst = max(worst, float(np.abs(x - y).max() / np.abs(x).max()))
    assert worst <= 2e-3, worst
    return worst


def measure_merge_at_scale(args: argparse.Namespace, root: Path) -> tuple[float, int]:
    """Merge N shard files of a large model's size (random float16 features); (s, utterances).

    The shards are written with the cache writer as ``--shard`` runs write them, then
    merged; their pages are still in the OS cache, as right after extraction on a
    local disk (a network file system reads slower).
    """
    count, n = args.merge_utterances, args.shards
    layers = [str(i) for i in range(args.layers)]
    target = root / "big" / "clean.h5"
    rng = np.random.default_rng(1)
    ids = [f"big/u{i:06d}" for i in range(count)]
    for number in range(1, n + 1):
        positions = list(range(number - 1, count, n))
        mine = [ids[i] for i in positions]
        path = shards.shard_path(target, number, n)
        with cache.CacheWriter(path, {"model": "bench"}, layers, args.dim, fsync=False) as writer:
            writer.add_ids(mine)
            for start in range(0, len(mine), 256):
                batch = mine[start : start + 256]
                shape = (len(batch), len(layers), args.dim)
                arrays = {p: rng.standard_normal(shape, dtype=np.float32) for p in ("mean", "std")}
                writer.write(batch, arrays)
        record = shards.ShardRecord(number, n, mine, positions, count, "bench", 0.0, "bench")
        record.write(shards.record_path(path))
    started = time.perf_counter()
    shards.merge(target)
    return time.perf_counter() - started, count


def balance_at_scale(counts: tuple[int, ...]) -> tuple[float, dict[int, tuple[float, float]]]:
    """Assign a synthetic 60,000-utterance, 70 h manifest; (seconds to assign for the
    largest N, {N: (longest shard by duration rule, longest by equal file counts)} in s)."""
    rng = np.random.default_rng(0)
    mean = TARGET_HOURS * 3600 / TARGET_UTTERANCES
    durations = rng.gamma(4.0, mean / 4.0, TARGET_UTTERANCES)
    durations *= TARGET_HOURS * 3600 / durations.sum()
    table = pd.DataFrame(
        {
            "corpus": [f"c{i % 8}" for i in range(TARGET_UTTERANCES)],
            "utt_id": [f"c{i % 8}/u{i:06d}" for i in range(TARGET_UTTERANCES)],
            "duration": durations,
        }
    )
    out = {}
    assign_time = 0.0
    canonical = table.sort_values(["corpus", "utt_id"]).index
    for n in counts:
        started = time.perf_counter()
        assignment = assign_shards(table, n)
        assign_time = time.perf_counter() - started
        by_count = pd.Series(np.arange(len(table)) * n // len(table) + 1, index=canonical)
        out[n] = (
            max(shard_seconds(table, assignment, n)),
            max(shard_seconds(table, by_count.loc[table.index], n)),
        )
    return assign_time, out


def report_extract(args: argparse.Namespace, costs: ExtractCosts) -> None:
    """Print what was measured, then the extrapolated wall-time model."""
    n = len(costs.shard_walls)
    print("== extract: measured on this machine (tiny wav2vec2, CPU, 1 process) ==")
    print(
        f"single process: {costs.utterances} utterances, {costs.audio_seconds:.0f} s audio; "
        f"wall {costs.single_wall:.2f} s = start-up {costs.single_startup:.2f} s + extraction "
        f"{costs.single_extract:.2f} s ({1000 * costs.per_utterance:.1f} ms/utterance, "
        f"{costs.audio_seconds / costs.single_extract:.0f} audio s/s)"
    )
    sharded = sum(costs.shard_extracts)
    print(
        f"{n} shards, one after another: walls {', '.join(f'{w:.2f}' for w in costs.shard_walls)}"
        f" s; start-up per shard {np.mean(costs.shard_startups):.2f} s (single run: "
        f"{costs.single_startup:.2f} s); extraction {sharded:.2f} s in all = "
        f"{sharded / costs.single_extract:.2f} x the single run's ({costs.batches[1]} forward "
        f"batches against {costs.batches[0]}: small shards of a small manifest fill fewer "
        "batches; with thousands of utterances per shard the difference vanishes)"
    )
    audio = costs.shard_audio
    print(
        f"shard audio: {', '.join(f'{a:.1f}' for a in audio)} s (longest / mean "
        f"{max(audio) / np.mean(audio):.3f})"
    )
    print(
        f"merge of these {n} shards: {costs.tiny_merge_seconds:.3f} s; merged ids equal the "
        f"single-process file's, arrays within {costs.difference:.1e} relative (float16 last "
        "bits: shards batch other utterances together)"
    )
    print(
        f"merge at a large model's size ({costs.merge_rows} utterances x {args.layers} layers x "
        f"{args.dim} x mean+std float16 = {costs.merge_bytes / 2**20:.0f} MiB in {n} shards): "
        f"{costs.merge_seconds:.2f} s = {1e3 * costs.merge_seconds / costs.merge_rows:.2f} "
        f"ms/utterance, {costs.merge_rate / 2**20:.0f} MiB/s"
    )
    manual = sum(costs.shard_walls) + costs.tiny_merge_seconds
    if costs.dask_wall is not None:
        print(
            f"--dask local ({n} shards on one worker process): {costs.dask_wall:.2f} s against "
            f"{manual:.2f} s for the manual shards + merge (+{costs.dask_wall - manual:.2f} s: "
            "cluster start, worker imports, task transfer); same files"
        )

    assign_time, balance = balance_at_scale(GPU_COUNTS)
    total_audio = TARGET_HOURS * 3600
    print(
        f"\n== extract: assignment of a synthetic {TARGET_UTTERANCES:,}-utterance, "
        f"{TARGET_HOURS:.0f} h manifest (measured) =="
    )
    print(f"assigning to {GPU_COUNTS[-1]} shards took {assign_time:.2f} s")
    for count, (longest, by_files) in balance.items():
        ideal = total_audio / count
        print(
            f"N={count:>2}: longest shard {longest / 3600:.3f} h = {longest / ideal:.4f} x 1/N "
            f"(equal file counts: {by_files / ideal:.4f} x)"
        )

    feature_bytes = args.layers * args.dim * 2 * 2  # mean+std, float16
    merge_time = TARGET_UTTERANCES * feature_bytes / costs.merge_rate
    startup = args.model_load_s + float(np.mean(costs.shard_startups))
    print(
        f"\n== extract: EXTRAPOLATED wall time for {TARGET_UTTERANCES:,} utterances, "
        f"{TARGET_HOURS:.0f} h =="
    )
    print(
        f"T(N) = start-up {startup:.1f} s (assumed model load {args.model_load_s:.0f} s + "
        f"measured {np.mean(costs.shard_startups):.1f} s) + longest shard's audio / R + merge "
        f"{merge_time:.0f} s ({feature_bytes / 1024:.0f} KiB/utterance for {args.layers} x "
        f"{args.dim} mean+std float16 at the measured {costs.merge_rate / 2**20:.0f} MiB/s)"
    )
    measured_rate = costs.audio_seconds / costs.single_extract
    for label, rate in (
        (f"R = {args.gpu_rate:.0f} audio s/s per GPU (ASSUMED, --gpu-rate)", args.gpu_rate),
        (f"R = {measured_rate:.0f} audio s/s (this CPU, tiny model: measured)", measured_rate),
    ):
        print(label)
        base = startup + balance[1][0] / rate + merge_time
        for count, (longest, _) in balance.items():
            wall = startup + longest / rate + merge_time
            print(
                f"  N={count:>2}: {wall / 3600:7.2f} h  (speed-up {base / wall:5.2f} x, "
                f"merge {100 * merge_time / wall:4.1f} % of it)"
            )


def run_extract(args: argparse.Namespace) -> None:
    """The extract part: measure, then report."""
    with tempfile.TemporaryDirectory() as folder:
        costs = measure_extract(args, Path(folder))
    report_extract(args, costs)


PARTS = {"extract": run_extract, "sweep": run_sweep_part}


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    wanted = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = [part for part in wanted if part not in PARTS]
    if unknown:
        raise SystemExit(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    for part in wanted:
        PARTS[part](args)


if __name__ == "__main__":
    main()
