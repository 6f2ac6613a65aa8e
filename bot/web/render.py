"""Rendering the logged-in UI's pages: ``render(request, "queue.html", items=...)``.

Every page gets ``user`` (a :class:`~bot.web.auth.CurrentUser` or None),
``csrf_token`` (put it in a hidden ``_csrf`` field of every POST form),
``lang``, ``t`` (``t("key", **values)``, see :mod:`bot.web.ui_i18n`),
``current_path`` and ``banners`` (``(level, text)`` pairs shown at the top of
the layout: ``level`` is ``info``, ``warning`` or ``error``).

Banners come from :data:`BANNER_SOURCES`, an append-only registry of
``async def source(services) -> list[tuple[str, str]]``. The auth middleware
collects them (at most every :data:`BANNER_TTL_S` seconds per process) before a
logged-in HTML page is handled, so ``render`` itself stays synchronous. A
source that fails is logged and skipped: a banner never breaks a page.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.web.ui_i18n import translator

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

BannerSource = Callable[["Services"], Awaitable[list[tuple[str, str]]]]
#: append your source at import time of your module; never remove one
BANNER_SOURCES: list[BannerSource] = []
BANNER_TTL_S = 2.0
#: the banners collected for this request (set by the auth middleware)
BANNERS: web.RequestKey[list[tuple[str, str]]] = web.RequestKey("banners")


class Page(web.Response):
    """A rendered page. Also awaitable (``await render(...)`` gives the same page), so a
    handler written either way works."""

    def __await__(self) -> Generator[Any, None, Page]:
        return self
        yield  # makes this a generator  # pragma: no cover


class BannerCache:
    """The banners of one process, refreshed at most every ``ttl`` seconds."""

    def __init__(self, services: Services, ttl: float = BANNER_TTL_S) -> None:
        self.services = services
        self.ttl = ttl
        self._at = float("-inf")
        self._banners: list[tuple[str, str]] = []
        self._lock = asyncio.Lock()

    async def get(self) -> list[tuple[str, str]]:
        if time.monotonic() - self._at < self.ttl:
            return self._banners
        async with self._lock:
            if time.monotonic() - self._at >= self.ttl:
                self._banners = await collect_banners(self.services)
                self._at = time.monotonic()
        return self._banners


async def collect_banners(services: Services) -> list[tuple[str, str]]:
    banners: list[tuple[str, str]] = []
    for source in list(BANNER_SOURCES):
        try:
            banners.extend(await source(services))
        except Exception:  # a banner must never break the page it decorates
            log.exception("banner source %s failed", getattr(source, "__qualname__", source))
    return banners


def page_language(request: web.Request) -> str:
    from bot.app import SERVICES  # bot.app imports this module's users

    from bot.web.auth import current_user

    user = current_user(request)
    if user is not None:
        return user.language
    return request.app[SERVICES].settings.ui_language


def render(request: web.Request, template_name: str, *, status: int = 200, **context: Any) -> Page:
    """Render ``templates/web/ui/<template_name>`` for the request's user."""
    from bot.app import SERVICES

    from bot.web.auth import current_user

    services = request.app[SERVICES]
    user = current_user(request)
    lang = page_language(request)
    values: dict[str, Any] = {
        "user": user,
        "csrf_token": user.csrf_token if user is not None else "",
        "lang": lang,
        "t": translator(lang),
        "banners": request.get(BANNERS, []),
        "current_path": request.path,
    }
    values.update(context)
    html = services.templates.get_template(f"web/ui/{template_name}").render(**values)
    page = Page(text=html, content_type="text/html", status=status)
    page.headers["Cache-Control"] = "no-store"  # pages show private data: never cached
    return page
