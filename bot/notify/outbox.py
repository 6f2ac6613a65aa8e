"""Notify stage, SLA reminders and escalations, and the outbox.

``notify_expert`` composes the expert's email and stores it in the outbox (the
``emails`` table) in one transaction with its send job; ``send_email`` delivers
it. An SMTP outage only delays mail: the job retries with backoff. The
Message-ID is fixed when the mail is stored, so in the rare case of a crash
after the server accepted a mail but before it was marked sent, the copy sent
again carries the same Message-ID and mail clients show it once.
"""

from __future__ import annotations

import logging
import secrets

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.kpi.calendar import BusinessCalendar
from bot.notify import links
from bot.notify.compose import NotificationView, compose_notification, draft_reply
from bot.notify.smtp import SmtpRejected, SmtpSettings, build_message, send
from bot.pipeline import queue
from bot.pipeline.classify import thread_parent
from bot.pipeline.sla_clock import calendar_for, step_time
from bot.pipeline.teams import unavailable
from bot.pipeline.worker import PermanentFailure
from bot.services import Services
from bot.store.models import Assignment, Channel, Email, EmailPart, Expert, Item, utcnow
from bot.store.queries import latest_assignment, latest_classification

log = logging.getLogger(__name__)


def mail_domain(address: str) -> str:
    """The domain of the sender address, for Message-IDs."""
    return address.rsplit("@", 1)[-1].strip("> ") or "localhost"


#: reminders at these fractions of the first-response target, then escalation at 100 %
SLA_STEPS = (("reminder", 0.5), ("reminder", 0.75), ("escalation", 1.0))
OPEN = ("routed", "notified")


async def _queue_mail(
    services: Services,
    session: AsyncSession,
    item: Item,
    assignment: Assignment,
    recipient: Expert,
    kind: str,
    *,
    reply_link: bool = True,
) -> Email:
    """Compose the mail about ``item`` for ``recipient`` into the outbox: with a reply
    link of theirs, or (``reply_link=False``: FYI copies, hand-overs) a link to the
    item's page in the triage UI."""
    settings = services.settings
    label = await latest_classification(session, item.id)
    parent = await thread_parent(session, item)
    grandparent = await thread_parent(session, parent) if parent and parent.kind != "post" else None
    if reply_link:
        token = await links.create_link(session, settings.secret_key.reveal(), item.id, recipient.id, settings.reply_link_ttl_s)
        url = f"{settings.base_url}/reply/{token}"
    else:
        url = f"{settings.base_url}/ui/items/{item.id}"
    language = recipient.language if recipient.language in ("fr", "en") else "fr"
    channel = await session.get(Channel, item.channel_id) if item.channel_id else None
    page_name = channel.name if channel else item.platform
    category = label.label if label else "other"
    view = NotificationView(
        item_id=item.id,
        platform=item.platform,
        page_name=page_name,
        kind=item.kind,
        author_name=item.author_name,
        author_handle=item.author_handle,
        author_followers=item.author_followers,
        text=item.text,
        created_time=item.created_time,
        permalink=item.permalink,
        parent_text=parent.text if parent else None,
        parent_is_ad=bool((parent and parent.is_ad) or (grandparent and grandparent.is_ad)),
        category=category,
        confidence=label.confidence if label else 0.0,
        explanation=tuple(label.explanation) if label else (),
        rule_name=assignment.rule_name,
        reply_mode=assignment.reply_mode,
        sla_due=assignment.sla_due,
        expert_name=recipient.name,
        expert_timezone=recipient.timezone,
        suggested_reply=draft_reply(
            services.templates,
            assignment.template or category,
            item.language if item.language in ("fr", "en") else language,
            author_name=item.author_name,
            page_name=page_name,
        ),
        reply_url=url,
        language=language,
        kind_of_mail={"notification": "new"}.get(kind, kind),
        priority=assignment.priority,
    )
    mail = compose_notification(services.templates, view)
    email = Email(
        message_id=f"<relais.{item.id}.{assignment.id}.{kind}.{secrets.token_hex(6)}@{mail_domain(settings.mail_from)}>",
        kind=kind,
        item_id=item.id,
        to_address=recipient.email,
        subject=mail.subject,
        body_text=mail.text,
        body_html=mail.html,
    )
    session.add(email)
    await session.flush()
    await queue.enqueue(session, "send_email", {"email_id": email.id}, dedupe_key=f"send_email:{email.id}", max_attempts=12)
    return email


