"""The database-facing command-line actions: channels, items, import."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from bot.errors import ConfigError
from bot.ingest.store_items import WEBHOOK_PLATFORMS, recovered_by_polling
from bot.services import open_services
from bot.settings import Settings
from bot.store.importer import import_records, read_file
from bot.store.models import Assignment, Channel, Classification, Expert, Item, KpiEvent, Response


def _table(rows: list[dict[str, Any]], columns: list[str], widths: dict[str, int]) -> None:
    print("  ".join(c.upper().ljust(widths.get(c, 12)) for c in columns))
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            text = "" if value is None else str(value)
            text = text.replace("\n", " ")
            w = widths.get(c, 12)
            cells.append((text[: w - 1] + "…" if len(text) > w else text).ljust(w))
        print("  ".join(cells).rstrip())


async def add_channel(settings: Settings, args: argparse.Namespace) -> int:
    if args.platform == "facebook":
        token = args.token or os.environ.get("RELAIS_FB_PAGE_TOKEN")
        if not token:
            raise ConfigError("--token or RELAIS_FB_PAGE_TOKEN: a Page access token is required")
        credentials = {"page_token": token}
        external_id = args.page_id
    elif args.platform == "instagram":
        token = args.token or os.environ.get("RELAIS_FB_PAGE_TOKEN")
        if not token:
            raise ConfigError("--token or RELAIS_FB_PAGE_TOKEN: the linked Page's access token is required")
        credentials = {"page_token": token}
        external_id = args.account_id
    else:
        credentials = {}
        for name in ("bearer_token", "consumer_key", "consumer_secret", "access_token", "access_token_secret"):
            value = getattr(args, name) or os.environ.get("RELAIS_X_" + name.upper())
            if value:
                credentials[name] = value
        if "bearer_token" not in credentials:
            raise ConfigError("--bearer-token or RELAIS_X_BEARER_TOKEN: an X bearer token is required")
        missing = [n for n in ("consumer_key", "consumer_secret", "access_token", "access_token_secret") if n not in credentials]
        if args.dms and missing:
            raise ConfigError(f"--dms: reading direct messages needs OAuth 1.0a user credentials; missing {', '.join(missing)}")
        external_id = args.user_id
    async with open_services(settings, load_model=False) as services:
        async with services.sessions.begin() as session:
            channel = await session.scalar(
                select(Channel).where(Channel.platform == args.platform, Channel.external_id == external_id)
            )
            created = channel is None
            channel = channel or Channel(platform=args.platform, external_id=external_id)
            channel.name = args.name
            channel.credentials = credentials
            channel.credentials_ref = "db"
            channel.api_url = args.api_url
            channel.poll_interval_s = args.poll_interval or settings.poll_interval_s
            channel.status = "active"
            if getattr(args, "dms", None) is not None:  # X only; the switch lives in the poll cursor
                channel.cursor = {**(channel.cursor or {}), "dms": args.dms}
            session.add(channel)
    print(f"{'added' if created else 'updated'} {args.platform} channel {args.name!r} ({external_id})")
    return 0


async def list_channels(settings: Settings, fmt: str) -> int:
    async with open_services(settings, load_model=False) as services:
        async with services.sessions() as session:
            channels = (await session.scalars(select(Channel).order_by(Channel.id))).all()
            recovered = await recovered_by_polling(session)
    rows = [
        {
            "id": c.id,
            "platform": c.platform,
            "external_id": c.external_id,
            "name": c.name,
            "status": c.status,
            "poll_interval_s": c.poll_interval_s,
            "last_polled_at": c.last_polled_at.isoformat() if c.last_polled_at else None,
            # items webhooks missed and a poll found; None where there are no webhooks (X)
            "recovered_by_polling": recovered.get(c.id, 0) if c.platform in WEBHOOK_PLATFORMS else None,
        }
        for c in channels
    ]
    if fmt == "json":
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        _table(rows, ["id", "platform", "external_id", "name", "status", "last_polled_at", "recovered_by_polling"], {"id": 4, "name": 28, "external_id": 20, "last_polled_at": 26, "recovered_by_polling": 20})
    return 0


async def item_rows(session: Any, limit: int | None = None) -> list[dict[str, Any]]:
    """One dict per item: what ``relais items`` prints."""
    latest_label = (
        select(Classification.item_id, func.max(Classification.id).label("cid")).group_by(Classification.item_id).subquery()
    )
    latest_assign = (
        select(Assignment.item_id, func.max(Assignment.id).label("aid")).group_by(Assignment.item_id).subquery()
    )
    first_response = aliased(KpiEvent)
    stmt = (
        select(Item, Classification, Assignment, Expert.email, first_response.seconds)
        .outerjoin(latest_label, latest_label.c.item_id == Item.id)
        .outerjoin(Classification, Classification.id == latest_label.c.cid)
        .outerjoin(latest_assign, latest_assign.c.item_id == Item.id)
        .outerjoin(Assignment, Assignment.id == latest_assign.c.aid)
        .outerjoin(Expert, Expert.id == Assignment.expert_id)
        .outerjoin(first_response, (first_response.item_id == Item.id) & (first_response.name == "first_response_s"))
        .order_by(Item.created_time, Item.id)
    )
    if limit:
        stmt = stmt.limit(limit)
    rows = []
    for item, label, assignment, email, first_s in (await session.execute(stmt)).all():
        rows.append(
            {
                "id": item.id,
                "platform": item.platform,
                "external_id": item.external_id,
                "kind": item.kind,
                "created_time": item.created_time.isoformat(),
                "author": {"id": item.author_id, "name": item.author_name},
                "text": item.text,
                "language": item.language,
                "label": label.label if label else None,
                "confidence": round(label.confidence, 4) if label else None,
                "label_source": label.source if label else None,
                "assignee": email if assignment else None,
                "rule": assignment.rule_name if assignment else None,
                "mode": assignment.reply_mode if assignment else None,
                "status": item.status,
                "is_brand_post": item.is_brand_post,
                "is_ad": item.is_ad,
                "parent_external_id": item.parent_external_id,
                "first_response_s": round(first_s, 3) if first_s is not None else None,
            }
        )
    return rows


async def _export_lines(session: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items in the import format (so export -> import round-trips)."""
    responses: dict[int, list[dict[str, Any]]] = {}
    for r in (await session.scalars(select(Response).where(Response.status == "sent").order_by(Response.sent_at))).all():
        responses.setdefault(r.item_id, []).append({"sent_at": r.sent_at.isoformat(), "mode": r.mode, "text": r.text})
    out = []
    for row in rows:
        line = {k: row[k] for k in ("platform", "external_id", "kind", "created_time", "text", "author")}
        if row["parent_external_id"]:
            line["parent_external_id"] = row["parent_external_id"]
        if row["label_source"] == "human" and row["label"]:
            line["label"] = row["label"]
        if row["assignee"]:
            line["assignee"] = row["assignee"]
        if row["is_brand_post"]:
            line["is_brand_post"] = True
        if row["is_ad"]:
            line["is_ad"] = True
        if row["id"] in responses:
            line["responses"] = responses[row["id"]]
        out.append(line)
    return out


