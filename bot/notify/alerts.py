"""Alerts to the community manager (the ``community_manager`` of the rules file).

An alert is a plain-text mail through the outbox, in the community manager's
language, sent once per ``key`` (a second alert with the same key is dropped),
so a dead token is reported once a day, not at every retry.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.notify.compose import one_line
from bot.notify.outbox import mail_domain
from bot.pipeline import queue
from bot.store.db import dialect_insert
from bot.services import Services
from bot.store.models import Channel, Email, Expert, utcnow

log = logging.getLogger(__name__)


async def alert_community_manager(
    services: Services, session: AsyncSession, key: str, texts: dict[str, tuple[str, str]]
) -> bool:
    """Queue ``texts[language] = (subject, body)`` for the community manager, once per ``key``.

    Runs in the caller's transaction. Returns False when there is nobody to tell
    or the alert was already sent.
    """
    address = services.rules.community_manager
    if not address:
        log.warning("alert %s: no community_manager in the rules file to tell", key)
        return False
    manager = await session.scalar(select(Expert).where(Expert.email == address))
    language = manager.language if manager and manager.language in texts else ("fr" if "fr" in texts else "en")
    subject, body = texts[language]
    domain = mail_domain(services.settings.mail_from)
    insert = dialect_insert(session)
    email_id = (
        await session.execute(
            insert(Email)
            .values(
                message_id=f"<relais.alert.{key}@{domain}>",
                kind="alert",
                to_address=address,
                subject=one_line(f"[Relais] {subject}"),
                body_text=body,
                body_html=None,
                status="queued",
                attempts=0,
            )
            .on_conflict_do_nothing(index_elements=["message_id"])
            .returning(Email.id)
        )
    ).scalar_one_or_none()
    if email_id is None:
        return False
    await queue.enqueue(session, "send_email", {"email_id": email_id}, dedupe_key=f"send_email:{email_id}", max_attempts=12)
    return True


def token_invalid_texts(channel_name: str, platform: str, detail: str) -> dict[str, tuple[str, str]]:
    name = one_line(channel_name)
    return {
        "fr": (
            f"Jeton invalide : {name} ({platform}) ne répond plus",
            f"Relais ne peut plus lire ni répondre sur « {name} » ({platform}) : la plateforme refuse son jeton.\n\n"
            f"Détail : {one_line(detail)}\n\n"
            "Les éléments et les réponses en attente sont conservés ; ils repartiront dès qu'un nouveau jeton\n"
            "sera enregistré (relais channels add ... avec le nouveau jeton).\n",
        ),
        "en": (
            f"Token invalid: {name} ({platform}) stopped",
            f"Relais can no longer read or answer on '{name}' ({platform}): the platform refuses its token.\n\n"
            f"Detail: {one_line(detail)}\n\n"
            "Pending items and replies are kept; they resume as soon as a new token is saved\n"
            "(relais channels add ... with the new token).\n",
        ),
    }


async def mark_token_invalid(services: Services, session: AsyncSession, channel: Channel, detail: str) -> None:
    """Stop a channel whose token died (its queue is kept) and tell the community manager, once a day."""
    channel.status, channel.status_detail = "token_invalid", detail[:1000]
    key = f"token-{channel.id}-{utcnow():%Y%m%d}"
    await alert_community_manager(services, session, key, token_invalid_texts(channel.name, channel.platform, detail))
