"""EMOVO, the Italian emotional speech corpus (6 actors, 14 sentences, 588 files).

Source: Costantini et al. (2014), Fondazione Ugo Bordoni. Published layout:
``f1/dis-f1-b1.wav`` = emotion (3 letters), speaker (f1-f3 female, m1-m3 male),
sentence (b short, l long, n nonsense, d question). The recordings are
two-channel, one channel per microphone; by corpus policy the toolkit reads
channel 0 and never averages the two (``INFO.channel`` puts 0 in the manifest's
``channel`` column).
"""

from __future__ import annotations

import re

from ssl_ser.corpora._base import (
    CorpusInfo,
    FoundFile,
    Utterance,
    folder_reader,
    match_name,
    named_utterance,
)

INFO = CorpusInfo(
    name="emovo",
    title="EMOVO",
    language="ita",
    emotions={
        "dis": "disgust",
        "gio": "happy",
        "pau": "fear",
        "rab": "angry",
        "sor": "surprise",
        "tri": "sad",
        "neu": "neutral",
    },
    layout="f1/dis-f1-b1.wav = emotion(3)-speaker(f1-f3, m1-m3)-sentence(2); two channels",
    source="Costantini et al. (2014), LREC; Fondazione Ugo Bordoni",
    expected_files=588,
    channel=0,
)

# dis-f1-b1.wav -> emotion dis (disgust), speaker f1 (female), sentence b1
NAME = re.compile(r"^(?P<emotion>[a-z]{3})-(?P<speaker>(?P<sex>[fm])\d)-(?P<sentence>[bldn]\d)$")

GENDERS = {"f": "F", "m": "M"}

TEXTS = {
    "b1": "Gli operai si alzano presto.",
    "b2": "I vigili sono muniti di pistola.",
    "b3": "La cascata fa molto rumore.",
    "l1": "L'autunno prossimo Tony partirà per la Spagna nella prima metà di ottobre.",
    "l2": "Ora prendo la felpa di là ed esco per fare una passeggiata.",
    "l3": "Un attimo dopo s'è incamminato... ed è inciampato.",
    "l4": "Vorrei il numero telefonico del Signor Piatti.",
    "n1": "La casa forte vuole col pane.",
    "n2": "La forza trova il passo e l'aglio rosso.",
    "n3": "Il gatto sta scorrendo nella pera.",
    "n4": "Insalata pastasciutta coscia d'agnello limoncello.",
    "n5": "Uno quarantatré dieci mille cinquantasette venti.",
    "d1": "Sabato sera cosa farà?",
    "d2": "Porti con te quella cosa?",
}


def parse(found: FoundFile) -> Utterance:
    """Fields of one EMOVO file from its name."""
    match = match_name(NAME, found, INFO)
    return named_utterance(
        found,
        match,
        INFO,
        speaker=match["speaker"],
        gender=GENDERS[match["sex"]],
        text=TEXTS.get(match["sentence"], ""),
    )


scan = folder_reader(INFO, parse)  # channel 0 (INFO.channel)
