"""Notify stage, SLA reminders and escalations, and the outbox.

``notify_experts`` composes the experts' emails for a batch of assignments and
stores them in the outbox (the ``emails`` table) in one transaction with their
send jobs, in a few multi-row statements; ``send_emails`` delivers a batch over
one SMTP connection. An SMTP outage only delays mail: the job retries with
backoff. The Message-ID is fixed when the mail is stored, so in the rare case of
a crash after the server accepted a mail but before it was marked sent, the copy
sent again carries the same Message-ID and mail clients show it once.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.kpi.calendar import BusinessCalendar
from bot.notify import links
from bot.notify.compose import NotificationView, compose_notification, draft_reply
from bot.notify.smtp import SmtpConnection, SmtpRejected, SmtpSettings, SmtpUnavailable, build_message
from bot.pipeline import queue
from bot.pipeline.classify import thread_parents
from bot.pipeline.sla_clock import calendar_for, step_time
from bot.pipeline.teams import unavailable
from bot.pipeline.worker import BatchFailed, PermanentFailure
from bot.services import Services
from bot.store.models import Assignment, Channel, Classification, Email, EmailPart, Expert, Item, utcnow
from bot.store.queries import latest_assignment, latest_classifications

log = logging.getLogger(__name__)


def mail_domain(address: str) -> str:
    """The domain of the sender address, for Message-IDs."""
    return address.rsplit("@", 1)[-1].strip("> ") or "localhost"


#: reminders at these fractions of the first-response target, then escalation at 100 %
SLA_STEPS = (("reminder", 0.5), ("reminder", 0.75), ("escalation", 1.0))
OPEN = ("routed", "notified")
SEND_MAX_ATTEMPTS = 12
SLA_MAX_ATTEMPTS = 8
#: mails delivered over one SMTP connection at most
MAILS_PER_CONNECTION = 100


@dataclass(frozen=True)
class _About:
    """What a mail about an item shows besides the item itself."""

    label: Classification | None
    parent: Item | None
    parent_is_ad: bool
    page_name: str


async def _about(session: AsyncSession, items: list[Item]) -> dict[int, _About]:
    """Labels, thread parents and page names of ``items``, in a handful of queries."""
    labels = await latest_classifications(session, [item.id for item in items])
    parents = await thread_parents(session, items)
    grandparents = await thread_parents(session, [p for p in parents.values() if p.kind != "post"])
    channel_ids = {item.channel_id for item in items if item.channel_id}
    channels: dict[int, str] = {}
    if channel_ids:
        channels.update((await session.execute(select(Channel.id, Channel.name).where(Channel.id.in_(channel_ids)))).all())
    about: dict[int, _About] = {}
    for item in items:
        parent = parents.get(item.id)
        grandparent = grandparents.get(parent.id) if parent is not None else None
        about[item.id] = _About(
            label=labels.get(item.id),
            parent=parent,
            parent_is_ad=bool((parent and parent.is_ad) or (grandparent and grandparent.is_ad)),
            page_name=channels[item.channel_id] if item.channel_id in channels else item.platform,
        )
    return about


def _compose(
    services: Services, item: Item, about: _About, assignment: Assignment, recipient: Expert, kind: str, url: str
) -> Email:
    """The outbox row of the mail about ``item`` for ``recipient`` (not yet added to a session)."""
    settings = services.settings
    label = about.label
    language = recipient.language if recipient.language in ("fr", "en") else "fr"
    category = label.label if label else "other"
    view = NotificationView(
        item_id=item.id,
        platform=item.platform,
        page_name=about.page_name,
        kind=item.kind,
        author_name=item.author_name,
        author_handle=item.author_handle,
        author_followers=item.author_followers,
        text=item.text,
        created_time=item.created_time,
        permalink=item.permalink,
        parent_text=about.parent.text if about.parent else None,
        parent_is_ad=about.parent_is_ad,
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
            page_name=about.page_name,
        ),
        reply_url=url,
        language=language,
        kind_of_mail={"notification": "new"}.get(kind, kind),
        priority=assignment.priority,
    )
    mail = compose_notification(services.templates, view)
    return Email(
        message_id=f"<relais.{item.id}.{assignment.id}.{kind}.{secrets.token_hex(6)}@{mail_domain(settings.mail_from)}>",
        kind=kind,
        item_id=item.id,
        to_address=recipient.email,
        subject=mail.subject,
        body_text=mail.text,
        body_html=mail.html,
    )


def _send_job(email_id: int) -> tuple[str, dict[str, Any], str, None, int]:
    return ("send_email", {"email_id": email_id}, f"send_email:{email_id}", None, SEND_MAX_ATTEMPTS)


_EMAIL_COLUMNS = ("message_id", "kind", "item_id", "to_address", "subject", "body_text", "body_html")


async def _insert_emails(session: AsyncSession, mails: list[Email]) -> list[int]:
    """Store new outbox rows as multi-row INSERTs (SQLAlchemy's "insertmanyvalues"; the
    ORM would write them one by one on SQLite); returns their ids, in order."""
    emails = Email.__table__
    rows = [{column: getattr(mail, column) for column in _EMAIL_COLUMNS} for mail in mails]
    result = await session.execute(insert(emails).returning(emails.c.message_id, emails.c.id), rows)
    ids = {message_id: email_id for message_id, email_id in result.all()}
    return [ids[mail.message_id] for mail in mails]


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
    about = (await _about(session, [item]))[item.id]
    if reply_link:
        token = await links.create_link(session, settings.secret_key.reveal(), item.id, recipient.id, settings.reply_link_ttl_s)
        url = f"{settings.base_url}/reply/{token}"
    else:
        url = f"{settings.base_url}/ui/items/{item.id}"
    email = _compose(services, item, about, assignment, recipient, kind, url)
    session.add(email)
    await session.flush()
    await queue.enqueue_many(session, [_send_job(email.id)])
    return email


async def notify_expert(services: Services, assignment_id: int) -> None:
    """:func:`notify_experts` for one assignment."""
    await notify_experts(services, [assignment_id])


async def notify_experts(services: Services, assignment_ids: list[int]) -> None:
    """Write the notification of each assignment into the outbox, queue its sending,
    and schedule the SLA reminders and the escalation: a few statements for the batch.

    An assignment without an expert, or whose item is no longer ``routed`` (a retried
    job, or the item was answered or removed meanwhile), is skipped, so running a
    batch again writes nothing twice."""
    settings = services.settings
    secret = settings.secret_key.reveal()
    notified: list[tuple[int, str]] = []
    async with services.sessions.begin() as session:
        assignments = (await session.scalars(
            select(Assignment)
            .where(Assignment.id.in_(set(assignment_ids)), Assignment.expert_id.is_not(None))
            .order_by(Assignment.id)
        )).all()
        if not assignments:
            return
        locked = select(Item).where(Item.id.in_({a.item_id for a in assignments})).order_by(Item.id).with_for_update()
        items = {item.id: item for item in await session.scalars(locked)}
        people = select(Expert).where(Expert.id.in_({a.expert_id for a in assignments}))
        experts = {expert.id: expert for expert in await session.scalars(people)}
        todo: list[tuple[Item, Assignment, Expert]] = []
        for assignment in assignments:
            item, expert = items.get(assignment.item_id), experts.get(assignment.expert_id or 0)
            if item is None or expert is None or item.status != "routed":
                continue  # a retried job, or the item was answered or removed meanwhile
            item.status = "notified"  # one notification per item, even with two assignments in the batch
            todo.append((item, assignment, expert))
        if not todo:
            return
        about = await _about(session, [item for item, _, _ in todo])
        reply_links, mails = [], []
        for item, assignment, expert in todo:
            link, token = links.new_link(secret, item.id, expert.id, settings.reply_link_ttl_s)
            reply_links.append(link)
            url = f"{settings.base_url}/reply/{token}"
            mails.append(_compose(services, item, about[item.id], assignment, expert, "notification", url))
        session.add_all(reply_links)
        await session.flush()  # the items' new status and the links: one executemany each
        jobs = [_send_job(email_id) for email_id in await _insert_emails(session, mails)]
        for item, assignment, expert in todo:
            jobs += _sla_jobs(services, item, assignment, expert)
        await queue.enqueue_many(session, jobs)
        notified = [(item.id, expert.email) for item, _, expert in todo]
    services.wake()
    for item_id, address in notified:
        services.announce("item.notified", {"item_id": item_id, "expert": address})


#: ``assignments.assigned_by`` of an assignment made by the escalation: it is not escalated again
ESCALATED_BY = "relais:escalation"


def _calendar(services: Services, assignment: Assignment, expert: Expert | None) -> BusinessCalendar | None:
    """The working calendar of a business-hours assignment (None: calendar time)."""
    if not assignment.sla_business_hours:
        return None
    rules = services.rules
    rule = next((r for r in rules.rules if r.name == assignment.rule_name), None)
    return calendar_for(rules, expert.email if expert else None, rule.team if rule else None, services.settings.timezone)


def _sla_jobs(
    services: Services, item: Item, assignment: Assignment, expert: Expert
) -> list[tuple[str, dict[str, Any], str, datetime, int]]:
    """One ``sla_check`` job per step still ahead (the escalation always, at the due time at the latest).

    An assignment made by the escalation has no schedule: an item escalates once."""
    if assignment.assigned_by == ESCALATED_BY:
        return []
    now = utcnow()
    calendar = _calendar(services, assignment, expert)
    jobs = []
    for number, (kind, fraction) in enumerate(SLA_STEPS):
        at = step_time(item.created_time, assignment.sla_due, fraction, calendar)
        if at <= now and kind == "reminder":
            continue  # the item reached us late: no reminder about a moment already past
        payload = {"assignment_id": assignment.id, "step": number}
        jobs.append(("sla_check", payload, f"sla:{assignment.id}:{number}", max(at, now), SLA_MAX_ATTEMPTS))
    return jobs


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
    """:func:`send_emails` for one mail."""
    await send_emails(services, [email_id])


async def send_emails(services: Services, email_ids: list[int]) -> None:
    """Deliver outbox mails over SMTP, up to ``MAILS_PER_CONNECTION`` over one connection.

    A mail already ``sent`` is skipped. Each mail's outcome is recorded: sent; refused
    for good (5xx: ``failed``); or not delivered this time (attempts + 1, the error).
    If any mail was not sent, this raises afterwards (``PermanentFailure`` when every
    failure was a refusal, else the ``SmtpUnavailable``), so the worker retries each job
    alone and records each failure on its own job; the mails sent are not sent again.
    When the server cannot be reached or refuses the session, the rest is not tried and
    this raises ``BatchFailed``: every job waits for its retry, none is tried alone."""
    ids = list(dict.fromkeys(email_ids))
    refused: SmtpRejected | None = None
    unavailable: SmtpUnavailable | None = None
    for start in range(0, len(ids), MAILS_PER_CONNECTION):
        chunk_refused, chunk_unavailable, connected = await _send_chunk(services, ids[start:start + MAILS_PER_CONNECTION])
        if not connected and chunk_unavailable is not None:
            raise BatchFailed(chunk_unavailable)
        refused, unavailable = refused or chunk_refused, unavailable or chunk_unavailable
    if unavailable is not None:
        raise unavailable
    if refused is not None:
        raise PermanentFailure(f"SMTP refused the mail: {refused}") from refused


async def _send_chunk(
    services: Services, email_ids: list[int]
) -> tuple[SmtpRejected | None, SmtpUnavailable | None, bool]:
    """Deliver these mails over one connection and record each outcome; returns the
    first refusal, the first other failure, and whether the session was opened."""
    async with services.sessions() as session:
        emails = (await session.scalars(
            select(Email).where(Email.id.in_(email_ids), Email.status != "sent").order_by(Email.id)
        )).all()
        parts: dict[int, list[EmailPart]] = {}
        if any(email.body_html is not None for email in emails):
            query = select(EmailPart).where(EmailPart.email_id.in_([e.id for e in emails])).order_by(EmailPart.id)
            for part in await session.scalars(query):
                parts.setdefault(part.email_id, []).append(part)
    if not emails:
        return None, None, True
    sent: list[Email] = []
    failures: dict[int, SmtpRejected | SmtpUnavailable] = {}
    messages = []
    for email in emails:
        try:
            messages.append((email, build_message(
                sender=services.settings.mail_from,
                to=email.to_address,
                subject=email.subject,
                text=email.body_text,
                html=email.body_html,
                message_id=email.message_id,
                inline_images=[(p.cid, p.content_type, p.data) for p in parts.get(email.id, ())],
            )))
        except ValueError as exc:  # an address or Message-ID that cannot be sent safely
            failures[email.id] = SmtpRejected(f"cannot send {email.message_id}: {exc}")
    lost: SmtpUnavailable | None = None
    connected = False
    try:
        async with SmtpConnection(SmtpSettings.from_url(services.settings.smtp_url)) as connection:
            connected = True
            for email, message in messages:
                try:
                    await connection.send(message)
                except (SmtpRejected, SmtpUnavailable) as exc:
                    failures[email.id] = exc
                    if not connection.usable:
                        lost = exc if isinstance(exc, SmtpUnavailable) else lost
                        break
                else:
                    sent.append(email)
    except SmtpUnavailable as exc:  # could not connect or log in
        lost = exc
    sent_ids = {email.id for email in sent}
    for email, _ in messages:
        if email.id not in failures and email.id not in sent_ids:
            failures[email.id] = lost or SmtpUnavailable("the SMTP connection was lost")
    async with services.sessions.begin() as session:
        if sent:
            await session.execute(
                update(Email)
                .where(Email.id.in_([email.id for email in sent]))
                .values(status="sent", sent_at=utcnow(), attempts=Email.attempts + 1)
            )
        for email_id, error in failures.items():
            if isinstance(error, SmtpRejected):
                values: dict[str, Any] = {"status": "failed", "last_error": str(error)}
            else:
                values = {"attempts": Email.attempts + 1, "last_error": f"{type(error).__name__}: {error}"}
            await session.execute(update(Email).where(Email.id == email_id).values(**values))
    for email in sent:
        services.announce("email.sent", {"email_id": email.id, "to": email.to_address})
    refused = next((e for e in failures.values() if isinstance(e, SmtpRejected)), None)
    unavailable = next((e for e in failures.values() if isinstance(e, SmtpUnavailable)), None)
    return refused, unavailable, connected
