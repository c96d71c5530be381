"""Fixtures of the fine-tune tests: a small synthetic emotional corpus and a tiny model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from ssl_ser import corpora, synth
from ssl_ser.pipelines.demo import build_model

# 2 male + 2 female voices x 4 emotions x 3 sentences = 48 utterances
VOICES = synth.DEFAULT_VOICES[:2] + synth.DEFAULT_VOICES[3:5]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread: runs compare bit for bit, and 2 cores are not oversubscribed."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def corpus_manifest(tmp_path_factory) -> pd.DataFrame:
    """The manifest of a 48-utterance synthetic corpus (4 speakers, 4 emotions)."""
    root = tmp_path_factory.mktemp("ft-corpus") / "synth"
    synth.write_corpus(root, VOICES, sentences=3, seed=2)
    return corpora.load("folder", root, speaker_pattern=synth.SPEAKER_PATTERN)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The demo's tiny random wav2vec2 (5 hidden states of 64)."""
    return build_model(tmp_path_factory.mktemp("ft-model") / "model")
