"""`ser report`: figures present and embedded, offline HTML, notes for missing data, numbers."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import warnings
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from ssl_ser.cli.main import cli
from ssl_ser.errors import ConfigError
from ssl_ser.report import figures, write_report
from ssl_ser.report.load import load_results, normalise, normalise_predictions
from ssl_ser.report.tables import (
    best_cells,
    bootstrap_intervals,
    cell_summary,
    with_intervals,
)

from .conftest import CLASSES, Spec, build, write

# The sweep holds two comparable groups (its in-corpus split and its cross-corpus split):
# a figure kind that both groups draw is named after each group.
ALL_FIGURES = {
    "layers-speaker-kfold",
    "layers-cross-corpus",
    "heatmap-speaker-kfold",
    "heatmap-cross-corpus",
    "cross-corpus",
    "conditions",
    "condition-drop",
    "confusion-speaker-kfold",
    "confusion-cross-corpus",
    # the predictions store utterance ids, so layers are tested against the best
    "layer-tests-speaker-kfold",
    "layer-tests-cross-corpus",
}
GROUP_TABLES = ("best-cells-speaker-kfold", "best-cells-cross-corpus")
CELL = ["extractor", "train_corpus", "train_condition", "test_corpus", "test_condition", "split"]
CONFIG = ["layer", "pooling", "classifier"]
N_BOOT = 200


class _Tags(HTMLParser):
    """Every start tag with its attributes, and the text outside tags."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    return parser


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("full")
    table, predictions = write(root / "results", Spec(untrained=False))
    summary = write_report(root / "results", root / "out" / "report.html", n_boot=N_BOOT)
    return root, summary, table, predictions


@pytest.mark.slow
def test_every_figure_is_written_and_embedded(full_report) -> None:
    root, summary, _, _ = full_report
    figures = root / "out" / "figures"
    assert {p.stem for p in figures.glob("*.png")} == ALL_FIGURES
    assert {p.stem for p in figures.glob("*.svg")} == ALL_FIGURES
    html = (root / "out" / "report.html").read_text()
    embedded = {
        attrs["data-figure"]: next_img
        for (tag, attrs), next_img in _figures_with_images(parse(html).tags)
        if tag == "figure"
    }
    assert set(embedded) == ALL_FIGURES
    for name, src in embedded.items():
        prefix = "data:image/svg+xml;base64,"
        assert src.startswith(prefix)
        assert base64.b64decode(src[len(prefix) :]) == (figures / f"{name}.svg").read_bytes()
    markdown = (root / "out" / "report.md").read_text()
    linked = set(re.findall(r"!\[[^\]]*\]\(figures/([^)]+)\.png\)", markdown))
    assert linked == ALL_FIGURES
    assert len(summary.figures) == len(ALL_FIGURES) and summary.left_out == []
    assert summary.line().startswith(f"wrote {root / 'out' / 'report.html'} (11 figures, 8 tables")


def _figures_with_images(tags):
    for i, (tag, attrs) in enumerate(tags):
        if tag == "figure":
            image = next(a for t, a in tags[i + 1 :] if t == "img")
            yield (tag, attrs), image["src"]


@pytest.mark.slow
def test_html_references_nothing_outside_itself(full_report) -> None:
    root, _, _, _ = full_report
    html = (root / "out" / "report.html").read_text()
    tags = parse(html).tags
    assert not [t for t, _ in tags if t in ("script", "link", "iframe", "object", "embed")]
    for tag, attrs in tags:
        for name in ("src", "href", "srcset", "action", "poster", "data"):
            value = attrs.get(name)
            if value is not None:
                assert value.startswith(("#", "data:")), (tag, name, value[:80])
    without_data = re.sub(r"data:[^\"']+", "", html)
    assert not re.search(r"https?:|url\(|@import|file:", without_data, re.IGNORECASE)


