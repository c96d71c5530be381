"""One run over models whose poolings differ: mfcc (mean and std) and egemaps (functionals).

An explicit pooling that eGeMAPS cannot give no longer stops ``ser run``: it
uses its functionals with a warning, and every results row records the pooling
used. ``auto`` (the default) resolves per model, so a later ``ser probe`` reuses
exactly the cells whose resolved pooling is the same. (SSL models resolve to
``mean``: tested in tests/classify and by the demo, which runs one.)
"""

from __future__ import annotations

import logging

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from ssl_ser import corpora, manifest
from ssl_ser.cli.main import cli
from ssl_ser.errors import ConfigError
from ssl_ser.pipelines.experiment import experiment_from_dict
from ssl_ser.pipelines.run import run_experiment
from ssl_ser.synth import SPEAKER_PATTERN

FOLDS = 2


def experiment(listing, work, models, **fields) -> dict:
    """A clean-only grid over the synthetic corpus (given as a manifest file)."""
    return {
        "name": "mixed",
        "models": list(models),
        "corpora": {"synth": str(listing)},
        "classifiers": ["logreg"],
        "split": {"method": "speaker-kfold", "folds": FOLDS},
        "cache_dir": str(work / "cache"),
        "output": str(work / "out"),
        "report": False,
        "extract": {"workers": 0, "device": "cpu"},
        "classify": {"bootstrap": 0},
        **fields,
    }


@pytest.fixture(scope="module")
def mixed(synth_root, tmp_path_factory):
    """mfcc + egemaps run with ``pooling: mean+std`` by ``ser run`` (and its dry run)."""
    work = tmp_path_factory.mktemp("mixed")
    table = corpora.load("folder", synth_root, name="synth", speaker_pattern=SPEAKER_PATTERN)
    listing = manifest.write(table, work / "synth.csv")
    models = ["mfcc", "egemaps"]
    path = work / "mixed.yaml"
    path.write_text(yaml.safe_dump(experiment(listing, work, models, pooling="mean+std")))
    handler = logging.Handler()
    warnings: list[str] = []
    handler.emit = lambda record: warnings.append(record.getMessage())
    logging.getLogger("ssl_ser").addHandler(handler)
    try:
        dry = CliRunner().invoke(cli, ["run", str(path), "--dry-run", "--no-progress"])
        result = CliRunner().invoke(cli, ["run", str(path), "--no-progress"])
    finally:
        logging.getLogger("ssl_ser").removeHandler(handler)
    return {
        "work": work,
        "listing": listing,
        "dry": dry,
        "result": result,
        "warnings": warnings,
    }


def used_poolings(results_dir) -> dict[str, list[str]]:
    results = pd.read_parquet(results_dir / "results.parquet")
    return {e: sorted(rows["pooling"].unique()) for e, rows in results.groupby("extractor")}


@pytest.mark.slow
def test_an_explicit_pooling_runs_every_model_and_records_what_each_used(mixed):
    result = mixed["result"]
    assert result.exit_code == 0, result.output
    assert used_poolings(mixed["work"] / "out" / "results") == {
        "mfcc": ["mean+std"],
        "egemaps": ["mean"],
    }
    assert "egemaps on synth, clean -> clean, pooling mean:" in result.output
    assert "mfcc on synth, clean -> clean, pooling mean+std:" in result.output
    assert (
        "egemaps stores only 'mean' (its 88 eGeMAPS functionals): pooling 'mean+std' does not "
        "apply, using 'mean'" in mixed["warnings"]
    )


def test_the_dry_run_shows_each_models_pooling(mixed):
    dry = mixed["dry"]
    assert dry.exit_code == 0, dry.output
    assert "egemaps on synth, clean -> clean, pooling mean: 2 fold(s), 2 cell(s)" in dry.output
    assert "mfcc on synth, clean -> clean, pooling mean+std: 2 fold(s), 2 cell(s)" in dry.output


def probe(mixed, *extra):
    work = mixed["work"]
    args = [
        "probe",
        "--model", "mfcc", "--model", "egemaps",
        "--corpus", f"synth={mixed['listing']}",
        "--classifiers", "logreg",
        "--folds", str(FOLDS),
        "--cache-dir", str(work / "cache"),
        "--output", str(work / "out"),
        "--no-report",
        "--no-progress",
        *extra,
    ]  # fmt: skip
    return CliRunner().invoke(cli, args)


def test_probe_reuses_exactly_the_cells_its_pooling_resolves_to(mixed):
    default = probe(mixed)  # auto: mfcc mean+std, egemaps mean, as the run before
    assert default.exit_code == 0, default.output
    assert "classify: 0 cell(s) run, 4 already done" in default.output
    mean = probe(mixed, "--pooling", "mean")  # mfcc's mean cells are new; egemaps's are not
    assert mean.exit_code == 0, mean.output
    assert "classify: 2 cell(s) run, 2 already done" in mean.output
    assert used_poolings(mixed["work"] / "out" / "results") == {
        "mfcc": ["mean", "mean+std"],
        "egemaps": ["mean"],
    }


def test_a_pooling_no_model_stores_is_refused_before_any_work(mixed, tmp_path):
    data = experiment(mixed["listing"], tmp_path, ["egemaps"], pooling="std")
    with pytest.raises(ConfigError) as error:
        run_experiment(experiment_from_dict(data), dry_run=True)
    assert "pooling 'std' is not stored for any extractor of the experiment's models" in str(
        error.value
    )
    assert "egemaps stores 'mean' (its 88 eGeMAPS functionals)" in str(error.value)
    fine = experiment_from_dict({**data, "models": ["egemaps", "mfcc"]})
    units = run_experiment(fine, dry_run=True).plan.units
    assert {u.model: u.poolings for u in units} == {"egemaps": ("mean",), "mfcc": ("std",)}


def test_the_experiment_default_is_auto(mixed, tmp_path):
    data = experiment(mixed["listing"], tmp_path, ["mfcc", "egemaps"])
    fine = experiment_from_dict(data)
    assert fine.pooling == ("auto",)
    units = run_experiment(fine, dry_run=True).plan.units
    assert {u.model: u.poolings for u in units} == {"egemaps": ("mean",), "mfcc": ("mean+std",)}
