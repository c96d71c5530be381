"""Fixtures of the pipeline tests: a small synthetic emotional-speech corpus on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssl_ser import synth

# 2 male + 2 female voices x 4 emotions x 2 sentences = 32 utterances
VOICES = synth.DEFAULT_VOICES[:2] + synth.DEFAULT_VOICES[3:5]
SENTENCES = 2


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """ROOT/<emotion>/<voice>_<emotion>_sNN.wav, read with the folder reader."""
    root = tmp_path_factory.mktemp("corpus") / "synth"
    synth.write_corpus(root, VOICES, sentences=SENTENCES, seed=2)
    return root


def synth_entry(root: Path) -> dict:
    """The experiment-file entry of the synthetic corpus."""
    return {"root": str(root), "reader": "folder", "speaker_pattern": synth.SPEAKER_PATTERN}
