"""Canonical emotions and label sets."""

from __future__ import annotations

import pytest

from ssl_ser.errors import ConfigError, UnknownChoiceError
from ssl_ser.labels import (
    EMOTIONS,
    LABEL_SETS,
    canonical_emotion,
    get_label_set,
    label_set_name,
)


def test_canonical_vocabulary_is_the_documented_one() -> None:
    documented = ("angry", "happy", "sad", "neutral", "fear", "disgust", "surprise")
    assert (*documented, "boredom", "calm") == EMOTIONS


def test_basic4_keeps_four_emotions_and_excludes_the_rest() -> None:
    labels = [get_label_set("basic4").label(e) for e in EMOTIONS]
    kept = {e: label for e, label in zip(EMOTIONS, labels, strict=True) if label is not None}
    assert kept == {"angry": "angry", "happy": "happy", "sad": "sad", "neutral": "neutral"}
    assert get_label_set("basic4").classes == ("angry", "happy", "sad", "neutral")


def test_all_keeps_every_emotion_as_itself() -> None:
    assert [get_label_set("all").label(e) for e in EMOTIONS] == list(EMOTIONS)
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
    assert {e: get_label_set("sentiment").label(e) for e in EMOTIONS} == expected
    assert set(get_label_set("sentiment").classes) == {"positive", "negative", "neutral"}


def test_unknown_label_set_names_the_value_and_the_choices() -> None:
    with pytest.raises(UnknownChoiceError, match="unknown label set 'basic5'") as caught:
        get_label_set("basic5")
    assert caught.value.choices == list(LABEL_SETS)
    assert "basic4, all, sentiment" in str(caught.value)


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


SHARED6 = ("angry", "happy", "sad", "neutral", "fear", "disgust")


@pytest.mark.parametrize(
    "spec",
    [
        "angry,happy,sad,neutral,fear,disgust",
        "disgust,fear,neutral,sad,happy,angry",
        " angry , happy,sad,neutral,fear,disgust, ",
        list(SHARED6),
        ("fear", "disgust", "angry", "happy", "sad", "neutral"),
    ],
)
def test_an_explicit_list_keeps_its_emotions_each_its_own_class(spec) -> None:
    label_set = get_label_set(spec)
    # one spelling whatever the order or form: the canonical vocabulary's order
    assert label_set.name == "angry,happy,sad,neutral,fear,disgust"
    assert label_set.classes == SHARED6
    labels = {e: label_set.label(e) for e in EMOTIONS}
    assert labels == {e: (e if e in SHARED6 else None) for e in EMOTIONS}
    assert label_set_name(spec) == label_set.name


def test_a_list_equal_to_a_named_set_is_called_by_that_name() -> None:
    assert get_label_set("neutral,sad,happy,angry") is LABEL_SETS["basic4"]
    assert get_label_set(list(reversed(EMOTIONS))) is LABEL_SETS["all"]
    assert get_label_set("sad,fear").name == "sad,fear"


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        (
            "anger,happy",
            UnknownChoiceError,
            r"unknown emotion 'anger' in label list 'anger,happy' \(did you mean 'angry'\?\); "
            r"expected one of angry, happy, sad, neutral, fear, disgust, surprise, boredom, calm",
        ),
        ("angry,joyous", UnknownChoiceError, "unknown emotion 'joyous' in label list"),
        ("basic4,fear", UnknownChoiceError, "'basic4' is a named set: give it alone"),
        ("angry,sad,angry", ConfigError, "'angry,sad,angry' names angry more than once"),
        (["sad", "sad"], ConfigError, "names sad more than once"),
        ("angry", ConfigError, "label list 'angry' has 1 emotion.*at least two"),
        ("angry,", ConfigError, "has 1 emotion"),
        (
            "basic5",
            UnknownChoiceError,
            "unknown label set 'basic5'; expected one of basic4, all, sentiment, or a comma "
            "list of two or more canonical emotions",
        ),
    ],
)
def test_bad_label_lists_name_the_bad_value(spec, error, message) -> None:
    with pytest.raises(error, match=message):
        get_label_set(spec)
