"""The ``sweep`` part of the scale benchmark: classify sweeps locally and on a Dask cluster.

Self-contained, so ``benchmarks/scale_bench.py`` can list it beside its other
parts (``from scale_sweep import add_sweep_arguments, run_sweep_part``) and it
also runs alone. Measured in one run on this machine, on synthetic features
(``ssl_ser.testing.synthetic``, 8 speakers per 1,000 utterances, 6 classes):

1. the same sweep (``--utts`` x ``--layers`` x ``--dim``, logreg, 5-fold
   speaker-kfold) on the local backend with 1 and 2 jobs (joblib processes) and
   on a ``LocalCluster`` of 2 worker processes (start-up timed apart); the Dask
   results are checked equal to the local ones;
2. the per-cell overhead Dask adds: many trivial cells (tiny features) on the
   local backend (1 job) against a 1-worker cluster, (Dask - local) / cells;
   and bare Dask round trips (no-op tasks) for comparison;
3. how the features reach the workers: a broadcast scatter from the driver (what
   the backend does) against each worker reading the HDF5 cache itself (which
   would need the cache on a shared filesystem), in MB/s;
4. one logreg cell's fit-and-score time at two training sizes at ``--model-dim``
   dims, for the model below.

Extrapolated (not measured): wall time for 60,000 utterances x 25 layers (one
pooling, 5 folds, logreg: 125 cells per corpus and condition) on N workers:
``T(N) = cluster start + features to workers + ceil(cells / N) x (cell + overhead)``,
with the cell time extrapolated linearly in training rows from (4), the
overhead from (2), and the features' transfer from (3): a broadcast costs the
driver N copies at the measured rate; a shared-filesystem read costs each worker
one copy in parallel (at this machine's local-disk rate, an optimistic bound for
a network filesystem).

Run: ``.venv/bin/python benchmarks/scale_sweep.py [--utts 2000 --layers 13 --dim 256]``.
Timings are wall-clock on a shared 2-core machine: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ssl_ser import cache
from ssl_ser.classify.features import CacheFeatures, load_blocks
from ssl_ser.classify.splits import SplitOptions
from ssl_ser.classify.sweep import SweepConfig, run_sweep
from ssl_ser.scheduler import LOOPBACK
from ssl_ser.testing.synthetic import synthetic_features, synthetic_manifest

EMOTIONS = ("angry", "happy", "sad", "neutral", "fear", "disgust")
TARGET_UTTERANCES = 60_000
TARGET_LAYERS = 25
FOLDS = 5
WORKER_COUNTS = (1, 2, 4, 8, 16, 32, 64)
COMPARED = ["cell_id", "test_corpus", "ua", "wa", "macro_f1", "ua_low", "ua_high", "confusion"]


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """The sweep part's options (prefixed, so they sit beside other parts' options)."""
    parser.add_argument("--sweep-utts", type=int, default=2000, help="utterances of part 1")
    parser.add_argument("--sweep-layers", type=int, default=13, help="layers of part 1")
    parser.add_argument("--sweep-dim", type=int, default=256, help="dims of part 1")
    parser.add_argument("--trivial-layers", type=int, default=25, help="layers of part 2")
    parser.add_argument("--model-dim", type=int, default=1024, help="dims of part 4")
    parser.add_argument(
        "--model-rows", default="1000,4000", help="two utterance counts of part 4 (comma list)"
    )


def _corpus(n_utts: int, n_layers: int, dim: int, seed: int = 0):
    speakers = max(8, n_utts // 125)
    table = synthetic_manifest(n_utts, speakers, EMOTIONS, corpus="bench", seed=seed)
    key = {"model": "bench-model", "condition": "clean", "config_digest": f"{n_layers}x{dim}"}
    features = synthetic_features(table, n_layers, dim, poolings=("mean",), seed=seed, key=key)
    return table, features


def _config(**fields) -> SweepConfig:
    options = {
        "labels": "all",
        "classifiers": ("logreg",),
        "split_options": SplitOptions(folds=FOLDS),
        "bootstrap": 200,
        **fields,
    }
    return SweepConfig(**options)


def _timed_sweep(table, features, config: SweepConfig) -> tuple[float, pd.DataFrame, int]:
    with tempfile.TemporaryDirectory() as output:
        start = time.perf_counter()
        result = run_sweep([features], table, config, output)
        seconds = time.perf_counter() - start
    keys = ["cell_id", "test_corpus"]
    table = result.results.sort_values(keys)[COMPARED].reset_index(drop=True)
    return seconds, table, result.cells_run


def _cluster(workers: int):
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host=LOOPBACK,
        dashboard_address=None,
    )


@dataclass
class SweepCosts:
    """What parts 1-4 measured (seconds unless named otherwise)."""

    cells: int
    local_1: float
    local_2: float
    cluster_start: float
    dask_2: float
    same_results: bool
    trivial_cells: int
    trivial_local: float
    trivial_dask: float
    noop_round_trip: float
    features_mb: float
    scatter_mb_s: float
    worker_read_mb_s: float
    model_rows: tuple[int, int]
    model_cell: tuple[float, float]

    @property
    def overhead(self) -> float:
        """Seconds Dask adds per cell (1 worker against 1 local job)."""
        return (self.trivial_dask - self.trivial_local) / self.trivial_cells


def measure_backends(args: argparse.Namespace) -> tuple[int, float, float, float, float, bool]:
    """Part 1: the same sweep on 1 and 2 local jobs and on a 2-worker LocalCluster."""
    from distributed import Client

    table, features = _corpus(args.sweep_utts, args.sweep_layers, args.sweep_dim)
    local_1, reference, cells = _timed_sweep(table, features, _config(jobs=1))
    local_2, _, _ = _timed_sweep(table, features, _config(jobs=2))
    start = time.perf_counter()
    with _cluster(2) as cluster, Client(cluster) as client:
        client.run(lambda: __import__("ssl_ser.classify.sweep.run"))  # workers' imports
        started = time.perf_counter() - start
        config = _config(backend="dask", scheduler=cluster.scheduler_address)
        dask_2, remote, _ = _timed_sweep(table, features, config)
    same = reference.equals(remote)
    return cells, local_1, local_2, started, dask_2, same


def measure_overhead(args: argparse.Namespace) -> tuple[int, float, float, float]:
    """Part 2: trivial cells locally and on one Dask worker; bare no-op round trips."""
    from distributed import Client, wait

    table, features = _corpus(200, args.trivial_layers, 4, seed=1)
    config = _config(bootstrap=0)
    local, _, cells = _timed_sweep(table, features, config)
    with _cluster(1) as cluster, Client(cluster) as client:
        client.run(lambda: __import__("ssl_ser.classify.sweep.run"))
        remote_config = _config(bootstrap=0, backend="dask", scheduler=cluster.scheduler_address)
        remote, _, _ = _timed_sweep(table, features, remote_config)
        n = 500
        start = time.perf_counter()
        wait([client.submit(int, i, pure=False) for i in range(n)])
        noop = (time.perf_counter() - start) / n
    return cells, local, remote, noop


def _read_cache(path: str, n_rows: int, layers: list[str]) -> float:
    """On a worker: read every layer of a cache as the sweep does; the seconds it took."""
    start = time.perf_counter()
    source = CacheFeatures(path)
    load_blocks([source], np.zeros(n_rows, dtype=int), np.arange(n_rows), layers, ["mean"])
    source.reader.close()
    return time.perf_counter() - start


def measure_distribution(args: argparse.Namespace, folder: Path) -> tuple[float, float, float]:
    """Part 3: broadcast scatter to 2 workers against each worker reading the cache file."""
    from distributed import Client

    table, features = _corpus(args.sweep_utts, args.sweep_layers, args.sweep_dim)
    path = folder / "bench.h5"
    with cache.CacheWriter(
        path,
        key=features.key,
        layers=features.layers,
        dim=features.dim,
        poolings=features.poolings,
        storage_dtype="float32",
    ) as writer:
        writer.add_ids(features.ids)
        writer.write(features.ids, dict(features.arrays))
        writer.flush()
    source = CacheFeatures(path)
    blocks = load_blocks(
        [source], np.zeros(len(table), dtype=int), np.arange(len(table)), source.layers, ["mean"]
    )
    source.reader.close()
    megabytes = blocks.nbytes / 1e6
    with _cluster(2) as cluster, Client(cluster) as client:
        client.run(lambda: __import__("ssl_ser.classify.sweep.run"))
        start = time.perf_counter()
        future = client.scatter(blocks, broadcast=True, hash=False)
        client.replicate([future])  # returns once every worker holds a copy
        scatter = time.perf_counter() - start
        del future
        reads = client.run(_read_cache, str(path), len(table), list(features.layers))
    read = max(reads.values())  # both workers read at once, as they would
    return megabytes, 2 * megabytes / scatter, megabytes / read


def measure_cell(args: argparse.Namespace) -> tuple[tuple[int, int], tuple[float, float]]:
    """Part 4: one logreg cell (fit, predict, score) at two sizes, one layer, one fold."""
    sizes = tuple(int(v) for v in args.model_rows.split(","))
    times = []
    for n in sizes:
        table, features = _corpus(n, 1, args.model_dim, seed=2)
        seconds, _, cells = _timed_sweep(table, features, _config())
        times.append(seconds / cells)
    return (sizes[0], sizes[1]), (times[0], times[1])


def measure_sweep(args: argparse.Namespace) -> SweepCosts:
    """Parts 1-4."""
    cells, local_1, local_2, started, dask_2, same = measure_backends(args)
    trivial_cells, trivial_local, trivial_dask, noop = measure_overhead(args)
    with tempfile.TemporaryDirectory() as folder:
        megabytes, scatter_rate, read_rate = measure_distribution(args, Path(folder))
    rows, cell = measure_cell(args)
    return SweepCosts(
        cells,
        local_1,
        local_2,
        started,
        dask_2,
        same,
        trivial_cells,
        trivial_local,
        trivial_dask,
        noop,
        megabytes,
        scatter_rate,
        read_rate,
        rows,
        cell,
    )


def cell_seconds_at(costs: SweepCosts, train_rows: float) -> float:
    """A logreg cell's seconds at `train_rows`, linear through the two measured sizes."""
    (n1, n2), (t1, t2) = costs.model_rows, costs.model_cell
    train = (FOLDS - 1) / FOLDS
    slope = (t2 - t1) / ((n2 - n1) * train)
    return max(t1, t1 + slope * (train_rows - n1 * train))


