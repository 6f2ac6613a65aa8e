"""Run the server (web + worker + pollers) or a worker alone until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from aiohttp import web
from sqlalchemy import select

from bot.app import create_app
from bot.errors import ConfigError
from bot.pipeline.flow import handlers
from bot.pipeline.rules_reload import watch_rules
from bot.pipeline.worker import SHUTDOWN_GRACE_S, Worker
from bot.services import Services, open_services
from bot.settings import Settings
from bot.store.models import Channel

log = logging.getLogger(__name__)


async def check_ready(services: Services) -> None:
    """Refuse to start when a connected channel lacks the settings it needs."""
    settings = services.settings
    async with services.sessions() as session:
        platforms = set((await session.scalars(select(Channel.platform))).all())
    if platforms & {"facebook", "instagram"}:
        if not settings.fb_app_secret:
            raise ConfigError("RELAIS_FB_APP_SECRET is not set: it is needed to verify Facebook webhooks")
        if not settings.fb_verify_token:
            raise ConfigError("RELAIS_FB_VERIFY_TOKEN is not set: it is needed for the webhook handshake")


def _on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def run_app(
    app: web.Application, host: str, port: int, stop: asyncio.Event, on_started: Callable[[], None] | None = None
) -> None:
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    try:
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        if on_started:
            on_started()
        await stop.wait()
    finally:
        await runner.cleanup()


async def serve(settings: Settings, *, with_web: bool, worker: bool) -> int:
    stop = asyncio.Event()
    _on_signals(stop)
    async with open_services(settings, load_model=False) as services:
        await check_ready(services)  # before anything starts: a clean message, nothing to undo
    if with_web:
        app = create_app(settings, run_worker=worker)
        await run_app(app, settings.host, settings.port, stop, lambda: log.info("listening on http://%s:%s", settings.host, settings.port))
        return 0
    async with open_services(settings) as services:
        runner = Worker(
            services.sessions, handlers(services), concurrency=settings.worker_concurrency,
            lease_s=settings.worker_lease_s, batch_limit=settings.worker_batch,
            idle_sleep_s=0.1,  # nothing in this process wakes it: new jobs are found by polling
        )
        services.wake = runner.wake
        task = asyncio.create_task(runner.run(), name="relais-worker")
        reload = asyncio.create_task(watch_rules(services, stop), name="relais-rules-reload")
        done, _ = await asyncio.wait([task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
        if task in done:  # the worker itself failed (e.g. the database went away for good)
            task.result()
        log.info("stopping: finishing the jobs in hand for up to %.0f s, then releasing them", SHUTDOWN_GRACE_S)
        stop.set()
        await runner.shutdown(task, SHUTDOWN_GRACE_S)
        await reload
    return 0
