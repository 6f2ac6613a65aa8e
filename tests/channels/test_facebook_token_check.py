"""The daily token check (bot/ingest/poller.py ``token_check``) against the fake Graph API's
``/debug_token``, with the real services on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from bot.channels.simulated.graph_api import FakeGraphAPI
from bot.ingest.poller import schedule_polls, token_check
from bot.services import Services
from bot.store.models import Channel, Email, Job, utcnow

PAGE, TOKEN = "31337", "page-token-check"
MANAGER = "camille.cm@boulangerie-doree.example"  # community_manager of routing_rules.yaml


async def _setup(services: Services, aiohttp_server) -> tuple[FakeGraphAPI, int, int]:
    fake = FakeGraphAPI()
    fake.add_page(PAGE, "Boulangerie Jeton", TOKEN)
    server = await aiohttp_server(fake.app)
    async with services.sessions.begin() as session:
        fb = Channel(platform="facebook", external_id=PAGE, name="Boulangerie Jeton",
                     credentials={"page_token": TOKEN}, api_url=str(server.make_url("/")))
        x = Channel(platform="x", external_id="1", name="@x", credentials={"bearer_token": "b"})
        session.add_all([fb, x])
        await session.flush()
        return fake, fb.id, x.id


async def _alerts(services: Services) -> list[Email]:
    async with services.sessions() as session:
        return list((await session.scalars(select(Email).where(Email.kind == "alert"))).all())


async def _status(services: Services, channel_id: int) -> str:
    async with services.sessions() as session:
        channel = await session.get(Channel, channel_id)
        assert channel is not None
        return channel.status


async def test_a_token_expiring_within_7_days_alerts_the_community_manager_once_a_day(
        services: Services, aiohttp_server) -> None:
    fake, fb_id, _ = await _setup(services, aiohttp_server)
    await token_check(services, fb_id)  # a long-lived token: nothing to say
    fake.set_token_expiry(PAGE, utcnow() + timedelta(days=8))
    await token_check(services, fb_id)  # more than 7 days left: nothing to say
    assert await _alerts(services) == []
    assert fake.requests == ["GET /v21.0/debug_token"] * 2

    fake.set_token_expiry(PAGE, utcnow() + timedelta(days=5))
    await token_check(services, fb_id)
    await token_check(services, fb_id)  # the same day again: no second mail
    [alert] = await _alerts(services)
    assert alert.to_address == MANAGER and "Jeton bientôt expiré" in alert.subject
    assert "Boulangerie Jeton" in alert.subject and "relais channels add" in alert.body_text
    assert await _status(services, fb_id) == "active"  # it still works until then
    async with services.sessions() as session:
        assert await session.scalar(select(Job.id).where(Job.kind == "send_email")) is not None


async def test_a_dead_token_stops_the_page_and_alerts(services: Services, aiohttp_server) -> None:
    fake, fb_id, _ = await _setup(services, aiohttp_server)
    fake.revoke_token(PAGE)
    await token_check(services, fb_id)
    assert await _status(services, fb_id) == "token_invalid"
    [alert] = await _alerts(services)
    assert "Jeton invalide" in alert.subject
    await token_check(services, fb_id)  # a stopped channel is not checked again
    assert len(fake.requests) == 1


async def test_an_expired_token_stops_the_page(services: Services, aiohttp_server) -> None:
    fake, fb_id, _ = await _setup(services, aiohttp_server)
    fake.set_token_expiry(PAGE, utcnow() - timedelta(minutes=1))
    await token_check(services, fb_id)
    assert await _status(services, fb_id) == "token_invalid"
    async with services.sessions() as session:
        channel = await session.get(Channel, fb_id)
    assert channel is not None and "463" in (channel.status_detail or "")


async def test_the_scheduler_queues_one_check_per_page_per_day(services: Services, aiohttp_server) -> None:
    _, fb_id, x_id = await _setup(services, aiohttp_server)
    for _ in range(2):  # two scheduler runs the same day (or two server processes)
        stop = asyncio.Event()
        task = asyncio.create_task(schedule_polls(services, stop, tick_s=0.05))
        await asyncio.sleep(0.3)
        stop.set()
        await task
        async with services.sessions.begin() as session:  # let the next run poll again
            for channel in (await session.scalars(select(Channel))).all():
                channel.last_polled_at = None
    async with services.sessions() as session:
        checks = (await session.scalars(select(Job).where(Job.kind == "token_check"))).all()
    assert [(job.payload, job.dedupe_key) for job in checks] == [
        ({"channel_id": fb_id}, f"token_check:{fb_id}:{utcnow():%Y%m%d}")]
    assert x_id != fb_id
