"""Cost of the probing measures of `ser classify` (issue 21): --control and --mdl.

A synthetic sweep (features shaped like a small SSL cache, see
ssl_ser.testing.synthetic) is run four times into fresh folders: plain,
``--control``, ``--mdl`` and ``--target speaker``; each run's wall time is
given against the plain one's, per classifier. The ratios are of CPU time
(every fit runs on one thread, so CPU time is the work done, whatever else the
machine runs); wall time is shown beside it.

    .venv/bin/python benchmarks/measures_bench.py
    .venv/bin/python benchmarks/measures_bench.py --utts 2000 --layers 13 --dim 256
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time

from ssl_ser.classify.splits import SplitOptions
from ssl_ser.classify.sweep import SweepConfig, run_sweep
from ssl_ser.testing.synthetic import synthetic_features, synthetic_manifest

EMOTIONS = ("angry", "happy", "sad", "neutral", "fear", "disgust")
RUNS: dict[str, dict] = {
    "plain": {},
    "--control": {"control": True},
    "--mdl": {"mdl": True},
    "--target speaker": {"target": "speaker"},
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utts", type=int, default=1200)
    parser.add_argument("--speakers", type=int, default=24)
    parser.add_argument("--layers", type=int, default=13)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--classifiers", default="logreg,linear,mlp")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.ERROR)
    import torch

    torch.set_num_threads(1)
    table = synthetic_manifest(args.utts, args.speakers, EMOTIONS, corpus="cremad")
    key = {"model": "synthetic", "condition": "clean", "config_digest": "bench"}
    features = synthetic_features(table, args.layers, args.dim, key=key)
    print(
        f"{args.utts} utterances, {args.speakers} speakers, {args.layers} layers x {args.dim} "
        f"dims, {len(EMOTIONS)} classes, {args.folds} folds, one thread"
    )
    for classifier in args.classifiers.split(","):
        warm_up(table, features, classifier, args.folds)
        cpu, wall = {}, {}
        for name, options in RUNS.items():
            settings = SweepConfig(
                classifiers=(classifier,),
                poolings=("mean",),
                bootstrap=100,
                split_options=SplitOptions(folds=args.folds),
                **options,
            )
            with tempfile.TemporaryDirectory() as output:
                start, start_cpu = time.perf_counter(), time.process_time()
                run_sweep([features], table, settings, output)
                cpu[name] = time.process_time() - start_cpu
                wall[name] = time.perf_counter() - start
        base = cpu["plain"]
        shown = ", ".join(
            f"{n} {cpu[n]:.1f} s CPU ({cpu[n] / base:.2f}x; {wall[n]:.1f} s wall)" for n in cpu
        )
        print(f"{classifier}: {shown}")


def warm_up(table, features, classifier: str, folds: int) -> None:
    """One small run of every variant first, so no timed run pays for first imports."""
    rows = table.groupby("speaker").head(10)
    for options in RUNS.values():
        settings = SweepConfig(
            classifiers=(classifier,),
            layers=("0",),
            poolings=("mean",),
            bootstrap=10,
            split_options=SplitOptions(folds=folds),
            **options,
        )
        with tempfile.TemporaryDirectory() as output:
            run_sweep([features], rows.reset_index(drop=True), settings, output)


if __name__ == "__main__":
    main()
