"""Render a :class:`~ssl_ser.report.document.Document` as Markdown that links the PNG figures.

The Markdown file sits beside the HTML file, so figures are linked by their
path relative to it (``figures/layers-speaker-kfold.png``).
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

import pandas as pd

from ssl_ser.report.document import Document, FigureItem, HeadingItem, Item, NoteItem, TableItem

# Characters that start Markdown emphasis, code, links, images, headings or table cells.
MARKDOWN_SPECIAL = re.compile(r"[\\`*_\[\]|#!]")


def escape(text: object) -> str:
    """Text from the results (corpus, model, label names...) as literal Markdown.

    HTML is escaped (a corpus called ``<img src=x onerror=...>`` must not become an
    element in a Markdown viewer) and so are the characters that would start
    emphasis, code, links or table cells; a line break becomes ``<br>``.
    """
    text = html.escape(str(text), quote=False)
    text = MARKDOWN_SPECIAL.sub(lambda match: "\\" + match.group(0), text)
    return text.replace("\n", "<br>")


def render(document: Document, base: Path) -> str:
    """The report as Markdown; figure links are relative to `base` (the file's folder)."""
    lines = [f"# {escape(document.title)}", ""]
    for text in document.highlights:
        lines += [f"**{escape(_sentence(text))}**", ""]
    for text in document.warnings:
        lines += [f"> **Warning:** {escape(text)}", ""]
    for info in document.extractors:
        badge = " — **UNTRAINED (random weights)**" if info.untrained else ""
        lines.append(f"- **Extractor:** {escape(info.name)} ({escape(info.kind)}){badge}")
    lines += [f"- **{escape(label)}:** {escape(value)}" for label, value in document.facts]
    figures = tables = 0
    for section in document.sections:
        lines += ["", f"## {escape(section.title)}", ""]
        if section.intro:
            lines += [escape(section.intro), ""]
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
        title = escape(item.title)
        return [
            f"![{title}]({link})",
            "",
            f"*Figure {number}. {title}.* {escape(item.caption)}",
            "",
        ]
    if isinstance(item, TableItem):
        head = f"**Table {number}. {escape(item.title)}.** {escape(item.caption)}"
        return [head, "", *_table(item.frame), ""]
    if isinstance(item, HeadingItem):
        return [f"### {escape(item.text)}", ""]
    return _note(item)


def _note(item: NoteItem) -> list[str]:
    return [f"> *{escape(item.title)}.* {escape(item.text)}", ""]


def _table(frame: pd.DataFrame) -> list[str]:
    head = "| " + " | ".join(_cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = [
        "| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return [head, rule, *body]


def _cell(value: object) -> str:
    """Table cell text, escaped (pipes too), a second line after ``<br>``."""
    return "" if pd.isna(value) else escape(value)
