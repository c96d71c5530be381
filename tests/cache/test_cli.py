"""`ser cache ls|info|verify` through click's CliRunner."""

from __future__ import annotations

import json

import h5py
import numpy as np
from click.testing import CliRunner

from ssl_ser import cache
from ssl_ser.cli.main import cli

from .helpers import DIM, KEY, LAYERS, batch, utt_ids


def make_cache(path, n_rows=6, n_written=5, failed=1):
    ids = utt_ids(n_rows)
    with cache.CacheWriter(path, KEY, LAYERS, DIM) as writer:
        writer.add_ids(ids)
        writer.set_manifest_digest("e" * 64)
        writer.write(ids[:n_written], batch(ids[:n_written]))
        for utt_id in ids[n_written : n_written + failed]:
            writer.fail(utt_id, "unreadable")
    return ids


def test_ls_lists_each_cache_and_sums_up(tmp_path):
    make_cache(cache.cache_path(tmp_path, "tiny-1", "emodb", "clean"))
    make_cache(cache.cache_path(tmp_path, "tiny-1", "emodb", "telephone"), 4, 2, 0)
    (tmp_path / "broken.h5").write_bytes(b"junk")
    result = CliRunner().invoke(cli, ["cache", "ls", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("broken.h5  unreadable:")
    assert lines[1].split("  ")[:4] == ["tiny-1/emodb/clean.h5", "tiny-wav2vec2", "clean", "5/6"]
    assert lines[2].split("  ")[:4] == [
        "tiny-1/emodb/telephone.h5",
        "tiny-wav2vec2",
        "clean",
        "2/4",
    ]
    assert lines[-1].startswith(f"3 cache file(s) in {tmp_path}: 7/10 rows complete, ")


def test_info_shows_key_shape_completeness_and_size(tmp_path):
    path = tmp_path / "c.h5"
    make_cache(path)
    result = CliRunner().invoke(cli, ["cache", "info", str(path)])
    assert result.exit_code == 0, result.output
    assert "  revision: 0123abcd" in result.output
    assert f"shape: 5 x 4 x {DIM} float16" in result.output
    assert (
        result.output.strip().splitlines()[-1].startswith(f"{path}: 5/6 rows complete, 1 failed, ")
    )
    as_json = CliRunner().invoke(cli, ["cache", "info", "--json", str(path)])
    summary = json.loads(as_json.output)
    assert summary["key"] == KEY and summary["rows_failed"] == 1
    assert summary["size_bytes"] == cache.disk_size(path)


def test_verify_passes_a_sound_file_and_fails_a_damaged_one(tmp_path):
    path = tmp_path / "c.h5"
    ids = make_cache(path)
    result = CliRunner().invoke(cli, ["cache", "verify", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("no problems found")
    with h5py.File(path, "r+") as file:
        file["features/mean"][0, file["slot"][2], 0] = np.nan
    result = CliRunner().invoke(cli, ["cache", "verify", str(path)])
    assert result.exit_code == 1
    assert f"problem: mean features of {ids[2]!r} hold NaN/inf" in result.output
    assert f"error: {path}: 1 problem(s) found; `ser cache verify --repair`" in result.output


def test_verify_reports_an_unreadable_file(tmp_path):
    path = tmp_path / "junk.h5"
    path.write_bytes(b"junk")
    result = CliRunner().invoke(cli, ["cache", "verify", str(path)])
    assert result.exit_code == 1
    assert "delete it and re-run" in result.output


def test_info_shows_the_feature_version_and_the_toolkit_version(tmp_path, monkeypatch):
    import ssl_ser

    monkeypatch.setattr(ssl_ser, "__version__", "0.1.0")
    path = tmp_path / "c.h5"
    with cache.CacheWriter(path, {**KEY, "feature_version": 2}, LAYERS, DIM) as writer:
        writer.add_ids(utt_ids(1))
    legacy = tmp_path / "legacy.h5"
    with cache.CacheWriter(legacy, {**KEY, "toolkit_version": "0.1.0"}, LAYERS, DIM) as writer:
        writer.add_ids(utt_ids(1))
    bare = tmp_path / "bare.h5"
    make_cache(bare)
    monkeypatch.setattr(ssl_ser, "__version__", "0.3.0")
    for file, version in ((path, "2"), (legacy, "1"), (bare, "(none)")):
        result = CliRunner().invoke(cli, ["cache", "info", str(file)])
        assert result.exit_code == 0, result.output
        assert f"\nfeature version: {version}\n" in result.output
        assert "\ntoolkit version: ssl-ser 0.1.0 (wrote the file)\n" in result.output
    summary = json.loads(CliRunner().invoke(cli, ["cache", "info", "--json", str(path)]).output)
    assert summary["feature_version"] == 2 and summary["toolkit_version"] == "0.1.0"
