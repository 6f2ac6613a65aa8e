"""The Facebook webhook endpoint of the real app (bot/ingest/webhooks.py), over loopback HTTP,
on SQLite and PostgreSQL: handshake, signature, size limit, store-then-process, dedupe."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from bot.app import SERVICES, WORKER, create_app
from bot.ingest.webhooks import ingest_delivery
from bot.pipeline.worker import Worker
from bot.services import Services
from bot.store import db
from bot.store.models import Channel, Delivery, Item, Job
from tests.conftest import make_settings, shared_dir

APP_SECRET = "test-app-secret"  # what tests.conftest.make_settings configures
VERIFY_TOKEN = "test-verify-token"
PAGE_ID = "104857600012345"
URL = "/webhooks/facebook"
SAMPLES = shared_dir() / "samples" / "facebook"


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def comment(n: int, text: str | None = None, page: str = PAGE_ID) -> dict[str, Any]:
    return {
        "field": "feed",
        "value": {
            "item": "comment",
            "verb": "add",
            "comment_id": f"{page}_2001_{n}",
            "post_id": f"{page}_2001",
            "parent_id": f"{page}_2001",
            "from": {"id": str(900_000 + n), "name": f"Client {n}"},
            "message": text if text is not None else f"Commentaire numéro {n}, le pain était trop cuit",
            "created_time": 1_717_000_000 + n,
        },
    }


def delivery(*changes: dict[str, Any], page: str = PAGE_ID) -> bytes:
    body = {"object": "page", "entry": [{"id": page, "time": 1_717_000_000, "changes": list(changes)}]}
    return json.dumps(body, ensure_ascii=False).encode()


@dataclass
class Hook:
    client: TestClient
    services: Services
    worker: Worker

    async def post(self, body: bytes, signature: str | None = "auto", **kw: Any) -> tuple[int, str]:
        headers = {"Content-Type": "application/json"}
        if signature == "auto":
            signature = sign(body)
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
        # a BytesIO body is sent with its Content-Length, in chunks (large bodies included)
        async with self.client.post(URL, data=io.BytesIO(body), headers=headers, **kw) as resp:
            return resp.status, await resp.text()

    async def count(self, model: Any, *where: Any) -> int:
        async with self.services.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(model).where(*where)))

    async def classify_queued(self) -> list[int]:
        """The item ids queued for classification (a job names a list of them), each once per job."""
        async with self.services.sessions() as session:
            payloads = (await session.scalars(select(Job.payload).where(Job.kind == "classify"))).all()
        return [i for p in payloads for i in p.get("item_ids", [p.get("item_id")])]

    async def process_deliveries(self) -> None:
        """Run the ingest stage for every stored delivery (what the worker's job does)."""
        async with self.services.sessions() as session:
            ids = (await session.scalars(select(Delivery.id).order_by(Delivery.id))).all()
        for delivery_id in ids:
            await ingest_delivery(self.services, delivery_id)

    async def texts(self) -> dict[str, str]:
        async with self.services.sessions() as session:
            return dict((await session.execute(select(Item.external_id, Item.text))).all())


@pytest.fixture
async def hook(tmp_path: Path, database_url: str, models_dir: Path, aiohttp_client: Any
               ) -> AsyncIterator[Hook]:
    settings = make_settings(tmp_path, database_url, models_dir)
    if not db.is_sqlite(database_url):
        await asyncio.to_thread(db.upgrade, database_url)
    app = create_app(settings, run_worker=False, run_scheduler=False)
    client = await aiohttp_client(app)
    services = app[SERVICES]
    async with services.sessions.begin() as session:
        session.add(Channel(platform="facebook", external_id=PAGE_ID, name="Boulangerie Test",
                            credentials={"page_token": "page-token"}))
    yield Hook(client, services, app[WORKER])


async def assert_nothing_stored(hook: Hook) -> None:
    assert await hook.count(Delivery) == 0
    assert await hook.count(Job) == 0
    assert await hook.count(Item) == 0


# --- the subscription handshake ----------------------------------------------------------


async def test_handshake_with_the_right_token_returns_the_raw_challenge(hook: Hook) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    async with hook.client.get(URL, params=params) as resp:
        assert resp.status == 200
        assert await resp.text() == "1158201444"
        assert resp.content_type == "text/plain"


@pytest.mark.parametrize("params", [
    {"hub.mode": "subscribe", "hub.verify_token": "wrong-token", "hub.challenge": "1"},
    {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
    {"hub.challenge": "1"},
    {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"},
], ids=["wrong-token", "wrong-mode", "no-params", "empty-token"])
async def test_handshake_with_a_wrong_token_or_mode_is_refused(hook: Hook, params: dict[str, str]
                                                               ) -> None:
    async with hook.client.get(URL, params=params) as resp:
        assert resp.status == 403
        assert "1" != await resp.text()


async def test_handshake_with_a_non_ascii_token_is_refused_not_a_crash(hook: Hook) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": "jeton-é", "hub.challenge": "1"}
    async with hook.client.get(URL, params=params) as resp:
        assert resp.status == 403


# --- signature ---------------------------------------------------------------------------


async def test_a_delivery_without_signature_is_refused_and_not_stored(hook: Hook) -> None:
    status, _ = await hook.post(delivery(comment(1)), signature=None)
    assert status == 403
    await assert_nothing_stored(hook)


@pytest.mark.parametrize("signature", [
    "sha256=" + "0" * 64,
    sign(b"x", secret="another-app-secret"),
    sign(delivery(comment(1)), secret="another-app-secret"),
    "sha1=" + hmac.new(APP_SECRET.encode(), delivery(comment(1)), hashlib.sha1).hexdigest(),
    "sha256=",
    "garbage",
], ids=["zeros", "other-secret-other-body", "other-secret", "sha1", "empty-digest", "garbage"])
async def test_a_delivery_with_a_wrong_signature_is_refused_and_not_stored(hook: Hook, signature: str
                                                                           ) -> None:
    status, text = await hook.post(delivery(comment(1)), signature=signature)
    assert status == 403
    assert "Signature" in text
    await assert_nothing_stored(hook)


async def test_the_signature_of_a_different_body_is_refused(hook: Hook) -> None:
    signed = delivery(comment(1))
    sent = delivery(comment(1, text="texte modifié en route"))
    status, _ = await hook.post(sent, signature=sign(signed))
    assert status == 403
    await assert_nothing_stored(hook)


async def test_a_non_ascii_signature_is_refused_not_a_crash(hook: Hook) -> None:
    status, _ = await hook.post(delivery(comment(1)), signature="sha256=" + "é" * 64)
    assert status == 403
    await assert_nothing_stored(hook)


async def test_good_signature_on_malformed_json_is_400_and_not_stored(hook: Hook) -> None:
    body = b'{"object": "page", "entry": ['
    status, text = await hook.post(body)
    assert status == 400
    assert "JSON" in text
    await assert_nothing_stored(hook)


async def test_good_signature_on_a_non_utf8_body_is_400_and_not_stored(hook: Hook) -> None:
    status, _ = await hook.post(b'{"object": "page\xff\xfe"}')
    assert status == 400
    await assert_nothing_stored(hook)


# --- size --------------------------------------------------------------------------------


async def test_a_body_over_the_limit_is_413_and_not_stored(hook: Hook) -> None:
    limit = hook.services.settings.webhook_max_bytes
    body = b" " * (limit + 1)
    status, _ = await hook.post(body)
    assert status == 413
    await assert_nothing_stored(hook)


async def test_a_chunked_body_over_the_limit_is_413_and_not_stored(hook: Hook) -> None:
    limit = hook.services.settings.webhook_max_bytes
    body = b" " * (limit + 1)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the size is only known by reading
        for start in range(0, len(body), 256 * 1024):
            yield body[start:start + 256 * 1024]

    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body)}
    async with hook.client.post(URL, data=chunks(), headers=headers) as resp:
        assert resp.status == 413
    await assert_nothing_stored(hook)


async def test_a_1000_update_batch_fits_the_default_limit_and_yields_1000_items(hook: Hook) -> None:
    body = delivery(*(comment(n) for n in range(1000)))
    assert len(body) <= hook.services.settings.webhook_max_bytes
    status, text = await hook.post(body)
    assert status == 200 and text.strip() == "EVENT_RECEIVED"
    # stored once, raw, with one job, and not parsed yet
    assert await hook.count(Delivery) == 1
    assert await hook.count(Job) == 1
    assert await hook.count(Job, Job.kind == "ingest_delivery") == 1
    assert await hook.count(Item) == 0
    async with hook.services.sessions() as session:
        stored = await session.scalar(select(Delivery))
    assert stored is not None and stored.body == body and stored.processed_at is None

    await hook.process_deliveries()
    assert await hook.count(Item) == 1000
    queued = await hook.classify_queued()
    assert len(queued) == 1000 and len(set(queued)) == 1000
    texts = await hook.texts()
    assert texts[f"{PAGE_ID}_2001_0"] == "Commentaire numéro 0, le pain était trop cuit"
    assert texts[f"{PAGE_ID}_2001_999"] == "Commentaire numéro 999, le pain était trop cuit"


async def test_a_mid_sized_delivery_is_read_whole(hook: Hook) -> None:
    """A delivery of a few hundred kilobytes arrives in several TCP reads: all of it must be
    read before the signature is checked."""
    body = delivery(*(comment(n, text="x" * 2000) for n in range(150)))
    assert 300_000 < len(body) < 1_000_000
    status, _ = await hook.post(body)
    assert status == 200
    async with hook.services.sessions() as session:
        stored = await session.scalar(select(Delivery.body))
    assert stored == body


async def test_the_worker_runs_the_stored_delivery(hook: Hook) -> None:
    status, _ = await hook.post(delivery(comment(1), comment(2)))
    assert status == 200
    assert await hook.count(Item) == 0
    await hook.worker.drain()
    assert await hook.count(Item) == 2
    assert await hook.count(Job, Job.kind == "ingest_delivery", Job.status == "done") == 1
    assert await hook.count(Delivery, Delivery.processed_at.is_not(None)) == 1


# --- dedupe, unknown pages ---------------------------------------------------------------


async def test_the_same_delivery_twice_stores_its_items_once(hook: Hook) -> None:
    body = delivery(comment(1), comment(2), comment(3))
    assert (await hook.post(body))[0] == 200
    assert (await hook.post(body))[0] == 200  # Meta retries: both are acknowledged
    await hook.process_deliveries()
    assert await hook.count(Item) == 3
    assert len(await hook.classify_queued()) == 3
    # a third copy arriving after processing changes nothing either
    assert (await hook.post(body))[0] == 200
    await hook.process_deliveries()
    assert await hook.count(Item) == 3
    assert len(await hook.classify_queued()) == 3


async def test_a_delivery_for_an_unconfigured_page_is_acknowledged_and_dropped(hook: Hook) -> None:
    status, _ = await hook.post(delivery(comment(1, page="999999"), page="999999"))
    assert status == 200
    await hook.process_deliveries()
    assert await hook.count(Item) == 0
    assert await hook.classify_queued() == []
    assert await hook.count(Delivery, Delivery.processed_at.is_not(None)) == 1


async def test_a_delivery_mixing_pages_keeps_only_the_configured_one(hook: Hook) -> None:
    body = {"object": "page", "entry": [
        {"id": "999999", "time": 1_717_000_000, "changes": [comment(1, page="999999")]},
        {"id": PAGE_ID, "time": 1_717_000_000, "changes": [comment(2)]},
    ]}
    assert (await hook.post(json.dumps(body).encode()))[0] == 200
    await hook.process_deliveries()
    assert list(await hook.texts()) == [f"{PAGE_ID}_2001_2"]


# --- real samples, hostile text ----------------------------------------------------------


SAMPLE_CHANNELS = [("facebook", "{page-id}"), ("facebook", "500158316696377"),
                   ("facebook", "247349599062786"), ("facebook", "PAGE-ID"),
                   ("instagram", "17841430541631416")]


async def test_the_real_samples_are_accepted_and_stored(hook: Hook) -> None:
    async with hook.services.sessions.begin() as session:
        for platform, external_id in SAMPLE_CHANNELS:
            session.add(Channel(platform=platform, external_id=external_id, name=external_id))
    files = sorted(SAMPLES.glob("*.json"))
    assert len(files) == 7
    for path in files:
        raw = path.read_bytes()
        parsed = json.loads(raw)
        # 01 and 07 come from documentation pages that wrap the body in [...]; the others
        # are captured bodies, signed byte for byte as they arrived
        body = json.dumps(parsed[0]).encode() if isinstance(parsed, list) else raw
        status, _ = await hook.post(body)
        assert status == 200, path.name
    assert await hook.count(Delivery) == 7
    await hook.process_deliveries()
    texts = await hook.texts()
    assert texts == {
        "{page-post-id}": "It's Thursday and I want to eat cake.",            # 01
        "500158316696377_500219983356877_5405676": "",                        # 02
        "500158316696377_502116146500594": "",                                # 03
        "mid.$cAAC6AFgUYTphs6kk2lbgmPaOon0R": "hello27",                      # 04 (05 is an echo)
        "17867301270523379": "LINK",                                          # 06
        "COMMENT-ID": "Does this shirt come in blue?",                        # 07
    }
    async with hook.services.sessions() as session:
        own = await session.scalar(select(Item).where(Item.external_id == "500158316696377_500219983356877_5405676"))
    assert own is not None and own.is_brand_post and own.status == "brand"


HOSTILE = ('<script>alert("x")</script><img src=x onerror=alert(1)> '
           "\u202egnp.exe\u202c & \"quotes\" 'single' \u2066isolate\u2069 😡\n{{ 7*7 }}")


async def test_a_hostile_comment_is_stored_verbatim(hook: Hook) -> None:
    body = delivery(comment(1, text=HOSTILE))
    assert (await hook.post(body))[0] == 200
    await hook.process_deliveries()
    assert (await hook.texts())[f"{PAGE_ID}_2001_1"] == HOSTILE
    async with hook.services.sessions() as session:
        item = await session.scalar(select(Item))
    assert item is not None and item.author_name == "Client 1"


async def test_a_nul_character_in_one_comment_does_not_block_the_delivery(hook: Hook) -> None:
    """JSON allows \\u0000; PostgreSQL text columns do not. One such comment must not make the
    whole delivery (up to 1,000 updates) fail again and again."""
    body = delivery(comment(1), comment(2, text="avant\u0000après"), comment(3))
    assert (await hook.post(body))[0] == 200
    await hook.process_deliveries()
    texts = await hook.texts()
    assert {f"{PAGE_ID}_2001_1", f"{PAGE_ID}_2001_3"} <= set(texts)
    assert await hook.count(Delivery, Delivery.processed_at.is_not(None)) == 1
