"""The ``relais`` command: parses arguments, loads settings, calls the app or a job.

Every command honours ``RELAIS_DATABASE_URL`` and the other ``RELAIS_*``
settings (see README). A configuration mistake ends with a one-line message
naming the setting and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from bot import __version__, logs
from bot.errors import ConfigError, RelaisError, RulesError
from bot.settings import Settings, ensure_secret_key, load_settings

log = logging.getLogger("relais")


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    settings = load_settings(
        config_file=getattr(args, "config", None),
        data_dir=getattr(args, "data_dir", None),
        **overrides,
    )
    settings = ensure_secret_key(settings)
    logs.hide_settings(settings)  # every Secret field and the passwords in URLs
    return settings


# --- commands ----------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from bot.serve import serve

    settings = _settings(args, host=args.host, port=args.port)
    return asyncio.run(serve(settings, with_web=True, worker=not args.no_worker))


def cmd_worker(args: argparse.Namespace) -> int:
    from bot.serve import serve

    return asyncio.run(serve(_settings(args), with_web=False, worker=True))


def cmd_demo(args: argparse.Namespace) -> int:
    from bot.demo.run import run_demo

    return asyncio.run(run_demo(args))


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from bot.store import db

    settings = _settings(args)
    db.upgrade(settings.database_url)
    print(f"database at revision {db.current_revision(settings.database_url)}")
    return 0


def cmd_channels(args: argparse.Namespace) -> int:
    from bot import commands

    settings = _settings(args)
    if args.channels_command == "list":
        return asyncio.run(commands.list_channels(settings, args.format))
    if args.channels_command == "retention":
        from bot.privacy.commands import channel_retention

        return asyncio.run(channel_retention(settings, args))
    if args.channels_command == "promote" and args.platform == "x":
        return asyncio.run(commands.promote_tweet(settings, args))
    if args.channels_command == "promote":
        return asyncio.run(commands.promote_post(settings, args))
    return asyncio.run(commands.add_channel(settings, args))


def cmd_backfill(args: argparse.Namespace) -> int:
    from bot import commands

    return asyncio.run(commands.backfill_x(_settings(args), args))


def cmd_backfill_facebook(args: argparse.Namespace) -> int:
    from bot import commands

    return asyncio.run(commands.backfill_facebook(_settings(args), args))


def cmd_items(args: argparse.Namespace) -> int:
    from bot import commands

    return asyncio.run(commands.list_items(_settings(args), args.format, args.limit))


def cmd_import(args: argparse.Namespace) -> int:
    from bot import commands

    return asyncio.run(commands.import_file(_settings(args), args.file))


def cmd_kpi(args: argparse.Namespace) -> int:
    from bot.kpi.commands import kpi_command

    return asyncio.run(kpi_command(_settings(args), args))


def cmd_digest(args: argparse.Namespace) -> int:
    from bot.kpi.commands import digest_command

    return asyncio.run(digest_command(_settings(args), args))


def cmd_classify(args: argparse.Namespace) -> int:
    from classifiers import Context, load_or_train

    settings = _settings(args)
    model = load_or_train(settings.model_dir)
    texts = args.text or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    context = Context(platform=args.platform, kind=args.kind, parent_is_ad=args.parent_is_ad)
    for prediction in model.predict(texts, [context] * len(texts)):
        print(
            json.dumps(
                {
                    "label": prediction.label,
                    "confidence": round(prediction.confidence, 4),
                    "language": prediction.language,
                    "explanation": list(prediction.explanation),
                    "model_version": prediction.model_version,
                },
                ensure_ascii=False,
            )
        )
    return 0


async def _human_labels(settings: Settings) -> list[Any]:
    """Every item's latest human label (``source="human"``) as a training example."""
    from sqlalchemy import select

    from bot.pipeline.classify import parent_is_ad
    from bot.services import open_services
    from bot.store.models import Classification, Item
    from classifiers import LABELS, Context, Example

    async with open_services(settings, load_model=False) as services, services.sessions() as session:
        query = (
            select(Classification.label, Item)
            .join(Item, Item.id == Classification.item_id)
            .where(Classification.source == "human")
            .order_by(Classification.created_at, Classification.id)
        )
        latest = {item.id: (label, item) for label, item in (await session.execute(query)).all()}
        examples = []
        for label, item in latest.values():
            if label in LABELS and item.text.strip():
                context = Context(item.platform, item.kind, await parent_is_ad(session, item))
                examples.append(Example(item.text, label, item.language or "", context))
    return examples


