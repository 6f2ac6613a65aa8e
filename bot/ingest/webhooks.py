"""Facebook webhooks: verify, store, acknowledge; the parsing happens later, from the queue.

``GET /webhooks/facebook`` answers Meta's subscription handshake.
``POST /webhooks/facebook`` checks ``X-Hub-Signature-256`` on the raw body
before anything else, stores the delivery with its ``ingest_delivery`` job in
one transaction, and answers 200. Meta retries failed deliveries for 36 hours,
so a 200 is only sent once the delivery is safely stored.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import re
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import insert, select

from bot.domain import InboundItem
from bot.errors import InvalidDelivery
from bot.ingest.facebook_delivery import parse_delivery
from bot.ingest.store_items import store_items
from bot.services import Services
from bot.store.models import Channel, Delivery, Job, utcnow

log = logging.getLogger(__name__)


def signature_ok(app_secret: str, body: bytes, header: str | None) -> bool:
    """Constant-time check of ``sha256=<hex HMAC of the raw body>``."""
    if not header or not header.startswith("sha256=") or not app_secret:
        return False
    expected = hmac.digest(app_secret.encode(), body, "sha256").hex()
    return hmac.compare_digest(expected.encode(), header[len("sha256="):].strip().lower().encode("utf-8", "replace"))


#: Meta's bodies nest a few levels; far deeper is hostile (and would exhaust the stack later).
MAX_JSON_DEPTH = 64


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e400: valid JSON, but PostgreSQL cannot store it
        raise ValueError(f"number {text[:20]} is out of range")
    return value


#: One JSON escape, read from its backslash: a surrogate pair, a lone surrogate (group 1), or another.
_ESCAPE = re.compile(
    rb"\\(?:u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|(u[dD][89a-fA-F][0-9a-fA-F]{2})|.)",
    re.DOTALL,
)
#: A surrogate encoded in UTF-8 bytes (ED A0..BF): json.loads decodes them with "surrogatepass".
_RAW_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")


_STRICT_JSON = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def _may_hold_a_surrogate(body: bytes) -> bool:
    """False when ``body`` (UTF-8, valid JSON) cannot parse to a string with an unpaired surrogate.

    Escapes are matched left to right from each backslash, so ``\\\\ud800`` (an escaped
    backslash, then text) is never taken for an escape.
    """
    if _RAW_SURROGATE.search(body):
        return True
    return b"\\u" in body and any(_ESCAPE.findall(body))  # findall: group 1, empty unless lone


def json_problem(body: bytes) -> str | None:
    """Why ``body`` is not a delivery we can store, or None.

    Strict JSON: no NaN, Infinity or number beyond a double, no unpaired UTF-16
    surrogate (PostgreSQL refuses them all), nested at most :data:`MAX_JSON_DEPTH` levels.
    """
    encoding = json.detect_encoding(body)
    try:  # what json.loads(body, ...) does, with a decoder built once
        value = _STRICT_JSON.decode(body.decode(encoding, "surrogatepass"))
    except (ValueError, UnicodeDecodeError):
        return "body is not valid JSON"
    except RecursionError:
        return f"body is nested more than {MAX_JSON_DEPTH} levels deep"
    # Most bodies are small: a scan of the bytes proves them fine without walking the parsed tree.
    # Fewer opening brackets than the limit keep every node (strings count a level) within it.
    if (body.count(b"{") + body.count(b"[") < MAX_JSON_DEPTH and encoding == "utf-8"
            and not _may_hold_a_surrogate(body)):
        return None
    return tree_problem(value)


def tree_problem(value: object) -> str | None:
    """Why a parsed body is refused (too deep, an unpaired surrogate), found by walking every node."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return f"body is nested more than {MAX_JSON_DEPTH} levels deep"
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return "body holds an unpaired UTF-16 surrogate (\\ud800-\\udfff)"
            continue
        children = [*node.keys(), *node.values()] if isinstance(node, dict) else node if isinstance(node, list) else []
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list | str))
    return None


# The rows DeliveryWriter._write writes through the engine, in SQL (the same text for the JSON payload)
_INSERT_DELIVERY = "INSERT INTO deliveries (platform, body, received_at) VALUES ('facebook', ?, ?)"
_INSERT_JOBS = (
    "INSERT INTO jobs (kind, payload, status, attempts, max_attempts, run_at, dedupe_key, created_at) "
    "SELECT 'ingest_delivery', printf('{\"delivery_id\": %d}', value), 'queued', 0, 8, ?1, 'delivery:' || value, ?1 "
    "FROM json_each(?2)"
)


