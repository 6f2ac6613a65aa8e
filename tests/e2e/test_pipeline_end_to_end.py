"""One item from the platform to a reply posted back, with its KPI, over real sockets:
the real facebook-sdk and tweepy clients against the fake Graph and X servers, a
real SMTP server (the mail catcher), the Relais server and worker, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select

from bot.app import SERVICES, create_app
from bot.channels.simulated.graph_api import FakeGraphAPI
from bot.channels.simulated.x_api import FakeXAPI
from bot.demo.experts import reply_link
from bot.demo.mailcatcher import MailCatcher
from bot.services import Services
from bot.store.models import Channel, Item, KpiEvent, Response
from tests.conftest import free_port, make_settings

PAGE_ID, PAGE_TOKEN = "777000111", "page-token-e2e"
X_ID, X_TOKEN = "888000222", "x-token-e2e"


async def _start(app: web.Application, port: int = 0) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = port or free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


@dataclass
class Stack:
    services: Services
    graph: FakeGraphAPI
    x: FakeXAPI
    catcher: MailCatcher
    base_url: str
    http: aiohttp.ClientSession


async def eventually(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Wait until ``check()`` (sync or async) returns something truthy."""
    async with asyncio.timeout(timeout):
        while True:
            value = check()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(0.1)


@pytest.fixture
async def stack(tmp_path: Path, database_url: str, models_dir: Path) -> AsyncIterator[Stack]:
    from bot.store import db

    catcher = MailCatcher()
    smtp_port = await catcher.start()
    graph = FakeGraphAPI(app_secret="test-app-secret")
    graph.add_page(PAGE_ID, "Boulangerie Test", PAGE_TOKEN)
    x = FakeXAPI()
    x.add_account(X_ID, "boulangerietest", X_TOKEN)
    graph_runner, graph_port = await _start(graph.app)
    x_runner, x_port = await _start(x.app)
    port = free_port()
    settings = make_settings(
        tmp_path,
        database_url,
        models_dir,
        smtp_url=f"smtp://127.0.0.1:{smtp_port}",
        base_url=f"http://127.0.0.1:{port}",
        poll_interval_s=1.0,
    )
    if not db.is_sqlite(database_url):
        db.upgrade(database_url)
    graph.webhook_url = f"{settings.base_url}/webhooks/facebook"
    app = create_app(settings)
    runner, _ = await _start(app, port)
    services = app[SERVICES]
    async with services.sessions.begin() as session:
        session.add(Channel(platform="facebook", external_id=PAGE_ID, name="Boulangerie Test", credentials={"page_token": PAGE_TOKEN}, api_url=f"http://127.0.0.1:{graph_port}", poll_interval_s=1.0))
        session.add(Channel(platform="x", external_id=X_ID, name="@boulangerietest", credentials={"bearer_token": X_TOKEN, "access_token": X_TOKEN, "consumer_key": "k", "consumer_secret": "s", "access_token_secret": "t"}, api_url=f"http://127.0.0.1:{x_port}", poll_interval_s=1.0))
    async with aiohttp.ClientSession() as http:
        yield Stack(services, graph, x, catcher, settings.base_url, http)
    await runner.cleanup()
    await graph_runner.cleanup()
    await x_runner.cleanup()
    await catcher.stop()


async def _answer_by_link(stack: Stack, link: str, mode: str) -> None:
    async with stack.http.get(link) as page:
        assert page.status == 200
        html = await page.text()
    form_key = re.search(r'name="form_key" value="([^"]+)"', html)
    assert form_key
    form = {"form_key": form_key.group(1), "text": "Toutes nos excuses, nous vous écrivons en privé 🙏", "ack_text": "Nous vous avons répondu en privé.", "mode": mode}
    async with stack.http.post(link, data=form, allow_redirects=False) as sent:
        assert sent.status == 303
        assert sent.headers["Location"].endswith("/status")


async def test_facebook_comment_webhook_to_private_reply_with_public_ack(stack: Stack) -> None:
    ad = stack.graph.publish_post(PAGE_ID, "PROMO -20 % sur les croissants ce week-end !", promoted=True)
    post = stack.graph.publish_post(PAGE_ID, "Notre nouvelle Forêt-Noire est arrivée 🍒")
    # the first poll stores the brand posts (and learns which one is an ad)
    await eventually(lambda: _brand_posts(stack.services, 2))
    text = "J'ai acheté la Forêt-Noire hier, le gâteau était sec et rassis 😡 remboursement svp"
    comment = stack.graph.user_comment(post, {"id": "5001", "name": "Julie Bouchard"}, text)
    assert await stack.graph.deliver_pending() == [200]

    mail = await stack.catcher.wait_for(lambda m: "Julie Bouchard" in m.get_body(("plain",)).get_content(), timeout=30)
    assert mail["To"] == "chloe.qualite@boulangerie-doree.example"  # the complaint rule's expert
    link = reply_link(mail)
    assert link and link.startswith(stack.base_url + "/reply/")
    await _answer_by_link(stack, link, mode="private")

    await eventually(lambda: stack.graph.private_replies and stack.graph.replies_to(comment))
    assert [r["message"]["text"] if isinstance(r.get("message"), dict) else r for r in stack.graph.private_replies]
    ack = stack.graph.replies_to(comment)
    assert ack[0]["message"] == "Nous vous avons répondu en privé."
    assert ack[0]["from"]["id"] == PAGE_ID

    await eventually(lambda: _status(stack.services, comment, "answered"))
    async with stack.services.sessions() as session:
        item = await session.scalar(select(Item).where(Item.external_id == comment))
        assert item is not None and item.status == "answered" and item.language == "fr"
        response = await session.scalar(select(Response).where(Response.item_id == item.id))
        kpi = await session.scalar(select(KpiEvent).where(KpiEvent.item_id == item.id, KpiEvent.name == "first_response_s"))
    assert response is not None and response.status == "sent" and response.mode == "private"
    assert kpi is not None
    # measured from the platform's created_time, not from when Relais received it
    assert kpi.seconds == pytest.approx((response.sent_at - item.created_time).total_seconds(), abs=0.01)
    assert ad != post

    # the link was for one reply: using it again gets a clear page, and nothing is posted twice
    async with stack.http.get(link) as again:
        assert again.status == 409
        assert "déjà" in await again.text()
    assert len(stack.graph.private_replies) == 1


