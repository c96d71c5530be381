"""Benchmark of `ser extract` on CPU with the default wav2vec2-base configuration.

Random weights (``Wav2Vec2Config()``: the compute of wav2vec2-base) over synthetic
WAV files of 1-6 s at 16 kHz. Every figure is a ratio measured in the same run:

1. extraction wall time (DataLoader workers, preprocessing, masked pooling of all
   13 states, cache writes; model loading excluded) / a bare batched forward pass
   over the same audio, already in memory, same batches, no pooling (target <= 1.15);
2. speed-up over extracting each layer with its own (truncated) forward pass, and
   over a per-file loop that loads, resamples and runs one file at a time
   (both on a subset of the utterances, against the extractor on the same subset);
3. with ``--bf16``: bfloat16 autocast speed ratio and relative change of the pooled vectors.

Run: ``.venv/bin/python benchmarks/extract_bench.py [--utterances 200] [--subset 24]``.
Cache read speeds are measured by ``benchmarks/cache_bench.py``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
import torch
import transformers

from ssl_ser import audio, cache, manifest
from ssl_ser.extract import ExtractorConfig, extract
from ssl_ser.extract.batching import pad_stack, plan_batches
from ssl_ser.testing import write_wav, written_duration

SAMPLE_RATE = 16000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=200)
    parser.add_argument("--subset", type=int, default=24, help="utterances for the slow baselines")
    parser.add_argument("--batch-seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=2, help="pairs of overhead timings")
    parser.add_argument("--bf16", action="store_true", help="also measure bfloat16 autocast")
    return parser.parse_args()


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
                "speaker": f"bench/s{i % 10}",
                "gender": "",
                "language": "eng",
                "emotion": "neutral",
                "emotion_raw": "N",
                "duration": written_duration(float(seconds), SAMPLE_RATE),
                "sample_rate": SAMPLE_RATE,
                "text": "",
                "split": "",
            }
        )
    return manifest.validate(pd.DataFrame(rows))


def save_base_model(folder: Path) -> Path:
    """wav2vec2-base's architecture and preprocessor config, random weights."""
    torch.manual_seed(0)
    transformers.Wav2Vec2Model(transformers.Wav2Vec2Config()).save_pretrained(folder)
    extractor = transformers.Wav2Vec2FeatureExtractor(
        do_normalize=False, return_attention_mask=False
    )
    extractor.save_pretrained(folder)
    return folder


def load_model(folder: Path) -> tuple[transformers.Wav2Vec2Model, object]:
    model = transformers.AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
    return model, transformers.AutoFeatureExtractor.from_pretrained(folder)


def time_extract(table, config, cache_dir, args, **options) -> tuple[float, Path]:
    """Seconds `extract` spends on the corpus (model loading excluded) and the cache file."""
    (summary,) = extract(
        table,
        config,
        cache_dir,
        batch_seconds=args.batch_seconds,
        workers=args.workers,
        device="cpu",
        **options,
    )
    return summary.seconds, summary.path


def padded_batches(table, extractor, batch_seconds) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The extractor's batches, preprocessed and padded in memory (no I/O left to time)."""
    waves = [
        extractor(audio.load_utterance(row), sampling_rate=SAMPLE_RATE)["input_values"][0]
        for _, row in table.iterrows()
    ]
    out = []
    for batch in plan_batches(table["duration"].tolist(), batch_seconds):
        values, lengths = pad_stack([waves[i] for i in batch])
        mask = torch.arange(values.shape[1])[None, :] < torch.from_numpy(lengths)[:, None]
        out.append((torch.from_numpy(values), mask.long()))
    return out


def time_bare_forward(model, batches) -> float:
    """One plain batched forward pass per batch: no pooling, no hidden states kept."""
    started = time.perf_counter()
    with torch.inference_mode():
        for values, mask in batches:
            model(values, attention_mask=mask)
    return time.perf_counter() - started


def time_per_layer(model, table, extractor) -> float:
    """Each state by its own forward pass, truncated after that layer, one file at a time."""
    layers = model.encoder.layers
    started = time.perf_counter()
    with torch.inference_mode():
        for _, row in table.iterrows():
            inputs = extractor(
                audio.load_utterance(row), sampling_rate=SAMPLE_RATE, return_tensors="pt"
            )
            for depth in range(len(layers) + 1):
                model.encoder.layers = layers[:depth]
                state = model(inputs["input_values"]).last_hidden_state[0].numpy()
                np.stack([state.mean(0), state.std(0)])
    model.encoder.layers = layers
    return time.perf_counter() - started


