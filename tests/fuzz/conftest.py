"""Hypothesis profiles for the hostile-input tests, and a real app served from a thread.

``ci`` (the default here): a few dozen examples per property, for every run.
``fuzz``: thousands, no deadline, for the long run documented in docs/operations.md::

    .venv/bin/pytest tests/fuzz --hypothesis-profile=fuzz -p no:cacheprovider
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import TypeVar

import pytest
from aiohttp import web
from hypothesis import HealthCheck, settings

from bot.app import SERVICES, create_app
from bot.services import Services
from bot.store import db
from bot.store.models import Channel
from tests.conftest import free_port, fresh_pg_schema, make_settings

T = TypeVar("T")

settings.register_profile(
    "ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "fuzz", max_examples=5_000, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def profile() -> settings:
    """The settings for these tests: ``ci``, unless ``--hypothesis-profile`` named another.

    Applied per test (``@settings(profile())``), so other tests' hypothesis settings stay as they are."""
    name = settings.get_current_profile_name()
    return settings.get_profile("ci" if name == "default" else name)

PAGE_ID = "104857600012345"


class LiveApp:
    """``create_app`` on a loopback port, its event loop in a thread: synchronous
    hypothesis tests talk to it over real HTTP and run stage functions on its loop."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fuzz-app", daemon=True)
        self._runner = web.AppRunner(app)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def services(self) -> Services:
        return self.app[SERVICES]

    def run(self, coro: Awaitable[T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        return future.result(timeout=120)

    def start(self) -> None:
        self._thread.start()

        async def up() -> None:
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

        self.run(up())

    def stop(self) -> None:
        self.run(self._runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live_app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
             models_dir: Path) -> Iterator[LiveApp]:
    """The real app with one Facebook Page, on SQLite and on PostgreSQL (own schema)."""
    tmp = tmp_path_factory.mktemp("fuzz")
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp / 'relais.db'}"
        else:
            url = stack.enter_context(fresh_pg_schema())
            db.upgrade(url)
        live = LiveApp(create_app(make_settings(tmp, url, models_dir), run_worker=False, run_scheduler=False))
        live.start()

        async def add_page() -> None:
            async with live.services.sessions.begin() as session:
                session.add(Channel(platform="facebook", external_id=PAGE_ID, name="Fuzz Page",
                                    credentials={"page_token": "page-token-fuzz"}))

        live.run(add_page())
        try:
            yield live
        finally:
            live.stop()
