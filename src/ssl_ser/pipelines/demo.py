"""``ser demo``: the whole toolkit on a fresh machine with no network, in minutes.

It synthesises a small emotional-speech corpus (:mod:`ssl_ser.synth`), builds a
small wav2vec2-style model with random weights (loaded back by folder, the same
code path a hub id takes; its random-weights marker makes the report mark it
untrained), extracts MFCC and SSL features of clean and telephone audio (each
with its default pooling), runs a speaker-independent sweep (speaker k-fold over
the voices) and writes the report. Everything lands in one folder (``ser-demo/``
by default)::

    ser-demo/
      synth-full/     the synthetic corpus (ROOT/<emotion>/<voice>_<emotion>_sNN.wav)
      model/untrained-wav2vec2/   config, weights, preprocessor config, random-weights marker
      cache/          feature caches
      results/        the results tables
      report.html     the report (report.md and figures/ beside it)

Running it again reuses the corpus, the model, the caches and finished cells.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import click

from ssl_ser import synth
from ssl_ser.errors import UnknownChoiceError
from ssl_ser.pipelines.experiment import Experiment, experiment_from_dict
from ssl_ser.pipelines.plan import RESULTS_FOLDER
from ssl_ser.pipelines.run import RunSummary, run_experiment
from ssl_ser.settings import Settings, setting

log = logging.getLogger(__name__)

DEFAULT_OUTPUT = "ser-demo"
# The report's untrained flag comes from the marker file in it, not from this name.
MODEL_FOLDER = "model/untrained-wav2vec2"
# wav2vec2-base's architecture (group-norm front end, 320x downsampling, post-LN
# transformer), scaled down so that it runs in seconds on two CPU cores.
MODEL_CONFIG: dict[str, object] = {
    "hidden_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "conv_dim": (32, 32, 32, 32, 32, 32, 32),
    "conv_kernel": (10, 3, 3, 3, 3, 2, 2),
    "conv_stride": (5, 2, 2, 2, 2, 2, 2),
    "num_conv_pos_embeddings": 32,
    "num_conv_pos_embedding_groups": 4,
    "feat_extract_norm": "group",
    "do_stable_layer_norm": False,
    "vocab_size": 32,
}


@dataclass(frozen=True)
class DemoSize:
    """How much the demo synthesises and sweeps."""

    voices: tuple[synth.Voice, ...]
    sentences: int
    folds: int
    bootstrap: int
    condition_pairs: str


SIZES: dict[str, DemoSize] = {
    # 2 male + 2 female voices x 4 emotions x 3 sentences = 48 utterances; each
    # condition tested on itself (the test suite's end-to-end run)
    "small": DemoSize(synth.DEFAULT_VOICES[:2] + synth.DEFAULT_VOICES[3:5], 3, 2, 100, "matched"),
    # 6 voices x 4 emotions x 12 sentences = 288 utterances, about 8 minutes of audio;
    # all four train x test condition pairs
    "full": DemoSize(synth.DEFAULT_VOICES, 12, 3, 1000, "all"),
}


class DemoSettings(Settings):
    """Where ``ser demo`` writes and how big its corpus is."""

    output: Path = setting(
        Path(DEFAULT_OUTPUT),
        "Folder for the corpus, model, caches, results and report.",
        click_type=click.Path(file_okay=False, path_type=Path),
    )
    size: str = setting(
        "full",
        "full: 288 utterances of 6 voices; small: 48 utterances of 4 voices.",
        choices=tuple(SIZES),
    )


def build_model(folder: str | Path, seed: int = 0) -> Path:
    """Save a small randomly initialised wav2vec2 model, its preprocessor config and marker.

    The marker (:func:`ssl_ser.extract.backbones.write_random_weights_marker`)
    records that the weights are random. A folder that already holds the model
    is kept as it is (a demo folder from before the marker existed gets it: the
    demo only ever writes random weights there).
    """
    from ssl_ser.extract.backbones import RANDOM_WEIGHTS_MARKER, write_random_weights_marker

    folder = Path(folder)
    if (folder / "config.json").is_file() and (folder / "preprocessor_config.json").is_file():
        if not (folder / RANDOM_WEIGHTS_MARKER).is_file():
            write_random_weights_marker(folder, seed)
            _drop_caches_of(folder)
        return folder
    import torch
    import transformers

    config = transformers.Wav2Vec2Config(**MODEL_CONFIG)
    torch.manual_seed(seed)
    transformers.Wav2Vec2Model(config).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(
        do_normalize=True, return_attention_mask=False
    ).save_pretrained(folder)
    write_random_weights_marker(folder, seed)
    return folder


def _drop_caches_of(model: Path) -> None:
    """Delete the demo's caches of `model` and its results (the demo's own folders).

    Adding the marker changes the folder's fingerprint, so its old caches would be
    refused as stale and its old cells would sit beside new ones under other ids
    (the report refuses such a folder). Both were computed from the same weights;
    they are rebuilt.
    """
    output = model.parent.parent
    stale = [*(output / "cache").glob(f"{model.name}-*"), output / RESULTS_FOLDER]
    for folder in (path for path in stale if path.is_dir()):
        log.info("demo: removing %s (the model folder gained the random-weights marker)", folder)
        shutil.rmtree(folder)


def demo_experiment(output: str | Path, size: str, corpus_root: Path, model: Path) -> Experiment:
    """The demo's experiment: untrained SSL model and MFCC, clean and telephone audio."""
    spec = SIZES[size]
    return experiment_from_dict(
        {
            "name": "demo",
            "description": "synthetic emotional speech, untrained model (a pipeline check)",
            "models": [str(model), "mfcc"],
            "corpora": {
                corpus_root.name: {
                    "root": str(corpus_root),
                    "reader": "folder",
                    "speaker_pattern": synth.SPEAKER_PATTERN,
                }
            },
            "conditions": ["clean", "telephone"],
            "condition_pairs": spec.condition_pairs,
            "classifiers": ["logreg", "mlp"],
            "split": {"method": "speaker-kfold", "folds": spec.folds},
            "cache_dir": str(Path(output) / "cache"),
            "output": str(output),
            "extract": {"device": "cpu"},
            # one classify process per core (up to 4), each with one thread: for the demo's
            # tiny probes much faster than several threads sharing a busy machine
            "classify": {"bootstrap": spec.bootstrap, "jobs": max(1, min(4, os.cpu_count() or 1))},
        },
        source="ser demo",
    )


def run_demo(
    output: str | Path = DEFAULT_OUTPUT, size: str = "full", *, progress: bool = False
) -> RunSummary:
    """Synthesise, build the model, extract, sweep and report into `output`.

    Raises:
        UnknownChoiceError: `size` is not one of :data:`SIZES`.
    """
    if size not in SIZES:
        raise UnknownChoiceError("demo size", size, SIZES)
    spec = SIZES[size]
    output = Path(output)
    corpus_root = output / f"synth-{size}"
    synth.write_corpus(
        corpus_root, spec.voices, sentences=spec.sentences, progress=progress, overwrite=False
    )
    from ssl_ser.extract.backbones import library_progress_bars

    with library_progress_bars(progress):  # transformers' "Writing model shards" bar too
        model = build_model(output / MODEL_FOLDER)
    experiment = demo_experiment(output, size, corpus_root, model)
    return run_experiment(experiment, source="ser demo", progress=progress)
