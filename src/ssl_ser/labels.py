"""The canonical emotion vocabulary and the label sets classifiers train on."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ssl_ser.errors import UnknownChoiceError

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


def get_label_set(name: str) -> LabelSet:
    """Return the label set called `name` (basic4, all or sentiment)."""
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise UnknownChoiceError("label set", name, LABEL_SETS) from None


def apply_label_set(emotions: Iterable[str], name: str) -> list[str | None]:
    """Map canonical emotions to the class labels of a label set (None = excluded)."""
    label_set = get_label_set(name)
    return [label_set.label(e) for e in emotions]


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
