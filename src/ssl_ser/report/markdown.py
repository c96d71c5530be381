"""Render a :class:`~ssl_ser.report.document.Document` as Markdown that links the PNG figures.

The Markdown file sits beside the HTML file, so figures are linked by their
path relative to it (``figures/layers-speaker-kfold.png``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ssl_ser.report.document import Document, FigureItem, HeadingItem, Item, NoteItem, TableItem


def render(document: Document, base: Path) -> str:
    """The report as Markdown; figure links are relative to `base` (the file's folder)."""
    lines = [f"# {document.title}", ""]
    for text in document.highlights:
        lines += [f"**{_sentence(text)}**", ""]
    for text in document.warnings:
        lines += [f"> **Warning:** {text}", ""]
    for info in document.extractors:
        badge = " — **UNTRAINED (random weights)**" if info.untrained else ""
        lines.append(f"- **Extractor:** {info.name} ({info.kind}){badge}")
    lines += [f"- **{label}:** {value.replace(chr(10), '<br>')}" for label, value in document.facts]
    figures = tables = 0
    for section in document.sections:
        lines += ["", f"## {section.title}", ""]
        if section.intro:
            lines += [section.intro, ""]
        for item in section.items:
            figures += isinstance(item, FigureItem)
            tables += isinstance(item, TableItem)
            lines += _item(item, base, figures if isinstance(item, FigureItem) else tables)
    return "\n".join(lines).rstrip() + "\n"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _item(item: Item, base: Path, number: int) -> list[str]:
    if isinstance(item, FigureItem):
        link = Path(os.path.relpath(item.png, base)).as_posix()
        return [
            f"![{item.title}]({link})",
            "",
            f"*Figure {number}. {item.title}.* {item.caption}",
            "",
        ]
    if isinstance(item, TableItem):
        return [f"**Table {number}. {item.title}.** {item.caption}", "", *_table(item.frame), ""]
    if isinstance(item, HeadingItem):
        return [f"### {item.text}", ""]
    return _note(item)


def _note(item: NoteItem) -> list[str]:
    return [f"> *{item.title}.* {item.text}", ""]


def _table(frame: pd.DataFrame) -> list[str]:
    head = "| " + " | ".join(_cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = [
        "| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return [head, rule, *body]


def _cell(value: object) -> str:
    """Table cell text: pipes escaped, a second line after ``<br>``."""
    text = "" if pd.isna(value) else str(value)
    return text.replace("|", "\\|").replace("\n", "<br>")
