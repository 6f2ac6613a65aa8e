"""Facebook webhooks: verify, store, acknowledge; the parsing happens later, from the queue.

``GET /webhooks/facebook`` answers Meta's subscription handshake.
``POST /webhooks/facebook`` checks ``X-Hub-Signature-256`` on the raw body
before anything else, stores the delivery with its ``ingest_delivery`` job in
one transaction, and answers 200. Meta retries failed deliveries for 36 hours,
so a 200 is only sent once the delivery is safely stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
from collections import defaultdict

from aiohttp import web
from sqlalchemy import insert, select

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
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
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


def json_problem(body: bytes) -> str | None:
    """Why ``body`` is not a delivery we can store, or None.

    Strict JSON: no NaN, Infinity or number beyond a double, no unpaired UTF-16
    surrogate (PostgreSQL refuses them all), nested at most :data:`MAX_JSON_DEPTH` levels.
    """
    try:
        value = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError):
        return "body is not valid JSON"
    except RecursionError:
        return f"body is nested more than {MAX_JSON_DEPTH} levels deep"
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


class DeliveryWriter:
    """Group commit: deliveries that arrive together are stored in one transaction.

    Each request waits until its own delivery and its ``ingest_delivery`` job are
    committed; under load, one commit serves many requests instead of each
    request queueing for the database on its own.
    """

    def __init__(self, services: Services, max_batch: int = 200) -> None:
        self.services = services
        self.max_batch = max_batch
        self._pending: list[tuple[bytes, asyncio.Future[int]]] = []
        self._task: asyncio.Task[None] | None = None

    async def store(self, body: bytes) -> int:
        """Store one raw delivery; returns its id once committed."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((body, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="relais-delivery-writer")
        return await future

    async def _drain(self) -> None:
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


def facebook_routes(services: Services) -> list[web.RouteDef]:
    settings = services.settings
    writer = DeliveryWriter(services)

    async def verify(request: web.Request) -> web.Response:
        q = request.query
        token = settings.fb_verify_token.reveal()
        if q.get("hub.mode") == "subscribe" and token and hmac.compare_digest(q.get("hub.verify_token", "").encode("utf-8", "replace"), token.encode()):
            return web.Response(text=q.get("hub.challenge", ""), content_type="text/plain")
        return web.Response(status=403, text="verification failed: wrong hub.verify_token or hub.mode\n")

    async def receive(request: web.Request) -> web.Response:
        limit = settings.webhook_max_bytes
        if request.content_length is not None and request.content_length > limit:
            return web.Response(status=413, text=f"delivery larger than {limit} bytes\n")
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
    """Parse a stored delivery and store its items under the channels they belong to."""
    async with services.sessions.begin() as session:
        delivery = await session.get(Delivery, delivery_id, with_for_update=True)
        if delivery is None or delivery.processed_at is not None:
            return
        try:
            items = parse_delivery(json.loads(delivery.body))
        except (InvalidDelivery, ValueError, RecursionError) as exc:
            log.warning("delivery %s could not be read: %r", delivery_id, str(exc))
            delivery.processed_at = utcnow()
            return
        by_channel = defaultdict(list)
        for item in items:
            by_channel[(item.platform.value, item.channel_external_id)].append(item)
        new = 0
        for (platform, page_id), page_items in by_channel.items():
            channel = await session.scalar(
                select(Channel).where(Channel.platform == platform, Channel.external_id == page_id)
            )
            if channel is None:
                log.info("delivery %s: %d update(s) for unconfigured %s page %r dropped", delivery_id, len(page_items), platform, page_id)
                continue
            new += len((await store_items(session, channel, page_items, source="webhook")).new)
        delivery.processed_at = utcnow()
    if new:
        services.wake()
