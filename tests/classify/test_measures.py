"""Probing measures (issue 21): control labellings, speaker probes, online codelength."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ssl_ser.classify import registry
from ssl_ser.classify.features import InMemoryFeatures
from ssl_ser.classify.measures import (
    MDL_FLOOR,
    block_ends,
    control_labels,
    full_proba,
    mdl_order,
    online_codelength,
    prior_proba,
)
from ssl_ser.classify.splits import SplitOptions
from ssl_ser.classify.sweep import SweepConfig, run_sweep
from ssl_ser.errors import ConfigError
from ssl_ser.testing.synthetic import synthetic_manifest

from .conftest import SMALL_LINEAR, SMALL_MLP, corpus

# Ids of a default sweep's cells computed by ssl-ser before targets, --control and
# --mdl existed (main at 9caf776): the default emotion sweep must keep them.
IDS_BEFORE_TARGETS = [
    "032d3fba75bd7d22",
    "0730dfb19370b1a4",
    "0b82bbc2c848a144",
    "2c1b53e0db1ab99b",
    "43115d362148489c",
    "51e7a68df433e8e8",
    "5fe2b0d82a5b1f43",
    "66bb6408e5b77171",
    "6bc58cbc1e629c7d",
    "6c83641476fc626e",
    "7ebd485b0c13b507",
    "9ae948fd0d67795a",
    "ca825dd1fa585e06",
    "ccd99e9b2523946f",
    "e4f85ba0a3fd7a5c",
    "f3e48eddbc4d1cba",
]


def config(**kwargs) -> SweepConfig:
    options = {
        "poolings": ("mean",),
        "bootstrap": 5,
        "split_options": SplitOptions(folds=kwargs.pop("folds", 2)),
        **kwargs,
    }
    return SweepConfig(**options)


def test_default_cell_ids_are_those_of_before_targets(tmp_path):
    table, features = corpus("alpha", n_utts=48)
    settings = config(classifiers=("logreg", "linear"), params={"linear": {"max_epochs": 3}})
    result = run_sweep([features], table, settings, tmp_path)
    assert sorted(result.results["cell_id"].unique()) == IDS_BEFORE_TARGETS
    assert set(result.results["target"]) == {"emotion"}


def test_control_labels_keep_each_speakers_classes_and_follow_the_seed():
    table = synthetic_manifest(120, 6, ("angry", "happy", "sad"), seed=3)
    table = table.assign(label=table["emotion"], group=table["speaker"])
    control = control_labels(table, seed=0)
    for _, rows in table.assign(control=control).groupby("group"):
        assert sorted(rows["control"]) == sorted(rows["label"])  # class sizes per speaker kept
    assert (control != table["label"].to_numpy()).mean() > 0.4  # most labels moved
    shuffled = table.sample(frac=1.0, random_state=1)
    by_row = pd.Series(control, table.index)[shuffled.index]
    assert (control_labels(shuffled, seed=0) == by_row).all()
    assert (control_labels(table, seed=0) == control).all()
    assert (control_labels(table, seed=1) != control).any()
    # an utterance present in two conditions keeps one control label
    both = pd.concat([table.assign(condition="clean"), table.assign(condition="telephone")])
    twice = control_labels(both, seed=0)
    assert (twice[: len(table)] == twice[len(table) :]).all()


def test_control_ua_of_logreg_sits_at_chance_while_the_emotion_ua_does_not(tmp_path):
    table, features = corpus("alpha", n_utts=480)
    settings = config(classifiers=("logreg",), control=True, folds=4)
    result = run_sweep([features], table, settings, tmp_path)
    assert result.cells_run == 2 * 4 * 4  # targets x layers x folds
    rows = result.results
    by_target = rows.groupby("target")["ua"]
    assert by_target.max()["emotion"] > 0.6
    assert abs(by_target.mean()["control"] - 0.25) < 0.04  # chance of 4 balanced classes
    # the control is the same labels permuted within speakers: same class sizes
    predictions = pd.read_parquet(tmp_path / "predictions.parquet")
    cells = rows.set_index("cell_id")["target"]
    labels = predictions.assign(target=predictions["cell_id"].map(cells))
    counts = labels.groupby(["target", "label"]).size().unstack()
    assert (counts.loc["control"] == counts.loc["emotion"]).all()
    again = run_sweep([features], table, settings, tmp_path)
    assert (again.cells_run, again.cells_skipped) == (0, 32)


def test_control_is_refused_for_the_speaker_target():
    with pytest.raises(ConfigError, match="no meaning for --target speaker"):
        config(target="speaker", control=True)


def test_block_ends_follow_the_fractions_and_start_with_every_class():
    assert block_ends(1000, 4) == [4, 8, 16, 32, 63, 125, 250, 500, 1000]
    assert block_ends(10000, 4)[:3] == [10, 20, 40]
    assert block_ends(3, 4) == [3]


def test_online_codelength_is_the_sum_of_block_costs_computed_by_hand():
    codes = np.array([0, 1, 2, 0, 0, 1, 0, 0, 2, 0])
    ends = [3, 5, 10]

    def counts_model(prefix, block):  # class frequencies of the prefix, Laplace-smoothed
        return prior_proba(codes[prefix], 3, len(block))

    bits, uniform = online_codelength(counts_model, codes, 3, ends)
    expected = 3 * np.log2(3)
    for start, end in zip(ends[:-1], ends[1:], strict=True):
        freq = (np.bincount(codes[:start], minlength=3) + 1) / (start + 3)
        for label in codes[start:end]:
            expected -= np.log2((1 - MDL_FLOOR) * freq[label] + MDL_FLOOR / 3)
    assert float(bits) == pytest.approx(expected, rel=1e-12)
    assert uniform == pytest.approx(10 * np.log2(3))


def logreg_codelength(x: np.ndarray, y: np.ndarray, k: int) -> tuple[float, float]:
    order = mdl_order(np.arange(len(y)), y, seed=0)
    x, y = x[order], y[order]

    def fit(prefix, block):
        model = registry.build_pipeline("logreg").fit(x[prefix], y[prefix])
        return full_proba(model.predict_proba(x[block]), model.classes_, k)

    bits, uniform = online_codelength(fit, y, k, block_ends(len(y), k))
    return float(bits), uniform


def test_codelength_of_a_layer_without_information_is_the_uniform_code():
    rng = np.random.default_rng(0)
    y = rng.permutation(np.arange(8000) % 4)
    noise, uniform = logreg_codelength(rng.standard_normal((8000, 3)), y, 4)
    assert uniform == pytest.approx(8000 * 2.0)
    assert abs(noise / uniform - 1) < 0.01
    constant, _ = logreg_codelength(np.ones((8000, 3)), y, 4)
    assert abs(constant / uniform - 1) < 0.01


def test_codelength_of_a_separable_layer_is_much_smaller():
    rng = np.random.default_rng(0)
    y = rng.permutation(np.arange(2000) % 4)
    x = 5.0 * np.eye(4)[y] + 0.1 * rng.standard_normal((2000, 4))
    bits, uniform = logreg_codelength(x, y, 4)
    assert bits < 0.05 * uniform


def test_mdl_sweep_adds_codelengths_and_keeps_every_other_number(tmp_path):
    table, features = corpus("alpha", n_utts=240)
    settings = config(classifiers=("logreg", "linear"), params={"linear": SMALL_LINEAR})
    plain = run_sweep([features], table, settings, tmp_path / "plain").results
    measured = run_sweep([features], table, config(**{**vars(settings), "mdl": True}), tmp_path)
    rows = measured.results
    assert {"mdl_bits", "uniform_bits", "compression", "mdl_rows"} <= set(rows.columns)
    assert rows["mdl_rows"].eq(rows["n_train"]).all()  # the training rows of each fold
    assert np.allclose(rows["uniform_bits"], rows["n_train"] * 2.0)
    assert np.allclose(rows["compression"], rows["uniform_bits"] / rows["mdl_bits"])
    key = ["classifier", "layer", "fold"]
    both = plain.merge(rows, on=key, suffixes=("", "_mdl"))
    assert len(both) == len(plain) and np.allclose(both["ua"], both["ua_mdl"])
    # the layer carrying most emotion is coded most compactly by logreg
    logreg = rows[rows["classifier"] == "logreg"].groupby("layer")[["ua", "compression"]].mean()
    assert logreg["compression"].idxmax() == logreg["ua"].idxmax()
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert summary["compression_mean"].notna().any()
    # a later run without --mdl finds every cell done (its codelength kept)
    again = run_sweep([features], table, settings, tmp_path)
    assert (again.cells_run, again.cells_skipped) == (0, len(rows["cell_id"].unique()))
    assert again.results["compression"].notna().all()


@pytest.mark.slow
def test_batched_codelengths_equal_those_of_per_layer_fits(tmp_path):
    table, features = corpus("alpha", n_utts=160)
    params = {"linear": SMALL_LINEAR, "mlp": SMALL_MLP}
    found = {}
    for batched in (True, False):
        settings = config(classifiers=("linear", "mlp"), params=params, batched=batched, mdl=True)
        rows = run_sweep([features], table, settings, tmp_path / str(batched)).results
        found[batched] = rows.set_index(["classifier", "layer", "fold"]).sort_index()
    assert len(found[True]) == 2 * 4 * 2
    np.testing.assert_allclose(found[True]["mdl_bits"], found[False]["mdl_bits"], rtol=1e-6)


def test_mdl_refuses_a_classifier_without_probabilities(tmp_path):
    table, features = corpus("alpha", n_utts=48)
    with pytest.raises(ConfigError, match="'svm-linear' gives none. Use one of: logreg"):
        run_sweep([features], table, config(classifiers=("svm-linear",), mdl=True), tmp_path)


def speaker_features(table: pd.DataFrame, seed: int = 0) -> InMemoryFeatures:
    """Layer 0: no speaker signal; 1: every utterance names its speaker; 2: a random half do."""
    rng = np.random.default_rng(seed)
    speakers, code = np.unique(table["speaker"], return_inverse=True)
    named = 8.0 * np.eye(len(speakers))[code]
    half = named * (rng.permutation(len(table)) % 2 == 0)[:, None]
    noise = [0.3 * rng.standard_normal(named.shape) for _ in range(3)]
    stacked = np.stack([noise[0], named + noise[1], half + noise[2]], axis=1)
    key = {"model": "speaker-test", "condition": "clean", "config_digest": "spk"}
    return InMemoryFeatures(table["utt_id"].tolist(), ["0", "1", "2"], {"mean": stacked}, key)


def test_speaker_probe_reaches_the_designed_accuracy(tmp_path):
    table = synthetic_manifest(320, 4, ("angry", "happy", "sad", "neutral"), seed=0)
    features = speaker_features(table)
    settings = config(classifiers=("logreg",), target="speaker", folds=4)
    rows = run_sweep([features], table, settings, tmp_path).results
    assert set(rows["target"]) == {"speaker"} and not rows["speaker_independent"].any()
    ua = rows.groupby("layer")["ua"].mean()
    assert abs(ua["0"] - 0.25) < 0.08  # no speaker signal: chance of 4 speakers
    assert ua["1"] > 0.98  # every utterance carries its speaker
    assert abs(ua["2"] - (0.5 + 0.5 / 4)) < 0.08  # half do, the rest at chance
    predictions = pd.read_parquet(tmp_path / "predictions.parquet")
    for _, fold in predictions.groupby("cell_id"):  # every test fold holds every speaker
        assert fold["label"].nunique() == 4
    assert (predictions["label"] == predictions["speaker"]).all()
    gender = dict(zip(table["utt_id"], table["gender"], strict=True))
    assert (predictions["gender"] == predictions["utt_id"].map(gender)).all()


def test_speaker_target_refuses_speaker_independent_splits(tmp_path):
    table = synthetic_manifest(40, 4, ("angry", "sad"), seed=0)
    features = speaker_features(table)
    settings = config(classifiers=("logreg",), target="speaker", split="loso")
    with pytest.raises(ConfigError, match="--split speaker-kfold or random, not 'loso'"):
        run_sweep([features], table, settings, tmp_path)


def classify_cli(tmp_path, *extra):
    from click.testing import CliRunner

    from ssl_ser import manifest
    from ssl_ser.cli.main import cli
    from ssl_ser.testing.synthetic import write_cache

    table, features = corpus("alpha", n_utts=96)
    cache_path = write_cache(tmp_path / "alpha.h5", features)
    csv = manifest.write(table, tmp_path / "alpha.csv")
    args = ["classify", "--cache", cache_path, "--manifest", csv, "--layers", "1-2",
            "--folds", 2, "--bootstrap", 5, "--output", tmp_path / "out", "--no-progress",
            *extra]  # fmt: skip
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_cli_runs_the_control_and_codelength_and_says_which_is_which(tmp_path):
    result = classify_cli(tmp_path, "--control", "--mdl")
    assert result.exit_code == 0, result.output
    assert "8 cell(s) run, 0 already done" in result.output  # 2 targets x 2 layers x 2 folds
    assert "logreg: best layer" in result.output and "[control] logreg" in result.output
    rows = pd.read_parquet(tmp_path / "out" / "results.parquet")
    assert set(rows["target"]) == {"emotion", "control"}
    assert rows["compression"].notna().all()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--target", "speaker", "--control"), "no meaning for --target speaker"),
        (("--target", "speaker", "--save-probe", "probe"), "--save-probe exports an emotion"),
        (("--classifiers", "svm-linear", "--mdl"), "'svm-linear' gives none"),
    ],
)
def test_cli_refuses_measures_that_cannot_be_made(tmp_path, extra, message):
    result = classify_cli(tmp_path, *extra)
    assert result.exit_code != 0 and message in result.output, result.output
    assert not (tmp_path / "out" / "results.parquet").exists()
