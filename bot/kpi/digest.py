"""The weekly digest: an HTML email (inline CSS, charts as CID images) and a plain-text part.

    relais digest --week 2026-W47 [--out digest.html] [--send] [--language fr|en]

Recipients come from the KPI file: ``digest.recipients`` (decision-makers)
get the summary and every team's section; with ``digest.team_leads`` each
team's ``lead`` (routing_rules.yaml) gets the summary and its own section.

Exactly once: :func:`send_digest` inserts the week into ``digest_runs``
(unique) and the mails into the outbox in one transaction, with Message-IDs
fixed by the week and the recipient. A second call, a retried job or a
restarted server finds the week and does nothing; :func:`schedule_digests`
(called by the poll scheduler's tick) queues a ``digest`` job for each week
due since the last one sent, so a stopped server catches up without skipping.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.kpi.config import load_kpi_config
from bot.kpi.digest_data import DigestData, gather
from bot.kpi.digest_strings import STRINGS, change, duration
from bot.kpi.schedule import weeks_due
from bot.notify.compose import one_line, truncate
from bot.notify.outbox import mail_domain
from bot.pipeline import queue
from bot.services import Services
from bot.store.db import dialect_insert
from bot.store.models import DigestRun, Email, EmailPart, utcnow

log = logging.getLogger(__name__)


@dataclass
class Digest:
    subject: str
    html: str
    text: str
    images: dict[str, bytes] = field(default_factory=dict)  # cid -> PNG

    def html_with_data_uris(self) -> str:
        """The HTML with each ``cid:`` image inlined as a data URI (for a file or a browser)."""
        html = self.html
        for cid, png in self.images.items():
            html = html.replace(f"cid:{cid}", "data:image/png;base64," + base64.b64encode(png).decode())
        return html


@dataclass(frozen=True)
class TeamSection:
    name: str
    experts: list[dict[str, Any]]
    breaches: list[Any]


def _teams(services: Services) -> list[Any]:
    teams = services.rules.teams
    return list(teams.values()) if isinstance(teams, dict) else list(teams)


def _sections(services: Services, data: DigestData, only: str | None) -> list[TeamSection]:
    rows = {row["key"]: row for row in data.by_expert}
    sections = []
    for team in _teams(services):
        if only is not None and team.name != only:
            continue
        members = set(team.members)
        sections.append(TeamSection(
            name=team.name,
            experts=[rows[m] for m in team.members if m in rows],
            breaches=[b for b in data.breaches if b.expert in members],
        ))
    return sections


def render(services: Services, data: DigestData, language: str, *, team: str | None = None,
           whole: bool = True) -> Digest:
    """Render ``data``; ``whole`` shows every team's section, else only ``team``'s."""
    from bot.kpi import charts  # matplotlib: loaded only when a digest is drawn
    t = STRINGS[language]
    cur, prev = data.current, data.previous
    fr = cur["first_response_s"]
    headline = [
        (t["received"], str(cur["received"]), change(cur["received"], prev["received"], "count", language)),
        (t["response_rate"], _pct(cur["response_rate"], language), change(cur["response_rate"], prev["response_rate"], "rate", language)),
        (t["first_response_median"], duration(fr["median"], language),
         change(fr["median"], prev["first_response_s"]["median"], "duration", language)),
        (t["first_response_p90"], duration(fr["p90"], language),
         change(fr["p90"], prev["first_response_s"]["p90"], "duration", language)),
        (t["sla_compliance"], _pct(cur["sla_compliance"], language), change(cur["sla_compliance"], prev["sla_compliance"], "rate", language)),
        (t["backlog"], f"{cur['backlog_open']} ({cur['backlog_overdue']} {t['overdue']})", ""),
        (t["correction_rate"], _pct(cur["reclassification_rate"], language),
         change(cur["reclassification_rate"], prev["reclassification_rate"], "rate", language)),
    ]
    categories = [r for r in data.by_category if r["key"] != "none"] or data.by_category
    cat_label = t["categories"]
    images = {
        "distribution": charts.bars(t["chart_distribution"], [label for label, _ in data.distribution],
                                    [n for _, n in data.distribution]),
        "sla": charts.compliance(t["chart_sla"], [cat_label.get(r["key"], r["key"]) for r in categories],
                                 [r["sla_compliance"] for r in categories]),
        "volumes": charts.bars(t["chart_volumes"],
                               [cat_label.get(k, k) for k in cur["volumes"]["category"]] +
                               [k for k in cur["volumes"]["platform"]],
                               list(cur["volumes"]["category"].values()) + list(cur["volumes"]["platform"].values())),
    }
    sections = _sections(services, data, None if whole else team)
    context = dict(
        t=t, lang=language, data=data, cur=cur, headline=headline, categories=categories, sections=sections,
        base_url=services.settings.base_url, tz=services.settings.timezone, duration=duration,
        pct=lambda v: _pct(v, language),
        name_of=lambda email: t["unassigned"] if email in (None, "none") else data.expert_names.get(email, email),
        colon=" :" if language == "fr" else ":",
        team_of=lambda key: t["no_team"] if key == "none" else key,
        clip=lambda text, n=140: truncate(one_line(text), n),
        day=lambda when: when.astimezone(ZoneInfo(services.settings.timezone)).strftime("%Y-%m-%d"),
        stamp=lambda when: when.astimezone(ZoneInfo(services.settings.timezone)).strftime("%Y-%m-%d %H:%M"),
        last_day=data.end - timedelta(days=1),
    )
    html = services.templates.get_template("kpi/digest.html.j2").render(**context)
    text = services.templates.get_template("kpi/digest.txt.j2").render(**context)
    subject = t["subject"].format(week=data.week, sla=_pct(cur["sla_compliance"], language),
                                  median=duration(fr["median"], language))
    return Digest(subject=one_line(subject), html=html, text=text, images=images)


def _pct(value: float | None, language: str) -> str:
    if value is None:
        return "-"
    return f"{value * 100:.0f} %" if language == "fr" else f"{value * 100:.0f}%"


async def build_digest(services: Services, session: AsyncSession, week: str, *, language: str | None = None,
                       team: str | None = None, as_of: datetime | None = None) -> Digest:
    """The decision-makers' digest of ``week`` (or, with ``team``, that team's lead's)."""
    config = load_kpi_config(services.settings)
    data = await gather(session, week, services.settings.timezone, config.calendar, as_of or utcnow())
    return render(services, data, language or config.digest.language, team=team, whole=team is None)


