"""One-click reply links: signed (HMAC-SHA256), bound to one expert and one item,
expiring, and usable to send once.

A token is ``<link id>.<signature>``; the signature covers the link id, the item,
the expert and the expiry stored with the link, so neither a guessed id nor an
edited token opens a page.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.store.models import ReplyLink, utcnow


class LinkError(Exception):
    """The base of the three ways a link can fail; ``reason`` picks the page shown.

    ``link`` is the stored link when the token was genuine (expired or used),
    so the page can speak the expert's language."""

    reason = "invalid"

    def __init__(self, message: str, link: ReplyLink | None = None) -> None:
        super().__init__(message)
        self.link = link


class LinkInvalid(LinkError):
    reason = "invalid"


class LinkExpired(LinkError):
    reason = "expired"


class LinkUsed(LinkError):
    reason = "used"


def _signature(secret: str, link_id: str, item_id: int, expert_id: int, expires_at: datetime) -> str:
    message = f"{link_id}.{item_id}.{expert_id}.{int(expires_at.timestamp())}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def new_link(secret: str, item_id: int, expert_id: int, ttl_s: int) -> tuple[ReplyLink, str]:
    """A new link, not yet added to a session, and its token (for writing many at once)."""
    link = ReplyLink(
        id=secrets.token_urlsafe(16),
        item_id=item_id,
        expert_id=expert_id,
        expires_at=(utcnow() + timedelta(seconds=ttl_s)).replace(microsecond=0),
    )
    return link, f"{link.id}.{_signature(secret, link.id, item_id, expert_id, link.expires_at)}"


async def create_link(
    session: AsyncSession, secret: str, item_id: int, expert_id: int, ttl_s: int
) -> str:
    """Store a new link and return its token."""
    link, token = new_link(secret, item_id, expert_id, ttl_s)
    session.add(link)
    await session.flush()
    return token


async def open_link(session: AsyncSession, secret: str, token: str, *, for_update: bool = False) -> ReplyLink:
    """The link a token names, if its signature holds, it has not expired and was not used."""
    link_id, _, signature = token.partition(".")
    if not link_id or not signature or len(token) > 200:
        raise LinkInvalid("malformed token")
    link = await session.get(ReplyLink, link_id, with_for_update=for_update)
    if link is None:
        raise LinkInvalid("unknown link")
    expected = _signature(secret, link.id, link.item_id, link.expert_id, link.expires_at)
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise LinkInvalid("bad signature")
    if link.used_at is not None:
        raise LinkUsed("already used", link)
    if utcnow() >= link.expires_at:
        raise LinkExpired("expired", link)
    return link
