"""The real app over loopback HTTP: security headers on every page (errors included),
/metrics (Prometheus text, bearer token or admin session) and /healthz, on SQLite and
PostgreSQL (bot/app.py, bot/web/metrics.py, bot/web/health.py)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.app import SERVICES, create_app
from bot.errors import Transient
from bot.pipeline import queue
from bot.pipeline.worker import Worker
from bot.services import Services
from bot.settings import Secret
from bot.store import db
from bot.store.models import Channel, Job, utcnow
from bot.web import users
from tests.conftest import make_settings
from tests.web.conftest import TEST_HASHER, login, make_user

METRICS_TOKEN = "metrics-token-0123456789"
APP_SECRET = "test-app-secret"
PAGE_ID = "104857600012345"


async def _boom(request: web.Request) -> web.Response:
    raise RuntimeError("an unexpected bug")


@pytest.fixture
async def client(tmp_path: Path, database_url: str, models_dir: Path, aiohttp_client: Any) -> AsyncIterator[TestClient]:
    settings = make_settings(tmp_path, database_url, models_dir, metrics_token=Secret(METRICS_TOKEN))
    if not db.is_sqlite(database_url):
        await asyncio.to_thread(db.upgrade, database_url)
    app = create_app(settings, run_worker=False, run_scheduler=False,
                     extra_routes=lambda app, services: app.router.add_get("/__boom", _boom))
    previous = users.use_hasher(TEST_HASHER)
    try:
        yield await aiohttp_client(app)
    finally:
        users.use_hasher(previous)


def services_of(client: TestClient) -> Services:
    return client.app[SERVICES]


def assert_secure(resp: Any, what: str) -> None:
    csp = resp.headers.get("Content-Security-Policy", "")
    assert "frame-ancestors 'none'" in csp, f"{what}: CSP {csp!r}"
    assert "default-src 'self'" in csp, what
    assert resp.headers.get("X-Content-Type-Options") == "nosniff", what
    assert resp.headers.get("X-Frame-Options") == "DENY", what


def signed(body: bytes) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest(),
            "Content-Type": "application/json"}


async def test_every_page_and_every_error_carries_the_security_headers(client: TestClient) -> None:
    too_big = b"x" * (services_of(client).settings.webhook_max_bytes + 1)
    requests = [
        ("GET", "/", None, {}, None),
        ("GET", "/healthz", None, {}, 200),
        ("GET", "/metrics", None, {}, 401),
        ("GET", "/login", None, {}, 200),
        ("GET", "/ui/", None, {}, None),
        ("GET", "/ui/dashboard", None, {}, None),
        ("GET", "/reply/not-a-token", None, {}, None),
        ("GET", "/static/relais.css", None, {}, None),
        ("GET", "/webhooks/facebook", None, {}, 403),
        ("POST", "/webhooks/facebook", b"{}", {}, 403),
        ("POST", "/webhooks/facebook", b"[[", signed(b"[["), 400),
        ("GET", "/no/such/page", None, {}, 404),
        ("DELETE", "/healthz", None, {}, 405),
        ("POST", "/webhooks/facebook", too_big, signed(too_big), 413),
        ("POST", "/login", too_big, {"Content-Type": "application/x-www-form-urlencoded"}, 413),
        ("GET", "/__boom", None, {}, 500),
    ]
    for method, path, body, headers, status in requests:
        data = io.BytesIO(body) if body is not None else None
        async with client.request(method, path, data=data, headers=headers, allow_redirects=False) as resp:
            if status is not None:
                assert resp.status == status, f"{method} {path}: {resp.status}"
            assert_secure(resp, f"{method} {path} ({resp.status})")
            if resp.status == 500:
                assert "an unexpected bug" not in await resp.text()  # no internals on the page


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of the exposition text, or None."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if not m or m.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    return None


async def scrape(client: TestClient, **headers: str) -> tuple[int, str]:
    async with client.get("/metrics", headers=headers) as resp:
        return resp.status, await resp.text()


async def test_metrics_need_the_token_or_an_admin(client: TestClient) -> None:
    assert (await scrape(client))[0] == 401
    assert (await scrape(client, Authorization="Bearer wrong-token"))[0] == 401
    assert (await scrape(client, Authorization=f"Basic {METRICS_TOKEN}"))[0] == 401
    status, text = await scrape(client, Authorization=f"Bearer {METRICS_TOKEN}")
    assert status == 200 and "relais_items" in text
    services = services_of(client)
    await make_user(services, "expert@example.com", "expert")
    await make_user(services, "admin@example.com", "admin")
    await login(client, "expert@example.com")
    assert (await scrape(client))[0] == 401, "an expert's session is not enough"
    await client.post("/logout", headers={"X-CSRF-Token": (await (await client.get("/session")).json())["csrf_token"]})
    await login(client, "admin@example.com")
    status, text = await scrape(client)
    assert status == 200 and "relais_jobs" in text


async def test_metrics_count_webhooks_queue_items_and_failures(client: TestClient) -> None:
    services = services_of(client)
    auth = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    _, before = await scrape(client, **auth)
    stored_before = metric(before, "relais_webhook_deliveries_total", platform="facebook", status="200") or 0
    observed_before = metric(before, "relais_webhook_seconds_count", platform="facebook") or 0

    async def failing(payload: dict[str, Any]) -> None:
        raise Transient("Graph API answered 503")

    async with services.sessions.begin() as session:
        await queue.enqueue(session, "flaky", {})
    worker = Worker(services.sessions, {"flaky": failing}, worker_id="metrics-test")
    failures_before = metric(before, "relais_job_failures_total", kind="flaky", error="Transient") or 0
    platform_before = metric(before, "relais_platform_errors_total", kind="flaky", error="Transient") or 0
    assert await worker.run_once() == 1

    body = json.dumps({"object": "page", "entry": []}).encode()
    for _ in range(3):
        async with client.post("/webhooks/facebook", data=body, headers=signed(body)) as resp:
            assert resp.status == 200
    async with services.sessions.begin() as session:
        old = utcnow() - timedelta(seconds=90)
        session.add(Job(kind="classify", payload={"item_id": 1}, status="queued", run_at=old, created_at=old))

    status, text = await scrape(client, **auth)
    assert status == 200
    assert metric(text, "relais_webhook_deliveries_total", platform="facebook", status="200") == stored_before + 3
    assert metric(text, "relais_webhook_seconds_count", platform="facebook") == observed_before + 3
    assert metric(text, "relais_webhook_seconds_bucket", platform="facebook", le="+Inf") is not None
    assert metric(text, "relais_jobs", kind="ingest_delivery", status="queued") == 3
    assert metric(text, "relais_deliveries_unread") == 3
    assert (metric(text, "relais_queue_oldest_due_seconds", kind="classify") or 0) >= 90
    assert metric(text, "relais_job_failures_total", kind="flaky", error="Transient") == failures_before + 1
    assert metric(text, "relais_platform_errors_total", kind="flaky", error="Transient") == platform_before + 1
    assert metric(text, "relais_http_request_seconds_count", route="/webhooks/facebook", method="POST", status="200")


async def test_healthz_reports_queue_depth_age_and_each_channel_token(client: TestClient) -> None:
    services = services_of(client)
    async with client.get("/healthz") as resp:
        assert resp.status == 200
        health = await resp.json()
    assert health["status"] == "ok" and health["database"] == "ok"
    assert health["queue"]["depth"] == 0
    async with services.sessions.begin() as session:
        session.add(Channel(platform="facebook", external_id=PAGE_ID, name="Page OK", credentials={}))
        session.add(Channel(platform="x", external_id="42", name="X dead", credentials={}, status="token_invalid",
                            status_detail="Error validating access token: secret-ish detail"))
        old = utcnow() - timedelta(minutes=5)
        session.add(Job(kind="route", payload={"item_id": 9}, status="queued", run_at=old, created_at=old))
    async with client.get("/healthz") as resp:
        text = await resp.text()
        health = json.loads(text)
    assert health["status"] == "degraded"
    assert health["queue"]["depth"] == 1 and health["queue"]["oldest_due_age_s"] >= 300
    tokens = {c["name"]: c["token"] for c in health["channels"]}
    assert tokens == {"Page OK": "ok", "X dead": "invalid"}
    assert "secret-ish" not in text  # a platform's error text stays out of a public page
