"""Shared test setup: keep transformers and the hub offline (an online lookup hangs ~30 s).

Also one torch thread in every test, and the session fixtures of the fine-tune and
predict tests: a small synthetic emotional corpus and a tiny model, built on first use.
"""

import os
from pathlib import Path

import pandas as pd
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread per test: tiny models run fastest so, and runs compare bit for bit.

    The test processes (one per core) then do not oversubscribe the cores.
    """
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def corpus_manifest(tmp_path_factory) -> pd.DataFrame:
    """The manifest of a 48-utterance synthetic corpus (4 speakers, 4 emotions)."""
    from ssl_ser import corpora, synth

    root = tmp_path_factory.mktemp("ft-corpus") / "synth"
    synth.write_corpus(root, _voices(), sentences=3, seed=2)
    return corpora.load("folder", root, speaker_pattern=synth.SPEAKER_PATTERN)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The demo's tiny random wav2vec2 (5 hidden states of 64)."""
    from ssl_ser.pipelines.demo import build_model

    return build_model(tmp_path_factory.mktemp("ft-model") / "model")


def _voices():
    from ssl_ser import synth

    return synth.DEFAULT_VOICES[:2] + synth.DEFAULT_VOICES[3:5]
