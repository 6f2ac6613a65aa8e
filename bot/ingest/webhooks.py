"""Facebook webhooks: verify, store, acknowledge; the parsing happens later, from the queue.

``GET /webhooks/facebook`` answers Meta's subscription handshake.
``POST /webhooks/facebook`` checks ``X-Hub-Signature-256`` on the raw body
before anything else, stores the delivery with its ``ingest_delivery`` job in
one transaction, and answers 200. Meta retries failed deliveries for 36 hours,
so a 200 is only sent once the delivery is safely stored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections import defaultdict

from aiohttp import web
from sqlalchemy import select

from bot.errors import InvalidDelivery
from bot.ingest.facebook_delivery import parse_delivery
from bot.ingest.store_items import store_items
from bot.pipeline import queue
from bot.services import Services
from bot.store.models import Channel, Delivery, utcnow

log = logging.getLogger(__name__)


def signature_ok(app_secret: str, body: bytes, header: str | None) -> bool:
    """Constant-time check of ``sha256=<hex HMAC of the raw body>``."""
    if not header or not header.startswith("sha256=") or not app_secret:
        return False
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header[len("sha256="):].strip().lower().encode("utf-8", "replace"))


def facebook_routes(services: Services) -> list[web.RouteDef]:
    settings = services.settings

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
        try:
            json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return web.Response(status=400, text="body is not valid JSON\n")
        async with services.sessions.begin() as session:
            delivery = Delivery(platform="facebook", body=body, received_at=utcnow())
            session.add(delivery)
            await session.flush()
            await queue.enqueue(session, "ingest_delivery", {"delivery_id": delivery.id}, dedupe_key=f"delivery:{delivery.id}")
        services.wake()
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
        except (InvalidDelivery, ValueError) as exc:
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
