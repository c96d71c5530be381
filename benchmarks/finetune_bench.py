"""Benchmark of one `ser finetune` training step against a bare transformers step.

On the demo's tiny wav2vec2 and on a mid-sized random wav2vec2 (wav2vec2-base's
front end with fewer channels, 4 layers of width 256), with one fixed batch of
utterances of 2-4 s:

- step: one training step through ssl_ser's own machinery (the Trainer's forward
  through EmotionModel: masked front end, masked mean pooling; the loss, backward,
  gradient clipping, AdamW and the schedule, i.e. ``train._backward`` and
  ``train._step``) against a bare ``transformers`` forward + backward of the same
  model on the same padded batch (mean over the last hidden state, a linear head,
  cross-entropy), and the same plus an AdamW step. Feature encoder frozen in both.
  Goal: ratio <= 1.2. The bare batch follows the preprocessor config (no attention
  mask for these group-norm models, as transformers advises for wav2vec2-base);
  a bare step with the attention mask shows what masking the padding costs.
- memory: peak memory of a training step with and without gradient checkpointing,
  each in a fresh subprocess (CPU: the peak RSS of two steps above the RSS before
  them, Linux /proc; CUDA: ``torch.cuda.max_memory_allocated``).
- freeze: step time with the feature encoder frozen (default), nothing frozen,
  the whole base frozen (head only) and LoRA adapters.
- truncate: step time of the model cut above layer k (``--head-layer k``, what
  ``--from-probe`` trains) against the whole model, for every k, in one run: the
  ratio printed beside the layer fraction k/L (the front end and the head cost
  the same in both, so the ratio stays above the fraction).
- audio: peak memory of preparing a synthetic corpus (``--audio-minutes`` of
  16 kHz audio, 8 s clips) and reading one epoch of its batches, with the
  prepared audio on disk and read per batch (the default) against held in
  memory whole (``--audio-in-memory``, the only way before), each in a fresh
  process: the peak RSS above the RSS before loading (Linux /proc) and the peak
  of the arrays traced by ``tracemalloc``, side by side.

Timings are medians over repeats after a warm-up, the compared settings
interleaved, on a shared machine: compare ratios measured in one run.

    .venv/bin/python benchmarks/finetune_bench.py            # everything (~2 min on 2 cores)
    .venv/bin/python benchmarks/finetune_bench.py --quick    # smoke run
    .venv/bin/python benchmarks/finetune_bench.py --device cuda --batch 16
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from ssl_ser.finetune import train  # noqa: E402
from ssl_ser.finetune.checkpoint import TrainState  # noqa: E402
from ssl_ser.finetune.config import FinetuneConfig  # noqa: E402
from ssl_ser.finetune.data import Audio  # noqa: E402
from ssl_ser.finetune.distributed import World  # noqa: E402
from ssl_ser.finetune.model import build_model  # noqa: E402
from ssl_ser.testing import tone  # noqa: E402

RATE = 16000
CLASSES = 4
# wav2vec2-base's front end (7 convolutions, 320x downsampling, group norm) with
# 256 channels, and 4 post-LN transformer layers of width 256.
MID_CONFIG: dict[str, object] = {
    "hidden_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 1024,
    "conv_dim": (256,) * 7,
    "conv_kernel": (10, 3, 3, 3, 3, 2, 2),
    "conv_stride": (5, 2, 2, 2, 2, 2, 2),
    "num_conv_pos_embeddings": 64,
    "num_conv_pos_embedding_groups": 16,
    "feat_extract_norm": "group",
    "do_stable_layer_norm": False,
    "vocab_size": 32,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,mid", help="tiny (the demo's), mid")
    parser.add_argument("--parts", default="step,memory,freeze,truncate,audio")
    parser.add_argument("--batch", type=int, default=8, help="utterances in the batch")
    parser.add_argument("--low", type=float, default=2.0, help="shortest utterance (s)")
    parser.add_argument("--high", type=float, default=4.0, help="longest utterance (s)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 short clips, 1 repeat")
    parser.add_argument("--folder", help="model folders (default: a temporary folder)")
    parser.add_argument("--audio-minutes", type=float, default=30.0, help="audio part's corpus")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # memory: one setting, JSON out
    parser.add_argument("--child-audio", help=argparse.SUPPRESS)  # audio: one mode, JSON out
    args = parser.parse_args()
    if args.quick:
        args.batch, args.low, args.high, args.repeats = 2, 0.5, 0.8, 1
        args.models = "tiny"
        args.audio_minutes = min(args.audio_minutes, 2.0)
    return args


def build_models(folder: Path, names: list[str]) -> dict[str, Path]:
    """The demo's tiny wav2vec2 and the mid-sized one, saved with random weights."""
    import transformers

    from ssl_ser.pipelines.demo import build_model as build_demo_model

    out = {}
    if "tiny" in names:
        out["tiny"] = build_demo_model(folder / "tiny")
    if "mid" in names:
        path = folder / "mid"
        if not (path / "config.json").is_file():
            torch.manual_seed(0)
            transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**MID_CONFIG)).save_pretrained(
                path
            )
            transformers.Wav2Vec2FeatureExtractor(
                do_normalize=True, return_attention_mask=False
            ).save_pretrained(path)
        out["mid"] = path
    return out


