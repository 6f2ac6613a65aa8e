"""Fixtures for the notification tests: templates, a sample view, real SMTP servers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2
import pytest
from aiosmtpd.smtp import SMTP

from bot.demo.mailcatcher import MailCatcher
from bot.notify.compose import NotificationView, make_environment
from tests.conftest import free_port

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"


@pytest.fixture
def env() -> jinja2.Environment:
    return make_environment(TEMPLATES_DIR)


@pytest.fixture
def make_view() -> Callable[..., NotificationView]:
    """Build a French complaint view; keyword arguments override any field."""
    base = NotificationView(
        item_id=42,
        platform="facebook",
        page_name="Boulangerie Dorée",
        kind="comment",
        author_name="Marie Tremblay",
        author_handle="marie.t",
        author_followers=1234,
        text="Le pain était froid et personne ne m'a répondu au comptoir.",
        created_time=datetime(2026, 12, 3, 18, 50, tzinfo=timezone.utc),
        permalink="https://www.facebook.com/123_456",
        parent_text="Nouvelle galette des rois, en boutique dès aujourd'hui !",
        parent_is_ad=False,
        category="complaint",
        confidence=0.873,
        explanation=("froid", "répondu"),
        rule_name="plaintes-boulangerie",
        reply_mode="private_with_public_ack",
        sla_due=datetime(2026, 12, 3, 19, 5, tzinfo=timezone.utc),  # 14:05 EST
        expert_name="Julie Gagnon",
        expert_timezone="America/Montreal",
        suggested_reply="Bonjour Marie, nous sommes désolés…",
        reply_url="https://relais.example/reply/42?t=abc",
        language="fr",
    )

    def build(**changes: Any) -> NotificationView:
        return replace(base, **changes)

    return build


@pytest.fixture
async def catcher() -> AsyncIterator[MailCatcher]:
    mail = MailCatcher()
    await mail.start()
    try:
        yield mail
    finally:
        await mail.stop()


@pytest.fixture(name="free_port")
def free_port_fixture() -> int:
    """A port on which nothing listens (bound, then released)."""
    return free_port()


@pytest.fixture
def plain_smtp_server() -> Callable[..., contextlib.AbstractAsyncContextManager[int]]:
    """``async with plain_smtp_server(handler, **smtp_options) as port``."""
    return _plain_smtp_server


@contextlib.asynccontextmanager
async def _plain_smtp_server(handler: object, **smtp_options: Any) -> AsyncIterator[int]:
    """A bare aiosmtpd server in this loop, with ``handler``; yields its port."""
    loop = asyncio.get_running_loop()
    protocols: list[SMTP] = []

    def factory() -> SMTP:
        protocol = SMTP(handler, hostname="test-smtp", loop=loop, **smtp_options)
        protocols.append(protocol)
        return protocol

    server = await loop.create_server(factory, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        tasks = []
        for protocol in protocols:
            if protocol.transport is not None:
                protocol.transport.close()
            task = getattr(protocol, "_handler_coroutine", None)
            if task is not None:
                task.cancel()
                tasks.append(task)
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
