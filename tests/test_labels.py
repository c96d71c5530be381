"""Canonical emotions and label sets."""

from __future__ import annotations

import pytest

from ssl_ser.errors import UnknownChoiceError
from ssl_ser.labels import (
    EMOTIONS,
    LABEL_SETS,
    apply_label_set,
    canonical_emotion,
    get_label_set,
)


def test_canonical_vocabulary_is_the_documented_one() -> None:
    documented = ("angry", "happy", "sad", "neutral", "fear", "disgust", "surprise")
    assert (*documented, "boredom", "calm") == EMOTIONS


def test_basic4_keeps_four_emotions_and_excludes_the_rest() -> None:
    labels = apply_label_set(EMOTIONS, "basic4")
    kept = {e: label for e, label in zip(EMOTIONS, labels, strict=True) if label is not None}
    assert kept == {"angry": "angry", "happy": "happy", "sad": "sad", "neutral": "neutral"}
    assert get_label_set("basic4").classes == ("angry", "happy", "sad", "neutral")


def test_all_keeps_every_emotion_as_itself() -> None:
    assert apply_label_set(EMOTIONS, "all") == list(EMOTIONS)
    assert get_label_set("all").classes == EMOTIONS


def test_sentiment_mapping() -> None:
    expected = {
        "happy": "positive",
        "sad": "negative",
        "angry": "negative",
        "fear": "negative",
        "disgust": "negative",
        "neutral": "neutral",
        "surprise": None,
        "boredom": None,
        "calm": None,
    }
    assert dict(zip(EMOTIONS, apply_label_set(EMOTIONS, "sentiment"), strict=True)) == expected
    assert set(get_label_set("sentiment").classes) == {"positive", "negative", "neutral"}


def test_unknown_label_set_names_the_value_and_the_choices() -> None:
    with pytest.raises(UnknownChoiceError, match="unknown label set 'basic5'") as caught:
        get_label_set("basic5")
    assert caught.value.choices == list(LABEL_SETS)
    assert "basic4, all, sentiment" in str(caught.value)
    with pytest.raises(UnknownChoiceError):
        apply_label_set(["angry"], "basic5")


@pytest.mark.parametrize(
    ("raw", "emotion"),
    [("Angry", "angry"), (" anger ", "angry"), ("HAPPINESS", "happy"), ("sadness", "sad")]
    + [("fearful", "fear"), ("Disgusted", "disgust"), ("surprised", "surprise"), ("calm", "calm")],
)
def test_canonical_names_and_synonyms(raw: str, emotion: str) -> None:
    assert canonical_emotion(raw) == emotion


def test_user_mapping_wins_and_is_checked() -> None:
    assert canonical_emotion("Joie", {"joie": "happy"}) == "happy"
    assert canonical_emotion("sad", {"sad": "neutral"}) == "neutral"
    with pytest.raises(UnknownChoiceError, match="'ecstatic' in my.csv"):
        canonical_emotion("Joie", {"joie": "ecstatic"}, where="my.csv")


def test_unknown_emotion_lists_canonical_names_and_synonyms() -> None:
    with pytest.raises(UnknownChoiceError, match="unknown emotion 'grumpy' in x.wav") as caught:
        canonical_emotion("grumpy", where="x.wav")
    assert {"angry", "calm", "anger", "sadness"} <= set(caught.value.choices)
