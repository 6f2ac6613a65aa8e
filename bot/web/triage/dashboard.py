"""The dashboard (``/ui/dashboard``, ``/ui/dashboard.csv``), dead letters and the banners.

KPIs are :func:`bot.kpi.report.compute_kpis` for today and this week (from
midnight and from Monday in ``RELAIS_TIMEZONE``). Channel health: token status,
webhook lag (median ``ingest_lag_s`` of the last 24 hours), items recovered by
polling (webhooks missed, see :func:`bot.ingest.store_items.recovered_by_polling`).

Banners (:data:`bot.web.render.BANNER_SOURCES`): channels whose token died,
a rules file whose last reload failed, open crisis incidents.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import statistics
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import func, select

from bot.ingest.store_items import WEBHOOK_PLATFORMS, recovered_by_polling
from bot.kpi import events, output
from bot.pipeline import queue
from bot.services import Services
from bot.store.models import AuditEntry, Channel, Delivery, Item, Job, KpiEvent, utcnow
from bot.web.auth import current_user, require_role
from bot.web.render import BANNER_SOURCES
from bot.web.triage.view import page
from bot.web.ui_i18n import translator

log = logging.getLogger(__name__)

DEAD_LETTER_ROLES = ("admin", "community_manager")
#: the figures the dashboard shows, in order; durations show their median and p90
SHOWN = (
    "received", "answered", "response_rate", "sla_compliance", "sla_breached", "backlog_open",
    "backlog_overdue", events.FIRST_RESPONSE, events.PUBLIC_ACK, events.TIME_TO_ASSIGNMENT,
    "reclassified", "spam", "recovered_by_polling",
)


def periods(now: datetime, zone: str) -> dict[str, tuple[datetime, datetime]]:
    """Today and this week (from Monday) in the brand's time zone, up to ``now``."""
    try:
        tz = ZoneInfo(zone)
    except Exception:  # an unknown zone: UTC rather than no dashboard
        tz = ZoneInfo("UTC")
    local = now.astimezone(tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    monday = midnight - timedelta(days=local.weekday())
    end = now + timedelta(seconds=1)
    return {"today": (midnight.astimezone(now.tzinfo), end), "week": (monday.astimezone(now.tzinfo), end)}


async def kpis(services: Services, now: datetime) -> dict[str, dict[str, Any]] | None:
    """The KPIs of today and this week, or None when the KPI module is not installed."""
    try:
        from bot.kpi.report import compute_kpis
    except ImportError:
        return None
    out: dict[str, dict[str, Any]] = {}
    for name, (start, end) in periods(now, services.settings.timezone).items():
        async with services.sessions.begin() as session:  # compute_kpis writes derived events
            result = await compute_kpis(session, start, end, settings=services.settings)
        assert isinstance(result, dict)
        out[name] = result
    return out


def flatten(figures: dict[str, Any]) -> dict[str, Any]:
    """The CLI's flat ``first_response_s.median`` columns, without the period's bounds."""
    return {k: v for k, v in output.flatten(figures).items() if k not in ("from", "to")}


async def channel_health(services: Services, now: datetime) -> list[dict[str, Any]]:
    async with services.sessions() as session:
        channels = (await session.scalars(select(Channel).order_by(Channel.name))).all()
        recovered = await recovered_by_polling(session)
        lags: dict[int, list[float]] = {}
        rows = await session.execute(
            select(KpiEvent.channel_id, KpiEvent.seconds)
            .where(KpiEvent.name == events.INGEST_LAG, KpiEvent.at >= now - timedelta(days=1))
            .order_by(KpiEvent.id.desc())
            .limit(5000)
        )
        for channel_id, seconds in rows.all():
            if channel_id is not None:
                lags.setdefault(int(channel_id), []).append(float(seconds))
        last_delivery = dict(
            (await session.execute(select(Delivery.platform, func.max(Delivery.received_at)).group_by(Delivery.platform))).all()
        )
        open_items = dict(
            (await session.execute(
                select(Item.channel_id, func.count()).where(Item.status.in_(("triage", "routed", "notified", "needs_review")))
                .group_by(Item.channel_id)
            )).all()
        )
    return [
        {
            "channel": c,
            "webhooks": c.platform in WEBHOOK_PLATFORMS,
            "lag_median_s": statistics.median(lags[c.id]) if lags.get(c.id) else None,
            "lag_count": len(lags.get(c.id, [])),
            "last_delivery": last_delivery.get(c.platform) if c.platform in WEBHOOK_PLATFORMS else None,
            "recovered": recovered.get(c.id, 0) if c.platform in WEBHOOK_PLATFORMS else None,
            "open_items": int(open_items.get(c.id, 0)),
        }
        for c in channels
    ]


# --- banners -----------------------------------------------------------------------


async def token_banner(services: Services) -> list[tuple[str, str]]:
    t = translator(services.settings.ui_language)
    async with services.sessions() as session:
        names = (await session.scalars(select(Channel.name).where(Channel.status == "token_invalid"))).all()
    return [("error", t("banner_token", name=name)) for name in names]


async def rules_banner(services: Services) -> list[tuple[str, str]]:
    status = getattr(services, "rules_status", None)
    error = getattr(status, "error", None)
    if not error:
        return []
    return [("error", translator(services.settings.ui_language)("banner_rules", error=str(error)[:300]))]


async def crisis_banner(services: Services) -> list[tuple[str, str]]:
    try:
        from bot.kpi.crisis import open_incidents
    except ImportError:
        return []
    t = translator(services.settings.ui_language)
    async with services.sessions() as session:
        incidents = await open_incidents(session)
    return [("warning", t("banner_crisis", label=i.label[:120], n=i.item_count)) for i in incidents]


def register_banners() -> None:
    for source in (token_banner, rules_banner, crisis_banner):
        if source not in BANNER_SOURCES:
            BANNER_SOURCES.append(source)


# --- pages -------------------------------------------------------------------------


def dashboard_routes(services: Services) -> list[web.RouteDef]:
    register_banners()

    @require_role()
    async def dashboard(request: web.Request) -> web.StreamResponse:
        now = utcnow()
        figures = await kpis(services, now)
        return page(
            request,
            services,
            "dashboard.html",
            figures=figures,
            shown=SHOWN,
            health=await channel_health(services, now),
            zone=services.settings.timezone,
        )

    @require_role()
    async def dashboard_csv(request: web.Request) -> web.StreamResponse:
        figures = await kpis(services, utcnow())
        if figures is None:
            raise web.HTTPNotFound(text="the KPI module is not installed\n")
        today, week = flatten(figures["today"]), flatten(figures["week"])
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["kpi", "today", "this_week"])
        writer.writerow(["from", figures["today"]["from"], figures["week"]["from"]])
        for key in dict.fromkeys([*today, *week]):
            writer.writerow([key, _csv_value(today.get(key)), _csv_value(week.get(key))])
        day = now_local_date(services)
        return web.Response(
            text=out.getvalue(),
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="relais-kpis-{day}.csv"', "Cache-Control": "no-store"},
        )

    @require_role(*DEAD_LETTER_ROLES)
    async def dead_letters(request: web.Request) -> web.StreamResponse:
        async with services.sessions() as session:
            jobs = (await session.scalars(
                select(Job).where(Job.status == "dead").order_by(Job.finished_at.desc(), Job.id.desc()).limit(200)
            )).all()
        return page(
            request,
            services,
            "dead_letters.html",
            jobs=[(job, json.dumps(job.payload, ensure_ascii=False, sort_keys=True)[:300]) for job in jobs],
            notice=request.query.get("notice"),
        )

    @require_role(*DEAD_LETTER_ROLES)
    async def retry(request: web.Request) -> web.StreamResponse:
        user = current_user(request)
        assert user is not None
        try:
            job_id = int(request.match_info["job_id"])
        except ValueError:
            raise web.HTTPNotFound() from None
        async with services.sessions.begin() as session:
            job = await session.get(Job, job_id)
            done = await queue.retry_dead(session, job_id)
            if done and job is not None:
                item_id = job.payload.get("item_id") if isinstance(job.payload.get("item_id"), int) else None
                exists = item_id is not None and await session.get(Item, item_id) is not None
                session.add(AuditEntry(item_id=item_id if exists else None, actor=user.email, action="retry_job",
                                       detail={"job_id": job_id, "kind": job.kind}, at=utcnow()))
        services.wake()
        raise web.HTTPSeeOther(f"/ui/dead-letters?notice={'retried' if done else 'not_dead'}")

    return [
        web.get("/ui/dashboard", dashboard),
        web.get("/ui/dashboard.csv", dashboard_csv),
        web.get("/ui/dead-letters", dead_letters),
        web.post("/ui/dead-letters/{job_id}/retry", retry),
    ]


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def now_local_date(services: Services) -> str:
    try:
        return utcnow().astimezone(ZoneInfo(services.settings.timezone)).strftime("%Y-%m-%d")
    except Exception:
        return utcnow().strftime("%Y-%m-%d")
