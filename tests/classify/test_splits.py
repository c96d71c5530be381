import importlib
import logging

import numpy as np
import pandas as pd
import pytest

from ssl_ser import corpora
from ssl_ser.classify.splits import (
    SPEAKER_INDEPENDENT,
    SplitOptions,
    balanced_sample,
    drop_unseen_classes,
    inner_split,
    make_folds,
    speaker_groups,
)
from ssl_ser.errors import ConfigError, UnknownChoiceError
from ssl_ser.testing.synthetic import synthetic_manifest

CORPORA = ("emodb", "cremad", "esd", "subesco", "mesd", "emovo", "oreau", "emouerj")


def split_table(manifest: pd.DataFrame) -> pd.DataFrame:
    table = manifest.assign(label=manifest["emotion"])
    groups, _ = speaker_groups(table)
    return table.assign(group=groups.to_numpy())


@pytest.fixture(scope="module")
def corpus_tables(tmp_path_factory):
    tables = {}
    for name in CORPORA:
        root = tmp_path_factory.mktemp(name)
        importlib.import_module(f"ssl_ser.testing.{name}").make_tree(root)
        tables[name] = split_table(corpora.load(name, root))
    return tables


def identity(table: pd.DataFrame) -> pd.Series:
    """What must not be shared: the speaker, or for speakerless corpora the voice type."""
    return np.where(
        table["speaker"] != "", table["speaker"], table["corpus"] + "/" + table["gender"]
    )


def assert_disjoint(table, fold):
    who = identity(table)
    shared = set(who[fold.train]) & set(who[fold.test])
    assert not shared, f"fold {fold.name} shares speakers {shared}"
    assert not set(who[fold.val]) & set(who[fold.test])


@pytest.mark.parametrize("corpus", CORPORA)
@pytest.mark.parametrize("method", ["speaker", "speaker-kfold", "loso"])
def test_speaker_independent_splits_are_disjoint_on_every_corpus(corpus_tables, corpus, method):
    table = corpus_tables[corpus]
    n_groups = table["group"].nunique()
    folds = make_folds(table, method, SplitOptions(folds=min(3, n_groups), seed=1))
    assert folds
    for fold in folds:
        assert fold.speaker_independent
        assert_disjoint(table, fold)
        assert len(fold.train) and len(fold.test)
    if method != "speaker":
        tested = np.concatenate([f.test for f in folds])
        assert sorted(tested) == list(range(len(table)))  # every row tested exactly once


@pytest.mark.parametrize("method", ["cross-corpus", "few-shot"])
@pytest.mark.parametrize("pair", [("emodb", "emovo"), ("cremad", "mesd"), ("esd", "oreau")])
def test_cross_corpus_splits_are_disjoint(corpus_tables, method, pair):
    table = pd.concat([corpus_tables[c] for c in pair], ignore_index=True)
    options = SplitOptions(folds=3, seed=0, test_corpora=(pair[1],), shots=6)
    folds = make_folds(table, method, options)
    for fold in folds:
        assert_disjoint(table, fold)
        assert set(table.loc[fold.test, "corpus"]) == {pair[1]}
        target_train = table.loc[fold.train][table.loc[fold.train, "corpus"] == pair[1]]
        if method == "cross-corpus":
            assert target_train.empty
        else:
            assert len(target_train) == 6
            counts = target_train["label"].value_counts()
            assert counts.max() - counts.min() <= 1  # balanced over classes


def test_leave_one_corpus_out(corpus_tables):
    table = pd.concat([corpus_tables[c] for c in ("emodb", "cremad", "emovo")], ignore_index=True)
    folds = make_folds(table, "cross-corpus", SplitOptions())
    assert [f.test_corpora for f in folds] == [("cremad",), ("emodb",), ("emovo",)]
    for fold in folds:
        assert fold.test_corpora[0] not in set(table.loc[fold.train, "corpus"])


def test_mesd_falls_back_to_voice_type_with_a_warning(corpus_tables, caplog):
    with caplog.at_level(logging.WARNING):
        _, used = speaker_groups(corpus_tables["mesd"])
    assert used == {"mesd": "gender"}
    assert "mesd has no speaker ids; grouping by gender" in caplog.text


def test_no_speakers_and_no_gender_falls_back_to_utterances(caplog):
    table = synthetic_manifest(40, 4, with_speakers=False).assign(gender="")
    with caplog.at_level(logging.WARNING):
        groups, used = speaker_groups(table)
    assert used == {"synthetic": "utterance"} and groups.nunique() == 40
    assert "speaker-dependent" in caplog.text


