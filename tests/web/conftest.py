"""Web UI helpers shared by the UI tests: users, logging in, the real app on a loopback port.

- ``await make_user(services, email, role)`` adds a user (password :data:`PASSWORD`).
- ``await login(client_or_base_url, email, password)`` logs in through the real form and
  returns a :class:`Login` (the client to use, the session's CSRF token, the cookie).
  With a base URL it opens an ``aiohttp.ClientSession`` that the caller closes
  (``await logged.client.close()``); with an aiohttp ``TestClient`` it reuses it.
- ``ui_server``: ``create_app(settings, run_worker=False, run_scheduler=False)`` on
  ``127.0.0.1:<free port>``; ``make_ui_server(run_worker=..., extra_routes=..., **settings)``
  starts others (each is stopped at the end of the test).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from argon2 import PasswordHasher

from bot.app import SERVICES, create_app
from bot.services import Services
from bot.settings import Settings
from bot.store import db
from bot.store.models import User
from bot.web import users
from bot.web.users import create_user, expert_id_for
from tests.conftest import free_port, make_settings

PASSWORD = "correct horse battery staple"
SESSION_COOKIE = "relais_session"
#: argon2id with small costs: the same code path, a fraction of the CPU (2 cores, many tests)
TEST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(autouse=True)
def cheap_password_hashing() -> Iterator[None]:
    previous = users.use_hasher(TEST_HASHER)
    yield
    users.use_hasher(previous)


async def make_user(
    services: Services,
    email: str,
    role: str,
    password: str = PASSWORD,
    language: str = "fr",
    *,
    name: str = "",
    expert_email: str | None = None,
) -> User:
    """A user in the database (``expert_email``: link it to an expert of the rules file)."""
    async with services.sessions.begin() as session:
        expert_id = await expert_id_for(session, expert_email) if expert_email else None
        return await create_user(
            session, email=email, role=role, password=password, name=name, language=language, expert_id=expert_id
        )


@dataclass
class Login:
    client: TestClient | aiohttp.ClientSession
    csrf_token: str
    cookie: str  # the relais_session cookie's value (for a browser context, say)

    async def post(self, path: str, data: dict[str, str] | None = None, **kwargs: Any) -> aiohttp.ClientResponse:
        """A form POST with the session's CSRF token added (``allow_redirects`` off)."""
        form = {"_csrf": self.csrf_token, **(data or {})}
        kwargs.setdefault("allow_redirects", False)
        return await self.client.post(path, data=form, **kwargs)


def login_form_token(page: str) -> str:
    found = re.search(r'name="_csrf" value="([^"]+)"', page)
    assert found, "the login page has a _csrf field"
    return found.group(1)


async def login(client_or_base_url: TestClient | aiohttp.ClientSession | str, email: str, password: str = PASSWORD) -> Login:
    """Log in through GET/POST /login like a browser; fails the test if the login is refused."""
    if isinstance(client_or_base_url, str):
        client: Any = aiohttp.ClientSession(base_url=client_or_base_url, cookie_jar=aiohttp.CookieJar(unsafe=True))
    else:
        client = client_or_base_url
    async with client.get("/login") as resp:
        assert resp.status == 200, resp.status
        token = login_form_token(await resp.text())
    async with client.post(
        "/login", data={"email": email, "password": password, "_csrf": token}, allow_redirects=False
    ) as resp:
        assert resp.status == 303, f"login of {email} refused: {resp.status}"
        cookie = resp.cookies[SESSION_COOKIE].value
    async with client.get("/session") as resp:
        assert resp.status == 200
        csrf = (await resp.json())["csrf_token"]
    return Login(client, csrf, cookie)


@dataclass
class UiServer:
    base_url: str
    app: web.Application
    settings: Settings

    @property
    def services(self) -> Services:
        return self.app[SERVICES]


StartServer = Callable[..., Awaitable[UiServer]]


@pytest.fixture
async def make_ui_server(tmp_path: Path, database_url: str, models_dir: Path) -> AsyncIterator[StartServer]:
    runners: list[web.AppRunner] = []
    if not db.is_sqlite(database_url):
        await asyncio.to_thread(db.upgrade, database_url)

    async def start(
        *,
        run_worker: bool = False,
        extra_routes: Callable[[web.Application, Services], None] | None = None,
        **overrides: Any,
    ) -> UiServer:
        port = free_port()
        overrides.setdefault("base_url", f"http://127.0.0.1:{port}")
        settings = make_settings(tmp_path / f"server{len(runners)}", database_url, models_dir, port=port, **overrides)
        app = create_app(settings, run_worker=run_worker, run_scheduler=False, extra_routes=extra_routes)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return UiServer(f"http://127.0.0.1:{port}", app, settings)

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
async def ui_server(make_ui_server: StartServer) -> UiServer:
    return await make_ui_server()
