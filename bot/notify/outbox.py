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

from bot.notify import links
from bot.notify.compose import NotificationView, compose_notification, draft_reply
from bot.notify.smtp import SmtpRejected, SmtpSettings, build_message, send
from bot.pipeline import queue
from bot.pipeline.classify import thread_parent
from bot.pipeline.worker import PermanentFailure
from bot.services import Services
from bot.store.models import Assignment, Channel, Email, Expert, Item, utcnow
from bot.store.queries import latest_assignment, latest_classification

log = logging.getLogger(__name__)


def mail_domain(address: str) -> str:
    """The domain of the sender address, for Message-IDs."""
    return address.rsplit("@", 1)[-1].strip("> ") or "localhost"


#: reminders at these fractions of the first-response target, then escalation at 100 %
SLA_STEPS = (("reminder", 0.5), ("reminder", 0.75), ("escalation", 1.0))
OPEN = ("routed", "notified")


async def _queue_mail(
    services: Services, session: AsyncSession, item: Item, assignment: Assignment, recipient: Expert, kind: str
) -> Email:
    """Compose the mail about ``item`` for ``recipient`` (with a reply link of theirs) into the outbox."""
    settings = services.settings
    label = await latest_classification(session, item.id)
    parent = await thread_parent(session, item)
    grandparent = await thread_parent(session, parent) if parent and parent.kind != "post" else None
    token = await links.create_link(session, settings.secret_key.reveal(), item.id, recipient.id, settings.reply_link_ttl_s)
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
            category,
            item.language if item.language in ("fr", "en") else language,
            author_name=item.author_name,
            page_name=page_name,
        ),
        reply_url=f"{settings.base_url}/reply/{token}",
        language=language,
        kind_of_mail={"notification": "new"}.get(kind, kind),
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
        await _schedule_sla(session, item, assignment)
    services.wake()
    services.announce("item.notified", {"item_id": item.id, "expert": expert.email})


async def _schedule_sla(session: AsyncSession, item: Item, assignment: Assignment) -> None:
    """One ``sla_check`` job per step still ahead (the escalation always, at the due time at the latest)."""
    now = utcnow()
    target = assignment.sla_due - item.created_time
    for number, (kind, fraction) in enumerate(SLA_STEPS):
        at = item.created_time + target * fraction
        if at <= now and kind == "reminder":
            continue  # the item reached us late: no reminder about a moment already past
        await queue.enqueue(
            session,
            "sla_check",
            {"assignment_id": assignment.id, "step": number},
            dedupe_key=f"sla:{assignment.id}:{number}",
            run_at=max(at, now),
        )


async def sla_check(services: Services, assignment_id: int, step: int) -> None:
    """A reminder to the expert, or the escalation to the community manager, if the item is still open."""
    kind, fraction = SLA_STEPS[step]
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
        recipient = await session.get(Expert, assignment.expert_id)
        if kind == "escalation":
            cm = services.rules.community_manager
            manager = await session.scalar(select(Expert).where(Expert.email == cm)) if cm else None
            recipient = manager or recipient
        assert recipient is not None
        await _queue_mail(services, session, item, assignment, recipient, kind)
    services.wake()
    services.announce(f"item.{kind}", {"item_id": item.id, "to": recipient.email, "at": f"{int(fraction * 100)} %"})


async def send_email(services: Services, email_id: int) -> None:
    """Deliver one outbox mail over SMTP (retried by the queue while SMTP is down)."""
    async with services.sessions() as session:
        email = await session.get(Email, email_id)
        if email is None or email.status == "sent":
            return
        message = build_message(
            sender=services.settings.mail_from,
            to=email.to_address,
            subject=email.subject,
            text=email.body_text,
            html=email.body_html,
            message_id=email.message_id,
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
