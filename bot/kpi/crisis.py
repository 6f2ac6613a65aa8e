"""Early warning: a cluster of complaints on one post, page or keyword becomes an incident.

``crisis_check`` (a job the scheduler queues every minute when ``crisis.enabled``
in the KPI file) counts the complaints (latest label ``complaint``, not spam,
not brand posts) created in the last ``window_minutes``, per post (the thread
they are under), per page (channel) and per configured keyword. A scope is in
crisis when its count reaches ``min_complaints``, or reaches
``baseline_factor`` times its usual count for that hour of the week (the mean
of the same window over the previous ``baseline_weeks`` weeks, at least 1) and
``min_baseline_complaints``.

A new incident: a ``crisis_incidents`` row, its items linked and flagged
``items.in_crisis`` (routing rules read it through ``crisis: true``), and one
alert mail to the community manager listing the items (once per incident:
the alert key is the incident id). Later complaints join the open incident;
after ``quiet_minutes`` without one it is closed and its items unflagged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.kpi.config import CrisisConfig, load_kpi_config
from bot.notify.alerts import alert_community_manager
from bot.notify.compose import one_line
from bot.services import Services
from bot.store.models import Channel, Classification, CrisisIncident, CrisisIncidentItem, Item, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Incident:
    """An open incident, as the UI banner shows it."""

    id: int
    scope: str  # post|page|keyword
    scope_key: str
    label: str  # what a person reads: the post's text, the page name, the keyword
    reason: str
    started_at: datetime
    item_count: int


async def open_incidents(session: AsyncSession) -> list[Incident]:
    """The open incidents, newest first, with their item counts."""
    count = (
        select(func.count()).select_from(CrisisIncidentItem)
        .where(CrisisIncidentItem.incident_id == CrisisIncident.id).scalar_subquery()
    )
    rows = (await session.execute(
        select(CrisisIncident, count).where(CrisisIncident.status == "open").order_by(CrisisIncident.started_at.desc())
    )).all()
    return [Incident(i.id, i.scope, i.scope_key, i.label, i.reason, i.started_at, int(n)) for i, n in rows]


@dataclass(frozen=True)
class _Complaint:
    id: int
    post: str | None
    channel_id: int | None
    text: str
    created_time: datetime


async def _complaints(session: AsyncSession, start: datetime, end: datetime) -> list[_Complaint]:
    latest = (
        select(Classification.label).where(Classification.item_id == Item.id)
        .order_by(Classification.id.desc()).limit(1).scalar_subquery()
    )
    rows = (await session.execute(
        select(Item.id, func.coalesce(Item.thread_external_id, Item.parent_external_id), Item.channel_id, Item.text,
               Item.created_time)
        .where(Item.created_time > start, Item.created_time <= end, Item.is_brand_post.is_(False),
               Item.is_spam.is_(False), latest == "complaint")
    )).all()
    return [_Complaint(*row) for row in rows]


def _scopes(complaints: list[_Complaint], config: CrisisConfig) -> dict[tuple[str, str], list[_Complaint]]:
    scopes: dict[tuple[str, str], list[_Complaint]] = {}
    for c in complaints:
        if c.post:
            scopes.setdefault(("post", c.post), []).append(c)
        if c.channel_id is not None:
            scopes.setdefault(("page", str(c.channel_id)), []).append(c)
        lowered = c.text.lower()
        for keyword in config.keywords:
            if keyword in lowered:
                scopes.setdefault(("keyword", keyword), []).append(c)
    return scopes


async def detect(session: AsyncSession, config: CrisisConfig, now: datetime) -> list[tuple[CrisisIncident, list[int], bool]]:
    """Find the scopes in crisis at ``now``; open or extend their incidents (caller's transaction).

    Returns (incident, new item ids, is the incident new) for each scope in crisis.
    """
    window = timedelta(minutes=config.window_minutes)
    current = _scopes(await _complaints(session, now - window, now), config)
    usual: dict[tuple[str, str], int] = {}
    for week in range(1, config.baseline_weeks + 1):
        past = now - timedelta(days=7 * week)
        for key, items in _scopes(await _complaints(session, past - window, past), config).items():
            usual[key] = usual.get(key, 0) + len(items)
    results = []
    for (scope, key), items in sorted(current.items()):
        count = len(items)
        baseline = usual.get((scope, key), 0) / max(1, config.baseline_weeks)
        if count >= config.min_complaints:
            reason = f"{count} complaints in {config.window_minutes} min (threshold {config.min_complaints})"
        elif count >= config.min_baseline_complaints and count >= config.baseline_factor * max(baseline, 1.0):
            reason = f"{count} complaints in {config.window_minutes} min, usually {baseline:.1f} at this hour"
        else:
            continue
        incident = await session.scalar(
            select(CrisisIncident).where(CrisisIncident.scope == scope, CrisisIncident.scope_key == key,
                                         CrisisIncident.status == "open").limit(1)
        )
        is_new = incident is None
        if incident is None:
            incident = CrisisIncident(scope=scope, scope_key=key, label=await _label(session, scope, key, items),
                                      status="open", reason=reason[:300], started_at=now,
                                      last_item_at=max(c.created_time for c in items))
            session.add(incident)
            await session.flush()
        linked = set((await session.scalars(
            select(CrisisIncidentItem.item_id).where(CrisisIncidentItem.incident_id == incident.id)
        )).all())
        new_ids = sorted(c.id for c in items if c.id not in linked)
        for item_id in new_ids:
            session.add(CrisisIncidentItem(incident_id=incident.id, item_id=item_id))
        if new_ids:
            incident.last_item_at = max(incident.last_item_at, max(c.created_time for c in items))
            await session.execute(update(Item).where(Item.id.in_(new_ids)).values(in_crisis=True))
        results.append((incident, new_ids, is_new))
    await _close_quiet(session, config, now)
    return results


async def _close_quiet(session: AsyncSession, config: CrisisConfig, now: datetime) -> None:
    quiet = (await session.scalars(
        select(CrisisIncident).where(CrisisIncident.status == "open",
                                     CrisisIncident.last_item_at < now - timedelta(minutes=config.quiet_minutes))
    )).all()
    for incident in quiet:
        incident.status, incident.closed_at = "closed", now
        still_open = (
            select(CrisisIncidentItem.item_id).join(CrisisIncident, CrisisIncident.id == CrisisIncidentItem.incident_id)
            .where(CrisisIncident.status == "open", CrisisIncident.id != incident.id)
        )
        mine = select(CrisisIncidentItem.item_id).where(CrisisIncidentItem.incident_id == incident.id)
        await session.execute(
            update(Item).where(Item.id.in_(mine), Item.id.not_in(still_open)).values(in_crisis=False)
        )


async def _label(session: AsyncSession, scope: str, key: str, items: list[_Complaint]) -> str:
    if scope == "page":
        channel = await session.get(Channel, int(key))
        return one_line(channel.name if channel else key)[:300]
    if scope == "post":
        post = await session.scalar(select(Item.text).where(Item.external_id == key).limit(1))
        return one_line(post or key)[:120]
    return key


async def crisis_check(services: Services, now: datetime | None = None) -> int:
    """The ``crisis_check`` job: detect, flag, and alert the community manager once per new incident.

    Returns the number of new incidents.
    """
    config = load_kpi_config(services.settings).crisis
    if not config.enabled:
        return 0
    now = now or utcnow()
    new = 0
    async with services.sessions.begin() as session:
        for incident, _, is_new in await detect(session, config, now):
            if not is_new:
                continue
            new += 1
            items = (await session.scalars(
                select(Item).join(CrisisIncidentItem, CrisisIncidentItem.item_id == Item.id)
                .where(CrisisIncidentItem.incident_id == incident.id).order_by(Item.created_time)
            )).all()
            await alert_community_manager(services, session, f"crisis-{incident.id}",
                                          incident_texts(incident, items, services.settings.base_url))
            log.warning("crisis incident %d: %s %s: %s", incident.id, incident.scope, incident.scope_key, incident.reason)
    if new:
        services.wake()
        services.announce("crisis.incident", {"count": new})
    return new


def incident_texts(incident: CrisisIncident, items: list[Item], base_url: str) -> dict[str, tuple[str, str]]:
    listing = "\n".join(
        f"- {i.created_time:%Y-%m-%d %H:%M} UTC, {one_line(i.author_name or i.author_id)[:60]}: "
        f"{one_line(i.text)[:160]}\n  {base_url}/ui/items/{i.id}"
        for i in items[:50]
    )
    more = f"\n... (+{len(items) - 50})" if len(items) > 50 else ""
    scope_fr = {"post": "la publication", "page": "la page", "keyword": "le mot-clé"}[incident.scope]
    scope_en = {"post": "the post", "page": "the page", "keyword": "the keyword"}[incident.scope]
    label = one_line(incident.label)[:120]
    return {
        "fr": (
            f"Alerte crise : {len(items)} plaintes sur {scope_fr} « {label} »",
            f"Relais détecte un afflux de plaintes sur {scope_fr} « {label} » : {incident.reason}.\n\n"
            f"Les éléments sont marqués « crise » (condition crisis: true des règles).\n\n{listing}{more}\n\n"
            f"File de traitement : {base_url}/ui/\n",
        ),
        "en": (
            f"Crisis alert: {len(items)} complaints on {scope_en} '{label}'",
            f"Relais sees a surge of complaints on {scope_en} '{label}': {incident.reason}.\n\n"
            f"The items are flagged as crisis (the rules' crisis: true condition).\n\n{listing}{more}\n\n"
            f"Queue: {base_url}/ui/\n",
        ),
    }
