"""The data model (SQLAlchemy 2.x, typed).

Every timestamp is stored as UTC. ``Item.created_time`` is the platform's own
time: response-time KPIs are measured from it, never from ``received_at``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class Channel(Base):
    """A connected Facebook Page, Instagram account or X account."""

    __tablename__ = "channels"
    __table_args__ = (UniqueConstraint("platform", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    # Where the secrets are: "db" (the credentials column) or "env:VAR_PREFIX".
    credentials_ref: Mapped[str] = mapped_column(String(200), default="db")
    credentials: Mapped[dict[str, Any]] = mapped_column(default=dict)
    api_url: Mapped[str | None] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(20), default="active")  # active|paused|token_invalid
    status_detail: Mapped[str | None] = mapped_column(Text)
    poll_interval_s: Mapped[float] = mapped_column(Float, default=60.0)
    cursor: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_polled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # 0006: erase item text and authors after this many days (None: RELAIS_RETENTION_DAYS, or keep)
    retention_days: Mapped[int | None] = mapped_column(Integer)


class Item(Base):
    """A post, comment, mention or private message, once per platform object."""

    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("platform", "external_id"),
        Index("ix_items_created_time", "created_time"),
        Index("ix_items_status", "status"),
        Index("ix_items_source_created", "source", "created_time"),  # 0004: KPI volumes
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("channels.id"))
    platform: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(20))  # post|comment|mention|message
    parent_external_id: Mapped[str | None] = mapped_column(String(128), index=True)
    thread_external_id: Mapped[str | None] = mapped_column(String(128))
    author_id: Mapped[str] = mapped_column(String(128), default="")
    author_name: Mapped[str] = mapped_column(String(300), default="")
    author_handle: Mapped[str] = mapped_column(String(300), default="")
    author_followers: Mapped[int | None] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str | None] = mapped_column(String(8))
    created_time: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    permalink: Mapped[str | None] = mapped_column(String(1000))
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_brand_post: Mapped[bool] = mapped_column(Boolean, default=False)
    is_ad: Mapped[bool] = mapped_column(Boolean, default=False)
    # new -> classified -> routed -> notified -> answered; also needs_review, removed, brand
    status: Mapped[str] = mapped_column(String(20), default="new")
    source: Mapped[str] = mapped_column(String(20), default="webhook")  # webhook|poll|import
    is_hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    is_spam: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set by crisis detection (bot.kpi.crisis) while an incident covers the item.
    in_crisis: Mapped[bool] = mapped_column(Boolean, default=False)
    resolved_at: Mapped[datetime | None]
    # 0006: text and author erased (retention, a platform delete, relais privacy erase)
    erased_at: Mapped[datetime | None]

    channel: Mapped[Channel | None] = relationship()


class Classification(Base):
    """A label on an item, by the model or by a person (a person's label is training data)."""

    __tablename__ = "classifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    label: Mapped[str] = mapped_column(String(40))
    confidence: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(10), default="model")  # model|human
    explanation: Mapped[list[Any]] = mapped_column(default=list)
    created_by: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    lead_email: Mapped[str | None] = mapped_column(String(300))


class Expert(Base):
    __tablename__ = "experts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(300), unique=True)
    language: Mapped[str] = mapped_column(String(8), default="fr")
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Paris")
    skills: Mapped[list[Any]] = mapped_column(default=list)
    available: Mapped[bool] = mapped_column(Boolean, default=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"))

    team: Mapped[Team | None] = relationship()


class Assignment(Base):
    """Who answers an item, chosen by which rule of which version of the rules file."""

    __tablename__ = "assignments"

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    expert_id: Mapped[int | None] = mapped_column(ForeignKey("experts.id"))  # None: triage queue
    rule_name: Mapped[str] = mapped_column(String(200))
    rules_version: Mapped[str] = mapped_column(String(64))
    reply_mode: Mapped[str] = mapped_column(String(30))
    sla_due: Mapped[datetime]
    trace: Mapped[list[Any]] = mapped_column(default=list)
    priority: Mapped[str] = mapped_column(String(10), default="normal")  # low|normal|high|urgent
    assigned_by: Mapped[str | None] = mapped_column(String(300))  # None: the rules; else a user
    # 0005: the rule's suggested reply template; the SLA clock counts working hours only
    template: Mapped[str | None] = mapped_column(String(64))
    sla_business_hours: Mapped[bool] = mapped_column(Boolean, default=False)
    assigned_at: Mapped[datetime] = mapped_column(default=utcnow)

    expert: Mapped[Expert | None] = relationship()


class Response(Base):
    """A reply to an item. Recorded as ``pending`` before it is sent (the intent),
    so a crash never sends it twice: ``idempotency_key`` is unique."""

    __tablename__ = "responses"

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    expert_id: Mapped[int | None] = mapped_column(ForeignKey("experts.id"))
    mode: Mapped[str] = mapped_column(String(10))  # public|private
    text: Mapped[str] = mapped_column(Text)
    ack_text: Mapped[str | None] = mapped_column(Text)  # public acknowledgement of a private reply
    idempotency_key: Mapped[str] = mapped_column(String(100), unique=True)
    platform_id: Mapped[str | None] = mapped_column(String(200))
    ack_platform_id: Mapped[str | None] = mapped_column(String(200))
    # pending -> sending -> (private_sent -> ack_sending ->) sent; or failed, in_doubt
    status: Mapped[str] = mapped_column(String(20), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(30))  # ReplyRejected.reason
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]