def broadcast_copies(workers: int) -> int:
    """Sequential copy times of a broadcast scatter to `workers`.

    Dask sends the data to one worker, then replicates it as a tree (branching
    factor 2: each holder copies to two more per round, so holders triple), so
    N workers take one copy plus ceil(log3 N) rounds; 2 workers take 2 (measured).
    """
    rounds = 0
    holders = 1
    while holders < workers:
        holders *= 3
        rounds += 1
    return 1 + rounds


def wall_model(costs: SweepCosts, args: argparse.Namespace) -> list[tuple[int, float, float]]:
    """Extrapolated wall seconds on N workers: broadcast from the driver, or shared reads."""
    cells = TARGET_LAYERS * FOLDS
    cell = cell_seconds_at(costs, TARGET_UTTERANCES * (FOLDS - 1) / FOLDS) + costs.overhead
    megabytes = TARGET_UTTERANCES * TARGET_LAYERS * args.model_dim * 4 / 1e6  # float32 mean
    rows = []
    for n in WORKER_COUNTS:
        compute = costs.cluster_start + math.ceil(cells / n) * cell
        broadcast = compute + broadcast_copies(n) * megabytes / costs.scatter_mb_s
        shared = compute + megabytes / costs.worker_read_mb_s
        rows.append((n, broadcast, shared))
    return rows


