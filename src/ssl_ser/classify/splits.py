"""Train/test splits that know the speakers, deterministic under a seed.

Every split works on a table with the columns ``utt_id``, ``corpus``, ``group``
(the speaker, or the fallback grouping chosen by :func:`speaker_groups`),
``gender``, ``label`` and ``split`` (the corpus's preset split) and returns
:class:`Fold` objects holding row positions. Speaker-independent splits never put
one group in both training and test; ``random`` is the only speaker-dependent one
and says so in its folds.

Every method is also a scikit-learn cross-validator (:func:`splitter`):
``split(X, y, groups)`` yields the (train, test) row positions of
:func:`make_folds` and ``get_n_splits`` counts them, so the splits can be passed
as ``cv=`` to ``cross_validate`` or ``GridSearchCV`` with ``groups=`` the speaker
groups. The metadata a split needs beyond X, y and groups (corpus, utt_id, gender,
label, preset split) is the ``table`` given to the constructor, one row per row of
X in the same order; ``groups`` fills or must equal its ``group`` column and ``y``
is not used (the table's ``label`` is, so integer-coded y cannot reorder draws).
``.folds(X, y, groups)`` gives the full :class:`Fold` objects (names, validation
parts). ``loso`` folds are scikit-learn's ``LeaveOneGroupOut``'s; the others keep
their own logic because no scikit-learn class makes the same folds
(``GroupShuffleSplit`` and ``StratifiedGroupKFold`` draw groups differently and
ignore gender balance, ``PredefinedSplit`` would train on the preset validation
rows), and :class:`InnerSpeakerSplit` is :func:`inner_split` as a one-split
cross-validator for the hyperparameter search.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from sklearn.model_selection import BaseCrossValidator, LeaveOneGroupOut
from sklearn.utils.validation import _num_samples

from ssl_ser.errors import ConfigError, UnknownChoiceError

log = logging.getLogger(__name__)

EMPTY = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Fold:
    """Row positions of one train/test partition (plus an optional preset validation part)."""

    name: str
    train: np.ndarray
    test: np.ndarray
    val: np.ndarray = field(default_factory=lambda: EMPTY)
    speaker_independent: bool = True
    train_corpora: tuple[str, ...] = ()
    test_corpora: tuple[str, ...] = ()


# Seeds reach numpy's RandomState and scikit-learn's random_state, which take 0 .. 2**32 - 1.
MAX_SEED = 2**32 - 1


def check_seed(seed: object, where: str = "--seed") -> int:
    """`seed` if it is an integer from 0 to 2**32 - 1.

    Raises:
        ConfigError: naming `where`, the value and the valid range.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(
            f"{where} is {seed!r}, out of range; give a whole number from 0 to {MAX_SEED}"
        )
    return seed


@dataclass(frozen=True)
class SplitOptions:
    """Settings shared by the split methods (not all methods use all of them)."""

    folds: int = 5
    seed: int = 0
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    train_corpora: tuple[str, ...] = ()
    test_corpora: tuple[str, ...] = ()
    shots: int = 10


def speaker_groups(table: pd.DataFrame) -> tuple[pd.Series, dict[str, str]]:
    """The grouping column for splits: speakers, or the best fallback per corpus.

    A corpus whose rows all name a speaker is grouped by speaker. A corpus without
    speaker ids (MESD) is grouped by gender/voice type when that is known, which
    keeps every speaker on one side of a split because a speaker has one voice
    type; otherwise each utterance is its own group (speaker-dependent). A warning
    names the fallback.

    Returns:
        The group of every row and, per corpus, the grouping used.
    """
    groups = table["speaker"].astype(str).copy()
    used: dict[str, str] = {}
    for corpus, rows in table.groupby("corpus", sort=True):
        if (rows["speaker"] != "").all():
            used[str(corpus)] = "speaker"
        elif (rows["gender"] != "").all():
            used[str(corpus)] = "gender"
            groups.loc[rows.index] = str(corpus) + "/gender:" + rows["gender"]
            kinds = ", ".join(sorted(rows["gender"].unique()))
            log.warning(
                "%s has no speaker ids; grouping by gender/voice type (%s) instead, so "
                "test speakers stay unseen but folds are coarse",
                corpus,
                kinds,
            )
        else:
            used[str(corpus)] = "utterance"
            groups.loc[rows.index] = rows["utt_id"]
            log.warning(
                "%s has neither speaker ids nor gender; grouping by utterance, so its "
                "splits are speaker-dependent",
                corpus,
            )
    return groups, used


