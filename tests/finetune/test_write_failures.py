"""ser finetune on a read-only or full disk: one line, and the last whole checkpoint is kept."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors import SafetensorError

from ssl_ser.cli.main import cli
from ssl_ser.errors import OutputError
from ssl_ser.finetune import checkpoint

FULL = os.strerror(errno.ENOSPC)


def _arguments(manifest: Path, model: Path, output: Path) -> list[str]:
    return [
        "finetune",
        "--model",
        str(model),
        "--manifest",
        str(manifest),
        "--folds",
        "2",
        "--epochs",
        "2",
        "--lr",
        "1e-3",
        "--batch-seconds",
        "8",
        "--device",
        "cpu",
        "--workers",
        "0",
        "--bootstrap",
        "0",
        "--no-save-models",
        "--no-progress",
        "--output",
        str(output),
    ]


@pytest.fixture
def manifest_file(corpus_manifest, tmp_path: Path) -> Path:
    path = tmp_path / "manifest.csv"
    corpus_manifest.to_csv(path, index=False)
    return path


def test_output_under_a_file_is_one_line_before_training(manifest_file, tiny_model, tmp_path):
    (tmp_path / "a-file").write_text("")
    output = tmp_path / "a-file" / "out"
    result = CliRunner().invoke(cli, _arguments(manifest_file, tiny_model, output))
    assert result.exit_code == 1
    assert result.output == f"error: cannot write into --output {output}: Not a directory\n"


def test_a_read_only_file_system_is_one_line(manifest_file, tiny_model, tmp_path, monkeypatch):
    output = tmp_path / "mounted-read-only"
    output.mkdir()
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if str(path).startswith(str(output)) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    result = CliRunner().invoke(cli, _arguments(manifest_file, tiny_model, output))
    assert result.exit_code == 1
    assert result.output == f"error: cannot write into --output {output}: Read-only file system\n"
    assert list(output.iterdir()) == []


def _state(epoch: int) -> checkpoint.TrainState:
    return checkpoint.TrainState(epoch=epoch, step=3 * epoch, best_epoch=1, best_val_ua=0.5)


@pytest.mark.parametrize("failing", ["weights", "trainer"])
def test_a_full_disk_keeps_the_last_whole_checkpoint(tmp_path, monkeypatch, failing):
    weights = {"w": torch.arange(4.0)}
    checkpoint.save(tmp_path, _state(1), weights, {"optimizer": {"lr": 0.1}})

    def full_weights(tensors, path):
        Path(path).write_bytes(b"half a file")
        raise SafetensorError("Error while serializing: I/O error: No space left on device")

    def full_trainer(obj, handle):
        handle.write(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos") from OSError(
            errno.ENOSPC, FULL
        )

    if failing == "weights":
        monkeypatch.setattr(checkpoint, "save_file", full_weights)
        reason = "Error while serializing: I/O error: No space left on device"
    else:
        monkeypatch.setattr(checkpoint.torch, "save", full_trainer)
        reason = FULL
    with pytest.raises(OutputError) as error:
        checkpoint.save(tmp_path, _state(2), {"w": torch.ones(4)}, {"optimizer": {"lr": 0.2}})
    assert str(error.value) == (
        f"cannot write the checkpoint of epoch 2 in {tmp_path}: {reason}; the last whole "
        "checkpoint (epoch 1) is kept"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-001"]
    monkeypatch.undo()
    state, kept, trainer = checkpoint.load(tmp_path, checkpoint.latest_epoch(tmp_path))
    assert state == _state(1) and trainer == {"optimizer": {"lr": 0.1}}
    torch.testing.assert_close(kept["w"], weights["w"])


@pytest.mark.slow
def test_a_full_disk_while_training_is_one_line_and_a_rerun_resumes(
    manifest_file, tiny_model, tmp_path, monkeypatch
):
    output = tmp_path / "out"
    real_save = torch.save
    calls = {"n": 0}

    def full_at_the_second_checkpoint(obj, handle, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            handle.write(b"half")
            raise OSError(errno.ENOSPC, FULL)
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", full_at_the_second_checkpoint)
    result = CliRunner().invoke(cli, _arguments(manifest_file, tiny_model, output))
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: cannot write the checkpoint of epoch 2 in ")
    assert last.endswith(f": {FULL}; the last whole checkpoint (epoch 1) is kept")
    (fold,) = [p for p in (output / "checkpoints").iterdir() if p.is_dir()]
    assert sorted(p.name for p in fold.iterdir() if not p.name.startswith("best-")) == ["epoch-001"]
    monkeypatch.undo()
    again = CliRunner().invoke(cli, _arguments(manifest_file, tiny_model, output))
    assert again.exit_code == 0, again.output
    assert (output / "results.csv").is_file()
