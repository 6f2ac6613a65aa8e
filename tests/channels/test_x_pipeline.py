"""X accounts through the real pipeline: the fake X API on loopback, the worker and its
stages, a real database (SQLite and PostgreSQL) and a real SMTP server (the mail catcher)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select, update

from bot import PROJECT_ROOT
from bot.channels.simulated.x_api import FakeXAPI
from bot.demo.mailcatcher import MailCatcher
from bot.ingest.backfill import mark_promotion
from bot.pipeline import queue
from bot.pipeline.flow import handlers
from bot.pipeline.worker import Worker
from bot.services import Services, open_services
from bot.store import db
from bot.store.models import Assignment, Channel, Classification, Item, Job, Response, utcnow
from tests.conftest import make_settings

A, B = "1000", "2000"
CM = "camille.cm@boulangerie-doree.example"
SARAH = "sarah.marketing@boulangerie-doree.example"
PROMO_RULE = """rules:
  - name: Promotions X
    when:
      platform: x
      parent_is_ad: true
    assign: sarah.marketing@boulangerie-doree.example
    reply_mode: public
    sla: 8h

"""


def credentials(account: str) -> dict[str, str]:
    return {"bearer_token": f"bearer-{account}", "consumer_key": "ck", "consumer_secret": "cs",
            "access_token": f"at-{account}", "access_token_secret": "ats"}


@dataclass
class XStack:
    services: Services
    fake: FakeXAPI
    catcher: MailCatcher
    worker: Worker
    channel_ids: dict[str, int]

    async def poll(self, *accounts: str) -> None:
        async with self.services.sessions.begin() as session:
            for account in accounts:
                await queue.enqueue(session, "poll_channel",
                                    {"channel_id": self.channel_ids[account]}, max_attempts=3)
        await self.worker.drain()

    async def channel(self, account: str) -> Channel:
        async with self.services.sessions() as session:
            row = await session.get(Channel, self.channel_ids[account])
        assert row is not None
        return row

    async def item(self, external_id: str) -> Item | None:
        async with self.services.sessions() as session:
            return await session.scalar(select(Item).where(Item.external_id == external_id))


@pytest.fixture
async def x(tmp_path: Path, database_url: str, models_dir: Path) -> AsyncIterator[XStack]:
    rules = (PROJECT_ROOT / "routing_rules.yaml").read_text(encoding="utf-8")
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(rules.replace("rules:\n", PROMO_RULE, 1), encoding="utf-8")
    catcher = MailCatcher()
    smtp_port = await catcher.start()
    fake = FakeXAPI()
    fake.add_account(A, "boulangerie", "bearer-1000", access_token="at-1000")
    fake.add_account(B, "boulangerie_ca", "bearer-2000", access_token="at-2000")
    server = TestServer(fake.app, host="127.0.0.1")
    await server.start_server()
    settings = make_settings(tmp_path, database_url, models_dir, rules_file=rules_file,
                             smtp_url=f"smtp://127.0.0.1:{smtp_port}")
    if not db.is_sqlite(database_url):
        db.upgrade(database_url)
    async with open_services(settings) as services:
        ids = {}
        async with services.sessions.begin() as session:
            for account, cursor in ((A, {"dms": True}), (B, {})):
                row = Channel(platform="x", external_id=account, name=f"@x{account}",
                              credentials=credentials(account), cursor=cursor,
                              api_url=str(server.make_url("")).rstrip("/"), poll_interval_s=60)
                session.add(row)
                await session.flush()
                ids[account] = row.id
        yield XStack(services, fake, catcher, Worker(services.sessions, handlers(services)), ids)
    await server.close()
    await catcher.stop()


async def test_dm_is_polled_once_and_answered_privately(x: XStack) -> None:
    event = x.fake.add_dm(A, "3001", "fan", "Fan", "Ma commande n'est jamais arrivée, remboursez-moi")
    x.fake.add_dm(B, "3002", "other", "Other", "B has DMs off")
    await x.poll(A, B)
    item = await x.item(event)
    assert item is not None and item.kind == "message" and item.source == "poll"
    assert item.author_id == "3001" and item.status not in ("new", "brand")
    assert (await x.channel(A)).cursor == {"dms": True, "dm_since_id": event}
    assert (await x.channel(B)).cursor == {}  # B never asked for its DMs
    assert await x.item(x.fake.dms[1]["dm_event_id"]) is None
    await x.poll(A)  # a restart of the poll: nothing repeated
    async with x.services.sessions() as session:
        assert len((await session.scalars(select(Item).where(Item.kind == "message"))).all()) == 1
        session.add(Response(item_id=item.id, mode="private", text="Nous vous écrivons tout de suite",
                             idempotency_key="test:dm:1", status="pending"))
        await session.commit()
        response_id = await session.scalar(select(Response.id).where(Response.item_id == item.id))
    async with x.services.sessions.begin() as session:
        await queue.enqueue(session, "respond", {"response_id": response_id})
    await x.worker.drain()
    [reply] = [d for d in x.fake.dms if d["sender_id"] == A]
    assert reply["participant_id"] == "3001" and reply["text"] == "Nous vous écrivons tout de suite"
    assert not any(t["author_id"] == A for t in x.fake.tweets.values())  # no public ack for a DM
    assert (await x.item(event)).status == "answered"  # type: ignore[union-attr]


async def test_reply_to_a_promoted_tweet_is_classified_and_routed_as_an_ad_reaction(x: XStack) -> None:
    promo = x.fake.add_tweet(A, "-20 % sur tous les croissants ce week-end !")
    plain = x.fake.add_tweet(A, "Nos boutiques ferment à 18 h ce soir.")
    await mark_promotion(x.services, x.channel_ids[A], promo)
    stored = await x.item(promo)
    assert stored is not None and stored.is_ad and stored.is_brand_post and stored.status == "brand"
    assert stored.kind == "post"
    text = "@boulangerie trop bien, c'est valable jusqu'à quand ?"
    on_promo = x.fake.add_mention(A, "3001", "fan", "Fan", text, in_reply_to=promo)
    on_plain = x.fake.add_mention(A, "3002", "fan2", "Fan 2", text, in_reply_to=plain)
    await x.poll(A)
    async with x.services.sessions() as session:
        labels = {}
        for tweet in (on_promo, on_plain):
            item = await session.scalar(select(Item).where(Item.external_id == tweet))
            assert item is not None
            labels[tweet] = await session.scalar(select(Classification).where(Classification.item_id == item.id))
            assignment = await session.scalar(select(Assignment).where(Assignment.item_id == item.id))
            labels[tweet + ":rule"] = assignment.rule_name if assignment else None
    assert "parent post is an ad" in labels[on_promo].explanation
    assert "parent post is an ad" not in labels[on_plain].explanation
    assert labels[on_promo + ":rule"] == "Promotions X"
    assert labels[on_plain + ":rule"] != "Promotions X"


async def test_promoting_a_stored_tweet_and_undoing_it(x: XStack) -> None:
    promo = x.fake.add_tweet(A, "Nouveau : la galette frangipane")
    first = await mark_promotion(x.services, x.channel_ids[A], promo)
    requests = len(x.fake.requests)
    assert await mark_promotion(x.services, x.channel_ids[A], promo, promoted=False) == first
    assert len(x.fake.requests) == requests  # already stored: not fetched again
    assert (await x.item(promo)).is_ad is False  # type: ignore[union-attr]


async def test_revoked_account_stops_alerts_once_and_others_keep_polling(x: XStack) -> None:
    x.fake.revoke(A)
    tweet = x.fake.add_mention(B, "3001", "fan", "Fan", "love the new croissant ad music 🎶 what song is it?")
    await x.poll(A, B)
    channel = await x.channel(A)
    assert channel.status == "token_invalid" and "refused the credentials" in (channel.status_detail or "")
    assert (await x.channel(B)).status == "active" and await x.item(tweet) is not None
    alert = await x.catcher.wait_for(lambda m: "Jeton invalide" in str(m["Subject"]), timeout=10)
    assert alert["To"] == CM and "@x1000" in alert.get_body(("plain",)).get_content()
    later = x.fake.add_mention(B, "3002", "fan2", "Fan 2", "encore une question")
    await x.poll(A, B)
    assert await x.item(later) is not None
    assert sum("Jeton invalide" in str(m["Subject"]) for m in x.catcher.messages) == 1


async def test_rate_limited_account_waits_for_the_reset_while_others_poll(x: XStack) -> None:
    x.fake.set_rate_limited(reset_in=600, account=A)
    waiting = x.fake.add_mention(A, "3001", "fan", "Fan", "question pour A")
    served = x.fake.add_mention(B, "3002", "fan2", "Fan 2", "question pour B")
    before = utcnow()
    await x.poll(A, B)
    assert await x.item(served) is not None and await x.item(waiting) is None
    async with x.services.sessions() as session:
        job = await session.scalar(select(Job).where(Job.kind == "poll_channel",
                                                     Job.payload["channel_id"].as_integer() == x.channel_ids[A]))
    assert job is not None and job.status == "queued" and job.attempts == 0
    assert "RateLimited" in (job.last_error or "")
    # postponed to the x-rate-limit-reset the fake sent (600 s ahead, whole seconds)
    assert before + timedelta(seconds=590) <= job.run_at <= utcnow() + timedelta(seconds=601)
    assert (await x.channel(A)).status == "active"
    x.fake.clear_failures()  # the window has reset: the same job runs and nothing was lost
    async with x.services.sessions.begin() as session:
        await session.execute(update(Job).where(Job.id == job.id).values(run_at=utcnow()))
    await x.worker.drain()
    assert await x.item(waiting) is not None
