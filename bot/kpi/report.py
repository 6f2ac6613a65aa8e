"""KPI aggregation in SQL: counts, medians and 90th percentiles, per group.

Every KPI of a period is about the **items created** (platform ``created_time``)
in ``[start, end)``, brand posts excluded: "the complaints of week 47 and how
they were handled". docs/kpis.md defines each figure.

Durations come from ``kpi_events`` (one row per item and name, see
:mod:`bot.kpi.events`); :func:`refresh` first derives the events that the base
tables already say (private resolution, resolution) and the business-hours
seconds of new events, once each. Medians and percentiles are interpolated
(``percentile_cont``) from ``ROW_NUMBER()`` / ``COUNT(*)`` window functions, so
the same SQL runs on SQLite and PostgreSQL and only one row per group and KPI
comes back to Python.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, exists, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.kpi import events
from bot.kpi.calendar import BusinessCalendar
from bot.store.db import dialect_insert
from bot.store.models import Item, KpiEvent, Response, UTCDateTime, utcnow

GROUPS = ("expert", "team", "category", "platform", "page", "language")
#: duration KPIs, each also as ``<name without _s>_business_s``
DURATIONS = (
    events.FIRST_RESPONSE,
    events.PUBLIC_ACK,
    events.PRIVATE_RESOLUTION,
    events.TIME_TO_ASSIGNMENT,
    events.EXPERT_RESPONSE,
    events.RESOLUTION,
    events.INGEST_LAG,
)
VOLUME_DIMENSIONS = ("category", "platform", "page", "language", "kind")


def business_name(name: str) -> str:
    return name.removesuffix("_s") + "_business_s"


# the group key of an item, by --by; NULL keys are reported as "none"
_GROUP_SQL = {
    None: "'all'",
    "expert": "e.email",
    "team": "t.name",
    "category": "c.category",
    "platform": "c.platform",
    "page": "COALESCE(ch.name, c.platform)",
    "language": "c.language",
}

_COHORT = """
cohort AS (
    SELECT i.id, i.platform, i.channel_id, i.language, i.kind, i.status, i.source, i.is_spam,
           i.created_time, i.resolved_at,
           {assignment} AS assignment_id,
           {category} AS category
    FROM items i
    WHERE i.created_time >= :start AND i.created_time < :end AND i.is_brand_post = :false
),
base AS (
    SELECT c.*, a.expert_id, a.sla_due, COALESCE(ch.name, c.platform) AS page_name, {group} AS grp
    FROM cohort c
    LEFT JOIN assignments a ON a.id = c.assignment_id
    LEFT JOIN experts e ON e.id = a.expert_id
    LEFT JOIN teams t ON t.id = e.team_id
    LEFT JOIN channels ch ON ch.id = c.channel_id
)"""

_LATEST_ASSIGNMENT = "(SELECT a.id FROM assignments a WHERE a.item_id = i.id ORDER BY a.id DESC LIMIT 1)"
_LATEST_LABEL = "(SELECT cl.label FROM classifications cl WHERE cl.item_id = i.id ORDER BY cl.id DESC LIMIT 1)"


def _cohort(by: str | None, *, assignment: bool, category: bool) -> str:
    """The cohort CTEs, with the latest assignment and label only when a statement needs them."""
    return _COHORT.format(
        group=_GROUP_SQL[by],
        assignment=_LATEST_ASSIGNMENT if assignment or by in ("expert", "team") else "CAST(NULL AS INTEGER)",
        category=_LATEST_LABEL if category or by == "category" else "CAST(NULL AS VARCHAR(40))",
    )


_DURATIONS = """
WITH {cohort},
ev AS (
    -- by item id (the cohort is small), then by name
    SELECT b.grp, k.name, k.seconds AS v, k.business_seconds AS w
    FROM base b JOIN kpi_events k ON k.item_id = b.id
),
ranked AS (
    SELECT grp, name, v, w,
           ROW_NUMBER() OVER (PARTITION BY grp, name ORDER BY v) AS rn,
           ROW_NUMBER() OVER (PARTITION BY grp, name ORDER BY w IS NULL, w) AS rw,
           COUNT(*) OVER (PARTITION BY grp, name) AS n,
           COUNT(w) OVER (PARTITION BY grp, name) AS nw
    FROM ev WHERE name IN ({names})
)
SELECT grp, name, MAX(n) AS n, MAX(nw) AS nw,
       MAX(CASE WHEN rn = 1 + ((n - 1) * 50) / 100 THEN v END) AS m_lo,
       MAX(CASE WHEN rn = 1 + ((n - 1) * 50 + 99) / 100 THEN v END) AS m_hi,
       MAX(CASE WHEN rn = 1 + ((n - 1) * 90) / 100 THEN v END) AS p_lo,
       MAX(CASE WHEN rn = 1 + ((n - 1) * 90 + 99) / 100 THEN v END) AS p_hi,
       MAX(CASE WHEN rw = 1 + ((nw - 1) * 50) / 100 THEN w END) AS bm_lo,
       MAX(CASE WHEN rw = 1 + ((nw - 1) * 50 + 99) / 100 THEN w END) AS bm_hi,
       MAX(CASE WHEN rw = 1 + ((nw - 1) * 90) / 100 THEN w END) AS bp_lo,
       MAX(CASE WHEN rw = 1 + ((nw - 1) * 90 + 99) / 100 THEN w END) AS bp_hi
