"""Benchmark of `ser classify` on synthetic features shaped like CREMA-D on wav2vec2-large.

7,442 utterances, 91 speakers, 25 layers x 1,024 dims, 6 classes, with a class
signal that peaks at 60% depth (see ssl_ser.testing.synthetic). Parts:

- sweep: the full speaker-kfold 5-fold sweep with logreg and mlp over all layers
  (wall time, best layer, peak memory against the size of the features);
- probe: on one fold, the batched all-layer probe against training the same
  head layer by layer (speed-up, UA difference per layer, GFLOP/s against a
  plain matmul and a same-shape batched matmul);
- xgb: xgboost on one 1,024-dim layer: the registry default, the same with
  early stopping on training speakers, and ``xgb-fast`` (PCA to 128 dims,
  shallower trees, early stopping): fit time and UA;
- fits: per-fit times of logreg, mlp and xgb-fast on small classic-feature-sized
  data (500 and 7,000 utterances x 88 dims, one fold), as a sweep cell fits them:
  default settings and tuned (``--search``), at 1 thread (the sweep's default)
  and at every core (the old default), each against logreg default at 1 thread
  in the same run;
- mlp-sklearn: our torch MLP (registry default) against scikit-learn's
  ``MLPClassifier`` (same width, its own early stopping) on small data, 588 x 40
  synthetic features of 6 speakers, LOSO, one thread each; repeats interleaved,
  median per-fit time, UA on the held-out speaker, epochs and the time ratio;
- bootstrap: the UA interval of one test scope (1,000 resamples) by resampling
  the confusion counts (``bootstrap_ua``) against resampling utterance indices
  (the former method), at 500 and 16,000 utterances.

Timings are wall-clock on a shared machine: compare ratios measured in one run.

    .venv/bin/python benchmarks/classify_bench.py                  # everything
    .venv/bin/python benchmarks/classify_bench.py --parts probe --layers 13 --utts 3000
    .venv/bin/python benchmarks/classify_bench.py --parts fits,bootstrap
    .venv/bin/python benchmarks/classify_bench.py --parts mlp-sklearn --mlp-repeats 5
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import tempfile
import time

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ssl_ser.classify import registry
from ssl_ser.classify.metrics import bootstrap_ua
from ssl_ser.classify.registry import HistXGB
from ssl_ser.classify.splits import SplitOptions, make_folds, speaker_groups
from ssl_ser.classify.sweep import SweepConfig, run_sweep
from ssl_ser.testing.synthetic import cremad_like

CLASSES = 6


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utts", type=int, default=7442)
    parser.add_argument("--speakers", type=int, default=91)
    parser.add_argument("--layers", type=int, default=25)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--parts", default="sweep,probe,xgb,fits,mlp-sklearn,bootstrap")
    parser.add_argument(
        "--mlp-repeats", type=int, default=3, help="LOSO passes of the mlp-sklearn part"
    )
    parser.add_argument(
        "--fit-utts", default="500,7000", help="utterance counts of the fits part (88 dims)"
    )
    parser.add_argument("--fit-repeats", type=int, default=3, help="fits timed per setting")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch/BLAS threads of the probe and xgb parts"
    )
    return parser.parse_args()


def peak_rss_mb() -> tuple[float, float]:
    """Peak resident memory (MB) of this process and of its largest finished child."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def shutdown_workers() -> None:
    """Stop joblib's worker processes so that their peak memory is counted as children's."""
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)


def ua(true: np.ndarray, predicted: np.ndarray) -> float:
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(true, predicted))


