import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from click.testing import CliRunner

from ssl_ser import audio, corpora, manifest
from ssl_ser.cli.main import cli
from ssl_ser.cli.prepare import skipped_path
from ssl_ser.testing import emodb, oreau, write_garbage, write_wav


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "emodb"
    emodb.make_tree(root)
    return root


def audio_files(root):
    return {str(p) for p in root.rglob("*.wav")}


def test_corpora_lists_every_registered_corpus():
    result = run("corpora")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    listed = [line.split()[0] for line in lines[1:]]
    assert listed == corpora.names()
    assert len(listed) == 10
    emodb_line = lines[1 + listed.index("emodb")]
    assert "deu" in emodb_line and "535" in emodb_line and "boredom" in emodb_line


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_prepare_writes_the_manifest_of_corpora_load(tree, tmp_path, suffix):
    output = tmp_path / f"manifest{suffix}"
    result = run("prepare", "emodb", tree, "--output", output)
    assert result.exit_code == 0, result.output
    written = manifest.read(output)
    pd.testing.assert_frame_equal(written, corpora.load("emodb", tree))
    assert len(written) == len(emodb.file_names())
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith(f"wrote {len(written)} utterances (0.0 h, 4 speakers, 7 emotions)")
    assert str(output) in last


def test_bad_file_stops_with_exit_1_naming_it(tree, tmp_path):
    write_garbage(tree / "wav" / "03a01Wb.wav")
    result = run("prepare", "emodb", tree, "--output", tmp_path / "m.csv")
    assert result.exit_code == 1
    assert "03a01Wb.wav" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "m.csv").exists()


def test_skip_accounts_for_every_file_exactly_once(tree, tmp_path):
    bad = [
        write_garbage(tree / "wav" / "03a01Wb.wav"),
        write_wav(tree / "wav" / "03a01Xa.wav"),  # unknown emotion code X
        write_wav(tree / "wav" / "notes.wav"),  # not an EmoDB name
    ]
    output = tmp_path / "m.csv"
    result = run("prepare", "emodb", tree, "--output", output, "--on-error", "skip")
    assert result.exit_code == 0, result.output
    skipped = pd.read_csv(skipped_path(output))
    assert skipped_path(output) == tmp_path / "m.skipped.csv"
    assert list(skipped.columns) == ["path", "reason"]
    assert set(skipped["path"]) == {str(p) for p in bad}
    kept = set(manifest.read(output)["path"])
    assert kept.isdisjoint(skipped["path"])
    assert kept | set(skipped["path"]) == audio_files(tree)
    assert f"3 skipped -> {skipped_path(output)}" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["prepare", "emodb", "ROOT", "--output", "m.csv", "--name", "mine"],
        ["prepare", "emodb", "ROOT", "--output", "m.csv", "--map", "Wut=angry"],
        ["prepare", "nocorpus", "ROOT", "--output", "m.csv"],
        ["prepare", "emodb", "ROOT", "--output", "m.txt"],
        ["prepare", "emodb", "ROOT", "--output", "m.csv", "--on-error", "ignore"],
        ["prepare", "emodb", "ROOT", "--output", "m.csv", "--condition", "telephone"],
        ["prepare", "folder", "ROOT", "--output", "m.csv", "--map", "no-equals-sign"],
        ["prepare", "emodb", "ROOT"],
    ],
)
def test_usage_errors_exit_2(tree, tmp_path, args):
    args = [
        str(tree) if a == "ROOT" else str(tmp_path / a) if a.startswith("m.") else a for a in args
    ]
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "m.csv").exists()


def test_write_telephone_renders_playable_files(tree, tmp_path):
    out_dir = tmp_path / "telephone"
    args = ["--condition", "telephone", "--write", out_dir]
    result = run("prepare", "emodb", tree, "--output", tmp_path / "m.csv", *args)
    assert result.exit_code == 0, result.output
    table = manifest.read(tmp_path / "m.csv")
    for row in table.itertuples():
        rendered = out_dir / f"{row.utt_id}.wav"
        data, rate = sf.read(str(rendered), dtype="float32")
        assert rate == 16000
        assert data.size == round(row.duration * 16000)
        expected = audio.load(row.path, "telephone")
        assert np.max(np.abs(data - expected)) <= 1 / 32768 + 1e-6


def test_telephone_source_folder_uses_the_ready_copies(tmp_path):
    root = tmp_path / "flat"
    emodb.make_tree(root, layout="flat")
    out_dir = tmp_path / "out"
    args = ["--condition", "telephone", "--write", out_dir, "--telephone-source", "folder"]
    result = run("prepare", "emodb", root, "--output", tmp_path / "m.csv", *args)
    assert result.exit_code == 0, result.output
    table = manifest.read(tmp_path / "m.csv")
    assert table["telephone_path"].str.contains("wav_telephone").all()
    for row in table.itertuples():
        data, rate = sf.read(str(out_dir / f"{row.utt_id}.wav"), dtype="float32")
        expected = audio.load(row.telephone_path)  # the 8 kHz copy, resampled to 16 kHz
        assert rate == 16000
        assert np.max(np.abs(data - expected)) <= 1 / 32768 + 1e-6
        assert not np.allclose(data, audio.load(row.path, "telephone"), atol=1e-3)


def test_folder_reader_options(tmp_path):
    root = tmp_path / "mine"
    write_wav(root / "Wut" / "spk1_a.wav")
    write_wav(root / "Freude" / "spk2_b.wav")
    args = ["--name", "toy", "--map", "Wut=angry", "--map", "Freude=happy", "--language", "deu"]
    args += ["--speaker-pattern", r"^(?P<speaker>spk\d+)_"]
    result = run("prepare", "folder", root, "--output", tmp_path / "m.csv", *args)
    assert result.exit_code == 0, result.output
    table = manifest.read(tmp_path / "m.csv").set_index("utt_id")
    assert table.loc["toy/spk1_a", ["emotion", "speaker", "language"]].tolist() == [
        "angry",
        "toy/spk1",
        "deu",
    ]
    assert table.loc["toy/spk2_b", "emotion"] == "happy"