def waves(args: argparse.Namespace) -> list[np.ndarray]:
    """The fixed batch: utterances of random lengths in [low, high] seconds."""
    rng = np.random.default_rng(0)
    seconds = rng.uniform(args.low, args.high, args.batch)
    return [tone(float(s), RATE, frequency=100.0 + 20 * i, seed=i) for i, s in enumerate(seconds)]


class Ours:
    """One training step through ssl_ser's Trainer functions (what ``train_fold`` runs)."""

    def __init__(self, folder: Path, audio: list[np.ndarray], device: str, **fields):
        fields = {"weighted_layers": False, "spec_augment": False, **fields}  # the bare step's
        config = FinetuneConfig(
            model=str(folder), max_seconds=None, learning_rate=1e-5, warmup=0.0, **fields
        )
        self.model, backbone = build_model(config, CLASSES, device, 0)
        data = Audio()
        for i, wave in enumerate(audio):
            key = (f"u{i}", "clean")
            data.segments[key] = backbone.preprocessor(wave)
            data.seconds[key] = wave.size / RATE
        keys = list(data.segments)
        codes = np.arange(len(keys)) % CLASSES
        self.rows = train.FoldRows(keys, codes, [], np.zeros(0, dtype=int), CLASSES)
        self.trainer = train.Trainer(self.model, config, data, 0, World())
        self.scheduler = train._schedule(self.trainer.optimizer, config, 1000)
        self.weight = torch.ones(CLASSES, device=self.trainer.device)
        self.state = TrainState(epoch=1)
        self.batch = list(range(len(keys)))

    def __call__(self) -> None:
        self.model.train()
        norm = float(len(self.batch))
        train._backward(self.trainer, self.batch, self.rows, self.weight, norm, self.state, 0)
        train._step(self.trainer, self.scheduler)


