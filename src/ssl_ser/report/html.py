"""Render a :class:`~ssl_ser.report.document.Document` as one self-contained HTML file.

Figures are embedded as base64 SVG data URIs (sharp at any zoom, each an
isolated document, so the ids inside matplotlib's SVGs cannot clash), the CSS
is inline and fonts are the reader's system fonts: the file references nothing
outside itself and opens offline.
"""

from __future__ import annotations

import base64
from collections import Counter
from html import escape

import pandas as pd

from ssl_ser import __version__
from ssl_ser.report.document import (
    Document,
    FigureItem,
    HeadingItem,
    Item,
    NoteItem,
    Section,
    TableItem,
)
from ssl_ser.report.load import (
    PRESET_UNKNOWN,
    SPEAKER_DEPENDENT,
    SPEAKER_INDEPENDENT,
    SPEAKERS_SHARED,
)

UNTRAINED_SUFFIX = " [untrained]"
FLAG = "⚠"
NUMERIC_SUFFIXES: tuple[str, ...] = ("%", "Test utterances", "Fold", "points")
SPLIT_CLASSES: dict[str, str] = {
    SPEAKER_INDEPENDENT: "pill ok",
    SPEAKER_DEPENDENT: "pill warn",
    SPEAKERS_SHARED: "pill warn",
    PRESET_UNKNOWN: "pill neutral",
}

CSS = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #dde2ea; --accent: #1f6feb;
  --bg: #f6f8fb; --card: #ffffff; --warn: #b54708; --warn-bg: #fff4e5; --bad: #b42318;
  --bad-bg: #fee4e2; --ok: #067647; --ok-bg: #dcfae6; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
header, main, footer { max-width: 1240px; margin: 0 auto; padding: 0 28px; }
header { padding-top: 28px; }
.kicker { text-transform: uppercase; letter-spacing: .08em; font-size: 12px;
  color: var(--muted); margin: 0; }
