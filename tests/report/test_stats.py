"""`ser compare` and the report's statistics sections, on a real classify sweep's predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.metrics import balanced_accuracy_score

from ssl_ser.classify import compare as stats
from ssl_ser.cli.main import cli
from ssl_ser.errors import ConfigError
from ssl_ser.report import compare, write_report
from ssl_ser.report.load import load_results
from ssl_ser.report.tables import cell_summary

N_BOOT = 100
EMOTIONS = ("angry", "happy", "sad", "neutral")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A real ser classify folder: 5 layers, logreg, 3 speaker folds; and its manifest."""
    from ssl_ser.classify.splits import SplitOptions
    from ssl_ser.classify.sweep import SweepConfig, run_sweep
    from ssl_ser.testing.synthetic import synthetic_features, synthetic_manifest

    root = tmp_path_factory.mktemp("stats")
    manifest = synthetic_manifest(120, 6, EMOTIONS, corpus="emodb")
    key = {
        "model": "/x/random-tiny",
        "model_type": "wav2vec2",
        "revision": "untrained:local:0123",
        "condition": "clean",
        "config_digest": "0",
    }
    source = synthetic_features(manifest, 5, 8, seed=0, key=key)
    config = SweepConfig(classifiers=("logreg",), split_options=SplitOptions(folds=3), bootstrap=20)
    run_sweep([source], manifest, config, root / "sweep")
    return root / "sweep", manifest


def predictions_by_layer(folder: Path) -> pd.DataFrame:
    """utt_id x layer predicted labels, plus label, fold, speaker, gender (independent read)."""
    frame = pd.read_parquet(folder / "predictions.parquet")
    wide = frame.pivot(index="utt_id", columns="layer", values="predicted")
    meta = frame.drop_duplicates("utt_id").set_index("utt_id")[
        ["label", "fold", "speaker", "gender"]
    ]
    return wide.join(meta)


def test_the_sweep_stores_speaker_and_gender_with_predictions(sweep) -> None:
    folder, manifest = sweep
    frame = pd.read_parquet(folder / "predictions.parquet")
    truth = manifest.set_index("utt_id")
    assert (frame["speaker"].to_numpy() == truth.loc[frame["utt_id"], "speaker"].to_numpy()).all()
    assert (frame["gender"].to_numpy() == truth.loc[frame["utt_id"], "gender"].to_numpy()).all()


def test_compare_two_layers_prints_the_paired_difference(sweep, tmp_path: Path) -> None:
    folder, _ = sweep
    out = tmp_path / "pair.csv"
    result = CliRunner().invoke(
        cli,
        ["compare", str(folder), "--a", "layer=1", "--b", "layer=3"]
        + ["--bootstrap", str(N_BOOT), "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    wide = predictions_by_layer(folder)
    ua = {layer: balanced_accuracy_score(wide["label"], wide[layer]) for layer in ("1", "3")}
    row = pd.read_csv(out).iloc[0]
    assert row["n"] == len(wide) and row["folds"] == 3
    assert row["delta"] == pytest.approx(ua["1"] - ua["3"])
    assert row["low"] <= row["delta"] <= row["high"]
    assert row["resampled_within"] == "speakers"
    per_fold = wide.groupby("fold").apply(
        lambda f: (
            balanced_accuracy_score(f["label"], f["1"])
            - balanced_accuracy_score(f["label"], f["3"])
        )
    )
    assert row["p_folds"] == pytest.approx(stats.sign_flip_test(per_fold.to_numpy()))
    assert "layer 1 vs layer 3" in result.output
    assert f"{100 * (ua['1'] - ua['3']):+.1f}" in result.output


def test_compare_without_selectors_tests_every_layer_against_the_best(sweep) -> None:
    folder, _ = sweep
    result = compare.run_compare([folder], None, None, n_boot=N_BOOT)
    frame = result.frame
    wide = predictions_by_layer(folder)
    ua = {str(k): balanced_accuracy_score(wide["label"], wide[str(k)]) for k in range(5)}
    assert frame["ua"].to_numpy() == pytest.approx([ua[str(k)] for k in range(5)])
    assert frame.loc[frame["best"], "layer"].tolist() == [max(ua, key=ua.get)]
    raw = frame["p"].to_numpy()
    assert frame["p_holm"].to_numpy() == pytest.approx(stats.holm(raw), nan_ok=True)
    assert frame["share_best"].sum() == pytest.approx(1.0)
    assert "share best %" in result.text


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        ("layer=1", "lyr=3", "selector part 'lyr=3' is not KEY=VALUE with KEY one of"),
        ("layer=1", "layer=9", "--b layer=9 matches no cell; values found: layer: 0, 1, 2, 3, 4"),
        ("layer=1", "layer=1", "no cell matching --a agrees with a cell matching --b"),
    ],
)
def test_compare_names_bad_selectors(sweep, a: str, b: str, message: str) -> None:
    folder, _ = sweep
    result = CliRunner().invoke(cli, ["compare", str(folder), "--a", a, "--b", b])
    assert result.exit_code == 1
    assert message in result.output


