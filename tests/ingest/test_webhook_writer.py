"""The fast paths of POST /webhooks/facebook (bot/ingest/webhooks.py): the byte scan of
``json_problem`` against the tree walk it skips, and the SQLite writer of ``DeliveryWriter``
(its own connection on the event loop's thread) through the real app over loopback."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import example, given, settings, strategies as st
from sqlalchemy import select

from bot.app import SERVICES, create_app
from bot.ingest.webhooks import MAX_JSON_DEPTH, DeliveryWriter, json_problem, tree_problem
from bot.services import Services
from bot.store.models import Channel, Delivery, Job
from tests.conftest import make_settings
from tests.fuzz.conftest import profile
from tests.fuzz.strategies import hostile_bodies

APP_SECRET = "test-app-secret"  # tests.conftest.make_settings
PAGE_ID = "104857600012345"
URL = "/webhooks/facebook"


# --- json_problem: the scan must refuse exactly what the walk refuses -----------------------


def walked_problem(body: bytes) -> str | None:
    """json_problem as it was before the byte scan: parse, then walk every node."""
    def refuse(name: str) -> object:
        raise ValueError(name)

    def finite(text: str) -> float:
        value = float(text)
        if value in (float("inf"), float("-inf")):
            raise ValueError(text)
        return value

    try:
        value = json.loads(body, parse_constant=refuse, parse_float=finite)
    except (ValueError, UnicodeDecodeError):
        return "body is not valid JSON"
    except RecursionError:
        return f"body is nested more than {MAX_JSON_DEPTH} levels deep"
    return tree_problem(value)


# Pieces of JSON string text that fool a naive scan: escaped backslashes before "u", pairs,
# lone halves, a backslash written as \u005c, raw (surrogatepass) surrogate bytes.
PIECES = ["\\ud83d", "\\ude21", "\\ud800", "\\udfff", "\\uDBFF\\uDC00", "\\\\", "\\u005c", "u", "d83d", "ude21",
          "\\n", "\\\"", "\\/", "a", "é", "😡", "\\u00e9", "[", "{", "\udc00", "\ud83d"]


@st.composite
def tricky_bodies(draw: st.DrawFn) -> bytes:
    text = "".join(draw(st.lists(st.sampled_from(PIECES), max_size=12)))
    depth = draw(st.integers(min_value=0, max_value=MAX_JSON_DEPTH + 2))
    opener = draw(st.sampled_from(["[", '{"k": ']))
    closer = "]" if opener == "[" else "}"
    leaf = draw(st.sampled_from([f'"{text}"', "1", "1.5", "[]", f'{{"{text}": 2}}']))
    doc = opener * depth + leaf + closer * depth
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32"]))
    return doc.encode(encoding, "surrogatepass")


@settings(profile())
@given(body=tricky_bodies() | hostile_bodies())
@example(body=b'{"a": "\\\\ud83d\\ude21"}')      # escaped backslash, then a lone low half
@example(body=b'{"a": "\\u005c\\ud800"}')         # \u005c is a backslash: the escape after it is real
@example(body=b'{"a": "\\ud83d\\ude21"}')          # a pair
@example(body=b'{"a": "\xed\xa0\x80"}')             # a surrogate in UTF-8 bytes
@example(body=b"[" * (MAX_JSON_DEPTH - 1) + b'"x"' + b"]" * (MAX_JSON_DEPTH - 1))
@example(body=b"[" * MAX_JSON_DEPTH + b'"x"' + b"]" * MAX_JSON_DEPTH)
@example(body=b"[" * MAX_JSON_DEPTH + b"1" + b"]" * MAX_JSON_DEPTH)
def test_json_problem_refuses_exactly_what_the_tree_walk_refuses(body: bytes) -> None:
    assert json_problem(body) == walked_problem(body)


# --- the SQLite writer -------------------------------------------------------------------


def sign(body: bytes) -> str:
    return "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()


def delivery(n: int) -> bytes:
    return json.dumps({"object": "page", "entry": [{"id": PAGE_ID, "time": 1_717_000_000, "changes": [{
        "field": "feed", "value": {"item": "comment", "verb": "add", "comment_id": f"{PAGE_ID}_1_{n}",
                                   "post_id": f"{PAGE_ID}_1", "from": {"id": "42", "name": "Client"},
                                   "message": f"commentaire {n} 😡", "created_time": 1_717_000_000}}]}]}).encode()


@dataclass
class Live:
    client: TestClient
    services: Services
    db_file: Path

    async def post(self, body: bytes) -> int:
        async with self.client.post(URL, data=body, headers={"X-Hub-Signature-256": sign(body)}) as resp:
            await resp.read()
            return resp.status

    def raw(self, sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db_file) as conn:
            return conn.execute(sql).fetchall()


@pytest.fixture
async def live(tmp_path: Path, models_dir: Path, aiohttp_client: Any) -> AsyncIterator[Live]:
    db_file = tmp_path / "relais.db"
    app = create_app(make_settings(tmp_path, f"sqlite:///{db_file}", models_dir), run_worker=False, run_scheduler=False)
    client = await aiohttp_client(app)
    services = app[SERVICES]
    async with services.sessions.begin() as session:
        session.add(Channel(platform="facebook", external_id=PAGE_ID, name="Page", credentials={"page_token": "t"}))
    yield Live(client, services, db_file)


async def test_sqlite_rows_read_back_like_the_engines_own(live: Live) -> None:
    bodies = [delivery(n) for n in range(5)]
    assert await asyncio.gather(*(live.post(body) for body in bodies)) == [200] * 5
    async with live.services.sessions() as session:
        stored = (await session.scalars(select(Delivery).order_by(Delivery.id))).all()
        jobs = (await session.scalars(select(Job).order_by(Job.id))).all()
    assert sorted(d.body for d in stored) == sorted(bodies)
    assert [job.payload for job in jobs] == [{"delivery_id": d.id} for d in stored]
    for d, job in zip(stored, jobs, strict=True):
        assert (job.kind, job.status, job.attempts, job.max_attempts) == ("ingest_delivery", "queued", 0, 8)
        assert job.dedupe_key == f"delivery:{d.id}"
        assert d.received_at.tzinfo is not None and d.processed_at is None
        assert job.run_at == job.created_at == d.received_at
    # the text SQLAlchemy writes for a DATETIME (microseconds always present) and for JSON
    for received_at, run_at, payload in live.raw(
            "SELECT d.received_at, j.run_at, j.payload FROM deliveries d JOIN jobs j ON j.dedupe_key = 'delivery:' || d.id"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", received_at) and run_at == received_at
        assert re.fullmatch(r'\{"delivery_id": \d+\}', payload)


async def test_a_held_write_lock_delays_the_200_but_never_the_server(live: Live) -> None:
    blocker = sqlite3.connect(live.db_file, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer (the worker, a CLI) holds SQLite's write lock
    try:
        start = time.perf_counter()
        post = asyncio.create_task(live.post(delivery(1)))
        await asyncio.sleep(0.3)
        assert not post.done()  # no 200 before the delivery is stored
        async with live.client.get(URL, params={"hub.mode": "subscribe"}) as resp:
            assert resp.status == 403
        # the event loop never sat in SQLite's busy handler (its timeout is 30 s)
        assert time.perf_counter() - start < 3
        assert live.raw("SELECT count(*) FROM deliveries") == [(0,)]
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    assert await asyncio.wait_for(post, 30) == 200
    assert live.raw("SELECT count(*) FROM deliveries") == [(1,)]
    assert live.raw("SELECT count(*) FROM jobs WHERE kind = 'ingest_delivery'") == [(1,)]
    # and the fast path is back for the next one
    assert await live.post(delivery(2)) == 200
    assert live.raw("SELECT count(*) FROM deliveries") == [(2,)]


async def test_the_writer_checkpoints_the_wal_it_fills(live: Live) -> None:
    """Its connection does not checkpoint on commit (that fsync would stall the event loop)."""
    for n in range(DeliveryWriter.CHECKPOINT_EVERY):  # one commit each
        assert await live.post(delivery(n)) == 200
    await asyncio.sleep(0.5)  # the PASSIVE checkpoint runs in the engine's thread
    for n in range(5):
        assert await live.post(delivery(1000 + n)) == 200
    (busy, wal_frames, _), = live.raw("PRAGMA wal_checkpoint(PASSIVE)")
    # without the checkpoint the WAL holds every frame of the 205 commits (3+ pages each)
    assert busy == 0 and wal_frames < DeliveryWriter.CHECKPOINT_EVERY