h1 { font-size: 28px; line-height: 1.25; margin: 4px 0 14px; }
h2 { font-size: 21px; margin: 0 0 4px; }
h3 { font-size: 16px; margin: 18px 0 6px; }
.highlight { font-size: 17px; background: var(--card); border-left: 5px solid var(--accent);
  padding: 12px 16px; border-radius: 6px; margin: 0 0 14px; box-shadow: 0 1px 2px #0001; }
.warning { background: var(--bad-bg); color: var(--bad); border: 1px solid #fda29b;
  border-radius: 6px; padding: 10px 14px; margin: 0 0 10px; font-weight: 600; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px;
  background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 14px 18px; margin: 14px 0; }
.facts dt { font-weight: 600; color: var(--muted); }
.facts dd { margin: 0; }
nav { margin: 10px 0 6px; font-size: 14px; }
nav a { color: var(--accent); text-decoration: none; margin-right: 16px; }
section.part { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 20px 24px; margin: 22px 0; box-shadow: 0 1px 2px #0001; }
.intro { color: var(--muted); margin: 0 0 12px; }
figure { margin: 18px 0 24px; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { color: var(--muted); font-size: 13.5px; margin-top: 6px; }
.table-wrap { overflow-x: auto; margin: 8px 0 20px; }
table { border-collapse: collapse; font-size: 13.5px; width: 100%; }
caption { text-align: left; color: var(--muted); font-size: 13px; padding: 0 0 6px; }
th { text-align: left; background: #eef2f7; border-bottom: 2px solid var(--line);
  padding: 6px 9px; white-space: nowrap; }
td { border-bottom: 1px solid var(--line); padding: 5px 8px; vertical-align: top; }
tbody tr:nth-child(even) td { background: #fafbfd; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td .sub { display: block; color: var(--muted); font-size: 12px; white-space: nowrap; }
td:not(.num) .sub { white-space: normal; min-width: 12em; }
td .sub.bad { color: var(--bad); font-weight: 600; white-space: normal; min-width: 14em; }
td.num .sub.bad { min-width: 0; }
th .sub { display: block; color: var(--muted); font-size: 11px; font-weight: 400;
  white-space: normal; min-width: 9em; }
h3.group { font-size: 15px; margin: 26px 0 8px; padding: 6px 10px; background: #eef2f7;
  border-left: 4px solid var(--accent); border-radius: 4px; }
.highlight + .highlight { margin-top: -6px; }
.note { background: var(--bg); border: 1px dashed #b8c0cc; border-radius: 6px;
  padding: 10px 14px; margin: 12px 0; color: var(--muted); }
.badge { display: inline-block; font-size: 11.5px; font-weight: 700; border-radius: 10px;
  padding: 1px 8px; margin-left: 6px; vertical-align: 1px; }
.badge.untrained { background: var(--bad); color: #fff; }
.badge.kind { background: #eef2f7; color: var(--muted); font-weight: 600; }
.pill { display: inline-block; font-size: 12px; border-radius: 10px; padding: 0 8px;
  white-space: nowrap; }
.pill.ok { background: var(--ok-bg); color: var(--ok); }
.pill.warn { background: var(--warn-bg); color: var(--warn); }
.pill.neutral { background: #eef2f7; color: var(--muted); }
footer { color: var(--muted); font-size: 12.5px; padding-bottom: 30px; }
"""


def render(document: Document) -> str:
    """The whole page as a string."""
    counter: Counter[str] = Counter()  # figures and tables numbered in order of appearance
    body = "\n".join(_section(section, counter) for section in document.sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(document.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"{_header(document)}\n<main>\n{body}\n</main>\n"
        f"<footer>Written by ssl-ser {escape(__version__)} from the results table alone; "
        "this file embeds its figures and opens offline.</footer>\n</body>\n</html>\n"
    )


def _header(document: Document) -> str:
    warnings = "".join(f'<p class="warning">⚠ {escape(text)}</p>' for text in document.warnings)
    facts = "".join(
        f"<dt>{escape(label)}</dt><dd>{_lines(value)}</dd>" for label, value in document.facts
    )
    extractors = _extractors(document)
    links = "".join(
        f'<a href="#{section.anchor}">{escape(section.title)}</a>' for section in document.sections
    )
    highlights = "".join(
        f'<p class="highlight">{escape(text[:1].upper() + text[1:])}</p>\n'
        for text in document.highlights
    )
    return (
        '<header>\n<p class="kicker">ssl-ser · speech emotion recognition report</p>\n'
        f"<h1>{escape(document.title)}</h1>\n"
        f"{highlights}{warnings}\n"
        f'<dl class="facts">{extractors}{facts}</dl>\n<nav>{links}</nav>\n</header>'
    )


def _lines(text: str) -> str:
    """Escaped text with its newlines as line breaks."""
    return "<br>".join(escape(line) for line in text.split("\n"))


def _extractors(document: Document) -> str:
    if not document.extractors:
        return ""
    parts = []
    for info in document.extractors:
        badge = '<span class="badge untrained">untrained · random weights</span>'
        parts.append(
            f"{escape(info.name)}"
            f'<span class="badge kind">{escape(info.kind)}</span>'
            f"{badge if info.untrained else ''}"
        )
    return f"<dt>Extractors</dt><dd>{'<br>'.join(parts)}</dd>"


def _section(section: Section, counter: Counter[str]) -> str:
    intro = f'<p class="intro">{escape(section.intro)}</p>' if section.intro else ""
    items = "\n".join(_item(item, counter) for item in section.items)
    return (
        f'<section class="part" id="{section.anchor}">\n<h2>{escape(section.title)}</h2>\n'
        f"{intro}\n{items}\n</section>"
    )


def _item(item: Item, counter: Counter[str]) -> str:
    if isinstance(item, FigureItem):
        counter["figures"] += 1
        return _figure(item, counter["figures"])
    if isinstance(item, TableItem):
        counter["tables"] += 1
        return _table(item, counter["tables"])
    if isinstance(item, HeadingItem):
        return f'<h3 class="group">{escape(item.text)}</h3>'
    return _note(item)


def _figure(item: FigureItem, number: int) -> str:
    data = base64.b64encode(item.svg.read_bytes()).decode("ascii")
    return (
        f'<figure id="figure-{escape(item.name)}" data-figure="{escape(item.name)}">\n'
        f'<img alt="{escape(item.title)}" src="data:image/svg+xml;base64,{data}">\n'
        f"<figcaption><strong>Figure {number}. {escape(item.title)}.</strong> "
        f"{escape(item.caption)}</figcaption>\n</figure>"
    )


def _table(item: TableItem, number: int) -> str:
    frame = item.frame
    head = "".join(f"<th>{_head(str(column))}</th>" for column in frame.columns)
    rows = "\n".join(
        "<tr>" + "".join(_cell(column, value) for column, value in row.items()) + "</tr>"
        for _, row in frame.iterrows()
    )
    return (
        f'<h3 id="table-{escape(item.name)}">Table {number}. {escape(item.title)}</h3>\n'
        f'<div class="table-wrap"><table data-table="{escape(item.name)}">\n'
        f"<caption>{escape(item.caption)}</caption>\n"
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody></table></div>"
    )


def _head(column: str) -> str:
    """A column header; a second line (after a newline) explains it, smaller."""
    first, _, rest = column.partition("\n")
    return escape(first) + (f'<span class="sub">{escape(rest)}</span>' if rest else "")


def _cell(column: str, value: object) -> str:
    """A table cell; further lines (after newlines) are shown smaller, as detail.

    A detail line starting with ``⚠`` (a collapsed classifier) is shown as a warning.
    """
    text = "" if pd.isna(value) else str(value)
    first, *rest = text.split("\n")
    detail = "".join(
        f'<span class="sub{" bad" if line.startswith(FLAG) else ""}">{escape(line)}</span>'
        for line in rest
    )
    numeric = ' class="num"' if str(column).partition("\n")[0].endswith(NUMERIC_SUFFIXES) else ""
    return f"<td{numeric}>{_inline(first)}{detail}</td>"


def _inline(text: str) -> str:
    """Split types as coloured pills, ``[untrained]`` as a red badge, else escaped text."""
    if text in SPLIT_CLASSES:
        return f'<span class="{SPLIT_CLASSES[text]}">{escape(text)}</span>'
    if text.endswith(UNTRAINED_SUFFIX):
        name = escape(text.removesuffix(UNTRAINED_SUFFIX))
        return f'{name}<span class="badge untrained">untrained</span>'
    return escape(text)


def _note(item: NoteItem) -> str:
    return f'<aside class="note"><strong>{escape(item.title)}.</strong> {escape(item.text)}</aside>'