def test_compare_needs_both_sides(sweep) -> None:
    result = CliRunner().invoke(cli, ["compare", str(sweep[0]), "--a", "layer=1"])
    assert result.exit_code == 1
    assert "give both --a and --b" in result.output


def test_pairs_agree_on_every_column_neither_selector_names() -> None:
    cells = pd.DataFrame(
        {
            "extractor": ["m1", "m1", "m2", "m2"],
            "layer": ["3", "3", "3", "5"],
            **{c: "x" for c in compare.CELL if c not in ("extractor", "layer", "classifier")},
            "classifier": ["logreg", "svm", "logreg", "logreg"],
        }
    )
    pairs = compare.select_pairs(cells, {"extractor": "m1"}, {"extractor": "m2"})
    assert [(a["layer"], a["classifier"], b["layer"]) for a, b in pairs] == [("3", "logreg", "3")]
    # `model` stands for the extractor; naming the layer on one side frees it on both
    a, b = compare.parse_selector("model=m1,layer=3"), compare.parse_selector("model=m2")
    pairs = compare.select_pairs(cells, a, b, compare.parse_selector("clf=logreg"))
    assert [(a["layer"], b["layer"]) for a, b in pairs] == [("3", "3"), ("3", "5")]


def test_breakdown_equals_balanced_accuracy_per_group(sweep) -> None:
    folder, _ = sweep
    results = load_results([folder])
    cells = cell_summary(results.table)
    best = cells.loc[cells["ua_mean"].idxmax()]
    table = compare.breakdown(results, best, list(EMOTIONS), n_boot=N_BOOT)
    wide = predictions_by_layer(folder)
    layer = str(best["layer"])
    for by in ("speaker", "gender"):
        rows = table[table["by"] == by].set_index("group")
        for group, part in wide.groupby(by):
            assert rows.loc[group, "ua"] == pytest.approx(
                balanced_accuracy_score(part["label"], part[layer])
            )
            assert rows.loc[group, "n"] == len(part)
    assert "corpus" not in set(table["by"])  # one corpus: nothing to break down
    worst = table[table["by"] == "speaker"].sort_values("ua").iloc[0]
    assert f"speaker {worst['group']} (UA {100 * worst['ua']:.1f}%" in compare.worst_served(table)


def test_report_shows_the_statistics_sections(sweep, tmp_path: Path) -> None:
    folder, _ = sweep
    summary = write_report(folder, tmp_path / "report.html", n_boot=N_BOOT)
    html = (tmp_path / "report.html").read_text()
    assert "Layers against the best layer" in html
    assert "Who the best cell serves worst" in html
    assert "worst-served gender" in summary.best and "speaker emodb/" in summary.best
    assert (tmp_path / "figures" / "layer-tests-speaker-kfold.png").is_file()
    found = compare.run_compare([folder], None, None, n_boot=N_BOOT).frame
    same = found.loc[found["indistinguishable"] & ~found["best"], "layer"]
    assert f"<td>{', '.join(same) or 'none'}</td>" in html


@pytest.mark.slow
def test_old_predictions_leave_the_sections_out_or_resample_within_folds(
    sweep, tmp_path: Path
) -> None:
    folder, _ = sweep
    old = tmp_path / "old"
    old.mkdir()
    (old / "results.parquet").write_bytes((folder / "results.parquet").read_bytes())
    frame = pd.read_parquet(folder / "predictions.parquet")
    frame.drop(columns=["speaker", "gender"]).to_parquet(old / "predictions.parquet")
    result = compare.run_compare([old], "layer=1", "layer=3", n_boot=N_BOOT)
    assert result.frame["resampled_within"].iloc[0].startswith("test fold")
    summary = write_report(old, tmp_path / "old.html", n_boot=N_BOOT)
    html = (tmp_path / "old.html").read_text()
    assert "Layers against the best layer" in html
    assert "Who the best cell serves worst" not in html and "worst-served" not in summary.best
    frame.drop(columns=["speaker", "gender", "utt_id"]).to_parquet(old / "predictions.parquet")
    write_report(old, tmp_path / "older.html", n_boot=N_BOOT)
    html = (tmp_path / "older.html").read_text()
    assert "Layers against the best layer" not in html
    assert not (tmp_path / "figures" / "layer-tests-speaker-kfold.png").exists()
    with pytest.raises(ConfigError, match="lack column.*utt_id"):
        compare.run_compare([old], "layer=1", "layer=3", n_boot=N_BOOT)


