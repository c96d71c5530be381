"""Benchmark of `ser predict` throughput against `ser extract` on the same model and audio.

A synthetic emotional corpus (``ssl_ser.synth``; its first sentences) is fine-tuned
for one epoch (``freeze=base``: the head learns; ``run_finetune``) on a
randomly initialised wav2vec2 of the chosen size; the saved model folder is the
bundle. Then, in one run and in alternating order against drift:

1. ``ser predict``'s path: ``ssl_ser.predict.load(bundle).predict(paths)``;
2. ``ser extract``'s path: ``ssl_ser.extract.runner.extract`` of the bundle's own
   backbone folder with the bundle's extraction settings, into a fresh cache.

Both exclude model loading (timed apart); both use the same workers and batch
seconds. Throughput is audio seconds per wall second; the goal is predict /
extract >= 0.9. With ``--workers 0`` (the default) all the work of both is in this
process, so their CPU seconds (``time.process_time``) are printed too: on a shared
machine the wall times of the same work ranged over 1.7x in one run, CPU times over 1.3x.
With ``--parts`` the per-part timing table of ``ser bench-inference`` on the same
bundle follows.

Sizes: ``tiny`` (the demo's model), ``mid`` (wav2vec2's convolutional front end,
6 layers of width 384), ``base`` (wav2vec2-base's architecture).

One torch thread by default (``--threads``): on a loaded 2-core machine two threads
ran the mid model's forward pass 1.5x slower than one.

Run: ``.venv/bin/python benchmarks/predict_bench.py [--size mid] [--sentences 4] [--parts]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# As `ser` does: idle OpenMP threads sleep instead of spinning (a shared machine).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pandas as pd
import torch
import transformers

from ssl_ser import corpora, synth
from ssl_ser.classify.splits import SplitOptions
from ssl_ser.extract import runner
from ssl_ser.extract.backbones import write_random_weights_marker
from ssl_ser.finetune.config import FinetuneConfig
from ssl_ser.finetune.run import RunOptions, run_finetune
from ssl_ser.pipelines.demo import build_model
from ssl_ser.predict import load, timing

SIZES: dict[str, dict] = {
    "mid": {
        "hidden_size": 384,
        "num_hidden_layers": 6,
        "num_attention_heads": 6,
        "intermediate_size": 1536,
    },
    "base": {},
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", *SIZES), default="mid")
    parser.add_argument("--sentences", type=int, default=4, help="per voice and emotion")
    parser.add_argument("--repeats", type=int, default=3, help="pairs of timings")
    parser.add_argument("--workers", type=int, default=0, help="0: all work in this process")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's own)")
    parser.add_argument("--batch-seconds", type=float, default=60.0)
    parser.add_argument("--parts", action="store_true", help="also time each part of inference")
    parser.add_argument("--durations", default="1,5,10,20", help="for --parts")
    parser.add_argument("--output", type=Path, default=None, help="CSV of the --parts table")
    return parser.parse_args()


def save_model(size: str, folder: Path) -> Path:
    """A randomly initialised wav2vec2 of `size` with its preprocessor config (marked random)."""
    if size == "tiny":
        return build_model(folder)
    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(**SIZES[size])
    transformers.Wav2Vec2Model(config).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(
        do_normalize=True, return_attention_mask=False
    ).save_pretrained(folder)
    write_random_weights_marker(folder, 0)
    return folder


def make_bundle(
    manifest: pd.DataFrame, model: Path, output: Path, args
) -> tuple[Path, FinetuneConfig]:
    """Fine-tune one fold for one epoch; (its saved model folder, the settings)."""
    config = FinetuneConfig(
        model=str(model),
        epochs=1,
        learning_rate=1e-3,
        patience=None,
        freeze="base",
        batch_seconds=args.batch_seconds,
    )
    settings = RunOptions(
        split="speaker",
        split_options=SplitOptions(),
        device="cpu",
        workers=args.workers,
        bootstrap=10,
    )
    first_sentence = manifest[
        manifest["path"].str.contains("_s00")
    ]  # its weights are not the point
    run_finetune(first_sentence, config, settings, output)
    return next((output / "models").iterdir()), config


def time_predict(bundle: Path, paths: list[str], args) -> tuple[float, float, float]:
    """(seconds to load the bundle, wall and CPU seconds `predict` spends on `paths`)."""
    started = time.perf_counter()
    predictor = load(bundle, "cpu")
    loaded, cpu = time.perf_counter(), time.process_time()
    table = predictor.predict(paths, batch_seconds=args.batch_seconds, workers=args.workers)
    done, cpu = time.perf_counter(), time.process_time() - cpu
    if table["error"].notna().any():
        raise RuntimeError(f"predict failed on {table['error'].notna().sum()} file(s)")
    return loaded - started, done - loaded, cpu


def time_extract(
    manifest: pd.DataFrame, config: FinetuneConfig, bundle: Path, cache: Path, args
) -> tuple[float, float, float]:
    """(seconds to load the backbone, wall and CPU seconds of the rest) into a fresh cache."""
    extractor = config.extractor_config()
    extractor = type(extractor)(**{**extractor.to_dict(), "model": str(bundle / "backbone")})
    loading: list[tuple[float, float]] = []
    load_backbone = runner.load_backbone

    def timed_load(*arguments):
        started, cpu = time.perf_counter(), time.process_time()
        backbone = load_backbone(*arguments)
        loading.append((time.perf_counter() - started, time.process_time() - cpu))
        return backbone

    runner.load_backbone = timed_load
    try:
        started, cpu = time.perf_counter(), time.process_time()
        runner.extract(
            manifest,
            extractor,
            cache,
            device="cpu",
            batch_seconds=args.batch_seconds,
            workers=args.workers,
        )
        total, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        runner.load_backbone = load_backbone
    return loading[0][0], total - loading[0][0], cpu - loading[0][1]


def compare(manifest: pd.DataFrame, config: FinetuneConfig, bundle: Path, root: Path, args) -> None:
    """Predict and extract in A-B-B-A order; print both throughputs and their ratio."""
    paths = manifest["path"].tolist()
    seconds = float(manifest["duration"].sum())
    predicted, extracted, loads = [], [], {"predict": [], "extract": []}
    for repeat in range(args.repeats):
        pair = [
            lambda: predicted.append(time_predict(bundle, paths, args)),
            lambda r=repeat: extracted.append(
                time_extract(manifest, config, bundle, root / f"cache{r}", args)
            ),
        ]
        for measure in pair if repeat % 2 == 0 else reversed(pair):
            measure()
    loads = {"predict": [p[0] for p in predicted], "extract": [e[0] for e in extracted]}
    print(f"{len(paths)} files, {seconds:.1f} audio s; model loading excluded")
    for clock, column in (("wall", 1), ("CPU", 2)):
        ours = np.array([p[column] for p in predicted])
        theirs = np.array([e[column] for e in extracted])
        ratios = theirs / ours  # throughput ratio predict / extract
        for name, times in (("ser predict", ours), ("ser extract", theirs)):
            print(
                f"{name} ({clock}): best {times.min():.2f} s "
                f"({seconds / times.min():.1f} audio s/s), "
                f"runs {', '.join(f'{t:.2f}' for t in times)}; "
                f"model load {np.median(loads[name.split()[1]]):.2f} s"
            )
        print(
            f"throughput predict / extract ({clock}): best-to-best "
            f"{theirs.min() / ours.min():.3f}, median of pairs {np.median(ratios):.3f} "
            f"(goal >= 0.9); pairs {', '.join(f'{r:.3f}' for r in ratios)}"
        )


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synth.write_corpus(root / "synth", sentences=args.sentences, seed=0)
        manifest = corpora.load("folder", root / "synth", speaker_pattern=synth.SPEAKER_PATTERN)
        model = save_model(args.size, root / "model")
        print(
            f"model: {args.size}; torch threads {torch.get_num_threads()}; workers {args.workers}"
        )
        started = time.perf_counter()
        bundle, config = make_bundle(manifest, model, root / "finetune", args)
        print(f"bundle fine-tuned (1 epoch, head only) in {time.perf_counter() - started:.1f} s")
        compare(manifest, config, bundle, root, args)
        if args.parts:
            pipeline = timing.load_pipeline(bundle, "cpu")
            durations = [float(d) for d in args.durations.split(",")]
            table = timing.bench(pipeline, durations)
            print(timing.format_table(table))
            if args.output:
                table.to_csv(args.output, index=False)


if __name__ == "__main__":
    main()