async def list_items(settings: Settings, fmt: str, limit: int | None) -> int:
    async with open_services(settings, load_model=False) as services:
        async with services.sessions() as session:
            rows = await item_rows(session, limit)
            if fmt == "jsonl":
                for line in await _export_lines(session, rows):
                    print(json.dumps(line, ensure_ascii=False))
                return 0
    if fmt == "json":
        for row in rows:
            row.pop("label_source")
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        _table(
            rows,
            ["id", "platform", "kind", "created_time", "label", "confidence", "assignee", "status", "first_response_s", "text"],
            {"id": 5, "platform": 9, "kind": 8, "created_time": 25, "label": 16, "confidence": 10, "assignee": 30, "status": 12, "first_response_s": 16, "text": 50},
        )
    return 0


async def import_file(settings: Settings, path: Path) -> int:
    async with open_services(settings, load_model=False) as services:
        records = read_file(path, set(services.rules.experts))
        async with services.sessions.begin() as session:
            new, old = await import_records(session, records)
    print(f"{path}: {new} item(s) imported, {old} already present", file=sys.stderr)
    return 0


async def promote_tweet(settings: Settings, args: argparse.Namespace) -> int:
    from bot.ingest.backfill import find_x_channel, mark_promotion

    async with open_services(settings, load_model=False) as services:
        channel_id = await find_x_channel(services, args.account, tweet_id=args.tweet_id)
        item = await mark_promotion(services, channel_id, args.tweet_id, promoted=not args.unset)
    print(f"tweet {args.tweet_id} {'is no longer' if args.unset else 'is now'} a promotion (item {item})")
    return 0


