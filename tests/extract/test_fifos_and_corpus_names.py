"""FIFOs named like audio and corpus names with commas are refused at the start (issue 19).

A FIFO listed in a manifest hung ``ser extract`` (opening it waits for a writer);
a corpus name holding a comma was accepted and then could not be named in
``--cache``, a comma-separated list.
"""

from __future__ import annotations

import os
import signal

import pandas as pd
import pytest
from click.testing import CliRunner

from ssl_ser import manifest
from ssl_ser.cli.main import cli
from ssl_ser.cli.prepare import skipped_path
from ssl_ser.errors import ManifestError
from ssl_ser.testing import write_wav

from .helpers import make_manifest


class Hung(BaseException):
    """Raised by the alarm: not an OSError, so no ``except OSError`` on the way swallows it."""


@pytest.fixture
def no_hang():
    """A command that blocks on a FIFO fails the test after 60 s instead of hanging it.

    The alarm repeats every second after that: a C call blocked on the FIFO returns
    with EINTR, and the next signal reaches Python.
    """

    def hung(signum, frame):
        raise Hung("the command hung (a FIFO was opened?)")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, 60, 1)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def ser(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_extract_fails_a_fifo_row_with_its_reason_and_goes_on(tmp_path, no_hang):
    table = make_manifest(tmp_path / "audio", [0.5, 0.6, 0.7])
    fifo = table.loc[1, "path"]
    os.unlink(fifo)
    os.mkfifo(fifo)
    csv = manifest.write(table, tmp_path / "m.csv")
    args = ["extract", csv, "--model", "mfcc", "--cache-dir", tmp_path / "cache", "--workers", 0]
    result = ser(*args)
    assert result.exit_code == 0, result.output
    assert "1 failed" in result.output
    assert f"failed toy/utt001: OSError: {fifo}: not a regular audio file (a FIFO)" in result.output
    again = ser(*args)  # the cache check stats the FIFO, never opens it
    assert again.exit_code == 0, again.output
    assert "0 utterances" in again.output and "3 already cached" in again.output
    rehashed = ser(*args, "--rehash")
    assert rehashed.exit_code == 0, rehashed.output


def test_prepare_skips_a_fifo_listed_in_a_csv_corpus_with_its_reason(tmp_path, no_hang):
    write_wav(tmp_path / "a.wav", 0.3)
    os.mkfifo(tmp_path / "b.wav")
    pd.DataFrame({"path": ["a.wav", "b.wav"], "emotion": ["happy", "sad"]}).to_csv(
        tmp_path / "list.csv", index=False
    )
    output = tmp_path / "m.csv"
    result = ser("prepare", "csv", tmp_path / "list.csv", "--output", output, "--on-error", "skip")
    assert result.exit_code == 0, result.output
    skipped = pd.read_csv(skipped_path(output))
    assert skipped.to_dict("records") == [
        {
            "path": str(tmp_path / "b.wav"),
            "reason": "not a regular audio file (a FIFO) (line 3 of list.csv, column path)",
        }
    ]
    stopped = ser("prepare", "csv", tmp_path / "list.csv", "--output", tmp_path / "r.csv")
    assert stopped.exit_code == 1 and "not a regular audio file (a FIFO)" in stopped.output


def test_prepare_refuses_a_corpus_name_with_a_comma_before_scanning(tmp_path):
    root = tmp_path / "my,corpus"
    write_wav(root / "angry" / "a.wav", 0.3)
    result = ser("prepare", "folder", root, "--output", tmp_path / "m.csv")
    assert result.exit_code == 1
    assert result.output.strip() == (
        "error: corpus name 'my,corpus' is not valid: it holds ','; a corpus name names id "
        "prefixes and cache folders, and --cache takes a comma-separated list, so it cannot "
        "hold '/', a backslash or ','; give another with --name"
    )
    named = ser("prepare", "folder", root, "--name", "mine", "--output", tmp_path / "m.csv")
    assert named.exit_code == 0, named.output
    bad = ser("prepare", "folder", root, "--name", "a,b", "--output", tmp_path / "n.csv")
    assert bad.exit_code == 1 and "corpus name 'a,b' is not valid: it holds ','" in bad.output


def test_extract_refuses_a_manifest_whose_corpus_name_holds_a_comma(tmp_path):
    table = make_manifest(tmp_path / "audio", [0.5], corpus="toy")
    table = table.assign(corpus="toy,2")
    path = tmp_path / "m.csv"
    table.to_csv(path, index=False)  # as a hand-edited manifest would be
    with pytest.raises(
        ManifestError, match=r"corpus 'toy,2' of 'toy/utt000' is not valid: it holds ','"
    ):
        manifest.read(path)
    result = ser("extract", path, "--model", "mfcc", "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 1
    assert result.output.strip().startswith(
        f"error: manifest {path}: corpus 'toy,2' of 'toy/utt000' is not valid: it holds ','"
    )
    assert not (tmp_path / "cache").exists()


def test_extract_refuses_a_cache_dir_holding_a_comma_before_any_work(tmp_path):
    csv = manifest.write(make_manifest(tmp_path / "audio", [0.5]), tmp_path / "m.csv")
    folder = tmp_path / "a,b"
    result = ser("extract", csv, "--model", "mfcc", "--cache-dir", folder, "--workers", 0)
    assert result.exit_code == 1, result.output
    assert result.output.strip() == (
        f"error: cache folder {str(folder)!r} holds ','; `ser classify --cache` takes a "
        "comma-separated list, so a cache under it could not be named there: choose a name "
        "without ','"
    )
    assert not folder.exists()


def test_not_regular_reason_names_each_kind_of_file(tmp_path):
    import socket

    from ssl_ser.fingerprint import check_regular, not_regular_reason, of_file

    os.mkfifo(tmp_path / "fifo.wav")
    (tmp_path / "folder.wav").mkdir()
    (tmp_path / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock.wav"))
        reasons = {
            name: not_regular_reason(tmp_path / name)
            for name in ("fifo.wav", "folder.wav", "gone.wav", "sock.wav", "absent.wav")
        }
    assert reasons == {
        "fifo.wav": "not a regular audio file (a FIFO)",
        "folder.wav": "not a regular audio file (a folder)",
        "gone.wav": f"broken symbolic link (to {tmp_path / 'nowhere.wav'})",
        "sock.wav": "not a regular audio file (a socket)",
        "absent.wav": None,  # opening it says so
    }
    assert not_regular_reason(write_wav(tmp_path / "a.wav", 0.1)) is None
    with pytest.raises(OSError, match=r"fifo.wav: not a regular audio file \(a FIFO\)"):
        check_regular(tmp_path / "fifo.wav")
    with pytest.raises(OSError, match=r"not a regular audio file \(a FIFO\)"):
        of_file(tmp_path / "fifo.wav")  # never opened: hashing it would block