def test_installed_console_script(tree, tmp_path):
    ser = shutil.which("ser") or str(Path(sys.executable).parent / "ser")
    output = tmp_path / "m.parquet"
    completed = subprocess.run(
        [ser, "prepare", "emodb", str(tree), "--output", str(output), "--on-error", "skip"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "wrote 56 utterances" in completed.stdout
    pd.testing.assert_frame_equal(manifest.read(output), corpora.load("emodb", tree))


def test_verbose_flag_shows_info_logs(tmp_path):
    root = tmp_path / "oreau"
    oreau.make_tree(root, layout="flat", actors=False)
    ser = shutil.which("ser") or str(Path(sys.executable).parent / "ser")
    note = "no actors.csv under"  # logged at INFO level by the Oréau reader

    def stderr(*flags):
        command = [ser, *flags, "prepare", "oreau", str(root), "-o", str(tmp_path / "m.csv")]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert completed.returncode == 0, completed.stderr
        return completed.stderr

    assert note not in stderr()
    assert note in stderr("-v")


def test_no_progress_hides_the_bars_and_keeps_the_summary(tree, tmp_path):
    args = ["--output", tmp_path / "m.csv", "--write", tmp_path / "out"]
    shown = run("prepare", "emodb", tree, *args)
    quiet = run("prepare", "emodb", tree, *args, "--no-progress")
    assert shown.exit_code == 0 and quiet.exit_code == 0, shown.output + quiet.output
    assert "prepare emodb" in shown.output and "file/s" in shown.output
    assert "render clean" in shown.output
    for bar in ("prepare emodb", "render clean", "it/s", "file/s", "utt/s"):
        assert bar not in quiet.output
    assert quiet.output.strip().splitlines()[-1].startswith(f"wrote {len(emodb.file_names())} ")


def entries_under(root: Path) -> set[str]:
    """Every audio-named entry and every folder link under `root`, links not followed."""
    out = set()
    for folder, dirs, files in os.walk(root):
        for name in files + dirs:
            path = Path(folder) / name
            if path.suffix == ".wav" or (path.is_symlink() and name in dirs):
                out.add(str(path))
    return out


def test_skip_accounts_for_links_fifos_and_loops_exactly_once(tree, tmp_path):
    wav = tree / "wav"
    (wav / "loop").symlink_to("..")  # ln -s .. wav/loop
    (wav / "03a01Fa-gone.wav").symlink_to(tmp_path / "nowhere.wav")
    os.mkfifo(wav / "03a02Fa.wav.fifo.wav")
    (tree / "second").symlink_to(wav)  # another way to the same folder
    output = tmp_path / "m.csv"
    result = run("prepare", "emodb", tree, "--output", output, "--on-error", "skip")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    skipped = pd.read_csv(skipped_path(output)).set_index("path")["reason"]
    assert skipped[str(wav / "loop")].startswith(f"folder link to {tree}, which is scanned")
    assert skipped[str(tree / "second")].startswith(f"folder link to {wav}")
    assert skipped[str(wav / "03a01Fa-gone.wav")].startswith("broken symbolic link")
    assert skipped[str(wav / "03a02Fa.wav.fifo.wav")] == "not a regular audio file (a FIFO)"
    kept = set(manifest.read(output)["path"])
    assert len(kept) == len(emodb.file_names())  # each file once, under its real path
    assert kept.isdisjoint(skipped.index)
    assert kept | set(skipped.index) == entries_under(tree)
    stopped = run("prepare", "emodb", tree, "--output", tmp_path / "r.csv")
    assert stopped.exit_code == 1 and "Traceback" not in stopped.output


def test_an_unreadable_folder_is_reported_not_a_traceback(tree, tmp_path, monkeypatch):
    locked = tree / "wav" / "locked"
    locked.mkdir()
    real_scandir = os.scandir

    def refuse(path):  # root reads any folder, so refuse as the OS would for a user
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refuse)
    output = tmp_path / "m.csv"
    result = run("prepare", "emodb", tree, "--output", output, "--on-error", "skip")
    assert result.exit_code == 0, result.output
    skipped = pd.read_csv(skipped_path(output))
    assert skipped.values.tolist() == [[str(locked), "unreadable folder (Permission denied)"]]


def test_reader_options_come_from_the_readers_and_each_has_a_flag(tmp_path):
    """`ser prepare` and experiment files accept what the reader's scan takes, nothing else."""
    from ssl_ser.corpora.settings import ReaderSettings
    from ssl_ser.pipelines.experiment import reader_options as experiment_options

    assert corpora.reader_options("folder") == ("name", "mapping", "speaker_pattern", "language")
    assert corpora.reader_options("csv") == ("name", "mapping")
    assert corpora.reader_options("emodb") == ()
    for name in corpora.names():
        assert set(corpora.reader_options(name)) <= set(ReaderSettings.model_fields), name
        assert experiment_options(name) == [o for o in corpora.reader_options(name) if o != "name"]
    result = run(
        "prepare", "csv", tmp_path / "x.csv", "--output", tmp_path / "m.csv", "--language", "deu"
    )
    assert result.exit_code == 2
    assert "option --language does not apply to corpus 'csv'; only to: folder" in result.output
    result = run("prepare", "emodb", tmp_path, "--output", tmp_path / "m.csv", "--map", "W=angry")
    assert result.exit_code == 2
    assert "option --map does not apply to corpus 'emodb'; only to: folder, csv" in result.output
