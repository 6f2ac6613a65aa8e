"""The demo mail catcher: waiting for mail, and its escaped mailbox pages."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from bot.demo.mailcatcher import MailCatcher
from bot.notify.smtp import SmtpSettings, build_message, send

HOSTILE_HTML = '<p>Bonjour</p><script>alert(1)</script><a href="https://relais.example/r/9">Go</a>'


async def _deliver(catcher: MailCatcher, subject: str, html: str | None = HOSTILE_HTML) -> None:
    assert catcher.port is not None
    message = build_message(
        sender="relais@example.com", to="expert@example.com", subject=subject,
        text="Répondre : https://relais.example/r/9\n<b>pas du gras</b>", html=html,
        message_id=f"<{abs(hash(subject))}@relais.example>")
    settings = SmtpSettings(host="127.0.0.1", port=catcher.port, start_tls=False, timeout=5)
    await send(settings, message)


async def test_wait_for_matches_past_and_future_mail(catcher: MailCatcher) -> None:
    await _deliver(catcher, "premier")
    first = await catcher.wait_for(lambda m: m["Subject"] == "premier", timeout=1)
    assert first is catcher.messages[0]

    with pytest.raises(TimeoutError):
        await catcher.wait_for(lambda m: m["Subject"] == "jamais", timeout=0.2)

    await _deliver(catcher, "second 🥐")
    second = await catcher.wait_for(lambda m: "second" in m["Subject"], timeout=5)
    assert second["Subject"] == "second 🥐"
    assert [m["Subject"] for m in catcher.messages] == ["premier", "second 🥐"]


async def test_mailbox_pages_escape_everything(catcher: MailCatcher, aiohttp_client: Any) -> None:
    await _deliver(catcher, "<img src=x onerror=alert(1)> Plainte")
    await _deliver(catcher, "texte seul", html=None)
    app = web.Application()
    app.add_routes(catcher.mailbox_routes())
    client = await aiohttp_client(app)

    listing = await client.get("/demo/mail")
    page = await listing.text()
    assert listing.status == 200
    assert "&lt;img src=x onerror=alert(1)&gt; Plainte" in page and "<img" not in page
    assert 'href="/demo/mail/0"' in page and 'href="/demo/mail/1"' in page
    assert 'href="https://relais.example/r/9"' in page

    detail = await client.get("/demo/mail/0")
    page = await detail.text()
    assert detail.status == 200
    assert "default-src 'none'" in detail.headers["Content-Security-Policy"]
    assert '<iframe sandbox="allow-popups allow-popups-to-escape-sandbox"' in page
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<pre>Répondre : https://relais.example/r/9\n&lt;b&gt;pas du gras&lt;/b&gt;" in page

    text_only = await (await client.get("/demo/mail/1")).text()
    assert "no HTML part" in text_only
    assert (await client.get("/demo/mail/7")).status == 404