FROM ranked GROUP BY grp, name
"""

_COUNTS = """
WITH {cohort},
replies AS (
    SELECT r.item_id, MIN(r.sent_at) AS first_sent,
           SUM(CASE WHEN r.mode = 'public' OR r.ack_platform_id IS NOT NULL THEN 1 ELSE 0 END) AS public_replies,
           SUM(CASE WHEN r.mode = 'private' THEN 1 ELSE 0 END) AS private_replies
    FROM responses r WHERE r.status = 'sent' AND r.item_id IN (SELECT id FROM cohort)
    GROUP BY r.item_id
),
labels AS (
    SELECT cl.item_id, MIN(CASE WHEN cl.source = 'model' THEN cl.id END) AS model_label_id,
           MAX(CASE WHEN cl.source = 'human' AND cl.model_version <> 'import' THEN 1 ELSE 0 END) AS has_human
    FROM classifications cl WHERE cl.item_id IN (SELECT id FROM cohort)
    GROUP BY cl.item_id
),
facts AS (
    SELECT b.grp, b.id, b.status, b.is_spam, b.source, b.sla_due, b.expert_id, b.resolved_at,
           r.first_sent, COALESCE(r.public_replies, 0) AS public_replies,
           COALESCE(r.private_replies, 0) AS private_replies, l.model_label_id,
           CASE WHEN l.has_human = 1 AND l.model_label_id IS NOT NULL THEN
               (SELECT COUNT(*) FROM classifications h WHERE h.item_id = b.id AND h.source = 'human'
                    AND h.model_version <> 'import'
                    AND h.label <> (SELECT m.label FROM classifications m WHERE m.id = l.model_label_id))
           ELSE 0 END AS corrections
    FROM base b
    LEFT JOIN replies r ON r.item_id = b.id
    LEFT JOIN labels l ON l.item_id = b.id
)
SELECT grp,
       COUNT(*) AS received,
       SUM(CASE WHEN status = 'removed' AND first_sent IS NULL THEN 1 ELSE 0 END) AS removed,
       SUM(CASE WHEN is_spam = :true AND first_sent IS NULL THEN 1 ELSE 0 END) AS spam,
       SUM(CASE WHEN first_sent IS NOT NULL THEN 1 ELSE 0 END) AS answered,
       SUM(CASE WHEN public_replies > 0 THEN 1 ELSE 0 END) AS answered_public,
       SUM(CASE WHEN private_replies > 0 THEN 1 ELSE 0 END) AS answered_private,
       SUM(CASE WHEN expert_id IS NOT NULL AND first_sent IS NOT NULL AND first_sent <= sla_due THEN 1 ELSE 0 END) AS sla_met,
       SUM(CASE WHEN expert_id IS NOT NULL AND ((first_sent IS NOT NULL AND first_sent > sla_due)
                 OR (first_sent IS NULL AND sla_due < :as_of AND status <> 'removed' AND is_spam = :false))
                THEN 1 ELSE 0 END) AS sla_breached,
       SUM(CASE WHEN first_sent IS NULL AND resolved_at IS NULL AND status <> 'removed' AND is_spam = :false
                THEN 1 ELSE 0 END) AS open,
       SUM(CASE WHEN first_sent IS NULL AND resolved_at IS NULL AND status <> 'removed' AND is_spam = :false
                 AND sla_due IS NOT NULL AND sla_due < :as_of THEN 1 ELSE 0 END) AS overdue,
       SUM(CASE WHEN model_label_id IS NOT NULL THEN 1 ELSE 0 END) AS model_labelled,
       SUM(CASE WHEN corrections > 0 THEN 1 ELSE 0 END) AS corrected,
       SUM(CASE WHEN source = 'poll' THEN 1 ELSE 0 END) AS polled