class DeliveryWriter:
    """Group commit: deliveries that arrive together are stored in one transaction.

    Each request waits until its own delivery and its ``ingest_delivery`` job are
    committed; under load, one commit serves many requests instead of each
    request queueing for the database on its own.

    On SQLite (a database file in WAL mode), a batch is written on the event loop's thread
    through a ``sqlite3`` connection of the writer's own (``BEGIN IMMEDIATE``, the INSERTs,
    ``COMMIT``: about 20 µs per delivery). Through SQLAlchemy's async layer each
    statement was a hop to aiosqlite's thread, and the hops cost more than the writes.
    The loop never waits on SQLite: this connection does not wait for the write lock (a
    batch that finds it taken goes through the engine, which waits in its own thread),
    and it leaves WAL checkpoints (which fsync) to a PASSIVE checkpoint run through the
    engine every :attr:`CHECKPOINT_EVERY` commits. Other databases go through the engine.
    The app calls :meth:`close` when it stops.
    """

    CHECKPOINT_EVERY = 200

    def __init__(self, services: Services, max_batch: int = 200) -> None:
        self.services = services
        self.max_batch = max_batch
        self._pending: list[tuple[bytes, asyncio.Future[int]]] = []
        self._task: asyncio.Task[None] | None = None
        url = services.engine.url
        self._sqlite_file = (
            url.database if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
            and not url.query else None
        )
        dialect = services.engine.dialect
        # the engine's own conversion, so that rows read the same whichever way they were written
        self._sql_time: Callable[[datetime], Any] = (
            Delivery.__table__.c.received_at.type.dialect_impl(dialect).bind_processor(dialect))
        self._conn: sqlite3.Connection | None = None
        self._commits = 0
        self._checkpoint: asyncio.Task[None] | None = None

    async def store(self, body: bytes) -> int:
        """Store one raw delivery; returns its id once committed."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((body, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="relais-delivery-writer")
        return await future

    async def close(self) -> None:
        """Let the batch being written and a running checkpoint finish, then close the SQLite connection."""
        running = [t for t in (self._task, self._checkpoint) if t is not None and not t.done()]
        if running:
            await asyncio.wait(running)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # one turn of the loop: the requests read in this turn join the batch
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            try:
                ids = await self._write([body for body, _ in batch])
            except Exception as exc:  # noqa: BLE001 - each waiting request answers 500; Meta retries
                log.exception("could not store %d webhook deliveries", len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for delivery_id, (_, future) in zip(ids, batch, strict=True):
                if not future.done():
                    future.set_result(delivery_id)
            self.services.wake()

    async def _write(self, bodies: list[bytes]) -> list[int]:
        now = utcnow()
        if self._sqlite_file is not None:
            ids = self._write_sqlite(bodies, now)
            if ids is not None:
                return ids
        # Core statements on a plain connection (no ORM unit of work): two INSERTs, one commit.
        async with self.services.engine.begin() as conn:
            stored = await conn.execute(
                insert(Delivery).returning(Delivery.id, sort_by_parameter_order=True),
                [{"platform": "facebook", "body": body, "received_at": now} for body in bodies],
            )
            ids = [int(delivery_id) for delivery_id in stored.scalars()]
            await conn.execute(
                insert(Job),
                [
                    {"kind": "ingest_delivery", "payload": {"delivery_id": i}, "dedupe_key": f"delivery:{i}",
                     "status": "queued", "attempts": 0, "max_attempts": 8, "run_at": now, "created_at": now}
                    for i in ids
                ],
            )
            return ids

    def _write_sqlite(self, bodies: list[bytes], now: datetime) -> list[int] | None:
        """The engine path's rows, in one transaction; None (nothing written) when the write lock is taken."""
        conn = self._conn or self._connect()
        if conn is None:
            return None
        when = self._sql_time(now)
        try:
            conn.execute("BEGIN IMMEDIATE")  # fails at once (busy timeout 0) if another writer holds the lock
            ids = [conn.execute(_INSERT_DELIVERY, (body, when)).lastrowid or 0 for body in bodies]
            conn.execute(_INSERT_JOBS, (when, json.dumps(ids)))
            conn.commit()
        except BaseException as exc:
            if conn.in_transaction:
                conn.rollback()
            if isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc)):
                return None  # SQLITE_BUSY / SQLITE_LOCKED: nothing was written
            raise
        self._commits += 1
        if self._commits % self.CHECKPOINT_EVERY == 0 and (self._checkpoint is None or self._checkpoint.done()):
            self._checkpoint = asyncio.create_task(self._checkpoint_wal(), name="relais-delivery-checkpoint")
        return ids

    def _connect(self) -> sqlite3.Connection | None:
        assert self._sqlite_file is not None
        conn = sqlite3.connect(self._sqlite_file, timeout=0, isolation_level=None)
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.close()
            self._sqlite_file = None  # not a WAL database: the engine writes everything
            return None
        for pragma in ("foreign_keys=ON", "synchronous=NORMAL", "busy_timeout=0", "wal_autocheckpoint=0"):
            conn.execute(f"PRAGMA {pragma}")
        self._conn = conn
        return conn

    async def _checkpoint_wal(self) -> None:
        try:
            async with self.services.engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception as exc:  # noqa: BLE001 - the next one will do; SQLite's own checkpoints go on
            log.warning("WAL checkpoint after webhook deliveries failed: %r", exc)


