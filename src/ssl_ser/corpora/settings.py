"""Corpus reading settings: the reader options of the generic corpora and of ``ser prepare``.

:class:`ReaderSettings` holds the keyword options a reader's ``scan`` takes
(``mapping`` parsed once from ``RAW=EMOTION`` words into a table);
:class:`PrepareSettings` what ``ser prepare`` does with the manifest. This module
imports neither pandas nor an audio library.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import click
from pydantic import ValidationInfo, field_validator, model_validator

from ssl_ser.choices import CONDITIONS, ON_ERROR_CHOICES
from ssl_ser.errors import ConfigError
from ssl_ser.settings import Opt, Settings, setting


class ReaderSettings(Settings):
    """Options of the generic readers (folder, csv); each reader takes those its scan accepts."""

    name: str | None = setting(None, "Corpus name for ids (folder and csv readers).")
    mapping: dict[str, str] = setting(
        {},
        "Map a raw emotion name to a canonical one; repeatable (folder and csv readers).",
        flag="--map",
        multiple=True,
        metavar="RAW=EMOTION",
    )
    speaker_pattern: str | None = setting(
        None, "Regex with a named group 'speaker' applied to file names (folder reader)."
    )
    language: str | None = setting(None, "ISO 639-3 language code (folder reader).")

    @field_validator("mapping", mode="before")
    @classmethod
    def _mapping(cls, value: Any, info: ValidationInfo) -> Any:
        """``("Wut=angry", ...)`` -> ``{"Wut": "angry"}`` (the reader checks the emotions)."""
        if not isinstance(value, tuple | list):
            return value
        mapping: dict[str, str] = {}
        for pair in value:
            raw, sep, emotion = str(pair).partition("=")
            if not sep or not raw.strip() or not emotion.strip():
                raise ConfigError(f"{cls.place(info)} {pair!r} is not RAW=EMOTION")
            mapping[raw.strip()] = emotion.strip()
        return mapping

    def given(self) -> dict[str, object]:
        """The options given (not left at their empty default), by scan keyword."""
        return {k: v for k, v in self.model_dump().items() if v not in (None, {}, "")}


class PrepareSettings(Settings):
    """Where ``ser prepare`` writes the manifest, what it does with bad files, what it renders."""

    output: Annotated[
        Path,
        Opt(
            "Manifest to write: .csv or .parquet.",
            aliases=("-o",),
            click_type=click.Path(dir_okay=False, path_type=Path),
        ),
    ]
    on_error: str = setting(
        "raise",
        "raise: stop at the first bad file; skip: list bad files in <output stem>.skipped.csv.",
        choices=ON_ERROR_CHOICES,
    )
    condition: str | None = setting(
        None,
        "Condition to render with --write [default: clean].",
        choices=CONDITIONS,
    )
    write: Path | None = setting(
        None,
        "Render every utterance under --condition to this folder as 16 kHz WAV.",
        click_type=click.Path(file_okay=False, path_type=Path),
    )

    @field_validator("output")
    @classmethod
    def _suffix(cls, output: Path, info: ValidationInfo) -> Path:
        from ssl_ser.manifest import MANIFEST_SUFFIXES

        if output.suffix.lower() not in MANIFEST_SUFFIXES:
            raise ConfigError(
                f"{cls.place(info)} {str(output)!r} has suffix {output.suffix!r}; expected one "
                f"of {', '.join(MANIFEST_SUFFIXES)}"
            )
        return output

    @model_validator(mode="after")
    def _rendered(self) -> PrepareSettings:
        if self.condition is not None and self.write is None:
            raise ConfigError("--condition selects what --write renders; give --write DIR too")
        return self