@pytest.mark.slow
def test_best_cells_equal_an_independent_pandas_computation(full_report) -> None:
    root, _, table, _ = full_report
    folds = table.groupby(CELL + CONFIG)
    stats = folds[["ua", "wa", "macro_f1"]].agg(["mean", "std"])
    stats.columns = [f"{m}_{s}" for m, s in stats.columns]
    stats = stats.reset_index().sort_values(CELL + CONFIG)
    expected = stats.loc[stats.groupby(CELL)["ua_mean"].idxmax()].set_index(CELL).sort_index()

    got = best_cells(cell_summary(normalise(table))).set_index(CELL).sort_index()
    assert list(got.index) == list(expected.index)
    assert (got[CONFIG] == expected[CONFIG]).all().all()
    for column in ("ua_mean", "ua_std", "wa_mean", "wa_std", "macro_f1_mean", "macro_f1_std"):
        np.testing.assert_allclose(got[column], expected[column], rtol=1e-12, equal_nan=True)

    html = (root / "out" / "report.html").read_text()
    rows = [row for name in GROUP_TABLES for row in _table_rows(html, name)]
    assert len(rows) == len(expected)
    for _, cell in expected.iterrows():
        if np.isnan(cell["ua_std"]):
            text = f"{100 * cell['ua_mean']:.1f}"
        else:
            text = f"{100 * cell['ua_mean']:.1f} ± {100 * cell['ua_std']:.1f}"
        assert any(text in row for row in rows), text
    # The split type sits in every row that holds numbers.
    assert all("speaker-independent" in row for row in rows)


def _table_rows(html: str, name: str) -> list[str]:
    table = re.search(rf'<table data-table="{name}">(.*?)</table>', html, re.DOTALL)
    assert table is not None
    return re.findall(r"<tr>(.*?)</tr>", table.group(1).split("<tbody>")[1], re.DOTALL)