async def test_x_mention_polled_to_public_reply(stack: Stack) -> None:
    tweet = stack.x.add_mention(X_ID, "9001", "lea_m", "Léa", "vous devriez faire une version sans gluten de vos croissants, je serais cliente tous les jours")
    mail = await stack.catcher.wait_for(lambda m: "sans gluten" in m.get_body(("plain",)).get_content(), timeout=30)
    assert mail["To"] == "hugo.produits@boulangerie-doree.example"
    link = reply_link(mail)
    assert link
    await _answer_by_link(stack, link, mode="public")
    replies = await eventually(lambda: stack.x.replies_to(tweet))
    assert replies[0]["text"].startswith("Toutes nos excuses")
    await eventually(lambda: _status(stack.services, tweet, "answered"))
    async with stack.services.sessions() as session:
        item = await session.scalar(select(Item).where(Item.external_id == tweet))
        assert item is not None and item.kind == "mention" and item.source == "poll"
        kpi = await session.scalar(select(KpiEvent).where(KpiEvent.item_id == item.id, KpiEvent.name == "first_response_s"))
    assert kpi is not None and kpi.seconds > 0


async def _status(services: Services, external_id: str, status: str) -> bool:
    async with services.sessions() as session:
        item = await session.scalar(select(Item).where(Item.external_id == external_id))
    return item is not None and item.status == status


async def _brand_posts(services: Services, n: int) -> bool:
    async with services.sessions() as session:
        rows = (await session.scalars(select(Item).where(Item.is_brand_post.is_(True)))).all()
    return len(rows) >= n and any(r.is_ad for r in rows)


async def test_dead_token_stops_the_page_alerts_the_community_manager_once_and_recovers(stack: Stack) -> None:
    stack.graph.revoke_token(PAGE_ID)
    alert = await stack.catcher.wait_for(lambda m: "Jeton invalide" in str(m["Subject"]), timeout=30)
    assert alert["To"] == "camille.cm@boulangerie-doree.example"
    assert "Boulangerie Test" in alert.get_body(("plain",)).get_content()
    async with stack.services.sessions() as session:
        channel = await session.scalar(select(Channel).where(Channel.external_id == PAGE_ID))
    assert channel is not None and channel.status == "token_invalid"
    # while the page is stopped, a new comment waits on the platform; other channels keep working
    post = stack.graph.publish_post(PAGE_ID, "Nouvelle tarte au citron 🍋")
    comment = stack.graph.user_comment(post, {"id": "5002", "name": "Marc"}, "Elle est où la tarte au citron ? J'en veux !")
    tweet = stack.x.add_mention(X_ID, "9002", "sam", "Sam", "love the new croissant ad music 🎶 what song is it?")
    await eventually(lambda: _stored(stack.services, tweet))
    assert sum("Jeton invalide" in str(m["Subject"]) for m in stack.catcher.messages) == 1  # once, not per retry
    # a new token (what `relais channels add` does) and the page resumes: nothing was lost
    stack.graph.pages[PAGE_ID]["revoked"] = False
    async with stack.services.sessions.begin() as session:
        channel = await session.scalar(select(Channel).where(Channel.external_id == PAGE_ID))
        assert channel is not None
        channel.status = "active"
    assert await eventually(lambda: _stored(stack.services, comment))


async def _stored(services: Services, external_id: str) -> bool:
    async with services.sessions() as session:
        return await session.scalar(select(Item.id).where(Item.external_id == external_id)) is not None


async def test_private_reply_window_closed_is_explained_and_a_public_reply_goes_out(stack: Stack) -> None:
    from datetime import UTC, datetime, timedelta

    post = stack.graph.publish_post(PAGE_ID, "Nos bûches de Noël sont arrivées 🎄")
    old = datetime.now(UTC) - timedelta(days=8)  # private replies are allowed for 7 days only
    comment = stack.graph.user_comment(post, {"id": "5003", "name": "Anne Roy"}, "Ma bûche était complètement écrasée à la livraison, très déçue", created_time=old)
    await stack.graph.deliver_pending()
    mail = await stack.catcher.wait_for(lambda m: "Anne Roy" in m.get_body(("plain",)).get_content() and m["To"].startswith("chloe"), timeout=30)
    link = reply_link(mail)
    assert link
    await _answer_by_link(stack, link, mode="private")

    async def refused() -> str | None:
        async with stack.http.get(link + "/status") as page:
            text = await page.text()
        return text if "7 jours" in text else None

    status_page = await eventually(refused)
    assert "réponse publique" in status_page  # what to do next, in the expert's language
    assert not stack.graph.private_replies and not stack.graph.replies_to(comment)
    # the same link opens again, with the text kept and the public mode suggested
    async with stack.http.get(link) as page:
        assert page.status == 200
        html = await page.text()
    assert 'value="public" checked' in html and "Toutes nos excuses" in html
    await _answer_by_link(stack, link, mode="public")
    replies = await eventually(lambda: stack.graph.replies_to(comment))
    assert replies[0]["message"].startswith("Toutes nos excuses")
    await eventually(lambda: _status(stack.services, comment, "answered"))
