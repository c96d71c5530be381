"""Cost of the probing measures of `ser classify` (issue 21): --control and --mdl.

A synthetic sweep (features shaped like a small SSL cache, see
ssl_ser.testing.synthetic) is run four times into fresh folders: plain,
``--control``, ``--mdl`` and ``--target speaker``; each run's wall time is
given against the plain one's, per classifier. Timings are wall-clock on a
shared machine: compare ratios measured in one run.

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
    table = synthetic_manifest(args.utts, args.speakers, EMOTIONS, corpus="cremad")
    key = {"model": "synthetic", "condition": "clean", "config_digest": "bench"}
    features = synthetic_features(table, args.layers, args.dim, key=key)
    print(
        f"{args.utts} utterances, {args.speakers} speakers, {args.layers} layers x {args.dim} "
        f"dims, {len(EMOTIONS)} classes, {args.folds} folds, one thread"
    )
    for classifier in args.classifiers.split(","):
        seconds = {}
        for name, options in RUNS.items():
            settings = SweepConfig(
                classifiers=(classifier,),
                poolings=("mean",),
                bootstrap=100,
                split_options=SplitOptions(folds=args.folds),
                **options,
            )
            with tempfile.TemporaryDirectory() as output:
                start = time.perf_counter()
                run_sweep([features], table, settings, output)
                seconds[name] = time.perf_counter() - start
        base = seconds["plain"]
        shown = ", ".join(f"{n} {s:.1f} s ({s / base:.2f}x)" for n, s in seconds.items())
        print(f"{classifier}: {shown}")


if __name__ == "__main__":
    main()
