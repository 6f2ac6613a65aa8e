"""``/healthz``: is the database reachable, how deep and old is the queue, which channels are sick.

Public (load balancers call it), so it shows states and figures, never an
error text a platform wrote. 200 with ``status: ok`` or ``degraded`` (a channel
whose token is dead or that is paused, or dead jobs); 503 when the database
does not answer.
"""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select, text

from bot.pipeline import queue
from bot.services import Services
from bot.store.models import Channel, utcnow

TOKEN = {"active": "ok", "token_invalid": "invalid", "paused": "paused"}


def health_routes(services: Services) -> list[web.RouteDef]:
    async def healthz(request: web.Request) -> web.Response:
        try:
            async with services.sessions() as session:
                await session.execute(text("SELECT 1"))
                jobs = await queue.stats(session)
                channels = (await session.execute(
                    select(Channel.name, Channel.platform, Channel.status, Channel.last_polled_at).order_by(Channel.id)
                )).all()
        except Exception as exc:  # noqa: BLE001 - health must answer, not crash
            return web.json_response({"status": "error", "database": type(exc).__name__}, status=503)
        now = utcnow()
        counts = jobs["counts"]
        sick = [c.name for c in channels if c.status != "active"]
        return web.json_response(
            {
                "status": "degraded" if sick or counts.get("dead") else "ok",
                "database": "ok",
                "queue": {
                    "depth": int(counts.get("queued", 0)),
                    "running": int(counts.get("running", 0)),
                    "dead": int(counts.get("dead", 0)),
                    "oldest_due_age_s": round(jobs["oldest_due_age_s"], 1),
                    "by_status": counts,
                },
                "channels": [
                    {
                        "name": c.name,
                        "platform": c.platform,
                        "status": c.status,
                        "token": TOKEN.get(c.status, c.status),
                        "last_polled_age_s": round((now - c.last_polled_at).total_seconds(), 1)
                        if c.last_polled_at else None,
                    }
                    for c in channels
                ],
            }
        )

    return [web.get("/healthz", healthz)]