async def notify_expert(services: Services, assignment_id: int) -> None:
    """Write the notification for an assignment into the outbox, queue its sending,
    and schedule the SLA reminders and the escalation."""
    async with services.sessions.begin() as session:
        assignment = await session.get(Assignment, assignment_id)
        if assignment is None or assignment.expert_id is None:
            return
        item = await session.get(Item, assignment.item_id, with_for_update=True)
        expert = await session.get(Expert, assignment.expert_id)
        if item is None or expert is None or item.status != "routed":
            return  # a retried job, or the item was answered or removed meanwhile
        await _queue_mail(services, session, item, assignment, expert, "notification")
        item.status = "notified"
        await _schedule_sla(services, session, item, assignment, expert)
    services.wake()
    services.announce("item.notified", {"item_id": item.id, "expert": expert.email})


#: ``assignments.assigned_by`` of an assignment made by the escalation: it is not escalated again
ESCALATED_BY = "relais:escalation"


def _calendar(services: Services, assignment: Assignment, expert: Expert | None) -> BusinessCalendar | None:
    """The working calendar of a business-hours assignment (None: calendar time)."""
    if not assignment.sla_business_hours:
        return None
    rules = services.rules
    rule = next((r for r in rules.rules if r.name == assignment.rule_name), None)
    return calendar_for(rules, expert.email if expert else None, rule.team if rule else None, services.settings.timezone)


async def _schedule_sla(services: Services, session: AsyncSession, item: Item, assignment: Assignment, expert: Expert) -> None:
    """One ``sla_check`` job per step still ahead (the escalation always, at the due time at the latest).

    An assignment made by the escalation has no schedule: an item escalates once."""
    if assignment.assigned_by == ESCALATED_BY:
        return
    now = utcnow()
    calendar = _calendar(services, assignment, expert)
    for number, (kind, fraction) in enumerate(SLA_STEPS):
        at = step_time(item.created_time, assignment.sla_due, fraction, calendar)
        if at <= now and kind == "reminder":
            continue  # the item reached us late: no reminder about a moment already past
        await queue.enqueue(
            session,
            "sla_check",
            {"assignment_id": assignment.id, "step": number},
            dedupe_key=f"sla:{assignment.id}:{number}",
            run_at=max(at, now),
        )


async def _escalation_target(session: AsyncSession, services: Services, assignment: Assignment, current: Expert) -> tuple[Expert | None, str]:
    """Who takes over an item at 100 % of its target: for a rule that names a team, the
    team's lead (else its backup); else the expert's backup. Must be available (caps
    aside) and someone else. (None, why) when nobody."""
    rules = services.rules
    rule = next((r for r in rules.rules if r.name == assignment.rule_name), None)
    candidates: list[tuple[str, str]] = []
    team = rules.teams.get(rule.team) if rule is not None and rule.team else None
    if team is not None:
        candidates += [(team.lead, "team lead")] if team.lead else []
        candidates += [(team.backup, "team backup")] if team.backup else []
    spec = rules.experts.get(current.email)
    if spec is not None and spec.backup:
        candidates.append((spec.backup, "backup"))
    for email, role in candidates:
        if email == current.email:
            continue
        row = await session.scalar(select(Expert).where(Expert.email == email))
        if row is None:
            continue
        why = unavailable(rules.experts[email], row, 0, utcnow(), services.settings.timezone)
        if why is None:
            return row, role
    return None, "no backup or team lead available"


