"""Plain dataclasses that travel between the pipeline stages.

The core never sees raw platform payloads or SDK objects: channel adapters and
webhook parsers turn them into these, and the stages hand these to each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Platform(StrEnum):
    FACEBOOK = "facebook"
    INSTAGRAM = "instagram"
    X = "x"


class ItemKind(StrEnum):
    POST = "post"
    COMMENT = "comment"
    MENTION = "mention"
    MESSAGE = "message"  # a private message (Messenger, X direct message)


class ReplyMode(StrEnum):
    PUBLIC = "public"
    PRIVATE = "private"
    PRIVATE_WITH_PUBLIC_ACK = "private_with_public_ack"


class ChangeVerb(StrEnum):
    """What a platform event does to the object it names."""

    ADD = "add"
    EDIT = "edit"
    REMOVE = "remove"
    HIDE = "hide"
    UNHIDE = "unhide"


@dataclass(frozen=True)
class Author:
    id: str
    name: str = ""
    handle: str = ""
    followers: int | None = None


@dataclass(frozen=True)
class InboundItem:
    """One post, comment, mention or private message as a platform reported it.

    ``created_time`` is the platform's own timestamp (timezone-aware UTC): every
    response-time KPI is measured from it.
    """

    platform: Platform
    external_id: str
    kind: ItemKind
    channel_external_id: str  # the Page id or X account id it arrived on
    author: Author
    text: str
    created_time: datetime
    parent_external_id: str | None = None
    thread_external_id: str | None = None
    permalink: str | None = None
    is_brand_post: bool = False
    is_ad: bool = False
    verb: ChangeVerb = ChangeVerb.ADD
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class ItemContext:
    """What the classifier and the rules may know about an item besides its text."""

    platform: str
    kind: str
    parent_is_ad: bool = False


@dataclass(frozen=True)
class RouteDecision:
    """The outcome of routing one item: who answers, how, and by when."""

    rule_name: str
    rules_version: str
    expert_email: str | None  # None: the community manager's triage queue
    reply_mode: ReplyMode
    sla_seconds: int
    trace: tuple[str, ...] = ()


@dataclass(frozen=True)
class SentReply:
    """What a channel returns once a reply is on the platform."""

    platform_id: str
    ack_platform_id: str | None = None  # the public acknowledgement of a private reply
