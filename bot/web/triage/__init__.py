"""The triage UI's pages: queue, item, live events, dashboard, dead letters.

``triage_routes(services)`` is what :func:`bot.app._add_routes` registers; the
plain functions behind the pages live in :mod:`bot.triage`.
"""

from __future__ import annotations

from aiohttp import web

from bot.services import Services
from bot.web.triage import strings  # noqa: F401  (registers the pages' strings)
from bot.web.triage.dashboard import dashboard_routes
from bot.web.triage.live import close_streams, live_routes
from bot.web.triage.pages import triage_pages

__all__ = ["close_streams", "triage_routes"]


def triage_routes(services: Services) -> list[web.RouteDef]:
    return [*triage_pages(services), *live_routes(services), *dashboard_routes(services)]