async def backfill_x(settings: Settings, args: argparse.Namespace) -> int:
    from bot.ingest.backfill import backfill_mentions, find_x_channel, parse_when, print_progress

    since = parse_when(args.since, settings.timezone, option="--since")
    until = parse_when(args.until, settings.timezone, option="--until", end_of_day=True) if args.until else None
    async with open_services(settings, load_model=False) as services:
        channel_id = await find_x_channel(services, args.account)
        result = await backfill_mentions(services, channel_id, since, until, progress=print_progress)
    print(f"backfill done: {result.fetched} mention(s) fetched, {result.new} new, {result.pages} page(s)", file=sys.stderr)
    return 0


async def backfill_facebook(settings: Settings, args: argparse.Namespace) -> int:
    """Store a Page's posts and comments of a past window, a feed page at a time (progress on
    stderr). Idempotent (items are stored once); the live poll cursor is left alone."""
    from bot.channels.facebook import FacebookChannel
    from bot.ingest.backfill import BackfillProgress, parse_when, print_progress
    from bot.ingest.store_items import store_items

    since = parse_when(args.since, settings.timezone, option="--since")
    until = parse_when(args.until, settings.timezone, option="--until", end_of_day=True) if args.until else None
    pages = fetched = new = 0
    async with open_services(settings, load_model=False) as services:
        async with services.sessions() as session:
            row = await session.scalar(select(Channel).where(Channel.platform == "facebook", Channel.external_id == args.page_id))
        if row is None:
            raise ConfigError(f"--page-id {args.page_id}: no connected Facebook Page with this id (relais channels list)")
        adapter = await services.channels.get(row)
        assert isinstance(adapter, FacebookChannel)
        async for items in adapter.backfill(since, until):
            async with services.sessions.begin() as session:
                channel = await session.get(Channel, row.id)
                stored = await store_items(session, channel, items, source="backfill")
            pages, fetched, new = pages + 1, fetched + len(items), new + len(stored.new)
            print_progress(BackfillProgress(row.name, pages, len(items), len(stored.new), fetched, new))
    print(f"backfill done: {fetched} post(s) and comment(s) fetched, {new} new, {pages} page(s)", file=sys.stderr)
    return 0


async def promote_post(settings: Settings, args: argparse.Namespace) -> int:
    """Mark (or unmark) a stored brand post of a Facebook Page or Instagram account as an ad or promotion."""
    platform = args.platform
    async with open_services(settings, load_model=False) as services:
        async with services.sessions.begin() as session:
            item = await session.scalar(
                select(Item).where(Item.platform == platform, Item.external_id == args.post_id).with_for_update()
            )
            if item is None:
                raise ConfigError(
                    f"--post-id {args.post_id}: no stored {platform} post with this id yet "
                    f"(it is stored by the next reconcile poll, or run 'relais backfill {platform}')"
                )
            if not item.is_brand_post:
                raise ConfigError(f"--post-id {args.post_id}: not a post of the brand (only brand posts are promotions)")
            item.is_ad = not args.unset
    print(f"post {args.post_id} {'is no longer' if args.unset else 'is now'} a promotion (item {item.id})")
    return 0
