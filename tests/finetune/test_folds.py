"""ser finetune trains on the folds ser classify makes: same speakers, fold by fold."""

from __future__ import annotations

import pandas as pd
import pytest

from ssl_ser.classify.features import CacheFeatures
from ssl_ser.classify.splits import SplitOptions
from ssl_ser.classify.sweep import SweepConfig, run_sweep
from ssl_ser.extract.config import ExtractorConfig
from ssl_ser.extract.runner import extract
from ssl_ser.finetune.config import FinetuneConfig
from ssl_ser.finetune.run import RunOptions, run_finetune

SPLITS = [
    ("speaker-kfold", SplitOptions(folds=2, seed=3)),
    ("loso", SplitOptions()),
    ("random", SplitOptions(seed=5)),
    ("speaker", SplitOptions(ratios=(0.5, 0.25, 0.25), seed=1)),
    ("few-shot", SplitOptions(folds=2, test_corpora=("other",), shots=4, seed=2)),
    ("cross-corpus", SplitOptions()),
]


@pytest.fixture(scope="module")
def two_corpora(corpus_manifest) -> pd.DataFrame:
    """The synthetic corpus as two corpora: one male and one female voice each."""
    table = corpus_manifest.copy()
    moved = table["speaker"].isin(sorted(table["speaker"].unique())[1:3])
    table.loc[moved, "corpus"] = "other"
    return table


@pytest.fixture(scope="module")
def caches(two_corpora, tiny_model, tmp_path_factory) -> list[CacheFeatures]:
    """Features of both corpora, extracted in shuffled manifest order."""
    folder = tmp_path_factory.mktemp("ft-cache")
    shuffled = two_corpora.sample(frac=1.0, random_state=7).reset_index(drop=True)
    summaries = extract(shuffled, ExtractorConfig(str(tiny_model)), folder, device="cpu", workers=0)
    return [CacheFeatures(summary.path) for summary in summaries]


def fold_members(output) -> pd.DataFrame:
    """Per fold name: its membership digest and its sorted test utterances."""
    rows = pd.read_parquet(output / "results.parquet")
    predictions = pd.read_parquet(output / "predictions.parquet")
    tests = predictions.groupby("fold")["utt_id"].apply(lambda ids: tuple(sorted(set(ids))))
    digests = rows.groupby("fold")["fold_digest"].agg(lambda d: tuple(sorted(set(d))))
    return pd.DataFrame({"digest": digests, "test": tests}).sort_index()


@pytest.mark.slow
@pytest.mark.parametrize(("split", "options"), SPLITS, ids=[s for s, _ in SPLITS])
def test_every_fold_holds_the_speakers_of_ser_classify(
    split, options, two_corpora, caches, tiny_model, tmp_path
):
    sweep = SweepConfig(
        split=split,
        split_options=options,
        layers=("4",),
        bootstrap=20,
    )
    run_sweep(caches, two_corpora, sweep, tmp_path / "probe")
    config = FinetuneConfig(
        model=str(tiny_model), epochs=1, learning_rate=1e-3, batch_seconds=8.0, patience=None
    )
    settings = RunOptions(
        split=split,
        split_options=options,
        device="cpu",
        workers=0,
        bootstrap=20,
        save_models=False,
    )
    # the manifest in another order than the caches: folds must not depend on row order
    run_finetune(two_corpora.iloc[::-1], config, settings, tmp_path / "finetune")
    probe, tuned = fold_members(tmp_path / "probe"), fold_members(tmp_path / "finetune")
    assert len(probe) >= 1
    pd.testing.assert_frame_equal(probe, tuned)