class Bare:
    """The same model in plain transformers: padded batch, mean of the last state, linear head."""

    def __init__(
        self,
        folder: Path,
        audio: list[np.ndarray],
        device: str,
        optimizer: bool,
        mask: bool = False,
    ):
        import transformers

        config = transformers.AutoConfig.from_pretrained(folder)
        config.layerdrop, config.apply_spec_augment = 0.0, False  # as ssl_ser loads it
        self.model = transformers.AutoModel.from_pretrained(folder, config=config).to(device)
        self.model.freeze_feature_encoder()
        extractor = transformers.AutoFeatureExtractor.from_pretrained(folder)
        inputs = extractor(
            audio, sampling_rate=RATE, padding=True, return_tensors="pt", return_attention_mask=mask
        )
        self.inputs = {k: v.to(device) for k, v in inputs.items()}
        self.head = torch.nn.Linear(config.hidden_size, CLASSES).to(device)
        self.targets = (torch.arange(len(audio)) % CLASSES).to(device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        params += list(self.head.parameters())
        self.optimizer = torch.optim.AdamW(params, lr=1e-5) if optimizer else None

    def __call__(self) -> None:
        self.model.train()
        hidden = self.model(**self.inputs).last_hidden_state
        loss = functional.cross_entropy(self.head(hidden.mean(1)), self.targets)
        loss.backward()
        if self.optimizer is not None:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.model.zero_grad(set_to_none=True)
            self.head.zero_grad(set_to_none=True)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(steps: dict[str, Callable[[], None]], repeats: int, device: str) -> dict[str, float]:
    """Median seconds per call of each step: one warm-up each, then repeats interleaved."""
    for step in steps.values():
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            synchronize(device)
            start = time.perf_counter()
            step()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in times.items()}


def bench_step(name: str, folder: Path, audio, args) -> None:
    steps = {
        "ssl_ser step": Ours(folder, audio, args.device),
        "bare fwd+bwd": Bare(folder, audio, args.device, optimizer=False),
        "bare fwd+bwd+AdamW": Bare(folder, audio, args.device, optimizer=True),
        "bare, attention mask": Bare(folder, audio, args.device, optimizer=False, mask=True),
    }
    result = timed(steps, args.repeats, args.device)
    ours = result["ssl_ser step"]
    print(f"\n[step] {name}: {len(audio)} utterances, {sum(w.size for w in audio) / RATE:.1f} s")
    print(f"  {'setting':<22}{'median s':>10}{'ssl_ser / this':>16}")
    for setting, seconds in result.items():
        print(f"  {setting:<22}{seconds:>10.3f}{ours / seconds:>16.2f}")
    ratio = ours / result["bare fwd+bwd"]
    print(f"  ratio to bare fwd+bwd: {ratio:.2f} (goal <= 1.2)")


def bench_freeze(name: str, folder: Path, audio, args) -> None:
    settings = {
        "feature-encoder": {},
        "none (full)": {"freeze": "none"},
        "base (head only)": {"freeze": "base"},
        "lora r=8": {"adapter": "lora"},
    }
    steps = {
        label: Ours(folder, audio, args.device, **fields) for label, fields in settings.items()
    }
    trained = {
        label: sum(p.numel() for p in step.model.parameters() if p.requires_grad)
        for label, step in steps.items()
    }
    result = timed(steps, args.repeats, args.device)
    base = result["feature-encoder"]
    print(f"\n[freeze] {name}: step time per freezing mode")
    print(f"  {'freeze':<20}{'trained params':>15}{'median s':>10}{'vs frozen encoder':>19}")
    for label, seconds in result.items():
        print(f"  {label:<20}{trained[label]:>15,}{seconds:>10.3f}{seconds / base:>19.2f}")


def bench_truncate(name: str, folder: Path, audio, args) -> None:
    import transformers

    layers = transformers.AutoConfig.from_pretrained(folder).num_hidden_layers
    steps = {"whole model": Ours(folder, audio, args.device)}
    for k in range(1, layers):
        steps[f"cut above layer {k}"] = Ours(folder, audio, args.device, head_layer=k)
    result = timed(steps, args.repeats, args.device)
    whole = result["whole model"]
    print(f"\n[truncate] {name}: step time of the model cut above layer k of {layers}")
    print(f"  {'model':<22}{'median s':>10}{'vs whole':>10}{'layers k/L':>12}")
    for label, seconds in result.items():
        k = layers if label == "whole model" else int(label.rsplit(" ", 1)[1])
        print(f"  {label:<22}{seconds:>10.3f}{seconds / whole:>10.2f}{k / layers:>12.2f}")