def test_kfold_balances_gender_and_is_deterministic():
    table = split_table(synthetic_manifest(400, 20, seed=0))
    folds = make_folds(table, "speaker-kfold", SplitOptions(folds=5, seed=3))
    for fold in folds:
        genders = table.loc[fold.test].groupby("group")["gender"].first().value_counts()
        assert genders.to_dict() == {"F": 2, "M": 2}
    again = make_folds(table, "speaker-kfold", SplitOptions(folds=5, seed=3))
    other = make_folds(table, "speaker-kfold", SplitOptions(folds=5, seed=4))
    assert all(np.array_equal(a.test, b.test) for a, b in zip(folds, again, strict=True))
    assert not all(np.array_equal(a.test, b.test) for a, b in zip(folds, other, strict=True))


def test_speaker_split_has_gender_balanced_parts():
    table = split_table(synthetic_manifest(400, 20, seed=0))
    (fold,) = make_folds(table, "speaker", SplitOptions(ratios=(0.6, 0.2, 0.2)))
    for part in (fold.train, fold.val, fold.test):
        genders = table.loc[part].groupby("group")["gender"].first().value_counts()
        assert genders["F"] == genders["M"]
    assert_disjoint(table, fold)


def test_random_split_is_labelled_speaker_dependent(caplog):
    table = split_table(synthetic_manifest(200, 5))
    with caplog.at_level(logging.WARNING):
        (fold,) = make_folds(table, "random", SplitOptions())
    assert not fold.speaker_independent
    assert "speaker-DEPENDENT" in caplog.text
    assert "random" not in SPEAKER_INDEPENDENT


def test_preset_uses_the_split_column(corpus_tables):
    table = corpus_tables["esd"]
    (fold,) = make_folds(table, "preset", SplitOptions())
    assert set(table.loc[fold.train, "split"]) == {"train"}
    assert set(table.loc[fold.val, "split"]) == {"val"}
    assert set(table.loc[fold.test, "split"]) == {"test"}
    shared = set(table.loc[fold.train, "group"]) & set(table.loc[fold.test, "group"])
    assert fold.speaker_independent == (not shared)


def test_errors_name_the_problem(corpus_tables):
    emodb = corpus_tables["emodb"]
    with pytest.raises(ConfigError, match="5 folds need at least 5 speakers .*found 4"):
        make_folds(emodb, "speaker-kfold", SplitOptions(folds=5))
    with pytest.raises(ConfigError, match="preset split needs train and test rows"):
        make_folds(emodb, "preset", SplitOptions())
    with pytest.raises(UnknownChoiceError, match="unknown split 'kfold'"):
        make_folds(emodb, "kfold", SplitOptions())
    with pytest.raises(UnknownChoiceError, match="unknown corpus 'iemocap'.*expected one of emodb"):
        make_folds(emodb, "cross-corpus", SplitOptions(test_corpora=("iemocap",)))
    with pytest.raises(ConfigError, match="at least 2 corpora"):
        make_folds(emodb, "cross-corpus", SplitOptions())


def test_inner_split_keeps_speakers_whole():
    table = synthetic_manifest(500, 10)
    groups = table["speaker"].to_numpy()
    fit, val = inner_split(groups, table["emotion"].to_numpy(), 0.2, seed=0)
    assert not set(groups[fit]) & set(groups[val])
    assert 0.15 <= len(val) / len(groups) <= 0.3
    assert len(fit) + len(val) == len(groups)


def test_absent_training_class_drops_test_rows_with_a_warning(caplog):
    table = split_table(synthetic_manifest(120, 6))
    (fold,) = make_folds(table, "speaker", SplitOptions(ratios=(0.5, 0.0, 0.5)))
    labels = table["label"].to_numpy().copy()
    labels[fold.train[labels[fold.train] == "sad"]] = "angry"  # no sad left in training
    n_sad = int((labels[fold.test] == "sad").sum())
    with caplog.at_level(logging.WARNING):
        kept, dropped = drop_unseen_classes(fold, labels)
    assert dropped == n_sad > 0
    assert "sad" not in set(labels[kept.test])
    assert "['sad'] absent from training; dropped" in caplog.text


def test_balanced_sample_spreads_over_labels():
    table = split_table(synthetic_manifest(300, 5))
    chosen = balanced_sample(table, 14, seed=0)
    counts = table.loc[chosen, "label"].value_counts()
    assert len(chosen) == 14 and counts.max() - counts.min() <= 1
