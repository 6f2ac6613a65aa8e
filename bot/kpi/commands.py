"""``relais kpi`` and ``relais digest``."""

from __future__ import annotations

import argparse
import sys

from bot.errors import ConfigError
from bot.kpi import output
from bot.kpi.config import load_kpi_config
from bot.kpi.report import GROUPS, compute_kpis
from bot.services import open_services
from bot.settings import Settings


async def kpi_command(settings: Settings, args: argparse.Namespace) -> int:
    from bot.ingest.backfill import parse_when

    start = parse_when(args.from_, settings.timezone, option="--from")
    end = parse_when(args.to, settings.timezone, option="--to", end_of_day=True)
    if end <= start:
        raise ConfigError("--to must be after --from")
    if args.by is not None and args.by not in GROUPS:
        raise ConfigError(f"--by must be one of {', '.join(GROUPS)}")
    config = load_kpi_config(settings)
    async with open_services(settings, load_model=False) as services, services.sessions.begin() as session:
        result = await compute_kpis(session, start, end, by=args.by, calendar=config.calendar)
    render = {"json": output.to_json, "csv": output.to_csv, "table": output.to_table}[args.format]
    text = render(result)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


async def digest_command(settings: Settings, args: argparse.Namespace) -> int:
    from bot.kpi.digest import build_digest, send_digest
    from bot.notify.outbox import send_email

    from bot.kpi.schedule import week_bounds

    try:
        week_bounds(args.week, settings.timezone)
    except ValueError as exc:
        raise ConfigError(f"--week: {exc}") from None
    language = args.language
    async with open_services(settings, load_model=False) as services:
        if args.out:
            async with services.sessions.begin() as session:
                digest = await build_digest(services, session, args.week, language=language)
            args.out.write_text(digest.html_with_data_uris(), encoding="utf-8")
            print(f"{args.out}: digest of {args.week} written", file=sys.stderr)
        if args.send:
            ids = await send_digest(services, args.week, language=language)
            if not ids:
                print(f"digest of {args.week}: already sent (or no recipients), nothing done", file=sys.stderr)
            delivered = 0
            for email_id in ids:
                try:
                    await send_email(services, email_id)
                    delivered += 1
                except Exception as exc:  # noqa: BLE001 - the mail stays in the outbox for the worker
                    print(f"digest of {args.week}: mail {email_id} not delivered now ({exc}); "
                          "the server's worker will retry it", file=sys.stderr)
            if ids:
                print(f"digest of {args.week}: {delivered} of {len(ids)} mail(s) delivered", file=sys.stderr)
        if not args.out and not args.send:
            async with services.sessions.begin() as session:
                digest = await build_digest(services, session, args.week, language=language)
            sys.stdout.write(digest.text)
    return 0
