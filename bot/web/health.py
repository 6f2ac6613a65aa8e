"""``/healthz``: is the database reachable, how deep and old is the queue, which channels are sick."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select, text

from bot.pipeline import queue
from bot.services import Services
from bot.store.models import Channel


def health_routes(services: Services) -> list[web.RouteDef]:
    async def healthz(request: web.Request) -> web.Response:
        try:
            async with services.sessions() as session:
                await session.execute(text("SELECT 1"))
                jobs = await queue.stats(session)
                channels = (await session.execute(select(Channel.name, Channel.platform, Channel.status))).all()
        except Exception as exc:  # noqa: BLE001 - health must answer, not crash
            return web.json_response({"status": "error", "database": type(exc).__name__}, status=503)
        sick = [c.name for c in channels if c.status != "active"]
        return web.json_response(
            {
                "status": "degraded" if sick else "ok",
                "database": "ok",
                "queue": {"by_status": jobs["counts"], "oldest_due_age_s": round(jobs["oldest_due_age_s"], 1)},
                "channels": [{"name": c.name, "platform": c.platform, "status": c.status} for c in channels],
            }
        )

    return [web.get("/healthz", healthz)]
