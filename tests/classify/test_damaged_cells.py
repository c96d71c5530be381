"""A cell file cut short in a results folder is not finished: moved aside and computed again.

Issue 19: a truncated ``cells/<id>.json`` made the next ``ser classify`` into the
same folder stop with a JSON error.
"""

from __future__ import annotations

import logging

import pandas as pd
import pytest
from click.testing import CliRunner

from ssl_ser import manifest
from ssl_ser.classify.results import CellStore
from ssl_ser.cli.main import cli
from ssl_ser.results import CELLS_DIR, DAMAGED_DIR
from ssl_ser.testing.synthetic import synthetic_features, synthetic_manifest, write_cache


def classify_args(cache_path, csv, output) -> list[str]:
    return [
        "classify", "--cache", str(cache_path), "--manifest", str(csv), "--layers", "all",
        "--pooling", "mean", "--classifiers", "logreg", "--split", "speaker-kfold",
        "--folds", "2", "--bootstrap", "0", "--threads", "1", "--output", str(output),
        "--no-progress",
    ]  # fmt: skip


@pytest.fixture
def cache_and_manifest(tmp_path):
    table = synthetic_manifest(48, 4, corpus="alpha", seed=0)
    features = synthetic_features(table, 2, 6, seed=0, key={"model": "m", "condition": "clean"})
    path = tmp_path / "alpha.h5"
    write_cache(path, features, storage_dtype="float16")  # CacheWriter's default
    return path, manifest.write(table, tmp_path / "alpha.csv")


def results(output) -> pd.DataFrame:
    table = pd.read_parquet(output / "results.parquet")
    table = table.drop(columns=[c for c in table.columns if c.endswith("seconds")])
    return table.sort_values("cell_id").reset_index(drop=True)


@pytest.mark.parametrize(
    ("suffix", "keep"),
    [(".json", 0.5), (".json", 0.0), (".parquet", 0.5)],
    ids=["half-json", "empty-json", "half-parquet"],
)
def test_a_truncated_cell_is_computed_again_and_said(
    tmp_path, cache_and_manifest, caplog, suffix, keep
):
    path, csv = cache_and_manifest
    output = tmp_path / "out"
    first = CliRunner().invoke(cli, classify_args(path, csv, output))
    assert first.exit_code == 0, first.output
    cells = sorted((output / CELLS_DIR).glob(f"*{suffix}"))
    assert len(cells) == 4  # 2 layers x 2 folds
    victim = cells[1]
    data = victim.read_bytes()
    victim.write_bytes(data[: int(len(data) * keep)])
    with caplog.at_level(logging.WARNING):
        again = CliRunner().invoke(cli, classify_args(path, csv, output))
    assert again.exit_code == 0, again.output
    assert "4 cell(s) run" not in again.output and "1 cell(s) run, 3 already done" in again.output
    assert f"cell {victim.stem} in {output / CELLS_DIR} cannot be read (" in caplog.text
    assert "not finished, so it is computed again" in caplog.text
    assert (output / CELLS_DIR / DAMAGED_DIR / victim.name).read_bytes() == data[
        : int(len(data) * keep)
    ]
    fresh = CliRunner().invoke(cli, classify_args(path, csv, tmp_path / "fresh"))
    assert fresh.exit_code == 0, fresh.output
    pd.testing.assert_frame_equal(results(output), results(tmp_path / "fresh"))


def test_the_store_never_loads_a_damaged_cell(tmp_path, caplog):
    store = CellStore(tmp_path)
    store.save("a" * 16, [{"cell_id": "a" * 16, "ua": 0.5}], pd.DataFrame({"y": [1]}))
    store.save("b" * 16, [{"cell_id": "b" * 16, "ua": 0.7}], pd.DataFrame({"y": [2]}))
    (store.cells / f"{'b' * 16}.json").write_text('[{"cell_id": "bbbb')
    assert store.done("a" * 16) and not store.done("b" * 16)
    rows, predictions = store.load()
    assert rows["cell_id"].tolist() == ["a" * 16] and predictions["y"].tolist() == [1]
    assert "cannot be read (JSONDecodeError: " in caplog.text
