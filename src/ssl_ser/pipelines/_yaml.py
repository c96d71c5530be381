"""A YAML reader for experiment files that refuses hostile input fast, in one line.

PyYAML's safe loader builds any document it is given: an alias bomb ("billion
laughs": a few lines whose aliases expand to 10**9 values) exhausts memory in the
code that walks the result, deep nesting raises RecursionError, and a repeated
key silently takes the last value. :func:`load` bounds the document before it
builds anything: at most :data:`MAX_DEPTH` levels and :data:`MAX_VALUES` values
counted with every alias expanded, no alias that contains itself, and no key
twice in one mapping.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

MAX_DEPTH = 64
MAX_VALUES = 100_000
MERGE_TAG = "tag:yaml.org,2002:merge"


class RefusedYAMLError(ValueError):
    """A YAML document beyond the bounds of :func:`load` (the message says which)."""


def load(text: str) -> Any:
    """The data of one YAML document, within the bounds the module describes.

    Raises:
        RefusedYAMLError: too deep, too large once aliases are expanded, an alias that
            contains itself, or a key given twice (the message names it and its lines).
        yaml.YAMLError: not valid YAML.
    """
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader with a nesting bound while composing and the checks of :func:`load`."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        """Compose a node, refusing nesting deeper than :data:`MAX_DEPTH` before recursing."""
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                line = self.peek_event().start_mark.line + 1
                raise RefusedYAMLError(f"nests deeper than {MAX_DEPTH} levels (line {line})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_data(self) -> Any:
        """Compose, measure with aliases expanded, then build the document."""
        node = self.get_single_node()
        if node is None:
            return None
        measure(node)
        return self.construct_document(node)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict:
        """A mapping whose keys are given once each."""
        seen: dict[Hashable, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, Hashable) and key in seen:
                raise RefusedYAMLError(
                    f"key {key!r} is given twice in one mapping (lines {seen[key]} and {line}); "
                    "keep one"
                )
            if isinstance(key, Hashable):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def measure(root: Node) -> tuple[int, int]:
    """(values, depth) of the document under `root` with every alias expanded.

    Walks the node graph once (iteratively, each shared node once), so an alias
    bomb is measured in the time of its text, not of its expansion.

    Raises:
        RefusedYAMLError: more than :data:`MAX_VALUES` values, deeper than
            :data:`MAX_DEPTH`, or an alias inside its own anchor.
    """
    done: dict[int, tuple[int, int]] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        key = id(node)
        if leaving:
            parts = [done[id(child)] for child in _children(node)]
            values = 1 + sum(v for v, _ in parts)
            depth = 1 + max((d for _, d in parts), default=0)
            _check_bounds(values, depth, node)
            done[key] = (values, depth)
            open_nodes.discard(key)
        elif key in open_nodes:
            line = node.start_mark.line + 1
            raise RefusedYAMLError(f"an alias refers to the value that contains it (line {line})")
        elif key not in done:
            open_nodes.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))
    return done[id(root)]


def _check_bounds(values: int, depth: int, node: Node) -> None:
    line = node.start_mark.line + 1
    if values > MAX_VALUES:
        raise RefusedYAMLError(
            f"expands to more than {MAX_VALUES:,} values through its aliases (&anchor / *alias, "
            f"at line {line}); an experiment file needs far fewer (a YAML alias bomb?)"
        )
    if depth > MAX_DEPTH:
        raise RefusedYAMLError(
            f"nests deeper than {MAX_DEPTH} levels once aliases are expanded (line {line})"
        )
