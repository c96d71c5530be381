"""The sweep package's parts: shared feature maps, task types, the two entry points."""

from pathlib import Path

import numpy as np
import pytest

from ssl_ser.classify.features import FeatureBlocks
from ssl_ser.classify.sweep.run import shared_blocks


def _blocks() -> FeatureBlocks:
    rng = np.random.default_rng(0)
    return FeatureBlocks(["0", "1"], {"mean": rng.normal(size=(2, 5, 3)).astype(np.float32)})


def test_shared_blocks_map_the_features_read_only_and_clean_up(tmp_path: Path) -> None:
    blocks = _blocks()
    with shared_blocks(blocks, 2, tmp_path) as shared:
        mapped = shared.blocks["mean"]
        assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
        np.testing.assert_array_equal(mapped, blocks.blocks["mean"])
        assert len(list(tmp_path.glob(".features-*"))) == 1
    assert not list(tmp_path.glob(".features-*"))


def test_shared_blocks_clean_up_after_an_error_and_pass_one_job_through(tmp_path: Path) -> None:
    blocks = _blocks()
    with pytest.raises(RuntimeError, match="stop"), shared_blocks(blocks, 2, tmp_path):
        raise RuntimeError("stop")
    assert not list(tmp_path.glob(".features-*"))
    with shared_blocks(blocks, 1, tmp_path) as same:
        assert same is blocks
    assert not list(tmp_path.iterdir())


def test_run_sweep_cells_stores_cells_only_and_run_sweep_adds_the_tables(alpha, tmp_path) -> None:
    from ssl_ser.classify.results import CellStore
    from ssl_ser.classify.splits import SplitOptions
    from ssl_ser.classify.sweep import SweepConfig, run_sweep, run_sweep_cells

    table, features = alpha
    config = SweepConfig(
        layers=("0", "1"), split_options=SplitOptions(folds=2), bootstrap=20, threads=1
    )
    counts = run_sweep_cells([features], table, config, tmp_path)
    assert (counts.cells_run, counts.cells_skipped) == (4, 0)
    assert len(list(CellStore(tmp_path).cells.glob("*.json"))) == 4
    assert not list(tmp_path.glob("results.*")) and not (tmp_path / "summary.csv").exists()
    result = run_sweep([features], table, config, tmp_path)
    assert (result.cells_run, result.cells_skipped) == (0, 4)
    assert (tmp_path / "summary.csv").exists() and len(result.results) == 4


@pytest.mark.parametrize("field", ["classifiers", "layers", "poolings"])
def test_sweep_config_refuses_a_comma_string_for_a_tuple_field(field) -> None:
    from ssl_ser.classify.sweep import SweepConfig
    from ssl_ser.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"SweepConfig\.{field} must be a tuple .*'a,b'"):
        SweepConfig(**{field: "a,b"})


def test_selections_take_tuples_and_read_a_comma_word_as_its_items() -> None:
    from ssl_ser.classify.features import resolve_poolings, select_layers
    from ssl_ser.classify.registry import parse_classifiers

    available = [str(i) for i in range(6)]
    assert select_layers(("0-2", "5"), available) == select_layers("0-2,5", available)
    assert select_layers(("0-2", "5"), available) == ["0", "1", "2", "5"]
    assert select_layers(("all",), available) == available
    assert parse_classifiers(("logreg", "mlp", "logreg")) == ["logreg", "mlp"]
    assert resolve_poolings(("mean", "std"), "m", ["mean", "std"]).poolings == ("mean", "std")


def test_cli_options_become_typed_split_options() -> None:
    from ssl_ser.classify.settings import SplitSettings, SweepGrid, split_options
    from ssl_ser.classify.splits import SplitOptions

    values = {"method": "few-shot", "folds": 4, "train": "a, b", "test": "", "shots": "3"}
    split = SplitSettings.from_cli(values)
    assert split_options(split, seed=2, shots=3) == SplitOptions(
        4, 2, (0.8, 0.1, 0.1), ("a", "b"), (), 3
    )
    split = SplitSettings.from_cli({"method": "speaker", "ratios": "0.6,0.2,0.2"})
    assert split_options(split, seed=0).ratios == (0.6, 0.2, 0.2)
    assert SweepGrid.from_cli({"labels": "basic4"}).labels == "basic4"
    assert SweepGrid.from_cli({"labels": "angry, happy,sad"}).labels == "angry,happy,sad"


def test_cells_of_the_former_mlp_defaults_are_not_taken_for_the_current_ones(
    alpha, tmp_path, monkeypatch
) -> None:
    """Issue 20: the mlp's defaults (lr 3e-3, batches of 256) are in its cells' ids."""
    import dataclasses
    import json

    from ssl_ser.classify import registry
    from ssl_ser.classify.results import CellStore
    from ssl_ser.classify.splits import SplitOptions
    from ssl_ser.classify.sweep import SweepConfig, run_sweep_cells

    table, features = alpha
    config = SweepConfig(
        classifiers=("mlp",), layers=("1",), split_options=SplitOptions(folds=2), threads=1
    )
    current = registry.get("mlp")
    former = dataclasses.replace(current, defaults=registry.MLP_DEFAULTS)
    monkeypatch.setitem(registry.CLASSIFIERS, "mlp", former)
    assert run_sweep_cells([features], table, config, tmp_path).cells_run == 2
    monkeypatch.setitem(registry.CLASSIFIERS, "mlp", current)
    counts = run_sweep_cells([features], table, config, tmp_path)
    assert (counts.cells_run, counts.cells_skipped) == (2, 0)
    store = CellStore(tmp_path)
    current_cells = [json.loads(path.read_text())[0] for path in store.cells.glob("*.json")]
    assert len(current_cells) == 2
    assert all('"batch_size": 256' in cell["params"] for cell in current_cells)
    # the former cells were moved aside, so that no fold counts twice
    assert len(list((store.cells / "superseded").glob("*.json"))) == 2


def test_supersede_other_cells_moves_other_runs_of_the_same_setting_and_stale_features(
    tmp_path, caplog
) -> None:
    import pandas as pd

    from ssl_ser.classify.results import CellStore
    from ssl_ser.classify.sweep import supersede_other_cells

    store = CellStore(tmp_path)
    tuned = {"classifier": "finetune", "layer": "all", "extractor": "m", "seed": 0}
    probe = {"classifier": "logreg", "layer": "3", "extractor": "m", "seed": 0}
    cached = {**probe, "layer": "4", "cache_keys": "k", "features_digest": "old"}
    stored = {"old-run": tuned, "probe": probe, "other-seed": {**tuned, "seed": 1}, "c": cached}
    for cell, row in stored.items():
        store.save(cell, [{**row, "cell_id": cell}], pd.DataFrame({"cell_id": [cell]}))
    # a fine-tune run describes no caches: only its own setting's other ids move
    supersede_other_cells(store, {"new-run": tuned}, "fine-tune of m")
    assert sorted(p.stem for p in store.cells.glob("*.json")) == ["c", "other-seed", "probe"]
    assert "fine-tune of m: 1 cell(s)" in caplog.text and "no fold counts twice" in caplog.text
    # a sweep that reads cache k today moves the cells of k's older features
    supersede_other_cells(store, {"c": {**cached, "features_digest": "new"}}, "m")
    assert sorted(p.stem for p in store.cells.glob("*.json")) == ["other-seed", "probe"]
    assert "m: 1 cell(s) in" in caplog.text and "other features" in caplog.text
