"""The report's probing measures: drawn only where their data exist (issue 21)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ssl_ser.classify.splits import SplitOptions
from ssl_ser.classify.sweep import SweepConfig, run_sweep
from ssl_ser.report import write_report
from ssl_ser.report.build import ReportSummary
from ssl_ser.testing.synthetic import synthetic_features, synthetic_manifest

MEASURE_FIGURES = ("selectivity", "codelength", "speaker-information")


def sweep(folder: Path, **kwargs) -> None:
    table = synthetic_manifest(160, 8, ("angry", "happy", "sad", "neutral"), corpus="emodb")
    key = {"model": "tiny-model", "condition": "clean", "config_digest": "abc"}
    features = synthetic_features(table, 4, 8, seed=0, key=key)
    settings = SweepConfig(
        classifiers=("logreg",),
        poolings=("mean",),
        bootstrap=5,
        split_options=SplitOptions(folds=2),
        **kwargs,
    )
    run_sweep([features], table, settings, folder)


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("measured")
    sweep(folder / "results", control=True, mdl=True)
    sweep(folder / "results", target="speaker")
    return folder


@pytest.fixture(scope="module")
def measured_report(measured: Path) -> ReportSummary:
    """The report of the emotion (with control and MDL) and speaker sweeps, written once."""
    return write_report(measured / "results", measured / "report" / "r.html", n_boot=20)


def figure_names(html: str) -> set[str]:
    return set(re.findall(r'id="figure-([a-z0-9-]+)"', html))


@pytest.mark.slow
def test_every_measure_is_drawn_and_tabulated_from_the_results(
    measured: Path, measured_report: ReportSummary
) -> None:
    summary = measured_report
    html = summary.html.read_text()
    assert set(MEASURE_FIGURES) <= figure_names(html)
    assert "Probing measures" in html and "speaker-dependent split by construction" in html
    assert "Hewitt &amp; Liang 2019" in html and "Voita &amp; Titov 2020" in html
    # the other sections see emotion rows only: no speaker among the classes
    assert "emodb/s000" not in html.split("Probing measures")[0]
    markdown = summary.markdown.read_text()
    table = markdown.split("Probing measures per layer")[1]
    rows = pd.read_parquet(measured / "results" / "results.parquet")
    means = rows.groupby(["target", "layer"])["ua"].mean().unstack(0)
    compression = rows[rows["target"] == "emotion"].groupby("layer")["compression"].mean()
    for layer in ("0", "3"):
        line = next(
            text for text in table.splitlines() if re.search(rf"\| logreg \| {layer} \|", text)
        )
        cells = [c.strip() for c in line.strip("|").split("|")]
        ua, control, selectivity, ratio, speaker = cells[4:9]
        assert float(ua) == pytest.approx(100 * means.loc[layer, "emotion"], abs=0.05)
        assert float(control) == pytest.approx(100 * means.loc[layer, "control"], abs=0.05)
        difference = 100 * (means.loc[layer, "emotion"] - means.loc[layer, "control"])
        assert float(selectivity) == pytest.approx(difference, abs=0.05)
        assert float(ratio) == pytest.approx(compression[layer], abs=5e-4)
        assert float(speaker) == pytest.approx(100 * means.loc[layer, "speaker"], abs=0.05)


@pytest.mark.slow
def test_a_plain_sweep_and_an_older_table_show_no_measures(tmp_path: Path) -> None:
    sweep(tmp_path / "plain")
    summary = write_report(tmp_path / "plain", tmp_path / "plain-report" / "r.html", n_boot=20)
    html = summary.html.read_text()
    assert "Probing measures" not in html
    assert not figure_names(html) & set(MEASURE_FIGURES)
    older = tmp_path / "older"
    older.mkdir()
    table = pd.read_parquet(tmp_path / "plain" / "results.parquet").drop(columns="target")
    table.to_parquet(older / "results.parquet")
    shutil.copy(tmp_path / "plain" / "predictions.parquet", older)
    again = write_report(older, tmp_path / "older-report" / "r.html", n_boot=20)
    assert "Probing measures" not in again.html.read_text()
    assert again.best == summary.best


@pytest.mark.slow
def test_only_the_measures_present_are_drawn(tmp_path: Path) -> None:
    sweep(tmp_path / "control", control=True)
    summary = write_report(tmp_path / "control", tmp_path / "report" / "r.html", n_boot=20)
    html = summary.html.read_text()
    assert figure_names(html) & set(MEASURE_FIGURES) == {"selectivity"}
    table = summary.markdown.read_text().split("Probing measures per layer")[1]
    header = next(line for line in table.splitlines() if line.startswith("| extractor"))
    assert "control UA" in header and "compression" not in header and "speaker" not in header
    assert not np.isnan(pd.read_parquet(tmp_path / "control" / "results.parquet")["ua"]).any()


def test_figures_show_the_first_settings_and_say_how_many_more_are_tabled() -> None:
    from ssl_ser.report.measures import MAX_ROWS, PANEL_KEYS, _left_out, _panels

    rows = pd.DataFrame(
        [
            {**dict.fromkeys(PANEL_KEYS, "x"), "extractor": "m", "setting": f"corpus{i}",
             "speaker_norm": str(i == 0), "classifier": "logreg", "layer_index": 0, "ua": 0.5}
            for i in range(MAX_ROWS + 2)
        ]
    )  # fmt: skip
    panels = _panels(rows, {"m": "model"})
    assert len(panels) == MAX_ROWS
    assert panels[0][0] == "model: corpus0, x, speaker norm"
    assert _left_out(rows) == " 2 more setting(s) are in the table only."
    assert _left_out(rows.head(MAX_ROWS)) == ""


@pytest.mark.slow
def test_a_folder_of_speaker_probes_only_is_titled_and_flagged_as_such(
    tmp_path: Path, measured_report: ReportSummary
) -> None:
    sweep(tmp_path / "speaker", target="speaker")
    summary = write_report(tmp_path / "speaker", tmp_path / "report" / "r.html", n_boot=0)
    markdown = summary.markdown.read_text()
    assert markdown.startswith("# Layer-wise speaker probing: tiny-model on emodb")
    assert "These results hold no emotion rows: every UA below is of the speaker target" in markdown
    assert "**Speaker target · 8 classes (basic4: emodb/" in markdown
    # a folder of emotion and speaker probes is an emotion report
    text = measured_report.markdown.read_text()
    assert text.startswith("# Layer-wise emotion probing") and "no emotion rows" not in text
