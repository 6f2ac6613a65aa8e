"""``page(request, services, "queue.html", ...)``: :func:`bot.web.render.render` plus the
small formatting helpers the triage templates use (``when``, ``seconds``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from bot.services import Services
from bot.web.render import Page, render


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except Exception:  # an unknown zone shows UTC rather than breaking the page
        return ZoneInfo("UTC")


def seconds(value: float | None) -> str:
    """42 s, 3 min 05 s, 2 h 10 min, 3 j 4 h (compact, language-neutral enough)."""
    if value is None:
        return "—"
    s = int(round(value))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} j {s % 86400 // 3600} h"


def page(request: web.Request, services: Services, template: str, **context: Any) -> Page:
    zone = _zone(services.settings.timezone)

    def when(value: datetime | None) -> str:
        return value.astimezone(zone).strftime("%d/%m %H:%M") if value else "—"

    return render(request, template, when=when, seconds=seconds, **context)