def time_per_file(model, table, extractor) -> float:
    """Load, resample and run one file at a time, all states, numpy mean/std."""
    started = time.perf_counter()
    with torch.inference_mode():
        for _, row in table.iterrows():
            wave = audio.load(row["path"], sample_rate=SAMPLE_RATE)
            inputs = extractor(wave, sampling_rate=SAMPLE_RATE, return_tensors="pt")
            states = model(inputs["input_values"], output_hidden_states=True).hidden_states
            frames = np.stack([s[0].numpy() for s in states])
            np.stack([frames.mean(1), frames.std(1)])
    return time.perf_counter() - started


def compare_bf16(table, folder, root, args) -> None:
    """bfloat16 autocast against float32 on the subset: speed and pooled-vector change."""
    timings, paths = {}, {}
    for dtype in ("float32", "bfloat16"):
        config = ExtractorConfig(model=str(folder), dtype=dtype)
        timings[dtype], paths[dtype] = time_extract(
            table, config, root / f"cache-{dtype}", args, storage_dtype="float32"
        )
    ids = table["utt_id"].tolist()
    with cache.open(paths["float32"]) as full, cache.open(paths["bfloat16"]) as half:
        a, b = full.read_rows(ids, "mean"), half.read_rows(ids, "mean")
    change = np.linalg.norm(b - a, axis=-1) / np.linalg.norm(a, axis=-1)
    print(
        f"bfloat16 autocast: {timings['float32'] / timings['bfloat16']:.2f}x the float32 speed "
        f"({timings['bfloat16']:.1f} s vs {timings['float32']:.1f} s on {len(table)} utterances); "
        f"relative change of mean vectors: median {np.median(change):.2%}, max {change.max():.2%}"
    )


def measure_overhead(table, model, extractor, config, root, args) -> None:
    """Extraction against a bare batched forward pass, in A-B-B-A order against drift."""
    batches = padded_batches(table, extractor, args.batch_seconds)
    time_bare_forward(model, batches[-1:])  # warm-up
    bare, ours = [], []
    for repeat in range(args.repeats):
        pair = [
            lambda: bare.append(time_bare_forward(model, batches)),
            lambda r=repeat: ours.append(time_extract(table, config, root / f"c{r}", args)[0]),
        ]
        for measure in pair if repeat % 2 == 0 else reversed(pair):
            measure()
    ratios = [o / b for o, b in zip(ours, bare, strict=True)]
    audio_seconds = table["duration"].sum()
    print(f"bare batched forward: {min(bare):.1f} s ({audio_seconds / min(bare):.1f} audio s/s)")
    print(f"ser extract:          {min(ours):.1f} s ({audio_seconds / min(ours):.1f} audio s/s)")
    print(
        f"  ratio extract / bare forward: best-to-best {min(ours) / min(bare):.3f}, "
        f"median of pairs {np.median(ratios):.3f} (target <= 1.15); "
        f"pairs {', '.join(f'{r:.3f}' for r in ratios)}"
    )


def measure_baselines(subset, model, extractor, config, root, args) -> None:
    """One forward pass per layer, and a per-file loop, against the extractor on a subset."""
    ours = time_extract(subset, config, root / "subset", args)[0]
    print(f"subset of {len(subset)}: ser extract {ours:.1f} s")
    per_layer = time_per_layer(model, subset, extractor)
    per_file = time_per_file(model, subset, extractor)
    for name, seconds in (("one forward pass per layer", per_layer), ("per-file loop", per_file)):
        print(f"  {name:27s} {seconds:.1f} s -> speed-up {seconds / ours:.2f}x")


def main() -> None:
    args = parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        table = make_corpus(root / "audio", args.utterances)
        subset = table.sample(n=min(args.subset, len(table)), random_state=0)
        folder = save_base_model(root / "model")
        model, extractor = load_model(folder)
        config = ExtractorConfig(model=str(folder))
        total = table["duration"].sum()
        print(f"{len(table)} utterances, {total:.0f} s of audio; subset {len(subset)}")
        measure_overhead(table, model, extractor, config, root, args)
        measure_baselines(subset, model, extractor, config, root, args)
        if args.bf16:
            compare_bf16(subset, folder, root, args)


if __name__ == "__main__":
    main()
