"""``relais import``: historical items from JSONL, validated whole before anything is stored.

Each line: ``platform``, ``external_id``, ``kind``, ``created_time`` (ISO 8601
with an offset), ``text``, ``author`` {``id``, ``name``, ``handle``}; optional
``parent_external_id``, ``thread_external_id``, ``channel`` (page or account
id), ``permalink``, ``is_brand_post``, ``is_ad``, ``label``, ``assignee`` (an
expert's email), ``responses`` [{``sent_at``, ``mode``, ``text``}].
Importing the same file twice changes nothing. Reference: docs/import-format.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain import Author, InboundItem, ItemKind, Platform
from bot.errors import RelaisError
from bot.ingest.store_items import store_items
from bot.kpi import events
from bot.store.models import Assignment, Channel, Classification, Expert, Item, Response

LABELS = ("complaint", "product_feedback", "ad_reaction", "other")


class ImportError_(RelaisError):
    """The file has mistakes; the message lists them as ``file:line: message``."""


@dataclass(frozen=True)
class ImportRecord:
    item: InboundItem
    channel: str | None
    label: str | None
    assignee: str | None
    responses: tuple[tuple[datetime, str, str], ...]
    removed: bool = False  # the author deleted it (status "removed")
    resolved_at: datetime | None = None  # marked resolved (items.resolved_at)


def _time(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{field} must be an ISO 8601 string")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{field} needs a UTC offset (e.g. 2026-11-20T09:15:00-05:00)")
    return moment


def _flag(data: dict[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false")
    return value


def parse_line(data: Any) -> ImportRecord:
    if not isinstance(data, dict):
        raise ValueError("each line must be a JSON object")
    missing = [k for k in ("platform", "external_id", "kind", "created_time", "text", "author") if k not in data]
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    author = data["author"]
    if not isinstance(author, dict) or "id" not in author:
        raise ValueError("author must be an object with at least an id")
    if not isinstance(data["text"], str):
        raise ValueError("text must be a string")
    label = data.get("label")
    if label is not None and label not in LABELS:
        raise ValueError(f"label must be one of {', '.join(LABELS)}")
    responses = []
    for i, r in enumerate(data.get("responses") or []):
        if not isinstance(r, dict) or r.get("mode") not in ("public", "private") or not isinstance(r.get("text"), str):
            raise ValueError(f"responses[{i}] needs sent_at, mode (public|private) and text")
        responses.append((_time(r.get("sent_at"), f"responses[{i}].sent_at"), r["mode"], r["text"]))
    item = InboundItem(
        platform=Platform(data["platform"]),
        external_id=str(data["external_id"]),
        kind=ItemKind(data["kind"]),
        channel_external_id=str(data.get("channel") or ""),
        author=Author(id=str(author["id"]), name=str(author.get("name") or ""), handle=str(author.get("handle") or "")),
        text=data["text"],
        created_time=_time(data["created_time"], "created_time"),
        parent_external_id=str(data["parent_external_id"]) if data.get("parent_external_id") else None,
        thread_external_id=str(data["thread_external_id"]) if data.get("thread_external_id") else None,
        permalink=data.get("permalink"),
        is_brand_post=_flag(data, "is_brand_post"),
        is_ad=_flag(data, "is_ad"),
        raw={"imported": True},
    )
    resolved_at = _time(data["resolved_at"], "resolved_at") if data.get("resolved_at") is not None else None
    return ImportRecord(item, data.get("channel"), label, data.get("assignee"), tuple(sorted(responses)),
                        removed=_flag(data, "removed"), resolved_at=resolved_at)


def read_file(path: Path, experts: set[str] | None = None) -> list[ImportRecord]:
    """Every record of the file, or an error listing every bad line.

    With ``experts`` (the emails the rules file names), an unknown ``assignee`` is a bad line too.
    """
    records, problems = [], []
    try:
        # split on newlines only: U+2028 and friends are legal inside a JSON string
        lines = path.read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        raise ImportError_(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise ImportError_(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = parse_line(json.loads(line))
        except (ValueError, TypeError, KeyError) as exc:
            problems.append(f"{path}:{number}: {exc}")
            continue
        if experts is not None and record.assignee and record.assignee not in experts:
            problems.append(f"{path}:{number}: unknown assignee {record.assignee!r}: not an expert of the rules file")
            continue
        records.append(record)
    if problems:
        raise ImportError_("\n".join(problems[:50]) + (f"\n... and {len(problems) - 50} more" if len(problems) > 50 else ""))
    return records


async def import_records(session: AsyncSession, records: list[ImportRecord]) -> tuple[int, int]:
    """Store the records (in the caller's transaction). Returns (new, already there)."""
    experts = {e.email: e for e in (await session.scalars(select(Expert))).all()}
    channels = {(c.platform, c.external_id): c for c in (await session.scalars(select(Channel))).all()}
    unknown = sorted({r.assignee for r in records if r.assignee and r.assignee not in experts})
    if unknown:  # read_file(path, experts) reports these with their lines
        raise ImportError_(f"unknown assignee(s), not in the rules file: {', '.join(unknown)}")
    new = old = 0
    for record in records:
        channel = channels.get((record.item.platform.value, record.channel or ""))
        result = await store_items(session, channel, [record.item], source="import")
        if not result.new:
            old += 1
            continue
        new += 1
        item = await session.get(Item, result.new[0])
        assert item is not None
        await _history(session, item, record, experts)
    return new, old


async def _history(session: AsyncSession, item: Item, record: ImportRecord, experts: dict[str, Expert]) -> None:
    expert = experts.get(record.assignee or "")
    if record.label:
        session.add(Classification(item_id=item.id, label=record.label, confidence=1.0, model_version="import", source="human", created_by="import"))
    if expert:
        session.add(Assignment(item_id=item.id, expert_id=expert.id, rule_name="import", rules_version="import", reply_mode=record.responses[0][1] if record.responses else "public", sla_due=item.created_time, assigned_at=item.created_time))
    if not item.is_brand_post:
        item.status = "answered" if record.responses else "imported"
        if record.removed:
            item.status = "removed"
    item.resolved_at = record.resolved_at
    for i, (sent_at, mode, text) in enumerate(record.responses):
        session.add(Response(item_id=item.id, expert_id=expert.id if expert else None, mode=mode, text=text, idempotency_key=f"import:{item.platform}:{item.external_id}:{i}", status="sent", sent_at=sent_at, created_at=sent_at))
    if record.responses:
        first = record.responses[0][0]
        await events.record(session, events.FIRST_RESPONSE, item, events.elapsed(item.created_time, first), first, expert_id=expert.id if expert else None, detail={"mode": record.responses[0][1]})
        public = [s for s, m, _ in record.responses if m == "public"]
        if public:
            await events.record(session, events.PUBLIC_ACK, item, events.elapsed(item.created_time, public[0]), public[0])
