"""``ser cache prune`` refuses a manifest that is clearly not the cache's (issue 19).

A manifest of another corpus shares no id with the cache: pruning with it removed
every finished row and exited 0.
"""

from __future__ import annotations

from click.testing import CliRunner

from ssl_ser import cache, manifest
from ssl_ser.cache.writer import CacheWriter
from ssl_ser.cli.main import cli
from ssl_ser.testing.synthetic import synthetic_manifest

from .helpers import DIM, KEY, LAYERS, batch


def alpha_cache(path, n_rows: int = 40) -> list[str]:
    table = synthetic_manifest(n_rows, 4, corpus="alpha", seed=0)
    ids = table["utt_id"].tolist()
    with CacheWriter(path, KEY, LAYERS, DIM) as writer:
        writer.add_ids(ids)
        writer.set_manifest_digest("e" * 64)
        writer.write(ids, batch(ids))
    return ids


def test_prune_with_a_manifest_of_another_corpus_is_refused(tmp_path):
    path = tmp_path / "c.h5"
    ids = alpha_cache(path)
    other = manifest.write(synthetic_manifest(30, 3, corpus="beta", seed=1), tmp_path / "b.csv")
    for extra in ([], ["--yes"], ["--dry-run"]):
        result = CliRunner().invoke(
            cli, ["cache", "prune", str(path), "--manifest", str(other), *extra]
        )
        assert result.exit_code == 1, result.output
        line = result.output.strip().splitlines()[-1]
        assert line.startswith(
            f"error: refusing to prune {path}: the manifest(s) share no utterance id with its "
            f"40 row(s) (cache e.g. {ids[0]!r}, manifest e.g. 'beta/"
        )
        assert line.endswith(
            "is it the manifest of another corpus? To empty the cache, delete the file"
        )
    with cache.open(path) as reader:
        assert reader.ids == ids


def test_prune_of_more_than_half_the_rows_needs_yes(tmp_path):
    path = tmp_path / "c.h5"
    ids = alpha_cache(path)
    table = synthetic_manifest(40, 4, corpus="alpha", seed=0)
    few = manifest.write(table.iloc[:19], tmp_path / "few.csv")  # 21 of 40 would go
    args = ["cache", "prune", str(path), "--manifest", str(few)]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 1
    assert refused.output.strip().splitlines()[-1] == (
        f"error: refusing to prune {path}: it would remove 21 of 40 row(s), more than half; "
        "check the manifest(s), or pass --yes to remove them"
    )
    with cache.open(path) as reader:
        assert reader.ids == ids
    dry = CliRunner().invoke(cli, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert dry.output.strip().splitlines()[-2:] == [
        f"{path}: would remove 21 of 40 row(s), 19 kept",
        "that is more than half of the rows: the real run needs --yes",
    ]
    half = manifest.write(table.iloc[:20], tmp_path / "half.csv")  # exactly half: no question
    done = CliRunner().invoke(cli, ["cache", "prune", str(path), "--manifest", str(half)])
    assert done.exit_code == 0, done.output
    assert done.output.strip().endswith("removed 20 of 40 row(s), 20 kept")
    fewer = manifest.write(table.iloc[:5], tmp_path / "fewer.csv")
    forced = CliRunner().invoke(
        cli, ["cache", "prune", str(path), "--manifest", str(fewer), "--yes"]
    )
    assert forced.exit_code == 0, forced.output
    with cache.open(path) as reader:
        assert reader.ids == ids[:5]