class KpiEvent(Base):
    """One measured fact, like Chatwoot's ReportingEvent: a name, a duration, a time."""

    __tablename__ = "kpi_events"
    __table_args__ = (
        UniqueConstraint("name", "item_id"),
        Index("ix_kpi_events_name_at", "name", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(60))
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"), index=True)
    expert_id: Mapped[int | None] = mapped_column(ForeignKey("experts.id"))
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("channels.id"))
    seconds: Mapped[float] = mapped_column(Float)
    # the same span counted in working time (bot.kpi.calendar); None until computed
    business_seconds: Mapped[float | None] = mapped_column(Float)
    at: Mapped[datetime]
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class DigestRun(Base):
    """One weekly digest (ISO week ``2026-W47``): the unique week makes sending exactly-once."""

    __tablename__ = "digest_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    week: Mapped[str] = mapped_column(String(10), unique=True)
    status: Mapped[str] = mapped_column(String(10), default="queued")  # queued (mails in the outbox)
    emails: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EmailPart(Base):
    """An inline image of an outbox mail (``cid:`` in its HTML), such as a digest chart."""

    __tablename__ = "email_parts"

    id: Mapped[int] = mapped_column(primary_key=True)
    email_id: Mapped[int] = mapped_column(ForeignKey("emails.id"), index=True)
    cid: Mapped[str] = mapped_column(String(100))
    content_type: Mapped[str] = mapped_column(String(50))  # image/png
    data: Mapped[bytes] = mapped_column(LargeBinary)


class CrisisIncident(Base):
    """A cluster of complaints on one post, page or keyword (bot.kpi.crisis)."""

    __tablename__ = "crisis_incidents"
    __table_args__ = (Index("ix_crisis_incidents_scope", "scope", "scope_key", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(10))  # post|page|keyword
    scope_key: Mapped[str] = mapped_column(String(200))
    label: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(10), default="open")  # open|closed
    reason: Mapped[str] = mapped_column(String(300))
    started_at: Mapped[datetime]
    last_item_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]


class CrisisIncidentItem(Base):
    __tablename__ = "crisis_incident_items"

    incident_id: Mapped[int] = mapped_column(ForeignKey("crisis_incidents.id"), primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), primary_key=True)


class Delivery(Base):
    """A raw webhook delivery, stored before it is acknowledged."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(20))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]


class Job(Base):
    """A durable unit of pipeline work. See :mod:`bot.pipeline.queue`."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_claim", "status", "run_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(10), default="queued")  # queued|running|done|dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=8)
    run_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[datetime | None]
    locked_by: Mapped[str | None] = mapped_column(String(100))
    last_error: Mapped[str | None] = mapped_column(Text)
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class Email(Base):
    """The outbox: a mail is stored here first, then sent by a job; its
    ``message_id`` is fixed at creation so a retry never makes a second mail."""

    __tablename__ = "emails"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str] = mapped_column(String(300), unique=True)
    kind: Mapped[str] = mapped_column(String(30))  # notification|reminder|escalation|digest
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"))
    to_address: Mapped[str] = mapped_column(String(300))
    subject: Mapped[str] = mapped_column(String(500))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), default="queued")  # queued|sent|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]


class ReplyLink(Base):
    """A one-click reply link sent to an expert: signed, expiring, usable once."""

    __tablename__ = "reply_links"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    expert_id: Mapped[int] = mapped_column(ForeignKey("experts.id"))
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    """A person who logs in to the web UI. ``role``: community_manager, expert,
    manager (read-only dashboards) or admin. Passwords are argon2 hashes."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(300), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(30))
    password_hash: Mapped[str] = mapped_column(String(300))
    language: Mapped[str] = mapped_column(String(8), default="fr")
    expert_id: Mapped[int | None] = mapped_column(ForeignKey("experts.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]


class WebSession(Base):
    """A login session. The cookie carries a random token; only its sha256 is stored."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class LoginAttempt(Base):
    """A failed login, for throttling by account and by client address."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_key_at", "key", "at"), Index("ix_login_attempts_at", "at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(300))  # "email:<address>" or "ip:<address>"
    at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """Who did what, when: the item's history in the triage UI."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_item_at", "item_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"))
    actor: Mapped[str] = mapped_column(String(300))  # a user's email, or "relais" for the bot
    action: Mapped[str] = mapped_column(String(40))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class ItemNote(Base):
    """An internal note on an item, never sent to the platform."""

    __tablename__ = "item_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ItemViewer(Base):
    """Who has an item open right now (a heartbeat), so two people do not answer it."""

    __tablename__ = "item_viewers"
    __table_args__ = (UniqueConstraint("item_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)