def test_cells_labelled_differently_are_not_paired(sweep, tmp_path: Path) -> None:
    folder, _ = sweep
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.parquet").write_bytes((folder / "results.parquet").read_bytes())
    frame = pd.read_parquet(folder / "predictions.parquet")
    flip = (frame["layer"] == "3") & (frame.index == frame.index[frame["layer"] == "3"][0])
    frame.loc[flip, "label"] = np.where(frame.loc[flip, "label"] == "sad", "happy", "sad")
    frame.to_parquet(bad / "predictions.parquet")
    with pytest.raises(ConfigError, match="is labelled .* but .*other label sets"):
        compare.run_compare([bad], "layer=1", "layer=3", n_boot=N_BOOT)


def test_naming_the_classifier_pairs_a_fine_tune_with_a_probe() -> None:
    base = {c: "x" for c in compare.CELL}
    cells = pd.DataFrame(
        [
            {**base, "classifier": "finetune", "layer": "all", "finetune_setup": "linear head"},
            {**base, "classifier": "logreg", "layer": "8", "finetune_setup": ""},
        ]
    )
    a = compare.parse_selector("classifier=finetune,layer=all")
    pairs = compare.select_pairs(cells, a, compare.parse_selector("clf=logreg,layer=8"))
    assert [(x["finetune_setup"], y["finetune_setup"]) for x, y in pairs] == [("linear head", "")]


def test_several_pairs_carry_holm_adjusted_p_values(sweep) -> None:
    folder, _ = sweep
    frames = compare.run_compare([folder], "layer=2", "classifier=logreg", n_boot=50)
    assert len(frames.frame) == 4  # layer 2 against each other layer
    assert frames.frame["p_holm"].to_numpy() == pytest.approx(stats.holm(frames.frame["p"]))
    assert "each p is uncorrected" in frames.text


def test_utterances_only_one_cell_predicted_are_left_out_and_counted(sweep, tmp_path: Path) -> None:
    folder, _ = sweep
    part = tmp_path / "part"
    part.mkdir()
    (part / "results.parquet").write_bytes((folder / "results.parquet").read_bytes())
    frame = pd.read_parquet(folder / "predictions.parquet")
    gone = (frame["layer"] == "3") & (frame["fold"] == "0")
    frame[~gone].to_parquet(part / "predictions.parquet")
    result = compare.run_compare([part], "layer=1", "layer=3", n_boot=N_BOOT)
    row = result.frame.iloc[0]
    kept = frame[(frame["layer"] == "1") & (frame["fold"] != "0")]
    assert (row["n"], row["unpaired_a"], row["unpaired_b"]) == (len(kept), gone.sum(), 0)
    assert row["folds"] == 2
    wide = predictions_by_layer(folder)
    wide = wide[wide["fold"] != "0"]
    expected = balanced_accuracy_score(wide["label"], wide["1"]) - balanced_accuracy_score(
        wide["label"], wide["3"]
    )
    assert row["delta"] == pytest.approx(expected)
    assert f"no partner in the other cell: {gone.sum()} utterance(s) of A, 0 of B" in result.text


def test_cells_of_other_targets_are_named_as_such() -> None:
    base = {c: "x" for c in compare.CELL}
    emotion = pd.Series({**base, "layer": "1", "target": "emotion"})
    control = pd.Series({**base, "layer": "1", "target": "control"})
    speaker = pd.Series({**base, "layer": "2", "target": "speaker"})
    assert "target" not in compare.label(emotion)
    assert compare.label(control).endswith(" · target control")
    assert compare.label(speaker) != compare.label(speaker.copy().replace("speaker", "emotion"))
    shared, what_a, what_b = compare.describe_pair(speaker, speaker.copy().replace("2", "4"))
    assert shared.endswith("target speaker") and (what_a, what_b) == ("layer 2", "layer 4")
    assert compare.describe_pair(emotion, control)[1:] == ("target emotion", "target control")
