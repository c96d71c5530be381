"""What one extraction run did for one (corpus, condition) cache file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ExtractSummary:
    """The outcome of extracting one corpus under one condition into cache file `path`.

    Attributes:
        model: the model's short name (a folder's last part), shown first in the line.
        extracted: utterances whose features this run computed and stored.
        already_done: utterances found complete in the cache and left alone.
        changed: committed utterances whose audio changed since they were
            extracted (or vanished); they were extracted again (and counted in
            `extracted` or `failed`).
        fingerprinted: complete utterances of an older cache that had no audio
            fingerprint and were given one from their current files.
        failed: ``(utt_id, reason)`` of utterances that could not be processed.
        audio_seconds: seconds of audio this run fed to the model.
        layers: hidden states stored per utterance.
        seconds: wall time of this corpus's extraction (model loading excluded).
    """

    corpus: str
    condition: str
    path: Path
    model: str = ""
    extracted: int = 0
    already_done: int = 0
    changed: int = 0
    fingerprinted: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    audio_seconds: float = 0.0
    layers: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        """The one-line summary the CLI prints (rate: audio seconds per wall-clock second)."""
        model = f"{self.model} " if self.model else ""
        rate = self.audio_seconds / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"{model}{self.corpus}/{self.condition}: {self.extracted} utterances "
            f"({self.audio_seconds / 3600:.3f} h audio), {self.layers} layers, "
            f"{self.seconds:.1f} s, {rate:.1f} audio s/s"
        )
        if self.already_done:
            text += f"; {self.already_done} already cached"
        if self.changed:
            text += f"; {self.changed} changed since extraction (re-extracted)"
        if self.failed:
            text += f"; {len(self.failed)} failed"
        return text
