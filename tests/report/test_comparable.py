"""Issue 8: a report over several result folders compares only what is comparable.

Groups (label set, speaker norm, split, search, seed), duplicate cells,
collapsed classifiers, pooled point estimates beside their intervals, pipeline
output folders, and figures that fit their titles and legends.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.metrics import balanced_accuracy_score, f1_score

from ssl_ser.cli.main import cli
from ssl_ser.errors import ConfigError
from ssl_ser.report import build_document, figures, write_report
from ssl_ser.report.build import ReportSummary, results_text, speaker_groupings
from ssl_ser.report.load import GROUP, PIPELINE_RESULTS, load_results
from ssl_ser.report.tables import cell_predictions

from .conftest import COLLAPSED_TO, Spec, write

if TYPE_CHECKING:
    from matplotlib.transforms import Bbox

CELL = ["extractor", "train_corpus", "train_condition", "test_corpus", "test_condition", "split"]
CONFIG = ["layer", "pooling", "classifier"]
# one SSL model and one baseline, one corpus's condition pairs and another corpus, 2 folds
SMALL = {"cross": False, "extractors": ("facebook/wav2vec2-base", "mfcc"), "folds": 2}
# the baseline alone: a report of one figure per group (the confusion matrix)
BASELINE = {**SMALL, "extractors": ("mfcc",)}


@dataclass(frozen=True)
class TwoGroups:
    """One report over a 4-class run without speaker norm and a 7-class run with it."""

    root: Path
    summary: ReportSummary
    four: pd.DataFrame
    seven: pd.DataFrame
    # the frames every matrix and curve panel drew
    drawn: list[pd.DataFrame]
    # (figure name, drawn box in inches, figure width, figure height) of every saved figure
    fitted: list[tuple[str, Bbox, float, float]]


@pytest.fixture(scope="module")
def two_groups(tmp_path_factory: pytest.TempPathFactory) -> TwoGroups:
    """The report is drawn once; spies record what its panels drew and how its figures fit."""
    root = tmp_path_factory.mktemp("two-groups")
    four, _ = write(root / "run" / "results", Spec(**SMALL))
    seven, _ = write(root / "probe" / "results", Spec(**SMALL, labels="all", speaker_norm=True))
    drawn: list[pd.DataFrame] = []
    fitted: list[tuple[str, Bbox, float, float]] = []
    original_save = figures.save_figure

    def save(fig, out_dir, name, title, caption, group=None):
        item = original_save(fig, out_dir, name, title, caption, group)
        width, height = fig.get_size_inches()
        fitted.append((item.name, fig.get_tightbbox(fig.canvas.get_renderer()), width, height))
        return item

    with pytest.MonkeyPatch.context() as patch:
        for name in ("_matrix_panel", "_layer_panel"):
            original = getattr(figures, name)

            def spy(ax, frame, *args, _original=original, **kwargs):
                drawn.append(frame)
                return _original(ax, frame, *args, **kwargs)

            patch.setattr(figures, name, spy)
        patch.setattr(figures, "save_figure", save)
        # the folders above results/, as a pipeline's output is given
        summary = write_report([root / "run", root / "probe"], root / "report.html", n_boot=50)
    return TwoGroups(root, summary, four, seven, drawn, fitted)


def _best_ua(table: pd.DataFrame) -> float:
    """The best mean UA over folds of any cell of `table` (an independent computation)."""
    return float(table.groupby(CELL + CONFIG)["ua"].mean().max())


@pytest.mark.slow
def test_label_sets_and_speaker_norm_are_never_compared(two_groups: TwoGroups) -> None:
    root, drawn = two_groups.root, two_groups.drawn
    # every matrix panel and curve panel holds cells of one group only
    assert len(drawn) > 4
    for frame in drawn:
        assert all(frame[column].nunique() == 1 for column in GROUP if column in frame)
    html = (root / "report.html").read_text()
    # one headline per group, each naming its group and holding that group's best UA
    headlines = re.findall(r'<p class="highlight">(.*?)</p>', html)
    assert len(headlines) == 2
    (h4,) = [h for h in headlines if "4 classes (basic4" in h]
    (h7,) = [h for h in headlines if "7 classes (all" in h]
    assert "no speaker norm" in h4 and "speaker z-norm" in h7
    assert f"best UA {100 * _best_ua(two_groups.four):.1f}" in h4
    assert f"best UA {100 * _best_ua(two_groups.seven):.1f}" in h7
    assert "(+1 other group(s) in the report)" in two_groups.summary.best
    # one best table per group, whose rows hold only that group's numbers
    tables = dict(re.findall(r'<table data-table="(best-cells-[^"]+)">(.*?)</table>', html, re.S))
    assert set(tables) == {
        "best-cells-speaker-kfold-basic4-no-norm",
        "best-cells-speaker-kfold-all-norm",
    }
    rows7 = re.findall(r"<tr>(.*?)</tr>", tables["best-cells-speaker-kfold-all-norm"], re.S)[1:]
    assert rows7 and all("speaker z-norm" in row for row in rows7)
    rows4 = re.findall(r"<tr>(.*?)</tr>", tables["best-cells-speaker-kfold-basic4-no-norm"], re.S)
    assert rows4[1:] and not any("speaker z-norm" in row for row in rows4)
    # separate condition matrices per group, each heading naming its group
    assert {p.stem for p in (root / "figures").glob("conditions-*.png")} == {
        "conditions-speaker-kfold-basic4-no-norm",
        "conditions-speaker-kfold-all-norm",
    }
    assert len(re.findall(r'<h3 class="group">', html)) >= 8


@pytest.mark.slow
def test_the_same_cells_given_twice_are_counted_once(tmp_path: Path) -> None:
    write(tmp_path / "run" / "results", Spec(**BASELINE, conditions=False))
    shutil.copytree(tmp_path / "run" / "results", tmp_path / "probe" / "results")
    once = load_results([tmp_path / "run" / "results"])
    twice = load_results([tmp_path / "run" / "results", tmp_path / "probe" / "results"])
    assert len(twice.table) == len(once.table)
    assert len(twice.predictions) == len(once.predictions)
    (line,) = twice.duplicates
    assert f"{len(once.table)} result row(s)" in line
    assert str(tmp_path / "run" / "results") in line and str(tmp_path / "probe" / "results") in line
    cell = once.table.iloc[0]
    assert len(cell_predictions(twice.table, twice.predictions, cell)) == len(
        cell_predictions(once.table, once.predictions, cell)
    )
    # the intervals and fold spreads are those of one copy
    alone = write_report(tmp_path / "run" / "results", tmp_path / "a" / "r.html", n_boot=50)
    both = write_report(
        [tmp_path / "run" / "results", tmp_path / "probe" / "results"],
        tmp_path / "b" / "r.html",
        n_boot=50,
    )
    assert alone.best == both.best
    html = (tmp_path / "b" / "r.html").read_text()
    assert "each is counted once" in html


def test_one_cell_with_different_numbers_is_refused_naming_the_folders(tmp_path: Path) -> None:
    table, _ = write(tmp_path / "run" / "results", Spec(**SMALL, conditions=False))
    shutil.copytree(tmp_path / "run" / "results", tmp_path / "probe" / "results")
    table.loc[3, "ua"] += 0.01
    table.to_parquet(tmp_path / "probe" / "results" / "results.parquet", index=False)
    with pytest.raises(ConfigError) as error:
        load_results([tmp_path / "run" / "results", tmp_path / "probe" / "results"])
    message = str(error.value)
    assert f"cell {table.loc[3, 'cell_id']}" in message and "different ua values" in message
    assert str(tmp_path / "run" / "results") in message
    assert str(tmp_path / "probe" / "results") in message


def test_one_cell_run_twice_under_other_ids_is_refused(tmp_path: Path) -> None:
    table, _ = write(tmp_path / "a" / "results", Spec(**SMALL, conditions=False))
    other = table.assign(cell_id=table["cell_id"] + "x")  # same cell, other data or options
    (tmp_path / "b" / "results").mkdir(parents=True)
    other.to_parquet(tmp_path / "b" / "results" / "results.parquet", index=False)
    with pytest.raises(ConfigError, match="run more than once with different data") as error:
        load_results([tmp_path / "a" / "results", tmp_path / "b" / "results"])
    assert str(tmp_path / "b" / "results") in str(error.value)


def test_collapsed_classifiers_are_flagged_and_speaker_norm_suggested(tmp_path: Path) -> None:
    _, predictions = write(
        tmp_path / "results", Spec(**BASELINE, collapse=("clean", "telephone"), search=False)
    )
    loaded = load_results([tmp_path / "results"])
    # independent count: distinct predicted classes per stored fold
    distinct = predictions.groupby("cell_id")["predicted"].nunique()
    expected = loaded.table["cell_id"].map(distinct)
    assert (loaded.table["predicted_classes"] == expected).all()
    collapsed = loaded.table[expected == 1]
    assert len(collapsed) and set(collapsed["test_condition"]) == {"telephone"}
    assert set(collapsed["train_condition"]) == {"clean"}

    document = build_document(loaded, tmp_path / "figures", n_boot=0)
    (banner,) = [w for w in document.warnings if "collapsed" in w]
    assert "--speaker-norm" in banner
    n_cells = collapsed.groupby(CELL + CONFIG).ngroups
    assert banner.startswith(f"{n_cells} cell(s) collapsed")
    best = next(t for t in document.tables if t.name == "best-cells").frame
    telephone = best["Train → test"].str.contains("clean → telephone")
    assert best.loc[telephone, "Best configuration"].str.contains("⚠ collapsed").all()
    assert not best.loc[~telephone, "Best configuration"].str.contains("collapsed").any()
    assert (tmp_path / "figures" / "conditions.png").exists()


def test_collapse_is_read_from_the_confusion_column_without_predictions(tmp_path: Path) -> None:
    table, _ = write(
        tmp_path / "results",
        Spec(**SMALL, collapse=("clean", "telephone"), predictions=False, conditions=True),
    )
    classes = ["angry", "happy", "neutral", "sad"]
    column = classes.index(COLLAPSED_TO)
    collapsed = (table["train_condition"] == "clean") & (table["test_condition"] == "telephone")
    matrix = [[6 if j == column else 0 for j in range(4)] for _ in range(4)]
    table["confusion"] = np.where(
        collapsed, str(matrix), "[[6, 0, 0, 0], [0, 6, 0, 0], [0, 0, 6, 0], [0, 0, 0, 6]]"
    )
    table.to_parquet(tmp_path / "results" / "results.parquet", index=False)
    loaded = load_results([tmp_path / "results"])
    assert (loaded.table["predicted_classes"] == np.where(collapsed, 1, 4)).all()


@pytest.mark.slow
def test_the_number_beside_an_interval_is_the_pooled_one(tmp_path: Path) -> None:
    table, predictions = write(tmp_path / "results", Spec(**SMALL, conditions=False))
    loaded = load_results([tmp_path / "results"])
    document = build_document(loaded, tmp_path / "figures", n_boot=200)
    best = next(t for t in document.tables if t.name == "best-cells").frame
    header = next(c for c in best.columns if c.startswith("Macro-F1 %"))
    assert "mean ± std over folds" in header and "95% bootstrap CI" in header
    # the pooled macro-F1 of each row, computed independently with scikit-learn
    for _, row in best.iterrows():
        spread, pooled_line, ci_line = row[header].split("\n")
        found = re.fullmatch(
            r"pooled (\d+\.\d)\n95% CI (\d+\.\d)–(\d+\.\d)", f"{pooled_line}\n{ci_line}"
        )
        assert found, row[header]
        pooled, low, high = map(float, found.groups())
        assert low <= pooled <= high
        extractor = next(e for e in table["extractor"].unique() if row["Extractor"] in e)
        corpus = row["Train → test"].split(" · ")[0]
        config = row["Best configuration"].split(" · ")
        layer = config[0].removeprefix("layer ") if config[0].startswith("layer ") else "0"
        mine = table[
            (table["extractor"] == extractor)
            & (table["train_corpus"] == corpus)
            & (table["layer"] == layer)
            & (table["classifier"] == config[-2])
        ]
        rows = predictions[predictions["cell_id"].isin(mine["cell_id"])]
        expected = f1_score(rows["label"], rows["predicted"], average="macro")
        assert pooled == pytest.approx(100 * expected, abs=0.051)
        fold_mean = float(spread.split(" ± ")[0])
        assert fold_mean == pytest.approx(100 * mine["macro_f1"].mean(), abs=0.051)
        ua = balanced_accuracy_score(rows["label"], rows["predicted"])
        assert (
            f"pooled {100 * ua:.1f}" in row[next(c for c in best.columns if c.startswith("UA %"))]
        )


@pytest.mark.slow
def test_a_pipeline_output_folder_is_accepted(tmp_path: Path) -> None:
    from ssl_ser.pipelines.plan import RESULTS_FOLDER

    assert PIPELINE_RESULTS == RESULTS_FOLDER
    out = tmp_path / "probe-out"
    write(out / PIPELINE_RESULTS, Spec(**BASELINE, conditions=False))
    (out / "manifests").mkdir()
    result = CliRunner().invoke(
        cli, ["report", str(out), "-o", str(tmp_path / "r.html"), "--bootstrap", "0"]
    )
    assert result.exit_code == 0, result.output
    # several seeds (ser run's OUT/seed-N/results): all read, never averaged together
    runs = tmp_path / "run-out"
    for seed in (0, 1):
        write(
            runs / f"seed-{seed}" / PIPELINE_RESULTS, Spec(**BASELINE, conditions=False, seed=seed)
        )
    loaded = load_results([runs])
    assert [p.parent.parent.name for p in loaded.sources] == ["seed-0", "seed-1"]
    document = build_document(loaded, tmp_path / "figures", n_boot=0)
    assert len(document.highlights) == 2
    assert [re.search(r"· (seed \d):", h).group(1) for h in document.highlights] == [
        "seed 0",
        "seed 1",
    ]


@pytest.mark.slow
def test_figures_fit_their_titles_and_legends(two_groups: TwoGroups) -> None:
    for name, box, width, height in two_groups.fitted:
        assert box.x0 >= -0.05 and box.x1 <= width + 0.05, (name, box, width)
        assert box.y0 >= -0.05 and box.y1 <= height + 0.05, (name, box, height)
    # one layered model and one corpus: the drop figure has a single narrow panel
    checked = [name for name, *_ in two_groups.fitted]
    assert any(name.startswith("condition-drop-speaker-kfold") for name in checked), checked


@pytest.mark.slow
def test_header_lists_results_one_per_line_and_each_grouping_once(two_groups: TwoGroups) -> None:
    root = two_groups.root
    table = pd.DataFrame(
        {"grouping": ["emodb:speaker", "emodb:speaker,emovo:speaker", "emovo:speaker"]}
    )
    assert speaker_groupings(table) == "emodb:speaker, emovo:speaker"
    paths = [root / "run" / "results" / "results.parquet", root / "p" / "results.csv"]
    assert results_text(paths).split("\n") == [
        f"in {root}:",
        "run/results/results.parquet",
        "p/results.csv",
    ]
    html = (root / "report.html").read_text()
    results = re.search(r"<dt>Results</dt><dd>(.*?)</dd>", html).group(1)
    assert results.split("<br>") == [
        f"in {root}:",
        "run/results/results.parquet",
        "probe/results/results.parquet",
    ]
    assert html.count("<dt>Speaker grouping</dt>") == 1


@pytest.mark.slow
def test_poolings_are_named_and_never_mixed_in_one_line_or_matrix(
    tmp_path: Path, monkeypatch
) -> None:
    references: list[pd.DataFrame] = []
    matrices: list[pd.DataFrame] = []
    original_refs, original_matrix = figures._reference_lines, figures._matrix_panel

    def refs(ax, frame, *args):
        references.append(frame)
        return original_refs(ax, frame, *args)

    def matrix(ax, frame, *args, **kwargs):
        matrices.append(frame)
        return original_matrix(ax, frame, *args, **kwargs)

    monkeypatch.setattr(figures, "_reference_lines", refs)
    monkeypatch.setattr(figures, "_matrix_panel", matrix)
    table, predictions = write(tmp_path / "results", Spec(**SMALL, search=False))
    # the baseline pooled with mean+std (the classic default); the SSL model with both
    both = table[table["extractor"] != "mfcc"].assign(pooling="mean+std")
    both = both.assign(cell_id=both["cell_id"] + "s", ua=both["ua"] * 0.9)
    moved = predictions[predictions["cell_id"].isin(both["cell_id"].str[:-1])]
    moved = moved.assign(cell_id=moved["cell_id"] + "s")
    table.loc[table["extractor"] == "mfcc", "pooling"] = "mean+std"
    pd.concat([table, both]).to_parquet(tmp_path / "results" / "results.parquet", index=False)
    pd.concat([predictions, moved]).to_parquet(tmp_path / "results" / "predictions.parquet")
    document = build_document(load_results([tmp_path / "results"]), tmp_path / "f", n_boot=0)

    assert len(document.highlights) == 1  # pooling alone does not split a group
    assert references and all(
        set(r.loc[r["classic"], "pooling"]) == {"mean+std"} for r in references
    )
    assert all(m.groupby("extractor")["pooling"].nunique().max() == 1 for m in matrices)
    ssl = [m for m in matrices if (m["extractor"] != "mfcc").all()]
    assert {m["pooling"].iloc[0] for m in ssl} == {"mean", "mean+std"}
    best = next(t for t in document.tables if t.name == "best-cells").frame
    mfcc = best[best["Extractor"] == "mfcc"]
    assert mfcc["Best configuration"].str.startswith("mean+std · ").all()


@pytest.mark.slow
def test_a_few_shot_probe_with_several_shot_counts_reports_each_apart(tmp_path: Path) -> None:
    from ssl_ser import corpora, manifest
    from ssl_ser.testing import emodb, emovo

    args = ["probe", "--model", "mfcc", "--split", "few-shot", "--test", "emodb"]
    for name, module in (("emodb", emodb), ("emovo", emovo)):
        module.make_tree(tmp_path / name, seconds=0.3)
        table = manifest.write(corpora.load(name, tmp_path / name), tmp_path / f"{name}.csv")
        args += ["--corpus", f"{name}={table}"]
    args += ["--shots", "0,4", "--folds", "2", "--output", str(tmp_path / "fs"), "--no-progress"]
    args += ["--cache-dir", str(tmp_path / "cache")]
    probe = CliRunner().invoke(cli, args)
    assert probe.exit_code == 0, probe.output
    result = CliRunner().invoke(
        cli, ["report", str(tmp_path / "fs"), "-o", str(tmp_path / "r.html"), "--bootstrap", "0"]
    )
    assert result.exit_code == 0, result.output
    html = (tmp_path / "r.html").read_text()
    assert "few-shot split (0 shots)" in html and "few-shot split (4 shots)" in html


def test_the_headline_never_picks_one_corpus_slice_of_a_pooled_fold() -> None:
    from ssl_ser.report.load import normalise
    from ssl_ser.report.tables import cell_summary, overall_best

    rows = []
    for fold in ("0", "1"):
        for test, ua in (("a+b", 0.50), ("a", 0.90), ("b", 0.10)):
            rows.append(
                {
                    "extractor": "mfcc", "layer": "0", "classifier": "logreg",
                    "split": "speaker-kfold", "train_corpus": "a+b", "test_corpus": test,
                    "fold": fold, "ua": ua, "wa": ua, "macro_f1": ua, "cell_id": f"c{fold}",
                }
            )  # fmt: skip
    table = normalise(pd.DataFrame(rows), "results.csv")
    assert table.groupby("test_corpus")["slice"].all().to_dict() == {
        "a": True, "a+b": False, "b": True,
    }  # fmt: skip
    best = overall_best(cell_summary(table))
    assert best["test_corpus"] == "a+b" and best["ua_mean"] == 0.5
