"""ESD, the Emotional Speech Dataset (Mandarin and English, 20 speakers, 35,000 files).

Source: Zhou et al. (2021), https://github.com/HLTSingapore/Emotional-Speech-Data.
Published layout: ``<spk>/<Emotion>/[train|evaluation|test/]<spk>_<index>.wav``, e.g.
``0011/Angry/train/0011_000401.wav``. Speakers 0001-0010 speak Mandarin, 0011-0020
English; each speaker's 1,750 utterances are numbered in emotion blocks of 350: Neutral
(1-350), Angry (351-700), Happy (701-1050), Sad (1051-1400), Surprise (1401-1750), so a
flattened layout (``wav/wav/0011_000001.wav``) still has its emotion. The split folder is
the preset split (evaluation -> val). ``<spk>/<spk>.txt`` (tab-separated id, text,
emotion; Mandarin ones may be GB18030) gives the text.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

from ssl_ser.corpora._base import (
    CorpusInfo,
    FoundFile,
    Utterance,
    folder_reader,
    lookup_code,
    match_name,
)
from ssl_ser.errors import CorpusError, CorpusFileError

log = logging.getLogger(__name__)

INFO = CorpusInfo(
    name="esd",
    title="ESD",
    language="cmn, eng",
    emotions={
        "Angry": "angry",
        "Happy": "happy",
        "Neutral": "neutral",
        "Sad": "sad",
        "Surprise": "surprise",
    },
    layout="<spk>/<Emotion>/[train|evaluation|test/]<spk>_<index>.wav, e.g. "
    "0011/Angry/train/0011_000401.wav (+ <spk>/<spk>.txt transcripts)",
    source="https://github.com/HLTSingapore/Emotional-Speech-Data",
    expected_files=35000,
)

# 0011_000401.wav -> speaker 0011 (English, male), utterance 401 (in the Angry block)
NAME = re.compile(r"^(?P<speaker>\d{4})_(?P<index>\d{6})$")
SPEAKER_FOLDER = re.compile(r"^\d{4}$")

SPEAKERS = range(1, 21)
MANDARIN_SPEAKERS = range(1, 11)
FEMALE_SPEAKERS = frozenset({1, 2, 3, 7, 9, 15, 16, 17, 18, 19})
EMOTION_BLOCKS: tuple[str, ...] = ("Neutral", "Angry", "Happy", "Sad", "Surprise")
BLOCK_SIZE = 350
SPLIT_FOLDERS: dict[str, str] = {"train": "train", "evaluation": "val", "test": "test"}
TRANSCRIPT_ENCODINGS: tuple[str, ...] = ("utf-8-sig", "gb18030")


def decode_transcript(path: Path) -> str:
    """Text of a transcript file, trying UTF-8 first, then GB18030.

    Raises:
        CorpusError: the file decodes with none of the encodings.
    """
    data = path.read_bytes()
    for encoding in TRANSCRIPT_ENCODINGS:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise CorpusError(
        f"cannot decode transcript {path}; tried encodings {', '.join(TRANSCRIPT_ENCODINGS)}"
    )


def read_transcript(path: Path) -> dict[str, str]:
    """Utterance id -> text from one ``<spk>.txt`` (tab-separated id, text, emotion)."""
    texts: dict[str, str] = {}
    malformed = 0
    for line in decode_transcript(path).splitlines():
        if not line.strip():
            continue
        fields = line.split("\t") if "\t" in line else line.split(maxsplit=1)
        if len(fields) < 2 or NAME.match(fields[0].strip()) is None:
            malformed += 1
            continue
        texts[fields[0].strip()] = fields[1].strip()
    if malformed:
        log.warning("%s: ignored %d line(s) that are not 'id<TAB>text'", path, malformed)
    return texts


def read_transcripts(root: Path) -> dict[str, str]:
    """Texts of every ``<spk>.txt`` transcript found under `root`, keyed by utterance id."""
    texts: dict[str, str] = {}
    for path in sorted(root.rglob("*.txt")):
        if SPEAKER_FOLDER.match(path.stem):
            texts.update(read_transcript(path))
    if not texts:
        log.info("no ESD transcripts (<spk>/<spk>.txt) under %s: texts stay empty", root)
    return texts


def folder_fields(found: FoundFile) -> tuple[str, str, str]:
    """(speaker folder, emotion folder, split) from the folders above a file, '' if absent.

    The published layout is recognised by a four-digit speaker folder two levels up
    (below any split folder) or by a known emotion folder; anything else is a
    flattened layout whose emotion comes from the utterance index.
    """
    parents = list(found.parts[:-1])
    split = ""
    if parents and parents[-1].lower() in SPLIT_FOLDERS:
        split = SPLIT_FOLDERS[parents.pop().lower()]
    if len(parents) >= 2 and SPEAKER_FOLDER.match(parents[-2]):
        return parents[-2], parents[-1], split
    if parents and parents[-1] in INFO.emotions:
        return "", parents[-1], split
    return "", "", split


def parse(found: FoundFile, transcripts: Mapping[str, str] | None = None) -> Utterance:
    """Fields of one ESD file from its name, its folders and the speakers' transcripts."""
    match = match_name(NAME, found, INFO)
    speaker, index = match["speaker"], int(match["index"])
    if int(speaker) not in SPEAKERS:
        raise CorpusFileError(found.path, f"speaker {speaker} outside the ESD range 0001-0020")
    if not 1 <= index <= BLOCK_SIZE * len(EMOTION_BLOCKS):
        raise CorpusFileError(
            found.path, f"utterance index {match['index']} outside the ESD range 000001-001750"
        )
    speaker_folder, emotion_folder, split = folder_fields(found)
    if speaker_folder and speaker_folder != speaker:
        raise CorpusFileError(
            found.path, f"speaker {speaker} in the name but folder {speaker_folder!r} above it"
        )
    by_index = EMOTION_BLOCKS[(index - 1) // BLOCK_SIZE]  # the emotion ESD numbers it in
    emotion = lookup_code(emotion_folder or by_index, INFO.emotions, "emotion code", found.path)
    if emotion_folder and emotion_folder != by_index:
        raise CorpusFileError(
            found.path,
            f"emotion folder {emotion_folder!r} disagrees with utterance index {index}, "
            f"which ESD numbers as {by_index}",
        )
    return Utterance(
        stem=found.stem,
        emotion=emotion,
        emotion_raw=emotion_folder or by_index,
        speaker=speaker,
        gender="F" if int(speaker) in FEMALE_SPEAKERS else "M",
        language="cmn" if int(speaker) in MANDARIN_SPEAKERS else "eng",
        text=(transcripts or {}).get(found.stem, ""),
        split=split,
    )


scan = folder_reader(INFO, parse, read_transcripts)
