"""The canonical emotion vocabulary and the label sets classifiers train on.

A label set is named (``basic4``, ``all``, ``sentiment``) or given as an explicit
list of canonical emotions (``angry,happy,sad,neutral,fear,disgust``), each its
own class; rows of other emotions are left out. An explicit list is spelled one
way wherever it is recorded (results' ``labels`` column, cell ids): its emotions
in the order of :data:`EMOTIONS`, joined by commas, or the name of the named set
with the same classes (``neutral,sad,happy,angry`` is ``basic4``). So two
spellings of one set give one value, and the report groups their cells together.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ssl_ser.errors import ConfigError, UnknownChoiceError

EMOTIONS: tuple[str, ...] = (
    "angry",
    "happy",
    "sad",
    "neutral",
    "fear",
    "disgust",
    "surprise",
    "boredom",
    "calm",
)

# Common spellings in corpus folders and user CSVs -> canonical emotion.
SYNONYMS: dict[str, str] = {
    "anger": "angry",
    "ang": "angry",
    "mad": "angry",
    "happiness": "happy",
    "hap": "happy",
    "joy": "happy",
    "joyful": "happy",
    "sadness": "sad",
    "sa": "sad",
    "neu": "neutral",
    "neutrality": "neutral",
    "fearful": "fear",
    "fea": "fear",
    "afraid": "fear",
    "scared": "fear",
    "disgusted": "disgust",
    "dis": "disgust",
    "surprised": "surprise",
    "sur": "surprise",
    "bored": "boredom",
    "calmness": "calm",
}


@dataclass(frozen=True)
class LabelSet:
    """A mapping from canonical emotions to class labels; others are excluded."""

    name: str
    mapping: Mapping[str, str]

    @property
    def classes(self) -> tuple[str, ...]:
        """Class labels in a fixed order (first appearance in the mapping)."""
        return tuple(dict.fromkeys(self.mapping.values()))

    def label(self, emotion: str) -> str | None:
        """Class label of a canonical emotion, or None when the set excludes it."""
        return self.mapping.get(emotion)


LABEL_SETS: dict[str, LabelSet] = {
    "basic4": LabelSet("basic4", {e: e for e in ("angry", "happy", "sad", "neutral")}),
    "all": LabelSet("all", {e: e for e in EMOTIONS}),
    "sentiment": LabelSet(
        "sentiment",
        {
            "happy": "positive",
            "sad": "negative",
            "angry": "negative",
            "fear": "negative",
            "disgust": "negative",
            "neutral": "neutral",
        },
    ),
}


LIST_SEPARATOR = ","
LIST_EXAMPLE = "angry,happy,sad,neutral,fear,disgust"


def get_label_set(spec: str | Sequence[str], where: str = "") -> LabelSet:
    """The label set `spec` names: basic4, all, sentiment, or a list of canonical emotions.

    A list is a comma-separated string (``"angry,happy,sad"``) or a sequence of
    emotion names; each emotion becomes its own class. Its :attr:`LabelSet.name`
    is the one spelling of that set (see the module docstring).

    Raises:
        UnknownChoiceError: an unknown set name, or a listed emotion outside the
            canonical vocabulary (naming it and the valid ones).
        ConfigError: a list that repeats an emotion or has fewer than two.
    """
    if isinstance(spec, str) and LIST_SEPARATOR not in spec:
        name = spec.strip()
        if name in LABEL_SETS:
            return LABEL_SETS[name]
        if name not in EMOTIONS:
            error = UnknownChoiceError("label set", spec, LABEL_SETS, where=where)
            error.args = (
                f"{error}, or a comma list of two or more canonical emotions "
                f"({', '.join(EMOTIONS)}), e.g. {LIST_EXAMPLE}",
            )
            raise error
        items: list[str] = [name]
    elif isinstance(spec, str):
        items = [item.strip() for item in spec.split(LIST_SEPARATOR) if item.strip()]
    else:
        items = [str(item).strip() for item in spec]
    return emotion_list(items, where)


def emotion_list(items: Sequence[str], where: str = "") -> LabelSet:
    """The label set of an explicit list of canonical emotions, each its own class.

    Raises:
        UnknownChoiceError: an emotion outside the canonical vocabulary.
        ConfigError: an emotion listed twice, or fewer than two emotions.
    """
    given = LIST_SEPARATOR.join(items)
    place = f" in {where}" if where else ""
    for item in items:
        if item not in EMOTIONS:
            hint = f" (did you mean {SYNONYMS[item]!r}?)" if item in SYNONYMS else ""
            if item in LABEL_SETS:
                hint = f" ({item!r} is a named set: give it alone, or list its emotions)"
            raise UnknownChoiceError(
                "emotion", item, EMOTIONS, where=f"label list {given!r}{place}{hint}"
            )
    repeated = sorted({item for item in items if items.count(item) > 1}, key=EMOTIONS.index)
    if repeated:
        raise ConfigError(
            f"label list {given!r}{place} names {', '.join(repeated)} more than once; "
            "list each emotion once"
        )
    if len(items) < 2:
        raise ConfigError(
            f"label list {given!r}{place} has {len(items)} emotion(s); a classifier needs at "
            f"least two, e.g. {LIST_EXAMPLE}"
        )
    chosen = [e for e in EMOTIONS if e in items]
    mapping = {e: e for e in chosen}
    for named in LABEL_SETS.values():
        if dict(named.mapping) == mapping:
            return named
    return LabelSet(LIST_SEPARATOR.join(chosen), mapping)


def label_set_name(spec: str | Sequence[str], where: str = "") -> str:
    """The one spelling of the label set `spec` (what results record); validates it."""
    return get_label_set(spec, where).name


def canonical_emotion(name: str, mapping: Mapping[str, str] | None = None, where: str = "") -> str:
    """Map an emotion name from a folder or CSV to the canonical vocabulary.

    A user `mapping` (raw name -> canonical emotion) is consulted first, then the
    canonical names themselves and common synonyms, all case-insensitively.

    Raises:
        UnknownChoiceError: the name maps to no canonical emotion.
    """
    key = unicodedata.normalize("NFC", name).strip().lower()
    if mapping:
        lowered = {unicodedata.normalize("NFC", k).strip().lower(): v for k, v in mapping.items()}
        if key in lowered:
            target = lowered[key].strip().lower()
            if target not in EMOTIONS:
                raise UnknownChoiceError("emotion", lowered[key], EMOTIONS, where=where)
            return target
    if key in EMOTIONS:
        return key
    if key in SYNONYMS:
        return SYNONYMS[key]
    raise UnknownChoiceError("emotion", name, EMOTIONS + tuple(SYNONYMS), where=where)
