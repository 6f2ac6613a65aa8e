"""The contract every channel adapter fulfils.

A channel is one connected Page or account. The pipeline asks it for what is new
(polling), and asks it to post replies. It never hands SDK objects or raw HTTP
errors to the core: items come back as :class:`bot.domain.InboundItem`, replies
as :class:`bot.domain.SentReply`, failures as :mod:`bot.errors` ``ChannelError``
subclasses (``RateLimited``, ``Transient``, ``TokenInvalid``, ``ReplyRejected``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.domain import InboundItem, ItemKind, Platform, SentReply


@dataclass(frozen=True)
class ChannelConfig:
    """What the store knows about a connected Page or account.

    ``credentials`` values are secrets (tokens, keys): never log them.
    ``api_url`` points the adapter at another API host (a proxy, or a fake
    server in tests and the demo); None means the platform's real host.
    """

    platform: Platform
    external_id: str
    name: str
    credentials: dict[str, str] = field(repr=False, default_factory=dict)
    api_url: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReplyTarget:
    """The item a reply answers, as much of it as a platform needs."""

    external_id: str
    kind: ItemKind
    author_id: str
    parent_external_id: str | None = None
    thread_external_id: str | None = None


@dataclass(frozen=True)
class FetchResult:
    """Items found by one poll, and the cursor to resume from next time.

    The caller persists ``cursor`` only after the items are stored, so a crash
    between the two repeats a fetch (deduplicated) rather than skipping one.
    """

    items: list[InboundItem]
    cursor: dict[str, Any]


class Channel(Protocol):
    config: ChannelConfig

    async def fetch_new(self, cursor: dict[str, Any]) -> FetchResult:
        """Everything posted since ``cursor`` (an empty dict: a first, bounded look back)."""

    async def reply_public(self, target: ReplyTarget, text: str) -> SentReply:
        """Answer ``target`` in public, under it."""

    async def reply_private(self, target: ReplyTarget, text: str) -> SentReply:
        """Answer the author of ``target`` privately (Messenger private reply, X DM)."""

    def is_own(self, author_id: str) -> bool:
        """True when ``author_id`` is the brand itself: never answer yourself."""

    # Optional: ``async def find_public_reply(target, text, since) -> SentReply | None``, the
    # brand's own public reply with exactly ``text`` under ``target`` created since ``since``
    # (None: not there). The respond stage asks it after a crash mid-send before sending
    # again; a channel without it (or raising NotImplementedError) leaves the reply in doubt.

    async def close(self) -> None:
        """Release HTTP sessions and threads."""
