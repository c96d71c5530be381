"""Benchmark of `ser compare` and the report's statistics on a realistic results folder.

Writes a ``ser classify``-shaped folder (results and predictions tables, with
speakers) of an IEMOCAP-sized sweep: 5,531 test utterances over 10 speakers and
5 folds, 25 layers x 3 classifiers x 2 poolings (150 cells, 830,000 prediction
rows), 4 classes, each cell's accuracy peaking at a middle layer. Then times,
reading only the stored tables:

- load: ``load_results`` (what every command pays first);
- pair: one ``ser compare --a layer=12 --b layer=13`` pair (1,000 resamples and
  1,000 permutations);
- line: one line of 25 layers against its best (what the report draws per model
  and setting), and all 6 lines (``ser compare`` without selectors);
- breakdown: UA per speaker and gender of one cell with intervals.

Timings are wall-clock on a shared machine.

    .venv/bin/python benchmarks/compare_bench.py
    .venv/bin/python benchmarks/compare_bench.py --utts 1000 --layers 13 --boot 500
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ssl_ser.report import compare
from ssl_ser.report.load import load_results
from ssl_ser.report.tables import cell_summary

CLASSES = ("angry", "happy", "neutral", "sad")
CLASSIFIERS = ("logreg", "mlp", "xgb")
POOLINGS = ("mean", "mean+std")


def write_folder(folder: Path, utts: int, layers: int, speakers: int, folds: int) -> int:
    """A results folder of every (layer, classifier, pooling, fold) cell; returns its row count."""
    rng = np.random.default_rng(0)
    speaker = np.arange(utts) % speakers
    fold = speaker % folds
    true = rng.integers(0, len(CLASSES), utts)
    rows, frames = [], []
    for layer, classifier, pooling in itertools.product(range(layers), CLASSIFIERS, POOLINGS):
        accuracy = 0.45 + 0.2 * np.exp(-((((layer / (layers - 1)) - 0.6) / 0.3) ** 2))
        hit = rng.random(utts) < accuracy
        pred = np.where(hit, true, (true + rng.integers(1, len(CLASSES), utts)) % len(CLASSES))
        for f in range(folds):
            mask = fold == f
            cell = f"{layer}-{classifier}-{pooling}-{f}"
            recall = [np.mean(pred[mask & (true == c)] == c) for c in range(len(CLASSES))]
            rows.append(
                {
                    "cell_id": cell,
                    "extractor": "model",
                    "corpus": "iemocap",
                    "condition": "clean",
                    "layer": str(layer),
                    "pooling": pooling,
                    "classifier": classifier,
                    "split": "speaker-kfold",
                    "fold": str(f),
                    "ua": float(np.mean(recall)),
                    "n_test": int(mask.sum()),
                }
            )
            frames.append(
                pd.DataFrame(
                    {
                        "cell_id": cell,
                        "utt_id": [f"iemocap/u{i}" for i in np.flatnonzero(mask)],
                        "corpus": "iemocap",
                        "speaker": [f"iemocap/s{s}" for s in speaker[mask]],
                        "gender": np.where(speaker[mask] % 2 == 0, "F", "M"),
                        "fold": str(f),
                        "label": np.array(CLASSES)[true[mask]],
                        "predicted": np.array(CLASSES)[pred[mask]],
                    }
                )
            )
    pd.DataFrame(rows).to_parquet(folder / "results.parquet")
    predictions = pd.concat(frames, ignore_index=True)
    predictions.to_parquet(folder / "predictions.parquet")
    return len(predictions)


def timed(what: str, run):
    start = time.perf_counter()
    out = run()
    print(f"{what:<48} {time.perf_counter() - start:8.2f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--utts", type=int, default=5531)
    parser.add_argument("--layers", type=int, default=25)
    parser.add_argument("--speakers", type=int, default=10)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--boot", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        n = write_folder(folder, args.utts, args.layers, args.speakers, args.folds)
        print(f"{args.utts} utterances, {args.layers} layers, 6 lines, {n:,} prediction rows")
        results = timed("load_results", lambda: load_results([folder]))
        cells = cell_summary(results.table)
        where = {"classifier": "logreg", "pooling": "mean"}
        pairs = compare.select_pairs(cells, {"layer": "12"}, {"layer": "13"}, where)
        timed(
            "one pair (ser compare --a --b)",
            lambda: compare.compare_pairs(results, pairs, n_boot=args.boot),
        )
        lines = compare.layer_lines(cells)
        timed(
            f"one line of {args.layers} layers against its best",
            lambda: compare.layers_versus_best(results, lines[0], n_boot=args.boot),
        )
        timed(
            f"all {len(lines)} lines (ser compare, no selectors)",
            lambda: [compare.layers_versus_best(results, x, n_boot=args.boot) for x in lines],
        )
        best = cells.iloc[0]
        timed(
            "breakdown of one cell (speaker, gender)",
            lambda: compare.breakdown(results, best, n_boot=args.boot),
        )


if __name__ == "__main__":
    main()
