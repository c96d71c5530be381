"""Session fixtures of the extraction tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import WAVEFORM_FAMILIES, save_waveform_model, save_whisper_model


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    """Folders of every tiny model family, built once per session."""
    root = tmp_path_factory.mktemp("models")
    dirs = {name: save_waveform_model(name, root / name) for name in WAVEFORM_FAMILIES}
    dirs["whisper"] = save_whisper_model(root / "whisper")
    return dirs