def make_folds(table: pd.DataFrame, method: str, options: SplitOptions) -> list[Fold]:
    """Folds of `table` by split `method` (see :data:`SPLITS`).

    Raises:
        UnknownChoiceError: `method` is not a known split.
        ConfigError: the data cannot be split as asked (too few speakers for the
            folds, no preset test rows, unknown or overlapping corpora, an empty fold).
    """
    if method not in SPLITS:
        raise UnknownChoiceError("split", method, SPLITS)
    order = canonical_order(table)
    folds = SPLITS[method](table.iloc[order].reset_index(drop=True), options)
    for fold in folds:
        if len(fold.train) == 0 or len(fold.test) == 0:
            side = "training" if len(fold.train) == 0 else "test"
            raise ConfigError(f"split {method!r} fold {fold.name} has an empty {side} part")
    return [_reorder(fold, order) for fold in folds]


def canonical_order(table: pd.DataFrame) -> np.ndarray:
    """Row positions of `table` sorted by (corpus, utt_id): the order every split sees.

    Splits that draw rows (random, few-shot shots) depend on row order; sorting
    first gives the same folds whatever order the rows came in (a cache's
    extraction order for ``ser classify``, the manifest's for ``ser finetune``).
    """
    keys = table[["corpus", "utt_id"]].astype(str)
    return np.lexsort((keys["utt_id"].to_numpy(), keys["corpus"].to_numpy()))


def _reorder(fold: Fold, order: np.ndarray) -> Fold:
    """A fold of the sorted table mapped back to the caller's row positions (sorted)."""
    return replace(
        fold,
        train=np.sort(order[fold.train]),
        test=np.sort(order[fold.test]),
        val=np.sort(order[fold.val]),
    )


def fold_digest(utt_ids: np.ndarray, fold: Fold) -> str:
    """16 hex digits over a fold's sorted train and test utterance ids: its membership.

    Equal digests mean the same utterances on each side, so results of two stages
    (a probe and a fine-tune) on folds with equal digests are paired fold by fold.
    """
    digest = hashlib.sha256()
    for part in (fold.train, fold.test):
        digest.update("\n".join(sorted(map(str, utt_ids[part]))).encode() + b"\0")
    return digest.hexdigest()[:16]


def _preset(table: pd.DataFrame, options: SplitOptions) -> list[Fold]:
    parts = {name: np.flatnonzero(table["split"].to_numpy() == name) for name in SPLITS_PRESET}
    if len(parts["test"]) == 0 or len(parts["train"]) == 0:
        counts = ", ".join(f"{k}={len(v)}" for k, v in parts.items())
        raise ConfigError(
            f"preset split needs train and test rows in the manifest's split column ({counts}); "
            "use speaker-kfold or speaker for corpora without a preset split"
        )
    shared = set(table["group"].iloc[parts["train"]]) & set(table["group"].iloc[parts["test"]])
    return [
        Fold(
            "preset",
            parts["train"],
            parts["test"],
            parts["val"],
            speaker_independent=not shared,
        )
    ]


SPLITS_PRESET: tuple[str, ...] = ("train", "val", "test")


def _random(table: pd.DataFrame, options: SplitOptions) -> list[Fold]:
    rng = np.random.default_rng(options.seed)
    train, val, test = [], [], []
    for _, rows in table.groupby("label", sort=True):
        cut = _cut(rng.permutation(rows.index.to_numpy()), options.ratios)
        train.append(cut["train"])
        val.append(cut["val"])
        test.append(cut["test"])
    log.warning("random split shuffles utterances: results are speaker-DEPENDENT")
    return [
        Fold(
            "random",
            np.sort(np.concatenate(train)),
            np.sort(np.concatenate(test)),
            np.sort(np.concatenate(val)),
            speaker_independent=False,
        )
    ]


def _cut(items: Sequence, ratios: Sequence[float]) -> dict[str, list]:
    """`items` cut in order into train, val and test by the ratios; test gets at least one."""
    n = len(items)
    total = sum(ratios)
    n_train = int(round(n * ratios[0] / total))
    n_val = int(round(n * ratios[1] / total))
    if n >= 2 and ratios[2] > 0:
        n_train = min(n_train, n - 1)
        n_val = min(n_val, n - 1 - n_train)
    return {
        "train": items[:n_train],
        "val": items[n_train : n_train + n_val],
        "test": items[n_train + n_val :],
    }


