"""The split methods as scikit-learn cross-validators: the same folds as make_folds."""

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ssl_ser.classify.search import fit_single
from ssl_ser.classify.splits import (
    SPLITS,
    InnerSpeakerSplit,
    SplitOptions,
    TableSplitter,
    inner_split,
    make_folds,
    splitter,
)
from ssl_ser.testing.synthetic import synthetic_manifest

from .test_splits import split_table


def shuffled_table() -> pd.DataFrame:
    """Two synthetic corpora, 12 speakers each, a preset split column, rows shuffled."""
    parts = []
    for i, corpus in enumerate(("alpha", "beta")):
        table = split_table(synthetic_manifest(240, 12, seed=i)).assign(corpus=corpus)
        parts.append(table.assign(group=corpus + "/" + table["group"]))
    table = pd.concat(parts, ignore_index=True)
    speaker_number = table["group"].str.extract(r"(\d+)$")[0].astype(int)
    table["split"] = np.where(speaker_number % 4 == 0, "test", "train")
    table.loc[speaker_number % 4 == 1, "split"] = "val"
    order = np.random.default_rng(7).permutation(len(table))
    return table.iloc[order].reset_index(drop=True)


OPTIONS = SplitOptions(folds=3, seed=2, ratios=(0.6, 0.2, 0.2), test_corpora=("beta",), shots=6)


@pytest.mark.parametrize("method", sorted(SPLITS))
def test_every_splitter_in_cross_validate_gives_the_make_folds_folds(method):
    table = shuffled_table()
    expected = make_folds(table, method, OPTIONS)
    x = np.random.default_rng(0).normal(size=(len(table), 3))
    y = table["label"].to_numpy()
    groups = table["group"].to_numpy()
    cv = splitter(method, table.drop(columns="group"), OPTIONS)
    assert isinstance(cv, TableSplitter)
    assert cv.get_n_splits(x, y, groups) == len(expected)
    result = cross_validate(
        DummyClassifier(), x, y, groups=groups, cv=cv, return_indices=True, scoring="accuracy"
    )
    assert len(result["test_score"]) == len(expected)
    for fold, train, test in zip(
        expected, result["indices"]["train"], result["indices"]["test"], strict=True
    ):
        assert np.array_equal(np.sort(train), fold.train), fold.name
        assert np.array_equal(np.sort(test), fold.test), fold.name
    named = cv.folds(x, y, groups)
    assert [f.name for f in named] == [f.name for f in expected]
    assert all(np.array_equal(a.val, b.val) for a, b in zip(named, expected, strict=True))


def test_loso_folds_are_each_speaker_in_sorted_order():
    table = shuffled_table()
    folds = make_folds(table, "loso", SplitOptions())
    names = sorted(set(table["group"]))
    assert [f.name for f in folds] == names
    for fold, name in zip(folds, names, strict=True):  # computed here, not by LeaveOneGroupOut
        is_test = table["group"].to_numpy() == name
        assert fold.test.tolist() == np.flatnonzero(is_test).tolist()
        assert fold.train.tolist() == np.flatnonzero(~is_test).tolist()
    assert splitter("loso", table).get_n_splits(groups=table["group"]) == len(names)


def test_splitter_refuses_groups_that_are_not_the_tables():
    table = shuffled_table()
    groups = table["group"].to_numpy().copy()
    groups[5] = "someone-else"
    with pytest.raises(ValueError, match=r"groups\[5\]='someone-else' differs"):
        list(
            splitter("speaker-kfold", table, OPTIONS).split(
                np.zeros((len(table), 1)), groups=groups
            )
        )
    with pytest.raises(ValueError, match="X has 3 rows but the split table has 480"):
        list(splitter("speaker-kfold", table, OPTIONS).split(np.zeros((3, 1))))


def test_splitter_as_grid_search_cv():
    table = shuffled_table()
    x = np.random.default_rng(0).normal(size=(len(table), 3))
    search = GridSearchCV(
        LogisticRegression(), {"C": [0.1, 1.0]}, cv=splitter("speaker-kfold", table, OPTIONS)
    ).fit(x, table["label"], groups=table["group"])
    assert search.n_splits_ == 3


def test_inner_speaker_split_is_inner_split():
    table = synthetic_manifest(200, 10)
    groups, labels = table["speaker"].to_numpy(), table["emotion"].to_numpy()
    ((fit, val),) = InnerSpeakerSplit(0.2, seed=4).split(np.zeros(200), labels, groups)
    expected = inner_split(groups, labels, 0.2, seed=4)
    assert np.array_equal(fit, expected[0]) and np.array_equal(val, expected[1])
    assert InnerSpeakerSplit().get_n_splits() == 1


def old_search(make, grid, x, y, groups, seed):
    """The hand-written search loop GridSearchCV replaced: (best value, its UA), NaN skipped."""
    fit, val = inner_split(groups, y, 0.2, seed)
    scores = []
    for value in grid:
        try:
            model = Pipeline([("scale", StandardScaler()), ("clf", make(value))])
            predicted = model.fit(x[fit], y[fit]).predict(x[val])
        except ValueError:
            scores.append(np.nan)
            continue
        truth = y[val]
        scores.append(np.mean([np.mean(predicted[truth == c] == c) for c in np.unique(truth)]))
    best = int(np.nanargmax(scores))
    return grid[best], scores[best]


@pytest.mark.parametrize(
    ("name", "key", "make"),
    [
        ("logreg", "C", lambda c: LogisticRegression(C=c, max_iter=2000, random_state=1)),
        (
            "knn",
            "n_neighbors",
            lambda k: KNeighborsClassifier(n_neighbors=k, weights="distance"),
        ),
    ],
)
def test_grid_search_picks_what_the_old_loop_picked(name, key, make):
    rng = np.random.default_rng(5)
    y = np.repeat(np.arange(4), 15)
    x = rng.normal(size=(60, 5)) + 0.6 * y[:, None] * rng.normal(size=5)
    groups = np.tile(np.array([f"s{i}" for i in range(6)]), 10)
    from ssl_ser.classify import registry

    grid = registry.get(name).grid[key]
    value, ua = old_search(make, grid, x, y, groups, seed=1)
    model, chosen, val_ua = fit_single(name, {}, x, y, groups, search=True, seed=1)
    assert chosen[key] == value
    assert val_ua == pytest.approx(ua, abs=1e-12)
    refit = Pipeline([("scale", StandardScaler()), ("clf", make(value))]).fit(x, y)
    assert np.array_equal(model.predict(x), refit.predict(x))


def test_search_where_no_candidate_fits_names_the_grid():
    from ssl_ser.errors import ConfigError

    x = np.arange(12.0).reshape(6, 2)
    y = np.array([0, 1, 0, 1, 0, 1])
    groups = np.array(["a", "a", "b", "b", "c", "c"])  # 4 fitting rows < every n_neighbors
    with pytest.raises(ConfigError, match=r"no knn setting of \{'n_neighbors': \[5, 15, 45\]\}"):
        fit_single("knn", {}, x, y, groups, search=True, seed=0)