def cmd_train(args: argparse.Namespace) -> int:
    from classifiers.report import outcome_json, outcome_text
    from classifiers.retrain import retrain

    settings = _settings(args)
    human = asyncio.run(_human_labels(settings))
    outcome = retrain(settings.model_dir, human, progress=lambda message: print(f"train: {message}", file=sys.stderr, flush=True))
    if args.format == "json":
        print(json.dumps(outcome_json(outcome), ensure_ascii=False, indent=2))
    else:
        print(outcome_text(outcome))
    return 0


def cmd_model(args: argparse.Namespace) -> int:
    from classifiers.registry import describe_versions, use_version
    from classifiers.report import versions_table

    settings = _settings(args)
    if args.model_command == "use":
        try:
            use_version(settings.model_dir, args.version)
        except (FileNotFoundError, ValueError) as exc:
            print(f"relais: cannot use model {args.version}: {exc}", file=sys.stderr)
            return 1
        print(f"current model: {args.version} (restart 'relais serve' and workers to load it)")
        return 0
    rows = describe_versions(settings.model_dir)
    print(json.dumps(rows, indent=2) if args.format == "json" else versions_table(rows))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from classifiers.commands import run_evaluate

    settings = _settings(args)
    return run_evaluate(args, settings.model_dir)


def cmd_privacy(args: argparse.Namespace) -> int:
    from bot.privacy.commands import privacy

    return asyncio.run(privacy(_settings(args), args))


def cmd_rules_check(args: argparse.Namespace) -> int:
    from bot.pipeline.rules import load_rules

    if args.file:
        from bot import PROJECT_ROOT

        path = Path(args.file)
        templates = Path(args.templates or os.environ.get("RELAIS_TEMPLATES_DIR") or PROJECT_ROOT / "templates")
    else:
        settings = _settings(args)
        path, templates = settings.rules_file, Path(args.templates) if args.templates else settings.templates_dir
    rules = load_rules(path, templates)
    for warning in rules.warnings:
        print(warning, file=sys.stderr)
    print(f"{path}: OK, {len(rules.rules)} rules, {len(rules.experts)} experts, version {rules.version}")
    return 0


def cmd_rules_replay(args: argparse.Namespace) -> int:
    from bot.pipeline.replay import replay_command

    return asyncio.run(replay_command(_settings(args), Path(args.rules), args.since, args.format))


def cmd_users(args: argparse.Namespace) -> int:
    from bot.web import user_commands

    settings = _settings(args)
    if args.users_command == "add":
        return asyncio.run(user_commands.add_user(settings, args))
    if args.users_command == "list":
        return asyncio.run(user_commands.list_users(settings, args.format))
    return asyncio.run(user_commands.change_user(settings, args))