def facebook_routes(services: Services, writer: DeliveryWriter) -> list[web.RouteDef]:
    settings = services.settings

    async def verify(request: web.Request) -> web.Response:
        q = request.query
        token = settings.fb_verify_token.reveal()
        if q.get("hub.mode") == "subscribe" and token and hmac.compare_digest(q.get("hub.verify_token", "").encode("utf-8", "replace"), token.encode()):
            return web.Response(text=q.get("hub.challenge", ""), content_type="text/plain")
        return web.Response(status=403, text="verification failed: wrong hub.verify_token or hub.mode\n")

    async def receive(request: web.Request) -> web.Response:
        limit = settings.webhook_max_bytes
        length = request.content_length
        if length is not None and length > limit:
            return web.Response(status=413, text=f"delivery larger than {limit} bytes\n")
        if length is not None:  # the usual case: one read
            try:
                body = await request.content.readexactly(length)
            except asyncio.IncompleteReadError as exc:  # the sender went away: the signature will not match
                body = exc.partial
        else:
            chunks, size = [], 0
            async for chunk in request.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > limit:
                    return web.Response(status=413, text=f"delivery larger than {limit} bytes\n")
                chunks.append(chunk)
            body = b"".join(chunks)
        if not signature_ok(settings.fb_app_secret.reveal(), body, request.headers.get("X-Hub-Signature-256")):
            log.warning("facebook webhook: missing or wrong signature from %s", request.remote)
            return web.Response(status=403, text="invalid or missing X-Hub-Signature-256\n")
        problem = json_problem(body)
        if problem:
            return web.Response(status=400, text=f"{problem}\n")
        await writer.store(body)  # committed (with its job) before the 200
        return web.Response(text="EVENT_RECEIVED\n")

    return [web.get("/webhooks/facebook", verify), web.post("/webhooks/facebook", receive)]


async def ingest_delivery(services: Services, delivery_id: int) -> None:
    await ingest_deliveries(services, [delivery_id])


async def ingest_deliveries(services: Services, delivery_ids: Sequence[int]) -> None:
    """Parse stored deliveries and store their items under the channels they belong to,
    in one transaction (deliveries that arrived together are read together). A delivery
    already read is skipped; one that cannot be read is marked read and logged."""
    async with services.sessions.begin() as session:
        deliveries = (await session.scalars(
            select(Delivery).where(Delivery.id.in_(delivery_ids), Delivery.processed_at.is_(None))
            .order_by(Delivery.id).with_for_update()
        )).all()
        if not deliveries:
            return
        by_channel: dict[tuple[str, str], list[InboundItem]] = defaultdict(list)
        for delivery in deliveries:
            delivery.processed_at = utcnow()
            try:
                items = parse_delivery(json.loads(delivery.body))
            except (InvalidDelivery, ValueError, RecursionError) as exc:
                log.warning("delivery %s could not be read: %r", delivery.id, str(exc))
                continue
            for item in items:
                by_channel[(item.platform.value, item.channel_external_id)].append(item)
        channels = {
            (c.platform, c.external_id): c
            for c in (await session.scalars(
                select(Channel).where(Channel.external_id.in_({page for _, page in by_channel}))
            )).all()
        } if by_channel else {}
        new = 0
        for (platform, page_id), page_items in by_channel.items():
            channel = channels.get((platform, page_id))
            if channel is None:
                log.info("deliveries %s: %d update(s) for unconfigured %s page %r dropped",
                         [d.id for d in deliveries], len(page_items), platform, page_id)
                continue
            new += len((await store_items(session, channel, page_items, source="webhook")).new)
    if new:
        services.wake()