FROM facts GROUP BY grp
"""

_VOLUME_SQL = {
    "category": "c.category",
    "platform": "c.platform",
    "page": "c.page_name",
    "language": "c.language",
    "kind": "c.kind",
}
# every dimension in one statement, over one (materialized) cohort
_VOLUMES = "WITH {cohort}\n" + "\nUNION ALL\n".join(
    f"SELECT '{d}' AS d, {column} AS k, COUNT(*) AS n FROM base c GROUP BY {column}"
    for d, column in _VOLUME_SQL.items()
)


def _params(sql: str, start: datetime, end: datetime, as_of: datetime) -> Any:
    stmt = text(sql)
    binds = [bindparam("start", start, type_=UTCDateTime()), bindparam("end", end, type_=UTCDateTime())]
    if ":as_of" in sql:
        binds.append(bindparam("as_of", as_of, type_=UTCDateTime()))
    if ":true" in sql:
        binds.append(bindparam("true", True))
    binds.append(bindparam("false", False))
    return stmt.bindparams(*binds)


def _interpolate(n: int, lo: float | None, hi: float | None, percent: int) -> float | None:
    if not n or lo is None or hi is None:
        return None
    fraction = ((n - 1) * percent % 100) / 100
    return round(lo + (hi - lo) * fraction, 3)


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


async def refresh(session: AsyncSession, calendar: BusinessCalendar, start: datetime, end: datetime) -> None:
    """Derive the missing events of items created in ``[start, end)``, then their business seconds.

    Idempotent: each event is written once (unique name + item) and its
    business seconds computed once, in the caller's transaction.
    """
    in_window = (Item.created_time >= start) & (Item.created_time < end) & Item.is_brand_post.is_(False)

    def lacks(name: str) -> Any:
        return ~exists().where(KpiEvent.name == name, KpiEvent.item_id == Item.id)

    private = (
        select(Item.id, Item.channel_id, Item.created_time, Response.expert_id, Response.sent_at)
        .join(Response, Response.item_id == Item.id)
        .where(in_window, Response.mode == "private", Response.status == "sent", Response.sent_at.is_not(None),
               lacks(events.PRIVATE_RESOLUTION))
        .order_by(Item.id, Response.sent_at)
    )
    derived: dict[tuple[str, int], dict[str, Any]] = {}
    for item_id, channel_id, created, expert_id, sent_at in (await session.execute(private)).all():
        derived.setdefault((events.PRIVATE_RESOLUTION, item_id), dict(
            name=events.PRIVATE_RESOLUTION, item_id=item_id, channel_id=channel_id, expert_id=expert_id,
            seconds=events.elapsed(created, sent_at), at=sent_at, detail={}))
    resolved = select(Item.id, Item.channel_id, Item.created_time, Item.resolved_at).where(
        in_window, Item.resolved_at.is_not(None), lacks(events.RESOLUTION))
    for item_id, channel_id, created, resolved_at in (await session.execute(resolved)).all():
        derived[(events.RESOLUTION, item_id)] = dict(
            name=events.RESOLUTION, item_id=item_id, channel_id=channel_id, expert_id=None,
            seconds=events.elapsed(created, resolved_at), at=resolved_at, detail={})
    rows_to_add = list(derived.values())
    for i in range(0, len(rows_to_add), 1000):  # under the bind-parameter limits of both databases
        await session.execute(
            dialect_insert(session)(KpiEvent).values(rows_to_add[i:i + 1000])
            .on_conflict_do_nothing(index_elements=["name", "item_id"])
        )
    missing = (
        select(KpiEvent.id, KpiEvent.seconds, KpiEvent.at)
        .join(Item, Item.id == KpiEvent.item_id)
        .where(in_window, KpiEvent.business_seconds.is_(None))
    )
    rows = (await session.execute(missing)).all()
    if rows:
        values = [
            {"id": kid, "business_seconds": calendar.business_seconds_between(at - timedelta(seconds=seconds), at)}
            for kid, seconds, at in rows
        ]
        await session.execute(update(KpiEvent), values)  # bulk UPDATE by primary key


async def compute_kpis(
    session: AsyncSession,
    start: datetime,
    end: datetime,
    *,
    by: str | None = None,
    settings: Any = None,
    calendar: BusinessCalendar | None = None,
    as_of: datetime | None = None,
) -> dict[str, Any] | list[dict[str, Any]]:
    """The KPIs of the items created in ``[start, end)``: what ``relais kpi --format json`` prints.

    Without ``by``, one object whose keys are the KPI names; with ``by`` (one of
    :data:`GROUPS`), a list of such objects, each with ``group`` and ``key``.
    Durations are ``{"count", "median", "p90"}`` in seconds. ``settings`` (or
    ``calendar``) gives the business calendar; ``as_of`` (default now) decides
    what is overdue. Writes derived events (see :func:`refresh`) in the
    caller's session.
    """
    if by not in _GROUP_SQL:
        raise ValueError(f"--by must be one of {', '.join(GROUPS)}")
    if calendar is None:
        from bot.kpi.config import load_kpi_config

        calendar = load_kpi_config(settings).calendar if settings is not None else BusinessCalendar()
    as_of = as_of or utcnow()
    await refresh(session, calendar, start, end)
    names = ", ".join(f"'{n}'" for n in DURATIONS)
    groups: dict[str, dict[str, Any]] = {}

    def group(key: Any) -> dict[str, Any]:
        name = "none" if key is None else str(key)
        if name not in groups:
            groups[name] = _empty()
        return groups[name]

    counts_sql = _COUNTS.format(cohort=_cohort(by, assignment=True, category=False))
    counts = await session.execute(_params(counts_sql, start, end, as_of))
    for row in counts.mappings():
        g = group(row["grp"])
        received, removed, spam = int(row["received"]), int(row["removed"] or 0), int(row["spam"] or 0)
        answered = int(row["answered"] or 0)
        met, breached = int(row["sla_met"] or 0), int(row["sla_breached"] or 0)
        answerable = received - removed - spam
        g.update(
            received=received,
            removed_by_author=removed,
            spam=spam,
            answered=answered,
            response_rate=_ratio(answered, answerable),
            public_share=_ratio(int(row["answered_public"] or 0), answered),
            private_share=_ratio(int(row["answered_private"] or 0), answered),
            sla_met=met,
            sla_breached=breached,
            sla_compliance=_ratio(met, met + breached),
            backlog_open=int(row["open"] or 0),
            backlog_overdue=int(row["overdue"] or 0),
            reclassified=int(row["corrected"] or 0),
            reclassification_rate=_ratio(int(row["corrected"] or 0), int(row["model_labelled"] or 0)),
            recovered_by_polling=int(row["polled"] or 0),
        )
    durations_sql = _DURATIONS.format(cohort=_cohort(by, assignment=False, category=False), names=names)
    durations = await session.execute(_params(durations_sql, start, end, as_of))
    for row in durations.mappings():
        g = group(row["grp"])
        n, nw = int(row["n"]), int(row["nw"] or 0)
        g[row["name"]] = {
            "count": n,
            "median": _interpolate(n, row["m_lo"], row["m_hi"], 50),
            "p90": _interpolate(n, row["p_lo"], row["p_hi"], 90),
        }
        g[business_name(row["name"])] = {
            "count": nw,
            "median": _interpolate(nw, row["bm_lo"], row["bm_hi"], 50),
            "p90": _interpolate(nw, row["bp_lo"], row["bp_hi"], 90),
        }
    if by is None:
        result = groups.get("all") or _empty()
        volumes: dict[str, dict[str, int]] = {d: {} for d in VOLUME_DIMENSIONS}
        sql = _VOLUMES.format(cohort=_cohort(None, assignment=False, category=True))
        for dimension, key, n in sorted((await session.execute(_params(sql, start, end, as_of))).all(),
                                        key=lambda r: -r[2]):
            volumes[dimension]["none" if key is None else str(key)] = int(n)
        result["volumes"] = volumes
        return {"from": start.isoformat(), "to": end.isoformat(), **result}
    return [{"group": by, "key": key, **values} for key, values in sorted(groups.items())]


def _empty() -> dict[str, Any]:
    figures: dict[str, Any] = dict.fromkeys(
        ("received", "removed_by_author", "spam", "answered", "sla_met", "sla_breached", "backlog_open",
         "backlog_overdue", "reclassified", "recovered_by_polling"), 0)
    figures.update(dict.fromkeys(("response_rate", "public_share", "private_share", "sla_compliance",
                                  "reclassification_rate"), None))
    for name in DURATIONS:
        figures[name] = {"count": 0, "median": None, "p90": None}
        figures[business_name(name)] = {"count": 0, "median": None, "p90": None}
    return figures
