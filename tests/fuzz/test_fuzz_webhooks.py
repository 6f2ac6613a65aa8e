"""Hostile webhook bodies, signed, through the real app over HTTP, then through the ingest
stage: never a 500, never a crash, on SQLite and PostgreSQL (bot/ingest/webhooks.py,
bot/ingest/facebook_delivery.py)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import urllib.error
import urllib.request

import pytest
from hypothesis import example, given, settings
from sqlalchemy import select

from bot.ingest.facebook_delivery import parse_delivery
from bot.ingest.webhooks import ingest_delivery
from bot.store.models import Delivery
from tests.fuzz.conftest import LiveApp, profile
from tests.fuzz.strategies import JSON_VALUES, hostile_bodies, mutated_deliveries

APP_SECRET = "test-app-secret"  # tests.conftest.make_settings


def post_signed(live: LiveApp, body: bytes) -> int:
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"{live.url}/webhooks/facebook", data=body, method="POST",
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def ingest_pending(live: LiveApp) -> list[int]:
    """Run the ingest stage on every unprocessed delivery; return the ids still unprocessed."""
    async with live.services.sessions() as session:
        ids = (await session.scalars(select(Delivery.id).where(Delivery.processed_at.is_(None)))).all()
    for delivery_id in ids:
        await ingest_delivery(live.services, delivery_id)
    async with live.services.sessions() as session:
        return list((await session.scalars(select(Delivery.id).where(Delivery.processed_at.is_(None)))).all())


@settings(profile())
@given(body=hostile_bodies())
@example(body=b"[" * 100_000)
@example(body=b'{"object": "page", "entry": [{"id": "1", "time": 99999999999999999999}]}')
@example(body=b'{"object": "page", "entry": [{"id": "104857600012345", "changes": [{"field": "feed", "value": {"item": "comment", "verb": "add", "comment_id": "1_2", "post_id": 1e400}}]}]}')
def test_a_signed_hostile_body_gets_200_or_400_and_the_ingest_stage_never_crashes(
        live_app: LiveApp, body: bytes) -> None:
    status = post_signed(live_app, body)
    assert status in (200, 400), f"HTTP {status} for {body[:200]!r}"
    assert live_app.run(ingest_pending(live_app)) == []  # every stored delivery read (or set aside)


def test_the_fuzzed_page_still_takes_a_normal_delivery_afterwards(live_app: LiveApp) -> None:
    from tests.fuzz.strategies import valid_delivery
    import json

    assert post_signed(live_app, json.dumps(valid_delivery(7_777_777)).encode()) == 200
    assert live_app.run(ingest_pending(live_app)) == []


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 70 + b"1" + b"}" * 70,
                                  b'{"object": "page", "entry": [], "x": NaN}',
                                  b'{"object": "page", "entry": [], "x": 1e400}',
                                  b'{"object": "page", "entry": [{"id": "\\udc00"}]}'],
                         ids=["deep-list", "deep-object", "nan", "1e400", "lone-surrogate"])
def test_bodies_postgres_or_the_stack_cannot_hold_are_refused_with_400(live_app: LiveApp, body: bytes) -> None:
    assert post_signed(live_app, body) == 400


@settings(profile())
@given(body=mutated_deliveries() | JSON_VALUES)
def test_parse_delivery_returns_items_or_raises_invalid_delivery(body: object) -> None:
    from bot.errors import InvalidDelivery

    logging.getLogger("bot.ingest.facebook_delivery").disabled = True
    try:
        items = parse_delivery(body)
    except InvalidDelivery:
        return
    finally:
        logging.getLogger("bot.ingest.facebook_delivery").disabled = False
    for item in items:
        assert item.created_time.tzinfo is not None
        assert isinstance(item.external_id, str) and item.external_id
        assert isinstance(item.text, str)