def rss_mb(field: str) -> float:
    """A memory figure of this process from /proc (VmRSS: now; VmHWM: peak since reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def child_memory(args: argparse.Namespace) -> None:
    """In a fresh process: peak memory of one training step of one setting, as JSON.

    With the model and the batch ready, the peak RSS is reset
    (``/proc/self/clear_refs``) and two steps run: the peak above the RSS before
    them is what training holds at once (activations, gradients, AdamW's states).
    Measured from before the first step, since the allocator keeps freed pages.
    """
    import gc

    setting = json.loads(args.child)
    torch.set_num_threads(args.threads)
    step = Ours(Path(setting["folder"]), waves(args), args.device, **setting["fields"])
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    before = rss_mb("VmRSS")
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    step()
    step()
    out = {"rss_before_mb": before, "peak_rss_mb": rss_mb("VmHWM")}
    if args.device.startswith("cuda"):
        out["cuda_peak_mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    print(json.dumps(out))


def bench_memory(name: str, folder: Path, args) -> None:
    print(f"\n[memory] {name}: peak memory of a training step (fresh process each)")
    print(f"  {'setting':<34}{'peak RSS MB':>12}{'above start MB':>16}", end="")
    print(f"{'CUDA peak MB':>14}" if args.device.startswith("cuda") else "")
    rows = {}
    for freeze in ("feature-encoder", "none"):
        for checkpointing in (False, True):
            fields = {"freeze": freeze, "gradient_checkpointing": checkpointing}
            setting = json.dumps({"folder": str(folder), "fields": fields})
            command = [sys.executable, __file__, "--child", setting, "--device", args.device]
            command += ["--batch", str(args.batch), "--low", str(args.low)]
            command += ["--high", str(args.high), "--threads", str(args.threads)]
            done = subprocess.run(command, capture_output=True, text=True)
            label = f"freeze {freeze}, checkpointing {'on' if checkpointing else 'off'}"
            if done.returncode != 0:
                error = (done.stderr.strip().splitlines() or ["?"])[-1]
                print(f"  {label:<35} failed: {error[:120]}")
                rows[(freeze, checkpointing)] = float("nan")
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            above = result["peak_rss_mb"] - result["rss_before_mb"]
            rows[(freeze, checkpointing)] = above
            print(f"  {label:<34}{result['peak_rss_mb']:>12.0f}{above:>16.0f}", end="")
            cuda = result.get("cuda_peak_mb")
            print(f"{cuda:>14.0f}" if cuda is not None else "")
    for freeze in ("feature-encoder", "none"):
        off, on = rows[(freeze, False)], rows[(freeze, True)]
        print(f"  freeze {freeze}: checkpointing on / off (above start): {on / max(off, 1):.2f}")


CLIP_SECONDS = 8.0


def write_audio_corpus(root: Path, minutes: float) -> Path:
    """A folder corpus of `minutes` of 8 s clips (4 speakers, 4 emotions), once per size."""
    import soundfile as sf

    from ssl_ser import synth

    clips = max(16, int(round(60 * minutes / CLIP_SECONDS)))
    folder = root / f"audio-{clips}"
    if folder.is_dir():
        return folder
    emotions, voices = synth.BASIC_EMOTIONS, synth.DEFAULT_VOICES[:4]
    for i in range(clips):
        emotion, voice = emotions[i % len(emotions)], voices[(i // len(emotions)) % len(voices)]
        path = folder / emotion / synth.file_name(voice, emotion, i)
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, tone(CLIP_SECONDS, RATE, frequency=120.0 + i % 50, seed=i), RATE)
    return folder


def child_audio(args: argparse.Namespace) -> None:
    """In a fresh process: peak memory of preparing the corpus and reading an epoch's batches."""
    import gc
    import tracemalloc

    from ssl_ser import corpora, synth
    from ssl_ser.finetune import data
    from ssl_ser.finetune.segment_store import SegmentStore

    setting = json.loads(args.child_audio)
    manifest = corpora.load("folder", setting["corpus"], speaker_pattern=synth.SPEAKER_PATTERN)
    config = FinetuneConfig(model=setting["folder"])
    _, backbone = build_model(config, CLASSES, "cpu", 0)
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    before = rss_mb("VmRSS")
    tracemalloc.start()
    store = None if setting["in_memory"] else SegmentStore(Path(setting["scratch"]))
    audio = data.load_audio(manifest, backbone.preprocessor, ("clean",), "derived", 0, False, store)
    keys = list(audio.segments)
    plan = data.shuffled(data.batches(keys, audio, backbone.input_seconds, 32.0), 0, 1)
    samples = 0
    for batch in plan:  # what an epoch reads: every batch's segments, one batch at a time
        segments = [audio.segments[keys[i]] for i in batch]
        samples += sum(s.values.size for parts in segments for s in parts)
    traced = tracemalloc.get_traced_memory()[1]
    out = {
        "rss_above_mb": rss_mb("VmHWM") - before,
        "traced_peak_mb": traced / 2**20,
        "audio_mb": samples * 4 / 2**20,
        "audio_seconds": sum(audio.seconds.values()),
        "utterances": len(keys),
    }
    audio.close()
    print(json.dumps(out))


def bench_audio(name: str, folder: Path, scratch: Path, args) -> None:
    corpus = write_audio_corpus(scratch, args.audio_minutes)
    results = {}
    for in_memory in (True, False):
        setting = {
            "corpus": str(corpus),
            "folder": str(folder),
            "in_memory": in_memory,
            "scratch": str(scratch / "store"),
        }
        command = [sys.executable, __file__, "--child-audio", json.dumps(setting)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            error = (done.stderr.strip().splitlines() or ["?"])[-1]
            print(f"\n[audio] {name}: failed: {error[:200]}")
            return
        results[in_memory] = json.loads(done.stdout.strip().splitlines()[-1])
    first = results[True]
    print(
        f"\n[audio] {name}: peak memory of preparing {first['audio_seconds'] / 60:.1f} min of "
        f"audio ({first['utterances']} clips, {first['audio_mb']:.0f} MB as float32) and "
        "reading one epoch's batches (fresh process each)"
    )
    print(f"  {'prepared audio':<28}{'peak RSS above start MB':>25}{'traced peak MB':>16}")
    for in_memory, label in ((True, "in memory (before)"), (False, "on disk, read per batch")):
        result = results[in_memory]
        print(f"  {label:<28}{result['rss_above_mb']:>25.0f}{result['traced_peak_mb']:>16.1f}")
    ratio = results[False]["traced_peak_mb"] / max(results[True]["traced_peak_mb"], 1e-9)
    print(f"  traced peak, on disk / in memory: {ratio:.3f}")


def main() -> None:
    args = parse_args()
    if args.child:
        child_memory(args)
        return
    if args.child_audio:
        child_audio(args)
        return
    torch.set_num_threads(args.threads)
    parts = args.parts.split(",")
    print(f"torch {torch.__version__}, {args.threads} thread(s), device {args.device}")
    with tempfile.TemporaryDirectory() as scratch:
        folders = build_models(Path(args.folder or scratch), args.models.split(","))
        audio = waves(args)
        for name, folder in folders.items():
            if "step" in parts:
                bench_step(name, folder, audio, args)
            if "freeze" in parts:
                bench_freeze(name, folder, audio, args)
            if "memory" in parts:
                bench_memory(name, folder, args)
            if "truncate" in parts:
                bench_truncate(name, folder, audio, args)
            if "audio" in parts:
                bench_audio(name, folder, Path(scratch), args)


if __name__ == "__main__":
    main()