def bench_sweep(table: pd.DataFrame, features, args) -> None:
    size_mb = features.arrays["mean"].nbytes / 1e6
    config = SweepConfig(
        labels="all",
        classifiers=("logreg", "mlp"),
        split="speaker-kfold",
        split_options=SplitOptions(folds=args.folds, seed=args.seed),
        jobs=args.jobs,
    )
    with tempfile.TemporaryDirectory() as output:
        start = time.perf_counter()
        result = run_sweep([features], table, config, output, progress=True)
        seconds = time.perf_counter() - start
    shutdown_workers()
    own, child = peak_rss_mb()
    cells = len(result.results)
    print(f"\n== sweep: {cells} cells (logreg + mlp x {args.layers} layers x {args.folds} folds)")
    print(f"wall time        {seconds:8.1f} s  ({seconds / 60:.1f} min, --jobs {args.jobs})")
    print(f"summary          {result.line}")
    print(f"features         {size_mb:8.0f} MB (float32, mean pooling)")
    print(f"peak RSS main    {own:8.0f} MB  ({own / size_mb:.1f}x the features)")
    print(f"peak RSS worker  {child:8.0f} MB  (shared memory-mapped pages counted)")


def one_fold(table: pd.DataFrame, seed: int, folds: int):
    split = table.assign(label=table["emotion"])
    split["group"] = speaker_groups(split)[0].to_numpy()
    return make_folds(split, "speaker-kfold", SplitOptions(folds=folds, seed=seed))[0]


def sequential(head: str, x: np.ndarray, y, groups, train, test, threads: int):
    """Train the same head layer by layer through the registry pipeline."""
    predictions = []
    start = time.perf_counter()
    for layer in range(x.shape[0]):
        model = registry.build_pipeline(head, seed=0, threads=threads)
        registry.fit_pipeline(model, head, x[layer, train], y[train], groups[train])
        predictions.append(model.predict(x[layer, test]))
    return time.perf_counter() - start, predictions


def batched(head: str, x: np.ndarray, y, groups, train, test):
    from ssl_ser.classify.batched import BatchedProbe

    params = dict(registry.get(head).defaults)
    start = time.perf_counter()
    probe = BatchedProbe(head, random_state=0, **params).fit(
        np.take(x, train, axis=1), y[train], groups[train]
    )
    seconds = time.perf_counter() - start
    return seconds, probe, probe.predict(np.take(x, test, axis=1))


def training_flops(probe, dim: int) -> float:
    """Multiply-adds x2 of training (forward + weight gradients) and validation passes."""
    if probe.head == "mlp":
        hidden = probe.hidden_layer_sizes[0]
        train_row = 4 * dim * hidden + 6 * hidden * CLASSES
        eval_row = 2 * dim * hidden + 2 * hidden * CLASSES
    else:
        train_row, eval_row = 4 * dim * CLASSES, 2 * dim * CLASSES
    return probe.head_epochs_ * (probe.n_fit_rows_ * train_row + probe.n_val_rows_ * eval_row)


def matmul_rates(layers: int, dim: int, hidden: int) -> tuple[float, float]:
    """GFLOP/s of a 2048^3 matmul and of a probe-shaped batched matmul, same threads."""
    import torch

    def rate(a, b, flops, repeats=10):
        for _ in range(2):
            torch.matmul(a, b)
        start = time.perf_counter()
        for _ in range(repeats):
            torch.matmul(a, b)
        return repeats * flops / (time.perf_counter() - start) / 1e9

    square = torch.randn(2048, 2048)
    plain = rate(square, square, 2 * 2048**3)
    x, w = torch.randn(layers, 128, dim), torch.randn(layers, dim, hidden)
    shaped = rate(x, w, 2 * layers * 128 * dim * hidden)
    return plain, shaped


