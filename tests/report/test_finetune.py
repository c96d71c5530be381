"""The report's fine-tune side: fine-tuned vs probe layers, fold pairs, curves, layer weights.

The results folders are written by hand through CellStore/write_tables following
the fine-tune data contract (tests/report/finetune_data.py); every number is
checked against a computation from the stored rows and predictions with pandas
and scikit-learn.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score

from ssl_ser.errors import ConfigError
from ssl_ser.report import figures, finetune, write_report
from ssl_ser.report.groups import find_groups
from ssl_ser.report.load import load_results, normalise
from ssl_ser.report.tables import cell_summary

from .finetune_data import EXTRACTOR, PARAMS, SETTINGS, FinetuneSpec, write_folder

N_BOOT = 50


def _comparison(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    results = load_results([folder])
    cells = cell_summary(results.table)
    tuned = cells[cells["classifier"] == "finetune"]
    group = next(
        g for g in find_groups(cells, results.table, results.classes) if g.mask(tuned).any()
    )
    mine = cells[group.mask(cells)]
    return finetune.comparison(
        mine, results.table, results.predictions, group, n_boot=N_BOOT, seed=0
    )


def _raw(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = pd.read_parquet(folder / "results.parquet")
    predictions = pd.read_parquet(folder / "predictions.parquet")
    return rows, predictions


def _pooled_ua(rows: pd.DataFrame, predictions: pd.DataFrame) -> float:
    chosen = predictions[predictions["cell_id"].isin(set(rows["cell_id"]))]
    return float(balanced_accuracy_score(chosen["label"], chosen["predicted"]))


def _setting(rows: pd.DataFrame, condition: str) -> pd.DataFrame:
    keep = (rows["train_corpus"] == "emodb") & (rows["test_condition"] == condition)
    return rows[keep & (rows["train_condition"] == "clean")]


def _expected_selected(probes: pd.DataFrame) -> pd.DataFrame:
    """Per fold the best-validating layer of the best-validating probe classifier, by hand."""
    best, best_score = None, -1.0
    for classifier in sorted(probes["classifier"].unique()):
        mine = probes[probes["classifier"] == classifier]
        chosen = []
        for fold in sorted(mine["fold"].unique()):
            rows = mine[mine["fold"] == fold].copy()
            rows["depth"] = rows["layer"].astype(int)
            top = rows["val_ua"].max()
            chosen.append(rows[rows["val_ua"] == top].sort_values("depth").iloc[0])
        frame = pd.DataFrame(chosen)
        if frame["val_ua"].mean() > best_score:
            best, best_score = frame, frame["val_ua"].mean()
    return best


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_folder(tmp_path_factory.mktemp("ft") / "results")


@pytest.fixture(scope="module")
def report(folder: Path) -> tuple[Path, str, str]:
    out = folder.parent / "out" / "report.html"
    write_report(folder, out, n_boot=N_BOOT)
    return out, out.read_text(), out.with_suffix(".md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("condition", ["clean", "telephone"])
@pytest.mark.parametrize("layer", ["all", "weighted"])
def test_comparison_numbers_match_an_independent_computation(
    folder: Path, condition: str, layer: str
) -> None:
    summary, _ = _comparison(folder)
    got = summary[(summary["layer"] == layer) & (summary["test_condition"] == condition)]
    assert len(got) == 1
    got = got.iloc[0]
    rows, predictions = _raw(folder)
    rows = _setting(rows, condition)
    tuned = rows[(rows["classifier"] == "finetune") & (rows["layer"] == layer)]
    assert got["finetune_mean"] == pytest.approx(tuned["ua"].mean())
    assert got["finetune_std"] == pytest.approx(tuned["ua"].std(ddof=1))
    assert got["finetune_pooled"] == pytest.approx(_pooled_ua(tuned, predictions))
    assert got["finetune_low"] <= got["finetune_pooled"] <= got["finetune_high"]

    probes = rows[(rows["classifier"] != "finetune") & ~rows["speaker_norm"].astype(bool)]
    selected = _expected_selected(probes)
    assert got["selected_mean"] == pytest.approx(selected["ua"].mean())
    assert got["selected_std"] == pytest.approx(selected["ua"].std(ddof=1))
    assert got["selected_pooled"] == pytest.approx(_pooled_ua(selected, predictions))
    assert selected["classifier"].iloc[0] in got["selected_what"]
    # the same number as summary.csv's `selected` row of that classifier (ser classify's own)
    summary_csv = pd.read_csv(folder / "summary.csv")
    row = summary_csv[
        (summary_csv["layer"] == "selected")
        & (summary_csv["classifier"] == selected["classifier"].iloc[0])
        & (summary_csv["test_condition"] == condition)
        & ~summary_csv["speaker_norm"].astype(bool)
    ]
    assert got["selected_mean"] == pytest.approx(float(row["ua_mean"].iloc[0]))
    layers = "/".join(selected.sort_values("fold")["layer"])
    assert (
        layers in got["selected_what"]
        or f"layer {selected['layer'].iloc[0]}" in (got["selected_what"])
    )

    means = probes.groupby(["classifier", "layer"])["ua"].mean()
    classifier, best_layer = means.idxmax()
    assert got["best_test_mean"] == pytest.approx(means.max())
    assert got["best_test_what"].startswith(f"layer {best_layer} · {classifier}")
    # the speaker-normalised probe (test speakers' statistics) scores far higher: never compared
    normed = rows[rows["speaker_norm"].astype(bool)]
    assert normed["ua"].mean() > got["best_test_mean"]

    last = probes[
        (probes["classifier"] == selected["classifier"].iloc[0]) & (probes["layer"] == "4")
    ]
    assert got["last_mean"] == pytest.approx(last["ua"].mean())
    assert got["last_pooled"] == pytest.approx(_pooled_ua(last, predictions))

    paired = tuned.set_index("fold")["ua"] - selected.set_index("fold")["ua"]
    assert got["difference"] == pytest.approx(paired.mean())
    assert got["paired"] == 3 and got["by_digest"]


def test_folds_are_paired_by_name_with_the_same_speakers(folder: Path) -> None:
    _, pairs = _comparison(folder)
    rows, _ = _raw(folder)
    rows = _setting(rows, "clean")
    probes = rows[(rows["classifier"] != "finetune") & ~rows["speaker_norm"].astype(bool)]
    selected = _expected_selected(probes).set_index("fold")
    tuned = rows[(rows["classifier"] == "finetune") & (rows["layer"] == "weighted")]
    mine = pairs[(pairs["layer"] == "weighted") & (pairs["test_condition"] == "clean")]
    assert list(mine["fold"]) == ["0", "1", "2"]
    for _, pair in mine.iterrows():
        assert pair["finetune"] == pytest.approx(tuned.set_index("fold").loc[pair["fold"], "ua"])
        assert pair["probe"] == pytest.approx(selected.loc[pair["fold"], "ua"])
        assert pair["probe_layer"] == selected.loc[pair["fold"], "layer"]
        assert pair["speakers"] == finetune.SAME


def test_a_fold_with_other_speakers_is_flagged_and_not_paired(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "results", FinetuneSpec(other_speakers=("1",)))
    summary, pairs = _comparison(folder)
    assert set(pairs.loc[pairs["fold"] == "1", "speakers"]) == {finetune.DIFFERENT}
    assert not pairs.loc[pairs["fold"] == "1", "paired"].any()
    assert (summary["paired"] == 2).all() and (summary["different"] == 1).all()
    for _, row in summary.iterrows():
        mine = pairs[
            (pairs["layer"] == row["layer"]) & (pairs["test_condition"] == row["test_condition"])
        ]
        kept = mine[mine["fold"] != "1"]
        assert row["difference"] == pytest.approx((kept["finetune"] - kept["probe"]).mean())
    text = finetune.format_comparison(summary, {"facebook/wav2vec2-base": "w2v"})
    assert text[finetune.DIFFERENCE_COLUMN].str.contains("other speakers, not paired").all()


def test_without_digests_folds_pair_by_name_and_say_so(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "results", FinetuneSpec(probe_digest=False, weighted=False))
    summary, pairs = _comparison(folder)
    assert set(pairs["speakers"]) == {finetune.NAME_ONLY}
    assert (summary["paired"] == 3).all() and not summary["by_digest"].any()


@pytest.mark.slow
def test_report_shows_comparison_curves_and_layer_weights(report) -> None:
    out, html, markdown = report
    for name in ("finetune-vs-probes", "finetune-folds"):
        assert f'data-table="{name}' in html
    for name in ("training-curves", "layer-weights"):
        assert f'data-figure="{name}-' in html
        assert list((out.parent / "figures").glob(f"{name}-*.png"))
        assert f"figures/{name}-" in markdown
    assert "Fine-tuned vs probes" in html and "## Fine-tuned vs probes" in markdown
    assert "3/3 folds paired" in html and "by fold digest" in html
    assert "optimistic" in html


def test_layer_curves_draw_finetunes_as_labelled_horizontal_lines(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn = []
    original = figures.save_figure

    def keep(fig, *args, **kwargs):
        drawn.append(fig)
        return original(fig, *args, **kwargs)

    monkeypatch.setattr(figures, "save_figure", keep)
    results = load_results([folder])
    cells = cell_summary(results.table)
    group = next(g for g in find_groups(cells, results.table, results.classes))
    mine = cells[group.mask(cells)]
    names = {"facebook/wav2vec2-base": "wav2vec2-base"}
    assert figures.layer_curves(mine, names, tmp_path, group)
    axes = [ax for ax in drawn[0].axes if ax.get_visible() and ax.get_title()]
    rows, _ = _raw(folder)
    for ax in axes:
        condition = "telephone" if "telephone" in ax.get_title() else "clean"
        expected = _setting(rows, condition)
        for layer, label in (("all", "last hidden state"), ("weighted", "learned layer weights")):
            tuned = expected[(expected["classifier"] == "finetune") & (expected["layer"] == layer)]
            lines = [line for line in ax.get_lines() if line.get_label() == f"fine-tuned · {label}"]
            assert len(lines) == 1
            assert np.allclose(lines[0].get_ydata(), 100 * tuned["ua"].mean())
        for line in ax.get_lines():  # every data point sits on a numbered layer
            x = np.asarray(line.get_xdata(), dtype=object)
            assert all(isinstance(v, int | float | np.number) for v in x)
        labels = {line.get_label() for line in ax.get_lines()}
        assert not any(label.startswith("finetune") for label in labels)


@pytest.mark.slow
def test_without_finetune_rows_the_report_has_no_finetune_section(tmp_path: Path) -> None:
    folder = write_folder(
        tmp_path / "results",
        FinetuneSpec(finetune=False, normed_probe=False, settings=SETTINGS[:1]),
    )
    out = tmp_path / "out" / "report.html"
    summary = write_report(folder, out, n_boot=N_BOOT)
    html = out.read_text()
    assert "Fine-tuned vs probes" not in html and "fine-tuned" not in html.lower()
    assert not list((tmp_path / "out" / "figures").glob("training-curves*"))
    assert not any(
        "Training curves" in note or "layer weights" in note for note in summary.left_out
    )


@pytest.mark.slow
def test_a_folder_of_finetunes_alone_is_reported(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "results", FinetuneSpec(probes=False, settings=SETTINGS[:1]))
    out = tmp_path / "out" / "report.html"
    write_report(folder, out, n_boot=N_BOOT)
    html = out.read_text()
    assert 'data-table="finetune-vs-probes' in html and "no comparable probe" in html
    assert "no validation UA stored" not in html
    assert 'data-figure="layer-weights' in html


def test_two_finetune_setups_are_two_cells_not_one_cell_run_twice(tmp_path: Path) -> None:
    other = json.dumps({**PARAMS, "freeze": "none", "head": "mlp"}, sort_keys=True)
    first = write_folder(tmp_path / "a", FinetuneSpec(weighted=False))
    second = write_folder(
        tmp_path / "b", FinetuneSpec(weighted=False, probes=False, extra={"params": other})
    )
    results = load_results([first, second])  # refused as one cell run twice before
    cells = cell_summary(results.table)
    tuned = cells[cells["classifier"] == "finetune"]
    assert len(tuned) == 4  # two settings x two setups
    assert set(tuned["finetune_setup"]) == {
        "linear head · feature encoder frozen · 4 epochs max · lr 1e-05",
        "mlp head · nothing frozen · 4 epochs max · lr 1e-05",
    }


def _row(**fields) -> pd.DataFrame:
    base = {
        "extractor": "m",
        "layer": "weighted",
        "classifier": "finetune",
        "split": "speaker-kfold",
        "ua": 0.5,
        "fold": "0",
        "cell_id": "abc",
        "best_epoch": 2,
        "training_curve": json.dumps([{"epoch": 1, "train_loss": 1.0, "val_ua": 0.4}]),
        "layer_weights": json.dumps([0.5, 0.5]),
    }
    return normalise(pd.DataFrame([{**base, **fields}]))


def test_a_best_epoch_outside_the_curve_is_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"best_epoch 2 is not an epoch of its training_curve \(1\)"
    ):
        finetune.training_curves(_row())


def test_layer_weights_that_are_not_softmax_weights_are_refused() -> None:
    with pytest.raises(ConfigError, match="sum to 1.2"):
        finetune.layer_weights(_row(layer_weights=json.dumps([0.6, 0.6])))
    got = finetune.layer_weights(_row(layer_weights=json.dumps([0.25, 0.75])))
    assert list(got["weight"]) == [0.25, 0.75] and list(got["index"]) == [0, 1]


def test_layer_weight_figure_shows_the_fold_mean(folder: Path) -> None:
    results = load_results([folder])
    rows, _ = _raw(folder)
    got = finetune.layer_weights(results.table[results.table["classifier"] == "finetune"])
    weighted = _setting(rows, "clean")
    weighted = weighted[weighted["layer"] == "weighted"]
    expected = np.mean([json.loads(w) for w in weighted["layer_weights"]], axis=0)
    mine = got[got["test_condition"] == "clean"].groupby("index")["weight"].mean()
    assert np.allclose(mine.to_numpy(), expected)


@pytest.mark.slow
def test_without_weighted_finetunes_the_layer_weights_are_left_out_with_a_note(
    tmp_path: Path,
) -> None:
    spec = FinetuneSpec(weighted=False, normed_probe=False, settings=SETTINGS[:1])
    folder = write_folder(tmp_path / "results", spec)
    summary = write_report(folder, tmp_path / "out" / "report.html", n_boot=N_BOOT)
    assert "Learned layer weights" in summary.left_out
    assert not list((tmp_path / "out" / "figures").glob("layer-weights*"))
    assert list((tmp_path / "out" / "figures").glob("training-curves*"))


def _chosen_on_other_folds(probes: pd.DataFrame) -> pd.DataFrame:
    """Per fold, by hand: the (classifier, layer) with the best mean UA over the other folds."""
    chosen = []
    for fold in sorted(probes["fold"].unique()):
        others = probes[probes["fold"] != fold]
        means = others.groupby(["classifier", "layer"])["ua"].mean()
        top = means[means == means.max()].index
        classifier, layer = sorted(top, key=lambda key: (key[0], int(key[1])))[0]
        mine = probes[(probes["fold"] == fold) & (probes["classifier"] == classifier)]
        chosen.append(mine[mine["layer"] == layer].iloc[0])
    return pd.DataFrame(chosen).set_index("fold")


def test_without_validation_scores_the_layer_is_chosen_on_the_other_folds(tmp_path: Path) -> None:
    from scipy import stats

    folder = write_folder(
        tmp_path / "results", FinetuneSpec(val_ua=False, weighted=False, settings=SETTINGS[:1])
    )
    summary, pairs = _comparison(folder)
    rows, _ = _raw(folder)
    probes = rows[(rows["classifier"] != "finetune") & ~rows["speaker_norm"].astype(bool)]
    chosen = _chosen_on_other_folds(probes)
    got = summary.iloc[0]
    assert got["reference"] == finetune.HOW_OTHER_FOLDS
    assert got["selected_mean"] == pytest.approx(chosen["ua"].mean())
    tuned = rows[rows["classifier"] == "finetune"].set_index("fold")["ua"]
    difference = tuned - chosen["ua"]
    assert got["difference"] == pytest.approx(difference.mean())
    half = stats.t.ppf(0.975, 2) * difference.std(ddof=1) / np.sqrt(3)
    assert got["difference_low"] == pytest.approx(difference.mean() - half)
    assert got["difference_high"] == pytest.approx(difference.mean() + half)
    # the last layer (the old reference) scores differently: the difference is not its
    means = probes.groupby(["classifier", "layer"])["ua"].mean()
    last = probes[(probes["classifier"] == means.idxmax()[0]) & (probes["layer"] == "4")]
    assert got["last_mean"] == pytest.approx(last["ua"].mean())
    assert got["difference"] != pytest.approx((tuned - last.set_index("fold")["ua"]).mean())
    assert list(pairs["probe_layer"]) == list(chosen.loc[pairs["fold"], "layer"])
    assert (pairs["speakers"] == finetune.SAME).all()
    text = finetune.format_comparison(summary, {"facebook/wav2vec2-base": "w2v"}).iloc[0]
    layer = chosen["layer"].iloc[0] if chosen["layer"].nunique() == 1 else "/".join(chosen["layer"])
    lines = text[finetune.SELECTED_COLUMN].split("\n")
    assert lines[-1] == "on other folds" and lines[-3].endswith(layer)
    assert "vs chosen layer" in text[finetune.DIFFERENCE_COLUMN]
    low, high = 100 * got["difference_low"], 100 * got["difference_high"]
    assert f"[{low:+.1f}, {high:+.1f}]" in text[finetune.DIFFERENCE_COLUMN]


def test_a_split_without_other_folds_gets_no_chosen_layer_and_no_difference(
    tmp_path: Path,
) -> None:
    folder = write_folder(
        tmp_path / "results", FinetuneSpec(val_ua=False, weighted=False, settings=SETTINGS[:1])
    )
    rows, _ = _raw(folder)
    probes = finetune.comparable_probes(normalise(rows), normalise(rows).iloc[-1])
    assert not finetune.other_folds_layers(probes).rows.empty
    for split in ("random", "cross-corpus"):
        assert finetune.other_folds_layers(probes.assign(split=split)).rows.empty
    one_fold = probes[probes["fold"] == "0"]
    assert finetune.other_folds_layers(one_fold).rows.empty
    summary, _ = _comparison(folder)
    lonely = summary.assign(
        reference=finetune.NO_CHOICE, paired=0, selected_mean=np.nan, difference=np.nan
    )
    text = finetune.format_comparison(lonely, {"facebook/wav2vec2-base": "w2v"}).iloc[0]
    assert text[finetune.DIFFERENCE_COLUMN] == "n/a\nno layer chosen on training speakers"
    assert "no other folds to choose on" in text[finetune.SELECTED_COLUMN]


def test_each_fold_difference_has_a_paired_bootstrap_interval(folder: Path) -> None:
    from ssl_ser.classify import compare

    from .finetune_data import CLASSES

    _, pairs = _comparison(folder)
    rows, predictions = _raw(folder)
    for _, pair in pairs[pairs["test_condition"] == "clean"].iterrows():
        tuned = rows[
            (rows["classifier"] == "finetune")
            & (rows["layer"] == pair["layer"])
            & (rows["fold"] == pair["fold"])
            & (rows["test_condition"] == "clean")
        ]
        probe = rows[
            (rows["classifier"] != "finetune")
            & ~rows["speaker_norm"].astype(bool)
            & (rows["layer"] == pair["probe_layer"])
            & (rows["fold"] == pair["fold"])
            & (rows["test_condition"] == "clean")
            & (rows["ua"] == pair["probe"])
        ]
        a = predictions[predictions["cell_id"] == tuned["cell_id"].iloc[0]].set_index("utt_id")
        b = predictions[predictions["cell_id"] == probe["cell_id"].iloc[0]].set_index("utt_id")
        b = b.loc[a.index]
        codes = {name: i for i, name in enumerate(CLASSES)}
        expected = compare.paired_bootstrap(
            a["label"].map(codes).to_numpy(),
            a["predicted"].map(codes).to_numpy(),
            b["predicted"].map(codes).to_numpy(),
            np.zeros(len(a), dtype=np.int64),  # the hand-made predictions store no speakers
            len(CLASSES),
            n_boot=N_BOOT,
            seed=0,
        )
        assert (pair["low"], pair["high"]) == pytest.approx((expected.low, expected.high))
        assert pair["low"] <= pair["finetune"] - pair["probe"] <= pair["high"]
    text = finetune.format_folds(pairs, {"facebook/wav2vec2-base": "w2v"})
    first = pairs.iloc[0]
    expected = f"[{100 * first['low']:+.1f}, {100 * first['high']:+.1f}]"
    assert expected in text[finetune.FOLD_DIFFERENCE_COLUMN].iloc[0]


def test_a_one_layer_curve_gets_whole_layer_ticks(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn = []
    original = figures.save_figure
    monkeypatch.setattr(
        figures, "save_figure", lambda fig, *a, **k: drawn.append(fig) or original(fig, *a, **k)
    )
    results = load_results([folder])
    cells = cell_summary(results.table)
    group = next(  # the speaker-normalised probe was run at layer 3 only
        g
        for g in find_groups(cells, results.table, results.classes)
        if g.value("speaker_norm") == "True"
    )
    figures.layer_curves(cells[group.mask(cells)], {EXTRACTOR: "w2v"}, tmp_path, group)
    for ax in (ax for ax in drawn[0].axes if ax.get_visible() and ax.get_title()):
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert 3 in ticks and all(float(t).is_integer() for t in ticks)


def test_few_shot_counts_match_whatever_their_number_type() -> None:
    rows = pd.DataFrame(
        [
            {"classifier": "logreg", "layer": "2", "shots": "5.0", "ua": 0.5},
            {"classifier": "logreg", "layer": "3", "shots": "4", "ua": 0.5},
        ]
    )
    for column in (*finetune.COMPARED, *finetune.MATCH):
        if column != "shots":
            rows[column] = "x"
    cell = pd.Series({**rows.iloc[0].to_dict(), "classifier": "finetune", "shots": "5"})
    assert list(finetune.comparable_probes(rows, cell)["layer"]) == ["2"]


def test_searched_probes_are_compared_with_finetunes_of_the_no_search_group(
    tmp_path: Path,
) -> None:
    spec = FinetuneSpec(probe_search=True, weighted=False, settings=SETTINGS[:1])
    folder = write_folder(tmp_path / "results", spec)
    summary, _ = _comparison(folder)
    rows, predictions = _raw(folder)
    probes = rows[(rows["classifier"] != "finetune") & ~rows["speaker_norm"].astype(bool)]
    assert probes["search"].all()
    selected = _expected_selected(probes)
    got = summary.iloc[0]
    assert got["search"] == "False" and "searched" in got["selected_what"]
    assert got["selected_mean"] == pytest.approx(selected["ua"].mean())
    assert got["selected_pooled"] == pytest.approx(_pooled_ua(selected, predictions))


def test_finetunes_differing_only_in_a_recorded_setting_are_two_cells(tmp_path: Path) -> None:
    spec = {"weighted": False, "settings": SETTINGS[:1]}
    first = write_folder(tmp_path / "a", FinetuneSpec(**spec, extra={"setting": "default"}))
    second = write_folder(
        tmp_path / "b",
        FinetuneSpec(**spec, probes=False, extra={"setting": "learning_rate=1e-05, warmup=0.2"}),
    )
    cells = cell_summary(load_results([first, second]).table)
    tuned = cells[cells["classifier"] == "finetune"]
    shown = "linear head · feature encoder frozen · 4 epochs max · lr 1e-05"
    assert sorted(tuned["finetune_setup"]) == [shown, f"{shown} · warmup=0.2"]
    assert (tuned["folds"] == 3).all()


@pytest.mark.slow
def test_a_collapsed_finetune_is_marked_in_both_tables(tmp_path: Path) -> None:
    spec = FinetuneSpec(collapsed=("1",), weighted=False, normed_probe=False, settings=SETTINGS[:1])
    folder = write_folder(tmp_path / "results", spec)
    summary, pairs = _comparison(folder)
    assert pairs.loc[pairs["fold"] == "1", "collapsed"].all()
    assert not pairs.loc[pairs["fold"] != "1", "collapsed"].any()
    assert set(summary["collapsed"]) == {"collapsed: one class predicted in 1/3 folds"}
    names = {EXTRACTOR: "w2v"}
    table = finetune.format_comparison(summary, names)
    assert (
        table[finetune.FINETUNE_COLUMN]
        .str.endswith("⚠ collapsed: one class predicted in 1/3 folds")
        .all()
    )
    assert not table[finetune.SELECTED_COLUMN].str.contains("collapsed").any()
    folds = finetune.format_folds(pairs, names)
    marked = folds["Fine-tuned UA %"].str.contains("⚠ collapsed: one class predicted")
    assert list(folds.loc[marked, "Fold"].unique()) == ["1"]
    out = tmp_path / "out" / "report.html"
    write_report(folder, out, n_boot=N_BOOT)
    assert "⚠ collapsed: one class predicted in 1/3 folds" in out.with_suffix(".md").read_text()


def test_two_finetune_settings_have_distinguishable_legend_handles() -> None:
    import matplotlib

    matplotlib.use("Agg")
    tuned = pd.DataFrame(
        {
            "layer": ["all", "all", "all"],
            "finetune_setup": ["lr 1e-05", "lr 0.0001", "lr 0.001"],
            "ua_mean": [0.5, 0.6, 0.7],
        }
    )
    fig = figures._new_figure(8, 4)
    ax = fig.subplots()
    figures._finetune_lines(ax, tuned)
    figures._figure_legend(fig, [ax])
    (legend,) = fig.legends
    handle_points = legend.handlelength * legend._fontsize
    patterns = {}
    for line, text in zip(legend.get_lines(), legend.get_texts(), strict=True):
        offset, dashes = line._dash_pattern  # on/off lengths in points, scaled by the width
        patterns[text.get_text()] = tuple(dashes) if dashes else ()
        if dashes:  # a whole dash cycle, gap included, is drawn inside the handle
            assert sum(dashes) <= handle_points, (text.get_text(), dashes, handle_points)
    assert len(patterns) == 3 and len(set(patterns.values())) == 3


def _drop_tables(folder: Path) -> None:
    for name in ("results.parquet", "results.csv", "predictions.parquet", "summary.csv"):
        (folder / name).unlink()


@pytest.mark.slow
def test_an_interrupted_run_is_reported_from_its_stored_cells(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ssl_ser.cli.main import cli

    spec = FinetuneSpec(weighted=False, settings=SETTINGS[:1], normed_probe=False)
    whole = write_folder(tmp_path / "whole", spec)
    stopped = write_folder(tmp_path / "stopped" / "results", spec)
    _drop_tables(stopped)
    (stopped / "checkpoints" / "abc123" / "epoch-002").mkdir(parents=True)
    expected, got = load_results([whole]), load_results([stopped])
    assert expected.incomplete == []
    (note,) = got.incomplete
    assert "stopped before writing its results table" in note and "1 fold(s) were still" in note
    n_folds = len(pd.read_parquet(whole / "results.parquet"))
    assert f"{n_folds} finished cell(s), each one fold of one setting, read from" in note
    assert f"read from {stopped / 'cells'}" in note
    key = ["cell_id", "fold"]
    columns = ["ua", "wa", "val_ua", "layer", "classifier"]
    pd.testing.assert_frame_equal(
        got.table.sort_values(key)[[*key, *columns]].reset_index(drop=True),
        expected.table.sort_values(key)[[*key, *columns]].reset_index(drop=True),
    )
    assert len(got.predictions) == len(expected.predictions)
    full, _ = _comparison(whole)
    partial, _ = _comparison(stopped)
    pd.testing.assert_series_equal(partial["difference"], full["difference"])
    out = tmp_path / "report" / "report.html"
    result = CliRunner().invoke(cli, ["report", str(stopped.parent), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert (
        "is incomplete" in out.read_text() and "is incomplete" in out.with_suffix(".md").read_text()
    )


def test_a_table_older_than_its_stored_cells_is_set_aside_for_them(tmp_path: Path) -> None:
    from ssl_ser.classify.results import CellStore, write_tables

    spec = FinetuneSpec(weighted=False, settings=SETTINGS[:1], normed_probe=False)
    folder = write_folder(tmp_path / "results", spec)
    rows = pd.read_parquet(folder / "results.parquet")
    newest = rows.loc[rows["classifier"] == "finetune", "cell_id"].iloc[-1]
    aside = tmp_path / "aside"
    aside.mkdir()
    for suffix in (".json", ".parquet"):  # the table is rebuilt without the newest fold...
        (folder / "cells" / f"{newest}{suffix}").rename(aside / f"{newest}{suffix}")
    write_tables(CellStore(folder), n_boot=10, seed=0)
    for suffix in (".json", ".parquet"):  # ...which is stored afterwards, then the run stops
        (aside / f"{newest}{suffix}").rename(folder / "cells" / f"{newest}{suffix}")
    results = load_results([folder])
    (note,) = results.incomplete
    assert "1 stored fold(s) are newer than its results table" in note
    assert newest in set(results.table["cell_id"]) and len(results.table) == len(rows)
    assert newest in set(results.predictions["cell_id"])


def test_a_folder_without_table_or_cells_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "empty" / "cells").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"empty holds no results table and no finished cells"):
        load_results([tmp_path / "empty"])


@pytest.mark.slow
def test_curve_panels_wrap_their_setup_and_draw_chance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ssl_ser.report import finetune_figures

    other = json.dumps({**PARAMS, "freeze": "none", "head": "mlp"}, sort_keys=True)
    first = write_folder(tmp_path / "a", FinetuneSpec(weighted=False, settings=SETTINGS[:1]))
    second = write_folder(
        tmp_path / "b",
        FinetuneSpec(weighted=False, probes=False, settings=SETTINGS[:1], extra={"params": other}),
    )
    drawn = []
    original = finetune_figures.save_figure

    def keep(fig, *args, **kwargs):
        drawn.append(fig)
        return original(fig, *args, **kwargs)

    monkeypatch.setattr(finetune_figures, "save_figure", keep)
    results = load_results([first, second])
    cells = cell_summary(results.table)
    group = next(g for g in find_groups(cells, results.table, results.classes))
    names = {EXTRACTOR: "w2v"}
    assert finetune_figures.training_curve_figures(results.table, names, tmp_path, group)
    titled = [ax for ax in drawn[0].axes if ax.get_visible() and ax.get_title()]
    assert len(titled) == 2  # one panel per setup
    for ax in titled:
        lines = ax.get_title().split("\n")
        assert max(len(line) for line in lines) <= finetune_figures.TITLE_WIDTH + 5, lines
        assert "mlp head" in ax.get_title() or "linear head" in ax.get_title()
    chance = [
        line for ax in drawn[0].axes for line in ax.get_lines() if line.get_label() == "chance"
    ]
    assert len(chance) == 2 and all(np.allclose(line.get_ydata(), 25.0) for line in chance)


def test_a_probe_started_finetune_is_compared_with_the_probe_it_started_from(
    tmp_path: Path,
) -> None:
    """--from-probe read layer 2: Δ is against logreg at layer 2, not a layer chosen otherwise."""
    started = {**PARAMS, "init": "probe"}
    folder = write_folder(
        tmp_path / "results",
        FinetuneSpec(
            weighted=False,
            settings=SETTINGS[:1],
            extra={"layer": "2", "params": json.dumps(started, sort_keys=True)},
        ),
    )
    summary, pairs = _comparison(folder)
    rows, _ = _raw(folder)
    probes = rows[(rows["classifier"] == "logreg") & ~rows["speaker_norm"].astype(bool)]
    start = probes[probes["layer"] == "2"].set_index("fold")["ua"]
    got = summary.iloc[0]
    assert got["reference"] == finetune.HOW_STARTED
    assert got["selected_mean"] == pytest.approx(start.mean())
    tuned = rows[rows["classifier"] == "finetune"].set_index("fold")["ua"]
    assert got["difference"] == pytest.approx((tuned - start).mean())
    assert set(pairs["probe_layer"]) == {"2"}
    text = finetune.format_comparison(summary, {EXTRACTOR: "w2v"}).iloc[0]
    assert text[finetune.SELECTED_COLUMN].split("\n")[-1] == "its starting probe"
    # a randomly started fine-tune of the same layer keeps the validation-chosen layer
    folder = write_folder(
        tmp_path / "random",
        FinetuneSpec(weighted=False, settings=SETTINGS[:1], extra={"layer": "2"}),
    )
    assert _comparison(folder)[0].iloc[0]["reference"] == finetune.HOW_VALIDATION