async def send_digest(services: Services, week: str, *, language: str | None = None,
                      as_of: datetime | None = None) -> list[int]:
    """Queue the digest of ``week`` to its recipients, once. Returns the new outbox mail ids
    (empty when the week was already sent or nobody is configured to receive it)."""
    config = load_kpi_config(services.settings)
    language = language or config.digest.language
    recipients: list[tuple[str, str | None]] = [(r, None) for r in config.digest.recipients]
    if config.digest.team_leads:
        recipients += [(team.lead, team.name) for team in _teams(services)
                       if team.lead and team.lead not in config.digest.recipients]
    domain = mail_domain(services.settings.mail_from)
    ids: list[int] = []
    async with services.sessions.begin() as session:
        run_id = (await session.execute(
            dialect_insert(session)(DigestRun).values(week=week, status="queued", emails=0, created_at=utcnow())
            .on_conflict_do_nothing(index_elements=["week"]).returning(DigestRun.id)
        )).scalar_one_or_none()
        if run_id is None:
            return []
        if not recipients:
            log.warning("digest %s: no recipients (digest.recipients in the KPI file)", week)
        data = await gather(session, week, services.settings.timezone, config.calendar, as_of or utcnow())
        for n, (address, team) in enumerate(recipients):
            digest = render(services, data, language, team=team, whole=team is None)
            email = Email(message_id=f"<relais.digest.{week}.{n}@{domain}>", kind="digest", to_address=address,
                          subject=digest.subject, body_text=digest.text, body_html=digest.html)
            session.add(email)
            await session.flush()
            for cid, png in digest.images.items():
                session.add(EmailPart(email_id=email.id, cid=cid, content_type="image/png", data=png))
            await queue.enqueue(session, "send_email", {"email_id": email.id}, dedupe_key=f"send_email:{email.id}",
                                max_attempts=12)
            ids.append(email.id)
        run = await session.get(DigestRun, run_id)
        assert run is not None
        run.emails = len(ids)
    services.wake()
    log.info("digest %s: %d mail(s) queued", week, len(ids))
    return ids


async def digest_job(services: Services, week: str) -> None:
    """The ``digest`` job kind."""
    await send_digest(services, week)


async def schedule_digests(services: Services, session: AsyncSession, now: datetime) -> list[str]:
    """Queue a ``digest`` job for every week due (``digest.schedule``) and not yet sent.

    Called from the poll scheduler's tick, in its transaction.
    """
    schedule = load_kpi_config(services.settings).digest.schedule
    if not schedule:
        return []
    last = await session.scalar(select(func.max(DigestRun.week)))
    weeks = weeks_due(now, schedule, services.settings.timezone, last)
    for week in weeks:
        await queue.enqueue(session, "digest", {"week": week}, dedupe_key=f"digest:{week}", max_attempts=12)
    return weeks