def warm_up(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> None:
    """One tiny fit of each head, so that torch's lazy imports are not timed."""
    from ssl_ser.classify.batched import BatchedProbe

    for head in ("linear", "mlp"):
        BatchedProbe(head, max_epochs=2).fit(x[:2, :300], y[:300], groups[:300])
        registry.fit_pipeline(
            registry.build_pipeline(head, {"max_epochs": 2}),
            head,
            x[0, :300],
            y[:300],
            groups[:300],
        )


def bench_probe(table: pd.DataFrame, features, args) -> None:
    import torch

    threads = args.threads
    torch.set_num_threads(threads)
    fold = one_fold(table, args.seed, args.folds)
    x = np.ascontiguousarray(features.arrays["mean"].transpose(1, 0, 2))
    y = table["emotion"].to_numpy()
    groups = table["speaker"].to_numpy()
    warm_up(x, y, groups)
    print(
        f"\n== batched probe vs layer by layer: fold 0 ({len(fold.train)} train / "
        f"{len(fold.test)} test rows), {args.layers} layers, {threads} threads"
    )
    plain, shaped = matmul_rates(args.layers, args.dim, 256)
    for head in ("linear", "mlp"):
        t_batched, probe, predicted = batched(head, x, y, groups, fold.train, fold.test)
        t_seq, alone = sequential(head, x, y, groups, fold.train, fold.test, threads)
        uas_b = np.array([ua(y[fold.test], p) for p in predicted])
        uas_s = np.array([ua(y[fold.test], p) for p in alone])
        agree = np.mean([np.mean(a == b) for a, b in zip(predicted, alone, strict=True)])
        gflops = training_flops(probe, args.dim) / t_batched / 1e9
        print(f"-- {head}")
        print(
            f"batched          {t_batched:8.1f} s   sequential {t_seq:8.1f} s   "
            f"speed-up {t_seq / t_batched:.2f}x"
        )
        print(
            f"UA best layer    {uas_b.max():.4f} (layer {uas_b.argmax()})  sequential "
            f"{uas_s.max():.4f} (layer {uas_s.argmax()})"
        )
        print(
            f"max |UA diff|    {np.abs(uas_b - uas_s).max() * 100:.2f} points over layers; "
            f"identical predictions {agree * 100:.2f}%"
        )
        print(f"epochs/layer     {probe.head_epochs_ / args.layers:.1f}  rate {gflops:.1f} GFLOP/s")
    print(
        f"plain matmul     {plain:8.1f} GFLOP/s (2048^3)   probe-shaped bmm {shaped:.1f} GFLOP/s "
        f"({args.layers}x128x{args.dim}x256)"
    )


def bench_xgb(table: pd.DataFrame, features, args) -> None:
    threads = os.cpu_count() or 1
    fold = one_fold(table, args.seed, args.folds)
    layer = int(round(0.6 * (args.layers - 1)))
    x = features.arrays["mean"][:, layer]
    y = np.unique(table["emotion"], return_inverse=True)[1]
    groups = table["speaker"].to_numpy()
    print(f"\n== xgboost on layer {layer} ({args.dim} dims), fold 0, {threads} threads")
    default = dict(registry.get("xgb").defaults)
    early = {k: default[k] for k in ("n_estimators", "learning_rate", "max_depth", "subsample")}
    variants = [
        (
            "xgb",
            "registry default: 300 rounds, depth 6, lr 0.1, all dims",
            registry.build_pipeline("xgb", seed=0, threads=threads),
        ),
        (
            "xgb+es",
            "same, early stopping on training speakers, all dims",
            Pipeline(
                [
                    ("scale", StandardScaler()),
                    ("clf", HistXGB(max_bin=256, n_jobs=threads, **early)),
                ]
            ),
        ),
        (
            "xgb-fast",
            "PCA 128, depth 4, 64 bins, lr 0.15, early stopping",
            registry.build_pipeline("xgb-fast", seed=0, threads=threads),
        ),
    ]
    baseline = None
    for name, label, model in variants:
        start = time.perf_counter()
        if name == "xgb":
            model.fit(x[fold.train], y[fold.train])
        else:
            model.fit(x[fold.train], y[fold.train], clf__groups=groups[fold.train])
        seconds = time.perf_counter() - start
        score = ua(y[fold.test], model.predict(x[fold.test]))
        baseline = baseline or (seconds, score)
        rounds = getattr(model[-1], "best_iteration_", None)
        extra = f", best round {rounds + 1}" if rounds is not None else ""
        print(
            f"{name:9s} {seconds:7.1f} s  UA {score:.4f}  ({seconds / baseline[0]:.2f}x time, "
            f"{(score - baseline[1]) * 100:+.2f} UA points)  {label}{extra}"
        )


def time_fit(name: str, x, y, groups, fold, threads: int, search: bool, repeats: int):
    """Best-of-`repeats` wall time of one cell's fit (and its UA), as the sweep fits it.

    ``search=False`` is the registry default settings; ``search=True`` the tuned
    fit of ``--search`` (inner grid search on training speakers, then the refit).
    """
    import torch
    from threadpoolctl import threadpool_limits

    from ssl_ser.classify.search import fit_single

    before = torch.get_num_threads()
    best, score = float("inf"), float("nan")
    train, test = fold.train, fold.test
    try:
        torch.set_num_threads(threads)
        with threadpool_limits(threads):
            for _ in range(repeats):
                start = time.perf_counter()
                model, _, _ = fit_single(
                    name,
                    registry.get(name).defaults,
                    x[train],
                    y[train],
                    groups[train],
                    search=search,
                    seed=0,
                    threads=threads,
                )
                best = min(best, time.perf_counter() - start)
            score = ua(y[test], model.predict(x[test]))
    finally:
        torch.set_num_threads(before)
    return best, score


def bench_fits(args) -> None:
    cores = os.cpu_count() or 1
    print(
        f"\n== per-fit times, 88 dims, fold 0 of {args.folds}; default settings best of "
        f"{args.fit_repeats}, tuned (--search) best of 1; "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}"
    )
    for n in (int(v) for v in args.fit_utts.split(",")):
        table, features = cremad_like(
            n, max(6, min(91, n // 60)), 1, 88, seed=args.seed, poolings=("mean",)
        )
        fold = one_fold(table, args.seed, args.folds)
        x = np.ascontiguousarray(features.arrays["mean"][:, 0])
        y = np.unique(table["emotion"], return_inverse=True)[1]  # class codes, as a sweep
        groups = table["speaker"].to_numpy()
        warm = one_fold(table.iloc[:200], args.seed, 2)
        time_fit("mlp", x[:200], y[:200], groups[:200], warm, 1, False, 1)  # torch imports
        reference = None
        print(f"-- {n} utterances ({len(fold.train)} train rows)")
        for search in (False, True):
            for threads in sorted({1, cores}):
                for name in ("logreg", "mlp", "xgb-fast"):
                    repeats = 1 if search else args.fit_repeats
                    t, score = time_fit(name, x, y, groups, fold, threads, search, repeats)
                    reference = reference or t
                    print(
                        f"{name:9s} {'tuned  ' if search else 'default'} {threads} thread(s) "
                        f"{t:8.3f} s  UA {score:.4f}  ({t / reference:6.1f}x logreg default "
                        "at 1 thread)"
                    )


def bench_mlp_sklearn(args) -> None:
    """Our MLP against scikit-learn's MLPClassifier on 588 x 40 features, LOSO, 1 thread."""
    import torch
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    # 5 layers so that layer 2 carries the class signal (a 1-layer set is near chance)
    table, features = cremad_like(588, 6, 5, 40, seed=args.seed, poolings=("mean",))
    x = np.ascontiguousarray(features.arrays["mean"][:, 2])
    y = np.unique(table["emotion"], return_inverse=True)[1]
    groups = table["speaker"].to_numpy()

    def ours(train):
        model = registry.build_pipeline("mlp", seed=0, threads=1)
        return registry.fit_pipeline(model, "mlp", x[train], y[train], groups[train])

    def theirs(train):
        clf = MLPClassifier(hidden_layer_sizes=(256,), early_stopping=True, random_state=0)
        return Pipeline([("scale", StandardScaler()), ("clf", clf)]).fit(x[train], y[train])

    fits = {"ssl-ser mlp": ours, "sklearn MLPClassifier": theirs}
    times: dict[str, list[float]] = {name: [] for name in fits}
    scores: dict[str, list[float]] = {name: [] for name in fits}
    epochs: dict[str, list[int]] = {name: [] for name in fits}
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            for fit in fits.values():  # warm-up: imports and first-call costs
                fit(np.arange(120))
            for repeat in range(args.mlp_repeats):
                for speaker in np.unique(groups):
                    train, test = groups != speaker, groups == speaker
                    for name, fit in fits.items():  # interleaved: both see the same load
                        start = time.perf_counter()
                        model = fit(train)
                        times[name].append(time.perf_counter() - start)
                        if repeat == 0:
                            scores[name].append(ua(y[test], model.predict(x[test])))
                            epochs[name].append(int(model[-1].n_iter_))
    finally:
        torch.set_num_threads(before)
    print(
        f"\n== torch MLP vs scikit-learn MLPClassifier: 588 x 40, LOSO (6 folds) x "
        f"{args.mlp_repeats}, 1 thread each, hidden 256; median per fit"
    )
    for name in fits:
        print(
            f"{name:22s} {np.median(times[name]):7.3f} s  UA {np.mean(scores[name]):.4f}  "
            f"epochs {np.mean(epochs[name]):5.1f}"
        )
    ratio = np.median(times["ssl-ser mlp"]) / np.median(times["sklearn MLPClassifier"])
    gain = np.mean(scores["ssl-ser mlp"]) - np.mean(scores["sklearn MLPClassifier"])
    print(f"time ratio (ours / sklearn) {ratio:.2f}  UA difference (ours - sklearn) {gain:+.4f}")


def index_bootstrap(true_idx: np.ndarray, pred_idx: np.ndarray, k: int, n_boot: int = 1000):
    """The former per-cell bootstrap: resample utterance indices, one bincount (reference)."""
    n = len(true_idx)
    draws = np.random.default_rng(0).integers(0, n, size=(n_boot, n))
    offsets = (np.arange(n_boot) * k * k)[:, None]
    cell = true_idx[draws] * k + pred_idx[draws] + offsets
    confusions = np.bincount(cell.ravel(), minlength=n_boot * k * k).reshape(n_boot, k, k)
    support = confusions.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, np.einsum("bii->bi", confusions) / support, np.nan)
    return tuple(np.percentile(np.nanmean(recall, axis=1), [2.5, 97.5]))


def bench_bootstrap(args) -> None:
    print("\n== UA bootstrap of one test scope, 1,000 resamples, 7 classes (best of 5)")
    rng = np.random.default_rng(args.seed)
    for n in (500, 16_000):
        true = rng.integers(0, 7, n)
        pred = np.where(rng.random(n) < 0.6, true, rng.integers(0, 7, n))
        timings = {}
        for name, method in (("counts", bootstrap_ua), ("indices", index_bootstrap)):
            runs = []
            for _ in range(5):
                start = time.perf_counter()
                bounds = method(true, pred, 7)
                runs.append(time.perf_counter() - start)
            timings[name] = (min(runs), bounds)
        (fast, a), (slow, b) = timings["counts"], timings["indices"]
        print(
            f"n={n:6d}  counts {fast * 1e3:7.1f} ms  indices {slow * 1e3:7.1f} ms  "
            f"({slow / fast:.0f}x)  interval {a[0]:.4f}-{a[1]:.4f} vs {b[0]:.4f}-{b[1]:.4f}"
        )


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    parts = set(args.parts.split(","))
    if "bootstrap" in parts:
        bench_bootstrap(args)
    if "fits" in parts:
        bench_fits(args)
    if "mlp-sklearn" in parts:
        bench_mlp_sklearn(args)
    if not parts & {"sweep", "probe", "xgb"}:
        return
    start = time.perf_counter()
    table, features = cremad_like(
        args.utts, args.speakers, args.layers, args.dim, seed=args.seed, poolings=("mean",)
    )
    print(
        f"synthetic features {features.arrays['mean'].shape} in "
        f"{time.perf_counter() - start:.1f} s; {os.cpu_count()} CPU cores (shared: timings noisy)"
    )
    if "sweep" in parts:  # first, so that its peak memory is not the other parts'
        bench_sweep(table, features, args)
    if "probe" in parts:
        bench_probe(table, features, args)
    if "xgb" in parts:
        bench_xgb(table, features, args)


if __name__ == "__main__":
    main()