def report_sweep(args: argparse.Namespace, costs: SweepCosts) -> None:
    """Print the measured figures, then the extrapolated model, each labelled."""
    print("\n== sweep: measured on this machine ==")
    print(
        f"1. {costs.cells} logreg cells ({args.sweep_utts} utts x {args.sweep_layers} layers x "
        f"{args.sweep_dim} dims, {FOLDS} folds): local 1 job {costs.local_1:.1f} s, local 2 jobs "
        f"{costs.local_2:.1f} s, LocalCluster 2 workers {costs.dask_2:.1f} s "
        f"(+ {costs.cluster_start:.1f} s cluster start and imports); Dask results equal local: "
        f"{costs.same_results}"
    )
    print(
        f"2. {costs.trivial_cells} trivial cells: local {costs.trivial_local:.2f} s, 1 Dask "
        f"worker {costs.trivial_dask:.2f} s -> Dask adds {costs.overhead * 1000:.1f} ms per cell "
        f"(bare no-op task round trip: {costs.noop_round_trip * 1000:.2f} ms)"
    )
    print(
        f"3. features to workers ({costs.features_mb:.0f} MB): broadcast scatter "
        f"{costs.scatter_mb_s:.0f} MB/s per copy (2 workers), a worker reading the cache "
        f"{costs.worker_read_mb_s:.0f} MB/s per worker (2 at once)"
    )
    (n1, n2), (t1, t2) = costs.model_rows, costs.model_cell
    print(
        f"4. one logreg cell at {args.model_dim} dims: {t1:.2f} s at {n1} utts, {t2:.2f} s at "
        f"{n2} utts"
    )
    cell = cell_seconds_at(costs, TARGET_UTTERANCES * (FOLDS - 1) / FOLDS)
    size = TARGET_UTTERANCES * TARGET_LAYERS * args.model_dim * 4 / 1e9
    print(
        f"\n== sweep: extrapolated, {TARGET_UTTERANCES} utts x {TARGET_LAYERS} layers x "
        f"{args.model_dim} dims, logreg, {FOLDS} folds ({TARGET_LAYERS * FOLDS} cells, "
        f"{size:.1f} GB float32) =="
    )
    print(
        f"cell {cell:.1f} s (linear in training rows from 4) + {costs.overhead * 1000:.0f} ms "
        "Dask overhead (2); cluster start from 1; transfer from 3"
    )
    print(f"{'workers':>8} {'broadcast (min)':>16} {'shared FS (min)':>16}")
    for n, broadcast, shared in wall_model(costs, args):
        print(f"{n:>8} {broadcast / 60:>16.1f} {shared / 60:>16.1f}")
    ratio = costs.scatter_mb_s / costs.worker_read_mb_s
    print(
        f"features: one broadcast copy is {ratio:.1f}x as fast as one worker reading the cache; "
        "the backend broadcasts (no shared filesystem needed)"
    )


def run_sweep_part(args: argparse.Namespace) -> None:
    """The sweep part: measure, then report."""
    report_sweep(args, measure_sweep(args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sweep_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("distributed", "tornado", "asyncio", "ssl_ser.classify.dataset"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run_sweep_part(args)


if __name__ == "__main__":
    main()
