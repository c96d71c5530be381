"""A tiny Oréau tree: nested French folder names, some written in NFD form.

The published layout puts actresses under ``Femmes/Émotions/`` written in NFD
(as macOS writes it) and actors one level deeper under ``Hommes/Émotions/`` in
NFC, so one tree holds both normalisations. ``actors.csv`` (semicolon-separated,
French headers and values, unpadded speaker numbers) sits in ``Documents/``.
Speaker 07 also has the published release's two off-scheme files ``07z03Sa.wav``
and ``07z04Sa.wav`` (see :mod:`ssl_ser.corpora.oreau`).
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

from ssl_ser.testing import check_layout, write_tree

# speaker -> gender as the manifest writes it
SPEAKERS: dict[str, str] = {"01": "F", "02": "F", "07": "M", "10": "M", "11": "M"}
SENTENCES = ("01", "02", "05")
EMOTION_CODES = ("C", "T", "J", "P", "D", "S", "N")
# Files of the published release off the naming scheme ('z' where the scheme has 'a').
ANOMALIES: tuple[str, ...] = ("07z03Sa.wav", "07z04Sa.wav")
SAMPLE_RATE = 22050
ACTORS_CSV = "Acteur;Sexe\n" + "".join(
    f"{int(s)};{'femme' if g == 'F' else 'homme'}\n" for s, g in SPEAKERS.items()
)


def file_names() -> list[str]:
    """The file names the tree holds, e.g. 10a02Ja.wav, then the release's anomalies."""
    regular = [f"{s}a{t}{e}a.wav" for s in SPEAKERS for t in SENTENCES for e in EMOTION_CODES]
    return regular + list(ANOMALIES)


def relative_folder(name: str, layout: str = "published") -> Path:
    """Folder of file `name` under the root (NFD for actresses in the published layout)."""
    if layout == "flat":
        return Path("wav", "wav")
    speaker = name[:2]
    if SPEAKERS[speaker] == "F":
        return Path(unicodedata.normalize("NFD", f"Femmes/Émotions/Locutrice {speaker}"))
    return Path("Hommes", "Émotions", f"Locuteur {speaker}", f"phrase {name[3:5]}")


def make_tree(
    root: str | Path, layout: str = "published", seconds: float = 0.05, actors: bool = True
) -> list[Path]:
    """Write the tree; `actors` adds ``actors.csv`` (in ``Documents/``, or the root if flat)."""
    check_layout(layout)
    root = Path(root)
    clips = [(Path(relative_folder(name, layout), name), SAMPLE_RATE) for name in file_names()]
    paths = write_tree(root, clips, seconds, layout)
    if actors:
        folder = root / "Documents" if layout == "published" else root
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "actors.csv").write_text(ACTORS_CSV, encoding="utf-8")
    return paths