# --- parser ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relais",
        description="Relais: route social customer-care posts to the expert best placed to answer.",
    )
    parser.add_argument("--version", action="version", version=f"relais {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="a TOML config file (default: $RELAIS_CONFIG)")
    common.add_argument("--data-dir", type=Path, help="data folder (default: $RELAIS_DATA_DIR or ./data)")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", parents=[common], help="run everything on simulated pages, with a local mail catcher")
    p.add_argument("--port", type=int, default=8080, help="web port (default 8080)")
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS", help="stop after this long (default: until Ctrl-C)")
    p.add_argument("--speed", type=float, default=1.0, help="scripted stream speed factor (default 1)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("serve", parents=[common], help="run the web server, the worker and the pollers")
    p.add_argument("--host", default=None, help="listen address (default $RELAIS_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="listen port (default $RELAIS_PORT or 8080)")
    p.add_argument("--no-worker", action="store_true", help="web only; run workers apart with 'relais worker'")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", parents=[common], help="run a worker only (more can run beside it on PostgreSQL)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("db", help="database schema")
    dbsub = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = dbsub.add_parser("upgrade", parents=[common], help="apply the migrations (the server does it by itself on SQLite)")
    up.set_defaults(func=cmd_db_upgrade)

    p = sub.add_parser("channels", help="connected pages and accounts")
    csub = p.add_subparsers(dest="channels_command", required=True, metavar="ACTION")
    add = csub.add_parser("add", help="connect a Facebook Page, an Instagram account or an X account")
    asub = add.add_subparsers(dest="platform", required=True, metavar="PLATFORM")
    fb = asub.add_parser("facebook", parents=[common], help="a Facebook Page")
    fb.add_argument("--page-id", required=True)
    fb.add_argument("--name", required=True)
    fb.add_argument("--token", help="the Page access token (default $RELAIS_FB_PAGE_TOKEN)")
    fb.add_argument("--api-url", help="Graph API base URL for this page (default $RELAIS_FB_GRAPH_URL)")
    fb.add_argument("--poll-interval", type=float, default=None, metavar="SECONDS", help="reconcile interval (default $RELAIS_POLL_INTERVAL or 60)")
    ig = asub.add_parser("instagram", parents=[common], help="an Instagram professional account linked to a Page")
    ig.add_argument("--account-id", required=True, help="the Instagram user id (instagram_business_account of the Page)")
    ig.add_argument("--name", required=True)
    ig.add_argument("--token", help="the linked Page's access token (default $RELAIS_FB_PAGE_TOKEN)")
    ig.add_argument("--api-url", help="Graph API base URL for this account (default $RELAIS_FB_GRAPH_URL)")
    ig.add_argument("--poll-interval", type=float, default=None, metavar="SECONDS", help="reconcile interval (default $RELAIS_POLL_INTERVAL or 60)")
    x = asub.add_parser("x", parents=[common], help="an X account")
    x.add_argument("--user-id", required=True)
    x.add_argument("--name", required=True)
    for opt in ("bearer-token", "consumer-key", "consumer-secret", "access-token", "access-token-secret"):
        env = "RELAIS_X_" + opt.upper().replace("-", "_")
        x.add_argument(f"--{opt}", help=f"default ${env}")
    x.add_argument("--api-url", help="X API base URL for this account (default $RELAIS_X_API_URL)")
    x.add_argument("--poll-interval", type=float, default=None, metavar="SECONDS", help="mentions poll interval (default $RELAIS_POLL_INTERVAL or 60)")
    x.add_argument("--dms", action=argparse.BooleanOptionalAction, default=None, help="also read direct messages (OAuth 1.0a credentials and DM access needed); default: unchanged, off for a new account")
    promote = csub.add_parser("promote", help="mark a brand post as a promotion (replies to it are ad reactions)")
    psub = promote.add_subparsers(dest="platform", required=True, metavar="PLATFORM")
    px = psub.add_parser("x", parents=[common], help="a tweet of a connected X account")
    px.add_argument("--tweet-id", required=True)
    px.add_argument("--account", metavar="USER_ID", help="the account that posted it (needed when several X accounts are connected)")
    px.add_argument("--unset", action="store_true", help="the tweet is not a promotion after all")
    for platform, what in (("facebook", "a Facebook Page"), ("instagram", "an Instagram account")):
        pf = psub.add_parser(platform, parents=[common], help=f"a stored brand post of {what}")
        pf.add_argument("--post-id", required=True)
        pf.add_argument("--unset", action="store_true", help="the post is not a promotion after all")
    ls = csub.add_parser("list", parents=[common], help="list the connected channels (no secrets shown)")
    ls.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_channels)
    from bot.privacy.commands import add_parsers as add_privacy_parsers

    add_privacy_parsers(sub, common, csub).set_defaults(func=cmd_privacy)  # privacy erase|export|retention

    p = sub.add_parser("backfill", help="fetch past mentions once (the live poll cursor is left alone)")
    bsub = p.add_subparsers(dest="platform", required=True, metavar="PLATFORM")
    bx = bsub.add_parser("x", parents=[common], help="mentions of a connected X account")
    bx.add_argument("--account", required=True, metavar="USER_ID", help="the X user id given to 'channels add x'")
    bx.add_argument("--since", required=True, metavar="DATE", help="YYYY-MM-DD or an ISO date-time (without offset: $RELAIS_TIMEZONE)")
    bx.add_argument("--until", metavar="DATE", help="end, exclusive; a bare date includes that whole day (default: now)")
    bx.set_defaults(func=cmd_backfill)
    bf = bsub.add_parser("facebook", parents=[common], help="posts and comments of a connected Facebook Page")
    bf.add_argument("--page-id", required=True, help="the Page id given to 'channels add facebook'")
    bf.add_argument("--since", required=True, metavar="DATE", help="YYYY-MM-DD or an ISO date-time (without offset: $RELAIS_TIMEZONE)")
    bf.add_argument("--until", metavar="DATE", help="end, exclusive; a bare date includes that whole day (default: now)")
    bf.set_defaults(func=cmd_backfill_facebook)

    p = sub.add_parser("items", parents=[common], help="list stored items with their label, assignee and response time")
    p.add_argument("--format", choices=("table", "json", "jsonl"), default="table", help="jsonl: the import format")
    p.add_argument("--limit", type=int, default=None)
    p.set_defaults(func=cmd_items)

    p = sub.add_parser("import", parents=[common], help="load historical items from a JSONL file (docs/import-format.md)")
    p.add_argument("file", type=Path)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("kpi", parents=[common], help="response-time KPIs of the items created in a period (docs/kpis.md)")
    p.add_argument("--from", dest="from_", required=True, metavar="DATE", help="YYYY-MM-DD (midnight in $RELAIS_TIMEZONE) or an ISO date-time")
    p.add_argument("--to", required=True, metavar="DATE", help="a bare date includes that whole day")
    p.add_argument("--by", choices=("expert", "team", "category", "platform", "page", "language"))
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.set_defaults(func=cmd_kpi)

    p = sub.add_parser("digest", parents=[common], help="the weekly KPI digest email (docs/kpis.md)")
    p.add_argument("--week", required=True, metavar="YYYY-Www", help="an ISO week such as 2026-W47")
    p.add_argument("--out", type=Path, help="write the HTML (charts inline) to this file")
    p.add_argument("--send", action="store_true", help="send it to the recipients of the KPI file, once per week")
    p.add_argument("--language", choices=("fr", "en"), help="default: the KPI file's digest.language")
    p.set_defaults(func=cmd_digest)

    p = sub.add_parser("classify", parents=[common], help="classify texts; one JSON line per text")
    p.add_argument("text", nargs="*", help="texts (default: one per line on standard input)")
    p.add_argument("--platform", default="facebook")
    p.add_argument("--kind", default="comment")
    p.add_argument("--parent-is-ad", action="store_true", help="the text answers an ad or promotion")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("train", parents=[common], help="retrain the classifier on the seed set plus every human label; keep it only if not worse")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("model", help="saved classifier versions")
    msub = p.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    ml = msub.add_parser("list", parents=[common], help="versions, dates, held-out metrics; * marks the current one")
    ml.add_argument("--format", choices=("table", "json"), default="table")
    ml.set_defaults(func=cmd_model)
    mu = msub.add_parser("use", parents=[common], help="make VERSION the current model (rollback)")
    mu.add_argument("version")
    mu.set_defaults(func=cmd_model)

    p = sub.add_parser("evaluate", parents=[common], help="score the classifier on a labelled CSV (or cross-validate on it)")
    p.add_argument("--data", type=Path, required=True, help="CSV with text,label[,language,platform,kind,parent_is_ad] columns, or the ACL 2019 complaints file (no header: id,text,1/0,domain)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--cv", type=int, default=None, metavar="FOLDS", help="retrain inside FOLDS-fold stratified cross-validation on the file instead")
    p.add_argument("--binary", metavar="LABEL", help="score LABEL against the rest (e.g. complaint)")
    p.add_argument("--transfer", action="store_true", help="the current model on the file's brand-directed rows (domain not random_tweet/random_reply), complaint vs not")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("rules", help="routing rules")
    rsub = p.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    chk = rsub.add_parser("check", parents=[common], help="validate a rules file (default: the configured one)")
    chk.add_argument("file", nargs="?")
    chk.add_argument("--templates", metavar="DIR", help="where the reply templates the rules name are (default: $RELAIS_TEMPLATES_DIR or templates/)")
    chk.set_defaults(func=cmd_rules_check)
    rep = rsub.add_parser("replay", parents=[common], help="replay stored items through a candidate rules file: what would move")
    rep.add_argument("--rules", required=True, metavar="NEW.yaml", help="the candidate rules file")
    rep.add_argument("--since", metavar="DATE", help="only items posted on or after this day (YYYY-MM-DD, midnight in $RELAIS_TIMEZONE) or an ISO date-time")
    rep.add_argument("--format", choices=("table", "json"), default="table")
    rep.set_defaults(func=cmd_rules_replay)

    from bot.web.roles import LANGUAGES, ROLES

    p = sub.add_parser("users", help="people who log in to the web UI (docs/ui.md)")
    usub = p.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    ua = usub.add_parser("add", parents=[common], help="add a user (the password is asked twice, or read from stdin)")
    ua.add_argument("email")
    ua.add_argument("--role", required=True, choices=ROLES, help="manager: read-only dashboards; admin: everything")
    ua.add_argument("--name", default="", help="shown in the UI (default: the part of the email before @)")
    ua.add_argument("--language", choices=LANGUAGES, help="UI language (default $RELAIS_UI_LANGUAGE or fr)")
    ua.add_argument("--expert", metavar="EXPERT_EMAIL", help="the expert of the rules file this person is")
    ua.add_argument("--password-stdin", action="store_true", help="read the password from the first line of standard input")
    ul = usub.add_parser("list", parents=[common], help="list the users (no password hashes)")
    ul.add_argument("--format", choices=("table", "json"), default="table")
    for action, text in (("disable", "stop a user from logging in and end their sessions"),
                         ("enable", "let a disabled user log in again"),
                         ("password", "set a new password (ends the user's sessions)")):
        uc = usub.add_parser(action, parents=[common], help=text)
        uc.add_argument("email")
        if action == "password":
            uc.add_argument("--password-stdin", action="store_true", help="read the password from the first line of standard input")
    p.set_defaults(func=cmd_users)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log_format = os.environ.get("RELAIS_LOG_FORMAT") or "text"  # before the settings: their errors are logged
    if log_format not in ("text", "json"):
        print(f"relais: configuration error: RELAIS_LOG_FORMAT must be text or json, got {log_format!r}", file=sys.stderr)
        return 2
    logs.setup(logging.DEBUG if args.verbose else logging.INFO, log_format)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"relais: configuration error: {exc}", file=sys.stderr)
        return 2
    except RulesError as exc:
        print(f"relais: invalid routing rules:\n{exc}", file=sys.stderr)
        return 2
    except RelaisError as exc:
        print(f"relais: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `relais items | head`: the reader left, which is fine
        sys.stderr.close()
        return 0
