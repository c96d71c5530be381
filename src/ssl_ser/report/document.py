"""The report as plain data: a header and sections of figures, tables and notes.

Both renderers (:mod:`ssl_ser.report.html` and :mod:`ssl_ser.report.markdown`)
walk the same :class:`Document`, so the HTML and Markdown versions always hold
the same content.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class FigureItem:
    """A figure saved as PNG and SVG files."""

    name: str
    title: str
    caption: str
    png: Path
    svg: Path


@dataclass(frozen=True)
class TableItem:
    """A table whose cells are already formatted text."""

    name: str
    title: str
    caption: str
    frame: pd.DataFrame


@dataclass(frozen=True)
class NoteItem:
    """A figure or table left out, and why (never an empty figure)."""

    title: str
    text: str


@dataclass(frozen=True)
class HeadingItem:
    """A sub-heading that opens the items of one comparable group within a section."""

    text: str


Item = FigureItem | TableItem | NoteItem | HeadingItem


@dataclass(frozen=True)
class ExtractorInfo:
    """How the header describes one extractor."""

    name: str
    kind: str
    untrained: bool


@dataclass
class Section:
    """A titled part of the report."""

    title: str
    intro: str = ""
    items: list[Item] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        """An id for links within the page."""
        return "".join(c if c.isalnum() else "-" for c in self.title.lower()).strip("-")


@dataclass
class Document:
    """Everything the report shows, in order.

    Fact values may hold several lines (separated by newlines); each highlight
    is the headline of one comparable group.
    """

    title: str
    extractors: list[ExtractorInfo]
    facts: list[tuple[str, str]]
    warnings: list[str]
    highlights: list[str]
    sections: list[Section]

    @property
    def highlight(self) -> str:
        """The first group's headline, plus how many other groups the report holds."""
        if not self.highlights:
            return ""
        more = len(self.highlights) - 1
        return self.highlights[0] + (f" (+{more} other group(s) in the report)" if more else "")

    def items(self) -> list[Item]:
        """All items of all sections, in order."""
        return [item for section in self.sections for item in section.items]

    @property
    def figures(self) -> list[FigureItem]:
        """The figures drawn."""
        return [item for item in self.items() if isinstance(item, FigureItem)]

    @property
    def tables(self) -> list[TableItem]:
        """The tables shown."""
        return [item for item in self.items() if isinstance(item, TableItem)]

    @property
    def notes(self) -> list[NoteItem]:
        """The figures and tables left out, with the reason."""
        return [item for item in self.items() if isinstance(item, NoteItem)]
