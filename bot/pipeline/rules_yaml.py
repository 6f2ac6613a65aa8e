"""YAML with positions, and the list of problems found in a rules file.

:class:`Map` and :class:`Seq` remember where each key, value and entry stood, so every
problem is reported as ``file:line:column: message`` (:class:`Problems`).
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class Map(dict[str, Any]):
    """A mapping that remembers where each key and value stood in the file."""

    line = 1
    col = 1
    key_pos: dict[str, tuple[int, int]] = {}  # noqa: RUF012 - replaced per instance, never mutated
    value_pos: dict[str, tuple[int, int]] = {}  # noqa: RUF012


class Seq(list[Any]):
    """A list that remembers where each entry stood in the file."""

    line = 1
    col = 1
    item_pos: list[tuple[int, int]] = []  # noqa: RUF012


class Loader(yaml.SafeLoader):
    pass


def _mapping(loader: Loader, node: yaml.MappingNode) -> Map:
    loader.flatten_mapping(node)
    result = Map()
    result.line, result.col = node.start_mark.line + 1, node.start_mark.column + 1
    result.key_pos, result.value_pos = {}, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise yaml.constructor.ConstructorError(None, None, "a key must be a plain word", key_node.start_mark)
        if key in result:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_pos[key] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        result.value_pos[key] = (value_node.start_mark.line + 1, value_node.start_mark.column + 1)
    return result


def _sequence(loader: Loader, node: yaml.SequenceNode) -> Seq:
    result = Seq(loader.construct_object(child, deep=True) for child in node.value)
    result.line, result.col = node.start_mark.line + 1, node.start_mark.column + 1
    result.item_pos = [(c.start_mark.line + 1, c.start_mark.column + 1) for c in node.value]
    return result


Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)
# YAML 1.1 reads 104857_2001 as the number 1048572001; in this file such words are
# Facebook ids (page, campaign, vip), so digits with underscores stay text.
Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:int"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[01]+|[-+]?0[0-7]+|[-+]?(?:0|[1-9][0-9]*)|[-+]?0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)



class Problems:
    def __init__(self, path: str) -> None:
        self.path = path
        self.items: list[tuple[tuple[int, int], str]] = []

    def add(self, pos: tuple[int, int], message: str) -> None:
        self.items.append((pos, message))

    def report(self) -> str:
        return "\n".join(f"{self.path}:{line}:{col}: {msg}" for (line, col), msg in sorted(self.items))



def at(m: Map, key: str, *, value: bool = False) -> tuple[int, int]:
    table = m.value_pos if value else m.key_pos
    return table.get(key, (m.line, m.col))


def unknown_fields(m: Map, allowed: set[str], where: str, p: Problems) -> None:
    for key in m:
        if key not in allowed:
            p.add(at(m, key), f"unknown field {key!r} in {where} (allowed: {', '.join(sorted(allowed))})")

