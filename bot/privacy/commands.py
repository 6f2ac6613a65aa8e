"""``relais privacy erase|export|retention`` and ``relais channels retention``."""

from __future__ import annotations

import argparse
import json
import sys

from typing import TYPE_CHECKING

from bot.errors import RelaisError

if TYPE_CHECKING:
    from bot.settings import Settings


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser,  # type: ignore[type-arg]
                channels: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Register ``privacy ...`` under the top-level commands and ``retention`` under ``channels``;
    returns the ``privacy`` parser (the caller sets its function)."""
    p = sub.add_parser("privacy", help="erase or export what is held about a person; apply retention now")
    psub = p.add_subparsers(dest="privacy_command", required=True, metavar="ACTION")
    erase = psub.add_parser("erase", parents=[common], help="erase a person's items (text, author data), reactions and raw deliveries")
    export = psub.add_parser("export", parents=[common], help="print everything held about a person, as JSON")
    for q in (erase, export):
        q.add_argument("--author", required=True, metavar="ID", help="the person's platform user id (items' author_id)")
        q.add_argument("--platform", choices=("facebook", "instagram", "x"), help="only this platform's items")
    psub.add_parser("retention", parents=[common], help="apply the retention periods now (the server does it daily)")

    r = channels.add_parser("retention", parents=[common], help="erase a channel's item text and authors after N days")
    r.add_argument("channel", metavar="CHANNEL", help="the channel's name or platform id")
    days = r.add_mutually_exclusive_group(required=True)
    days.add_argument("--days", type=int, help="keep text and authors this many days")
    days.add_argument("--default", action="store_true", help="follow RELAIS_RETENTION_DAYS (or keep)")
    return p


async def privacy(settings: Settings, args: argparse.Namespace) -> int:
    from bot.privacy.erase import erase_author, export_author
    from bot.privacy.retention import apply_retention
    from bot.services import open_services

    async with open_services(settings, load_model=False) as services:
        if args.privacy_command == "retention":
            counts = await apply_retention(services)
            print(f"retention: {counts['items']} item(s) erased, {counts['deliveries']} webhook deliveries deleted")
            return 0
        if args.privacy_command == "export":
            async with services.sessions() as session:
                data = await export_author(session, args.author, args.platform)
            json.dump(data, sys.stdout, ensure_ascii=False, indent=2, default=str)
            print()
            return 0
        async with services.sessions.begin() as session:
            counts = await erase_author(session, args.author, args.platform)
        print(f"erased: {counts['items']} item(s), reactions on {counts['reactions']} item(s), "
              f"{counts['deliveries']} webhook deliveries (KPI events kept)")
        return 0


async def channel_retention(settings: Settings, args: argparse.Namespace) -> int:
    from sqlalchemy import or_, select

    from bot.services import open_services
    from bot.store.models import Channel

    if args.days is not None and args.days <= 0:
        raise RelaisError("--days must be a positive number of days")
    async with open_services(settings, load_model=False) as services, services.sessions.begin() as session:
        rows = (await session.scalars(
            select(Channel).where(or_(Channel.name == args.channel, Channel.external_id == args.channel))
        )).all()
        if len(rows) != 1:
            raise RelaisError(f"{'no' if not rows else 'more than one'} channel named {args.channel!r} "
                              "(relais channels list)")
        rows[0].retention_days = None if args.default else args.days
        what = "the default (RELAIS_RETENTION_DAYS)" if args.default else f"{args.days} days"
        print(f"{rows[0].name}: item text and authors kept {what}")
    return 0