async def sla_check(services: Services, assignment_id: int, step: int) -> None:
    """A reminder to the expert, or at 100 % the escalation, if the item is still open.

    The escalation hands the item to the expert's backup or the team lead (a new
    assignment: they get an ``escalated`` mail with a reply link of their own, the
    previous expert a ``handover`` mail) and tells the community manager. Without
    anyone to hand it to, only the community manager is told. It all happens in one
    transaction, once: the job's dedupe key is per assignment and step, and the new
    assignment schedules no SLA steps of its own."""
    kind, fraction = SLA_STEPS[step]
    told: list[str] = []
    async with services.sessions.begin() as session:
        assignment = await session.get(Assignment, assignment_id)
        if assignment is None or assignment.expert_id is None:
            return
        item = await session.get(Item, assignment.item_id, with_for_update=True)
        if item is None or item.status not in OPEN:
            return  # answered, removed or re-routed: nothing to remind
        latest = await latest_assignment(session, item.id)
        if latest is None or latest.id != assignment.id:
            return  # a newer assignment has its own schedule
        expert = await session.get(Expert, assignment.expert_id)
        assert expert is not None
        if kind == "reminder":
            await _queue_mail(services, session, item, assignment, expert, kind)
            told.append(expert.email)
        else:
            target, role = await _escalation_target(session, services, assignment, expert)
            if target is not None:
                handed = Assignment(
                    item_id=item.id,
                    expert_id=target.id,
                    rule_name=assignment.rule_name,
                    rules_version=assignment.rules_version,
                    reply_mode=assignment.reply_mode,
                    sla_due=assignment.sla_due,
                    sla_business_hours=assignment.sla_business_hours,
                    priority=assignment.priority,
                    template=assignment.template,
                    trace=[*assignment.trace, f"escalated at 100 %: {expert.email} -> {target.email} ({role})"],
                    assigned_by=ESCALATED_BY,
                    assigned_at=utcnow(),
                )
                session.add(handed)
                await session.flush()
                await _queue_mail(services, session, item, handed, target, "escalated")
                await _queue_mail(services, session, item, handed, expert, "handover", reply_link=False)
                told += [target.email, expert.email]
            cm = services.rules.community_manager
            manager = await session.scalar(select(Expert).where(Expert.email == cm)) if cm else None
            if manager is not None and manager.email not in told:
                await _queue_mail(services, session, item, assignment, manager, "escalation")
                told.append(manager.email)
            elif manager is None and target is None:
                await _queue_mail(services, session, item, assignment, expert, "escalation")
                told.append(expert.email)
    services.wake()
    services.announce(f"item.{kind}", {"item_id": item.id, "to": ", ".join(told), "at": f"{int(fraction * 100)} %"})


async def notify_fyi(services: Services, assignment_id: int, emails: list[str]) -> None:
    """An FYI copy of an item for each person a rule's ``notify`` names, once per item and
    person (a copy already in the outbox is not written again)."""
    async with services.sessions.begin() as session:
        assignment = await session.get(Assignment, assignment_id)
        if assignment is None:
            return
        item = await session.get(Item, assignment.item_id, with_for_update=True)
        if item is None:
            return
        sent = set(
            (await session.scalars(select(Email.to_address).where(Email.item_id == item.id, Email.kind == "fyi"))).all()
        )
        people = (await session.scalars(select(Expert).where(Expert.email.in_(emails)))).all()
        for person in people:
            if person.email not in sent:
                await _queue_mail(services, session, item, assignment, person, "fyi", reply_link=False)
    services.wake()


async def send_email(services: Services, email_id: int) -> None:
    """Deliver one outbox mail over SMTP (retried by the queue while SMTP is down)."""
    async with services.sessions() as session:
        email = await session.get(Email, email_id)
        if email is None or email.status == "sent":
            return
        parts = (await session.scalars(select(EmailPart).where(EmailPart.email_id == email_id).order_by(EmailPart.id))).all()
        message = build_message(
            sender=services.settings.mail_from,
            to=email.to_address,
            subject=email.subject,
            text=email.body_text,
            html=email.body_html,
            message_id=email.message_id,
            inline_images=[(p.cid, p.content_type, p.data) for p in parts],
        )
    smtp = SmtpSettings.from_url(services.settings.smtp_url)
    try:
        await send(smtp, message)
    except SmtpRejected as exc:
        async with services.sessions.begin() as session:
            row = await session.get(Email, email_id)
            assert row is not None
            row.status, row.last_error = "failed", str(exc)
        raise PermanentFailure(f"SMTP refused the mail: {exc}") from exc
    except Exception as exc:
        async with services.sessions.begin() as session:
            row = await session.get(Email, email_id)
            assert row is not None
            row.attempts += 1
            row.last_error = f"{type(exc).__name__}: {exc}"
        raise
    async with services.sessions.begin() as session:
        row = await session.get(Email, email_id)
        assert row is not None
        row.status, row.sent_at = "sent", utcnow()
        row.attempts += 1
    services.announce("email.sent", {"email_id": email_id, "to": email.to_address})
