"""A tiny EmoDB tree: every emotion code for a few speakers and texts."""

from __future__ import annotations

from pathlib import Path

from ssl_ser.testing import check_layout, write_tree

SPEAKERS = ("03", "08", "10", "16")
# The ten speakers of the published corpus (enough for its usual 5 speaker folds).
ALL_SPEAKERS = ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16")
TEXTS = ("a01", "b10")
EMOTION_CODES = ("W", "L", "E", "A", "F", "T", "N")


def file_names() -> list[str]:
    """The file names the tree holds, e.g. 03a01Fa.wav."""
    return [f"{s}{t}{e}a.wav" for s in SPEAKERS for t in TEXTS for e in EMOTION_CODES]


def make_tree(root: str | Path, layout: str = "published", seconds: float = 0.1) -> list[Path]:
    """Write the tree under `root`: ``wav/`` (published) or ``wav/wav/`` (flat)."""
    check_layout(layout)
    folder = Path("wav") if layout == "published" else Path("wav", "wav")
    return write_tree(root, [(folder / name, 16000) for name in file_names()], seconds, layout)


# EmoDB's codes of the emotions the synthesiser speaks (ssl_ser.synth.EMOTION_PROFILES).
SPOKEN_CODES = {"W": "angry", "A": "fear", "F": "happy", "T": "sad", "N": "neutral"}


def make_speech_tree(
    root: str | Path, speakers: tuple[str, ...] = ALL_SPEAKERS, syllables: int = 4
) -> list[Path]:
    """EmoDB's layout and file names over synthetic emotional speech (:mod:`ssl_ser.synth`).

    Each speaker is a voice of their EmoDB gender with a pitch of their own, so that
    end-to-end runs (the docs' examples) see emotions a probe can learn.
    """
    import soundfile as sf

    from ssl_ser import synth
    from ssl_ser.corpora.emodb import MALE_SPEAKERS

    paths = []
    for k, speaker in enumerate(speakers):
        male = speaker in MALE_SPEAKERS
        voice = synth.Voice(
            speaker,
            "M" if male else "F",
            (100 if male else 195) + 6 * k,
            1.0 if male else 1.17,
            0.03,
        )
        for sentence, text in enumerate(TEXTS):
            for code, emotion in SPOKEN_CODES.items():
                path = Path(root, "wav", f"{speaker}{text}{code}a.wav")
                path.parent.mkdir(parents=True, exist_ok=True)
                wave = synth.utterance(voice, emotion, sentence, syllables=syllables)
                sf.write(str(path), wave, synth.SAMPLE_RATE, subtype="PCM_16")
                paths.append(path)
    return paths
