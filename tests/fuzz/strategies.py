"""Hostile inputs: odd JSON values, broken shapes of real deliveries, raw bytes."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

HUGE = st.sampled_from([2**63, -(2**63) - 1, 10**30, 1e308, -1e308, 99999999999999999999, 0, -1])
ODD_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "\x00", "‮", "<script>alert(1)</script>", "💥" * 20, "9" * 30,
                     "1e999", "null", "2024-13-45T99:99:99", "\ud83d\ude00"]),
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), HUGE, st.floats(allow_nan=False, allow_infinity=False), ODD_TEXT)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(ODD_TEXT, inner, max_size=4)),
    max_leaves=12,
)

PAGE_ID = "104857600012345"


def valid_delivery(n: int = 1) -> dict[str, Any]:
    """A well-formed feed delivery with one comment, the shape Meta sends."""
    return {
        "object": "page",
        "entry": [{
            "id": PAGE_ID,
            "time": 1_717_000_000,
            "changes": [{
                "field": "feed",
                "value": {
                    "item": "comment", "verb": "add",
                    "comment_id": f"{PAGE_ID}_2001_{n}", "post_id": f"{PAGE_ID}_2001",
                    "parent_id": f"{PAGE_ID}_2001",
                    "from": {"id": str(900_000 + n), "name": f"Client {n}"},
                    "message": "le pain était trop cuit", "created_time": 1_717_000_000 + n,
                    "post": {"promotion_status": "active", "permalink_url": "https://fb.example/p"},
                },
            }],
            "messaging": [{"sender": {"id": "42"}, "recipient": {"id": PAGE_ID},
                           "timestamp": 1_717_000_000_000, "message": {"mid": f"m_{n}", "text": "bonjour"}}],
        }],
    }


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


@st.composite
def mutated_deliveries(draw: st.DrawFn) -> Any:
    """A real delivery with a few fields replaced by odd values, or removed."""
    body = valid_delivery(draw(st.integers(0, 10**6)))
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(body)
        path = draw(st.sampled_from(paths))
        if not path:
            body = draw(JSON_VALUES)
            continue
        parent: Any = body
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JSON_VALUES)
    return body


@st.composite
def deep_bodies(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(10, 5_000))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
    return opener * depth + b"1" + closer * depth


@st.composite
def corrupted_bytes(draw: st.DrawFn) -> bytes:
    """A valid delivery with bytes changed: invalid UTF-8, broken syntax."""
    raw = bytearray(json.dumps(valid_delivery(), ensure_ascii=False).encode())
    for _ in range(draw(st.integers(1, 5))):
        at = draw(st.integers(0, len(raw) - 1))
        raw[at:at + 1] = draw(st.binary(min_size=0, max_size=3))
    return bytes(raw)


ESCAPES = st.sampled_from([
    b'{"object": "page", "entry": [{"id": "1", "changes": [{"field": "feed", "value": {"message": "\\ud800"}}]}]}',
    b'{"object": "page", "entry": [{"id": "104857600012345", "time": NaN}]}',
    b'{"object": "page", "entry": [{"id": Infinity}]}',
    b'{"object": "page", "entry": [{"id": "104857600012345", "changes": [{"field": "feed", "value": '
    b'{"item": "comment", "verb": "add", "comment_id": "104857600012345_1_\\u0000", "post_id": 1e400, '
    b'"message": "a\\u0000b", "from": {"id": 1e20, "name": "\\u0000"}, "created_time": 1e300}}]}]}',
    b'{"object": "page", "entry": [{"id": "104857600012345", "time": ' + b"9" * 5000 + b"}]}",
    b"\xff\xfe{}",
    b"",
])


def hostile_bodies() -> st.SearchStrategy[bytes]:
    encode = lambda value: json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")  # noqa: E731
    return st.one_of(
        mutated_deliveries().map(encode),
        JSON_VALUES.map(encode),
        deep_bodies(),
        corrupted_bytes(),
        ESCAPES,
        st.binary(max_size=200),
    )