def group_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per group: its gender (most frequent) and number of rows, sorted by group."""
    return (
        table.groupby("group", sort=True)
        .agg(gender=("gender", lambda g: g.mode().iloc[0]), rows=("group", "size"))
        .reset_index()
    )


def _shuffled_by_gender(groups: pd.DataFrame, seed: int) -> dict[str, list[str]]:
    """Group names per gender, each list shuffled by `seed`."""
    rng = np.random.default_rng(seed)
    return {
        str(gender): list(rng.permutation(rows["group"].to_numpy()))
        for gender, rows in groups.groupby("gender", sort=True)
    }


def _speaker(table: pd.DataFrame, options: SplitOptions) -> list[Fold]:
    groups = group_table(table)
    if len(groups) < 2:
        raise ConfigError(f"speaker split needs at least 2 speakers; found {len(groups)}")
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for names in _shuffled_by_gender(groups, options.seed).values():
        for part, chosen in _cut(names, options.ratios).items():
            parts[part] += chosen
    if not parts["test"] or not parts["train"]:
        # tiny corpora, where per-gender cuts leave a gap: the ratios over all speakers at once
        rng = np.random.default_rng(options.seed)
        parts = _cut(list(rng.permutation(groups["group"].to_numpy())), options.ratios)
    member = table["group"]
    return [
        Fold(
            "speaker",
            np.flatnonzero(member.isin(parts["train"])),
            np.flatnonzero(member.isin(parts["test"])),
            np.flatnonzero(member.isin(parts["val"])),
        )
    ]


def assign_group_folds(table: pd.DataFrame, k: int, seed: int) -> dict[str, int]:
    """Fold number of every group: genders shuffled apart, then dealt round-robin.

    Dealing the gender-sorted list in turn gives every fold the same share of each
    gender (within one speaker).

    Raises:
        ConfigError: fewer groups than folds.
    """
    groups = group_table(table)
    if k < 2:
        raise ConfigError(f"k-fold splits need at least 2 folds; got {k}")
    if len(groups) < k:
        listed = ", ".join(groups["group"].head(10))
        raise ConfigError(
            f"{k} folds need at least {k} speakers (groups); found {len(groups)}: {listed}"
        )
    ordered = [name for names in _shuffled_by_gender(groups, seed).values() for name in names]
    return {name: i % k for i, name in enumerate(ordered)}


def _speaker_kfold(table: pd.DataFrame, options: SplitOptions) -> list[Fold]:
    fold_of = assign_group_folds(table, options.folds, options.seed)
    fold_column = table["group"].map(fold_of).to_numpy()
    return [
        Fold(str(i), np.flatnonzero(fold_column != i), np.flatnonzero(fold_column == i))
        for i in range(options.folds)
    ]


def _loso(table: pd.DataFrame, options: SplitOptions) -> list[Fold]:
    names = sorted(table["group"].unique())
    if len(names) < 2:
        raise ConfigError(f"leave-one-speaker-out needs at least 2 speakers; found {len(names)}")
    member = table["group"].to_numpy()
    splits = LeaveOneGroupOut().split(member, groups=member)
    return [Fold(str(name), train, test) for name, (train, test) in zip(names, splits, strict=True)]


def corpus_pairs(
    table: pd.DataFrame, options: SplitOptions
) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """(train corpora, test corpora) pairs: the requested one, or leave-one-corpus-out.

    Raises:
        UnknownChoiceError: a requested corpus is not in the data.
        ConfigError: train and test corpora overlap, or fewer than 2 corpora.
    """
    present = sorted(table["corpus"].unique())
    for name in (*options.train_corpora, *options.test_corpora):
        if name not in present:
            raise UnknownChoiceError("corpus", name, present, where="the features and manifest")
    overlap = set(options.train_corpora) & set(options.test_corpora)
    if overlap:
        raise ConfigError(f"corpora {sorted(overlap)} are both in --train and --test")
    if options.test_corpora:
        train = options.train_corpora or tuple(c for c in present if c not in options.test_corpora)
        return [(tuple(train), tuple(options.test_corpora))]
    if options.train_corpora:
        test = tuple(c for c in present if c not in options.train_corpora)
        return [(tuple(options.train_corpora), test)]
    if len(present) < 2:
        raise ConfigError(f"cross-corpus splits need at least 2 corpora; found {present}")
    return [(tuple(c for c in present if c != held), (held,)) for held in present]


def _cross_corpus(table: pd.DataFrame, options: SplitOptions) -> list[Fold]:
    corpus = table["corpus"]
    return [
        Fold(
            f"{'+'.join(train)}->{'+'.join(test)}",
            np.flatnonzero(corpus.isin(train)),
            np.flatnonzero(corpus.isin(test)),
            train_corpora=train,
            test_corpora=test,
        )
        for train, test in corpus_pairs(table, options)
    ]


def _few_shot(table: pd.DataFrame, options: SplitOptions) -> list[Fold]:
    """Cross-corpus plus `shots` target utterances per target corpus, balanced over classes.

    Target speakers are dealt into k folds; fold j tests on the target rows of its
    speakers and draws the shots from the other target speakers only.
    """
    folds = []
    for train, test in corpus_pairs(table, options):
        target = table[table["corpus"].isin(test)]
        fold_of = assign_group_folds(target, options.folds, options.seed)
        target_fold = target["group"].map(fold_of)
        for j in range(options.folds):
            shots = []
            for name in test:
                pool = target[(target["corpus"] == name) & (target_fold != j)]
                shots.append(balanced_sample(pool, options.shots, options.seed + j))
            source = np.flatnonzero(table["corpus"].isin(train))
            folds.append(
                Fold(
                    f"{'+'.join(train)}->{'+'.join(test)}/{j}",
                    np.sort(np.concatenate([source, *shots])),
                    target.index[target_fold == j].to_numpy(),
                    train_corpora=train,
                    test_corpora=test,
                )
            )
    return folds


def balanced_sample(pool: pd.DataFrame, n: int, seed: int) -> np.ndarray:
    """Row positions of `n` rows of `pool` spread evenly over its labels.

    Each label gets ``n // n_labels`` rows (the first ``n % n_labels`` labels one
    more); a label with fewer rows gives all it has and a warning says so.
    """
    rng = np.random.default_rng(seed)
    labels = sorted(pool["label"].unique())
    chosen = []
    for i, label in enumerate(labels):
        want = n // len(labels) + (1 if i < n % len(labels) else 0)
        rows = pool.index[pool["label"] == label].to_numpy()
        if len(rows) < want:
            log.warning("few-shot: only %d %r rows available for %d shots", len(rows), label, want)
        chosen.append(rng.permutation(rows)[:want])
    return np.sort(np.concatenate(chosen)) if chosen else EMPTY


def inner_split(
    groups: np.ndarray, labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split training rows into (fit, validation) positions by group, for model selection.

    Whole groups (speakers) are moved to validation in a seeded order until it
    holds `fraction` of the rows, so validation speakers are unseen in fitting.
    With fewer than 2 groups the split falls back to rows, stratified by label.
    """
    groups = np.asarray(groups)
    rng = np.random.default_rng(seed)
    names = np.unique(groups)
    if len(names) < 2:
        return _row_split(labels, fraction, rng)
    target = max(1, int(round(fraction * len(groups))))
    chosen: list[object] = []
    taken = 0
    for name in rng.permutation(names):
        if taken >= target or len(chosen) == len(names) - 1:
            break
        chosen.append(name)
        taken += int(np.sum(groups == name))
    is_val = np.isin(groups, chosen)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def _row_split(
    labels: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    val = []
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        val.append(rows[: int(round(fraction * len(rows)))])
    is_val = np.zeros(len(labels), dtype=bool)
    is_val[np.concatenate(val)] = True
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def condition_folds(
    table: pd.DataFrame,
    train_condition: str,
    test_condition: str,
    method: str,
    options: SplitOptions,
) -> list[Fold]:
    """Folds over `table` rows: training rows of one condition, test rows of another.

    `table` has one row per (utterance, condition) and a ``condition`` column. The
    split is made on the utterances present in both conditions (with the metadata
    of the training condition), then mapped to each condition's rows, so a clean
    and a telephone run of one split hold the same speakers. ``ser classify`` and
    ``ser finetune`` both make their folds here.
    """
    train_rows = table.index[table["condition"] == train_condition].to_numpy()
    test_rows = table.index[table["condition"] == test_condition].to_numpy()
    if train_condition != test_condition:
        shared = set(table.loc[train_rows, "utt_id"]) & set(table.loc[test_rows, "utt_id"])
        train_rows = train_rows[table.loc[train_rows, "utt_id"].isin(shared).to_numpy()]
        test_position = dict(zip(table.loc[test_rows, "utt_id"], test_rows, strict=True))
    split_table = table.loc[train_rows].reset_index(drop=True)
    folds = make_folds(split_table, method, options)
    if train_condition == test_condition:
        return [_map_fold(f, train_rows, train_rows) for f in folds]
    to_test = np.array([test_position[u] for u in split_table["utt_id"]])
    return [_map_fold(f, train_rows, to_test) for f in folds]


def _map_fold(fold: Fold, train_map: np.ndarray, test_map: np.ndarray) -> Fold:
    return replace(
        fold, train=train_map[fold.train], test=test_map[fold.test], val=train_map[fold.val]
    )


def fold_corpora(fold: Fold, corpora: Iterable[str]) -> tuple[str, str]:
    """A fold's train and test corpus labels: the split's own for cross-corpus, else the pool.

    Labelling a pooled fold by the corpora its test speakers happen to come from
    would give folds of one cell different labels; per-corpus rows come separately.
    """
    if fold.test_corpora:
        return "+".join(sorted(fold.train_corpora)), "+".join(sorted(fold.test_corpora))
    pool = "+".join(sorted(set(corpora)))
    return pool, pool


def drop_unseen_classes(fold: Fold, labels: np.ndarray) -> tuple[Fold, int]:
    """Remove test rows whose class never occurs in training; warn and count them."""
    seen = set(labels[fold.train])
    keep = np.array([label in seen for label in labels[fold.test]], dtype=bool)
    dropped = int((~keep).sum())
    if dropped:
        missing = sorted(set(labels[fold.test]) - seen)
        log.warning(
            "fold %s: class(es) %s absent from training; dropped %d test row(s)",
            fold.name,
            missing,
            dropped,
        )
    return replace(fold, test=fold.test[keep]), dropped


SPLITS: dict[str, Callable[[pd.DataFrame, SplitOptions], list[Fold]]] = {
    "preset": _preset,
    "random": _random,
    "speaker": _speaker,
    "speaker-kfold": _speaker_kfold,
    "loso": _loso,
    "cross-corpus": _cross_corpus,
    "few-shot": _few_shot,
}
SPEAKER_INDEPENDENT: tuple[str, ...] = (
    "speaker",
    "speaker-kfold",
    "loso",
    "cross-corpus",
    "few-shot",
)

# What each split method does and the options it reads (the seed seeds every method's fits).
SPLIT_READS: dict[str, tuple[str, tuple[str, ...]]] = {
    "preset": ("trains and tests on the manifest's own split column", ()),
    "random": ("shuffles utterances into train/val/test by the ratios", ("ratios",)),
    "speaker": ("deals whole speakers into train/val/test by the ratios", ("ratios",)),
    "speaker-kfold": ("deals whole speakers into k folds", ("folds",)),
    "loso": ("leaves one speaker out at a time", ()),
    "cross-corpus": ("trains on some corpora and tests on others", ("train", "test")),
    "few-shot": (
        "adds a few target utterances to cross-corpus training",
        ("folds", "train", "test", "shots"),
    ),
}
SPLIT_DEFAULTS: dict[str, object] = {
    "folds": SplitOptions.folds,
    "ratios": SplitOptions.ratios,
    "train": (),
    "test": (),
    "shots": SplitOptions.shots,
}


def refuse_unused(
    method: str, given: dict[str, object], names: dict[str, str] | None = None, where: str = ""
) -> None:
    """Refuse a split option set to a non-default value that split `method` does not read.

    `given` maps option names (``folds``, ``ratios``, ``train``, ``test``,
    ``shots``) to values; None, an empty list and the default (alone or as a
    one-item list) count as not set. `names` say how each option (and ``method``)
    reads in the message (default: the flags ``--folds``... and ``--split``);
    `where` is what they are in (an experiment file), prefixed to the message.

    Raises:
        ConfigError: naming the option, its value, the split and the options it reads.
    """
    names = names or {"method": "--split", **{k: f"--{k}" for k in SPLIT_DEFAULTS}}
    does, reads = SPLIT_READS[method]
    for option, value in given.items():
        if option in reads or _unset(value, SPLIT_DEFAULTS[option]):
            continue
        read = ", ".join(names[o] for o in reads) if reads else "none of the split options"
        prefix = f"{where}: " if where else ""
        raise ConfigError(
            f"{prefix}{names[option]} {_shown(value)} does not apply to {names['method']} "
            f"{method}: {method} {does} (it reads {read})"
        )


def _unset(value: object, default: object) -> bool:
    """Whether `value` leaves an option at its default (None, empty, the default, or [default])."""
    if value is None or value == () or value == [] or value == default:
        return True
    return isinstance(value, tuple | list) and len(value) == 1 and value[0] == default


def _shown(value: object) -> str:
    """A value as the user typed it: ``5``, ``0,10``, ``emodb,emovo``."""
    if isinstance(value, tuple | list):
        return ",".join(map(str, value))
    return str(value)


class TableSplitter(BaseCrossValidator):
    """Split `method` of :data:`SPLITS` as a scikit-learn cross-validator over `table`.

    Args:
        method: the split method.
        table: one row per row of X (same order) with the columns the method needs
            (``corpus``, ``utt_id``, ``gender``, ``label``, ``split``; ``group``
            unless ``groups=`` is given to :meth:`split`).
        options: the split settings (folds, seed, ratios, corpora, shots).
    """

    def __init__(self, method: str, table: pd.DataFrame, options: SplitOptions | None = None):
        self.method = method
        self.table = table
        self.options = options

    def folds(self, X=None, y=None, groups=None) -> list[Fold]:  # noqa: N803 (sklearn naming)
        """The :class:`Fold` objects (names, validation parts) of :meth:`split`.

        Raises:
            ValueError: X or groups do not have one row per table row, or `groups`
                differ from the table's ``group`` column.
        """
        table = self.table
        if X is not None and _num_samples(X) != len(table):
            raise ValueError(f"X has {_num_samples(X)} rows but the split table has {len(table)}")
        if groups is not None:
            groups = np.asarray(groups)
            if len(groups) != len(table):
                raise ValueError(
                    f"groups has {len(groups)} rows but the split table has {len(table)}"
                )
            if "group" in table:
                differ = np.flatnonzero(table["group"].to_numpy() != groups)
                if len(differ):
                    row = int(differ[0])
                    raise ValueError(
                        f"groups[{row}]={groups[row]!r} differs from the table's group "
                        f"{table['group'].iloc[row]!r}; pass the table's group column"
                    )
            else:
                table = table.assign(group=groups)
        elif "group" not in table:
            raise ValueError(f"{self.method} split needs groups= or a 'group' column in the table")
        return make_folds(table, self.method, self.options or SplitOptions())

    def split(self, X, y=None, groups=None):  # noqa: N803 (sklearn naming)
        """(train, test) row positions of each fold, as :func:`make_folds` gives them."""
        for fold in self.folds(X, y, groups):
            yield fold.train, fold.test

    def get_n_splits(self, X=None, y=None, groups=None) -> int:  # noqa: N803
        """Number of folds (computed from the table: loso and corpus splits depend on it)."""
        return len(self.folds(X, y, groups))

    def __repr__(self) -> str:
        return f"TableSplitter({self.method!r}, <{len(self.table)} rows>, {self.options!r})"


class InnerSpeakerSplit(BaseCrossValidator):
    """:func:`inner_split` as a one-split cross-validator: (fit, validation) rows.

    Used as ``cv=`` of the hyperparameter search over a fold's training rows;
    ``groups`` are their speakers and ``y`` their labels (for the row fallback).
    """

    def __init__(self, fraction: float = 0.2, seed: int = 0):
        self.fraction = fraction
        self.seed = seed

    def split(self, X, y=None, groups=None):  # noqa: N803 (sklearn naming)
        """The one (fit, validation) split of :func:`inner_split`."""
        if groups is None or y is None:
            raise ValueError("InnerSpeakerSplit needs y and groups (speakers)")
        yield inner_split(np.asarray(groups), np.asarray(y), self.fraction, self.seed)

    def get_n_splits(self, X=None, y=None, groups=None) -> int:  # noqa: N803
        """Always one split."""
        return 1


def splitter(
    method: str, table: pd.DataFrame, options: SplitOptions | None = None
) -> TableSplitter:
    """The scikit-learn cross-validator of split `method` over `table`.

    Raises:
        UnknownChoiceError: `method` is not a known split.
    """
    if method not in SPLITS:
        raise UnknownChoiceError("split", method, SPLITS)
    return TableSplitter(method, table, options)