def test_bootstrap_intervals_match_a_resampling_loop() -> None:
    rng = np.random.default_rng(3)
    true = rng.choice(CLASSES, size=90)
    pred = np.where(rng.random(90) < 0.6, true, rng.choice(CLASSES, size=90))
    got = bootstrap_intervals(true, pred, CLASSES, n_boot=N_BOOT, seed=7)

    draws = np.random.default_rng(7).integers(0, len(true), size=(N_BOOT, len(true)))
    scores = {"ua": [], "wa": [], "macro_f1": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # resamples that miss a class
        for rows in draws:
            t, p = true[rows], pred[rows]
            scores["ua"].append(balanced_accuracy_score(t, p))
            scores["wa"].append(accuracy_score(t, p))
            scores["macro_f1"].append(f1_score(t, p, average="macro"))
    for metric, values in scores.items():
        low, high = np.percentile(values, [2.5, 97.5])
        assert got[metric] == pytest.approx((low, high), abs=1e-12), metric


@pytest.mark.slow
def test_intervals_of_the_best_cells_come_from_their_pooled_predictions(full_report) -> None:
    _, _, table, predictions = full_report
    results_table = normalise(table)
    best = best_cells(cell_summary(results_table)).head(3)
    got = with_intervals(
        best, results_table, normalise_predictions(predictions), CLASSES, n_boot=N_BOOT
    )
    for _, cell in got.iterrows():
        mask = np.ones(len(table), dtype=bool)
        for column in CELL + CONFIG:
            mask &= table[column].astype(str).to_numpy() == str(cell[column])
        ids = set(table.loc[mask, "cell_id"])
        assert len(ids) == cell["folds"]
        rows = predictions[predictions["cell_id"].isin(ids)]
        expected = bootstrap_intervals(rows["label"], rows["predicted"], CLASSES, n_boot=N_BOOT)
        for metric in ("ua", "wa", "macro_f1"):
            bounds = (cell[f"{metric}_low"], cell[f"{metric}_high"])
            assert bounds == pytest.approx(expected[metric]), metric
        assert cell["ua_low"] < cell["ua_high"]


@pytest.mark.slow
def test_figures_without_data_are_left_out_with_a_note(tmp_path: Path) -> None:
    write(tmp_path / "results", Spec(conditions=False, cross=False, predictions=False))
    summary = write_report(tmp_path / "results", tmp_path / "report.html", n_boot=N_BOOT)
    drawn = {p.stem for p in (tmp_path / "figures").glob("*.png")}
    assert drawn == {"layers-speaker-kfold", "heatmap-speaker-kfold"}
    html = (tmp_path / "report.html").read_text()
    notes = re.findall(r'<aside class="note"><strong>(.*?)\.</strong> (.*?)</aside>', html)
    titles = {title for title, _ in notes}
    assert {
        "Cross-corpus matrix",
        "Clean vs telephone: condition matrix",
        "Clean vs telephone: drop per layer",
        "Confusion matrix",
    } <= titles
    assert all(text.startswith("Left out:") for _, text in notes)
    assert 'data-figure="confusion"' not in html
    assert "95% CI n/a" in html  # no predictions: intervals say so instead of inventing one
    assert set(summary.left_out) >= titles - {"Chosen hyperparameters"}


def test_classic_only_results_leave_out_the_layer_figures(tmp_path: Path) -> None:
    write(tmp_path / "results", Spec(ssl=False, conditions=False, cross=False))
    write_report(tmp_path / "results", tmp_path / "report.html", n_boot=0)
    html = (tmp_path / "report.html").read_text()
    assert "<strong>UA by layer.</strong> Left out" in html
    assert "<strong>Layer × corpus heatmap.</strong> Left out" in html
    assert {p.stem for p in (tmp_path / "figures").glob("*.png")} == {"confusion"}


@pytest.mark.slow
def test_too_many_panels_give_one_layer_figure_per_extractor(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(figures, "MAX_PANELS", 3)  # the sweep below has 2 models x 2 corpora
    write(tmp_path / "results", Spec(conditions=False, cross=False, predictions=False))
    write_report(tmp_path / "results", tmp_path / "report.html", n_boot=0)
    drawn = {p.stem for p in (tmp_path / "figures").glob("layers-*.png")}
    expected = {"layers-speaker-kfold-wav2vec2-base", "layers-speaker-kfold-random-wav2vec2-tiny"}
    assert drawn == expected
    html = (tmp_path / "report.html").read_text()
    assert all(f'data-figure="{name}"' in html for name in expected)


@pytest.mark.slow
def test_a_rerun_removes_figures_it_no_longer_draws(tmp_path: Path) -> None:
    write(tmp_path / "full", Spec(ssl=False, conditions=False, cross=True))
    write_report(tmp_path / "full", tmp_path / "report.html", n_boot=0)
    assert (tmp_path / "figures" / "cross-corpus.png").exists()
    write(tmp_path / "small", Spec(ssl=False, conditions=False, cross=False, predictions=False))
    write_report(tmp_path / "small", tmp_path / "report.html", n_boot=0)
    assert list((tmp_path / "figures").glob("*")) == []


def test_untrained_models_and_speaker_dependent_splits_are_flagged(tmp_path: Path) -> None:
    untrained = ("/tmp/demo/random-wav2vec2-tiny", "mfcc")
    spec = Spec(conditions=False, cross=False, split="random", folds=2, extractors=untrained)
    write(tmp_path / "results", spec)
    write_report(tmp_path / "results", tmp_path / "report.html", n_boot=0)
    html = (tmp_path / "report.html").read_text()
    assert '<span class="badge untrained">untrained · random weights</span>' in html
    assert re.search(r'class="warning">[^<]*random-wav2vec2-tiny has random weights', html)
    assert re.search(r'class="warning">[^<]*speaker-dependent', html)
    rows = _table_rows(html, "best-cells")
    assert rows and all("speaker-dependent (random utterance split)" in row for row in rows)
    assert "speaker-independent" not in "".join(rows)
    markdown = (tmp_path / "report.md").read_text()
    assert "UNTRAINED (random weights)" in markdown


def test_csv_results_with_mono_corpus_columns_are_normalised(tmp_path: Path) -> None:
    table, _ = write(tmp_path / "r", Spec(conditions=False, cross=False, fmt="csv"))
    loaded = load_results([tmp_path / "r"])
    assert loaded.predictions is not None and len(loaded.table) == len(table)
    mono = table.drop(columns=["train_corpus", "test_corpus", "train_condition", "test_condition"])
    mono = mono.assign(corpus="emodb", condition="telephone")
    out = normalise(mono)
    assert set(out["train_corpus"]) == set(out["test_corpus"]) == {"emodb"}
    assert set(out["train_condition"]) == set(out["test_condition"]) == {"telephone"}
    assert out.loc[out["extractor"] == "mfcc", "classic"].all()
    assert not out.loc[out["extractor"] == "facebook/wav2vec2-base", "classic"].any()
    assert out.loc[out["extractor"].str.contains("random"), "untrained"].all()
    with pytest.raises(ConfigError, match=r"lacks column\(s\) ua;"):
        normalise(table.drop(columns="ua"))


def test_cli_writes_the_report_and_reports_bad_folders(tmp_path: Path) -> None:
    write(tmp_path / "results", Spec(conditions=False, cross=False, ssl=False))
    runner = CliRunner()
    out = tmp_path / "site" / "report.html"
    args = ["report", str(tmp_path / "results"), "--output", str(out), "--bootstrap", "50"]
    result = runner.invoke(cli, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"wrote {out} (1 figures, ")
    assert out.exists() and out.with_suffix(".md").exists()

    missing = runner.invoke(cli, ["report", str(tmp_path / "nowhere"), "-o", str(out)])
    assert missing.exit_code == 1
    assert f"results folder {tmp_path / 'nowhere'} does not exist" in missing.output
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(cli, ["report", str(tmp_path / "empty"), "-o", str(out)])
    assert empty.exit_code == 1 and "results.parquet, results.csv" in empty.output


def test_importing_the_report_command_loads_no_heavy_library() -> None:
    code = (
        "import sys, ssl_ser.report, ssl_ser.cli.report; "
        "print(sorted(m for m in ('matplotlib', 'torch', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


@pytest.mark.slow
def test_report_of_a_real_classify_sweep(tmp_path: Path) -> None:
    from ssl_ser.classify.splits import SplitOptions
    from ssl_ser.classify.sweep import SweepConfig, run_sweep
    from ssl_ser.testing.synthetic import synthetic_features, synthetic_manifest

    manifest = synthetic_manifest(60, 6, ("angry", "happy", "sad", "neutral"), corpus="emodb")
    keys = [
        {
            "model": "/x/random-tiny",
            "model_type": "wav2vec2",
            "revision": "untrained:local:0123",
            "condition": "clean",
        },
        {"model": "mfcc", "model_type": "classic", "revision": "builtin", "condition": "clean"},
    ]
    sources = [
        synthetic_features(manifest, layers, 8, seed=i, key={**key, "config_digest": str(i)})
        for i, (key, layers) in enumerate(zip(keys, (4, 1), strict=True))
    ]
    config = SweepConfig(classifiers=("logreg",), split_options=SplitOptions(folds=3), bootstrap=50)
    sweep = run_sweep(sources, manifest, config, tmp_path / "sweep")
    summary = write_report(tmp_path / "sweep", tmp_path / "report.html", n_boot=50)

    drawn = {p.stem for p in (tmp_path / "figures").glob("*.png")}
    assert drawn == {"layers-speaker-kfold", "layer-tests-speaker-kfold", "confusion"}
    curves = sweep.summary[sweep.summary["layer"].astype(str).str.fullmatch(r"\d+")]
    best = curves.loc[curves.groupby("extractor")["ua_mean"].idxmax()]
    html = (tmp_path / "report.html").read_text()
    for _, row in best.iterrows():
        assert f"{100 * row['ua_mean']:.1f} ± {100 * row['ua_std']:.1f}" in html
    assert "random-tiny" in summary.best and "untrained" in summary.best
    assert '<span class="badge untrained">' in html


@pytest.mark.slow
def test_markdown_shows_hostile_names_as_text(tmp_path: Path) -> None:
    hostile = "<img src=x onerror=alert(1)>[x](javascript:alert(2))|*"
    spec = Spec(conditions=False, cross=False, extractors=("facebook/wav2vec2-base", "mfcc"))
    table, predictions = build(spec)
    for frame in (table, predictions):
        for column in ("corpus", "train_corpus", "test_corpus"):
            if column in frame.columns:
                frame[column] = frame[column].astype(str).str.replace("emodb", hostile)
    (tmp_path / "results").mkdir()
    table.to_parquet(tmp_path / "results" / "results.parquet", index=False)
    predictions.to_parquet(tmp_path / "results" / "predictions.parquet", index=False)
    write_report(tmp_path / "results", tmp_path / "report.html", n_boot=0)
    markdown = (tmp_path / "report.md").read_text()
    assert "&lt;img src=x onerror=alert(1)&gt;" in markdown
    assert "<img" not in markdown and not re.search(r"(?<!\\)\]\(javascript", markdown)
    assert "\\[x\\](javascript:alert(2))\\|\\*" in markdown
    assert "<img src=x onerror" not in (tmp_path / "report.html").read_text()
