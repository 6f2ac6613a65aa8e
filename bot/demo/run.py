"""``relais demo``: the whole pipeline in one process, on simulated pages.

Starts a mail catcher, fake Graph and X API servers on loopback, the Relais
server (web, worker, pollers) on SQLite, a scripted stream of posts, and
scripted experts that answer by the reply page. Everything talks over real
sockets with the real facebook-sdk, tweepy and SMTP clients.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import signal
import sys
import time
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import func, select

from bot import logs
from bot.app import SERVICES, create_app
from bot.channels.simulated.graph_api import FakeGraphAPI
from bot.channels.simulated.x_api import FakeXAPI
from bot.demo.experts import run_experts
from bot.demo.login import demo_login
from bot.demo.mailcatcher import MailCatcher
from bot.demo.script import ALT_AUTHORS, BRAND_POSTS, SCENES, Scene
from bot.services import Services
from bot.settings import Secret, Settings, ensure_secret_key, load_settings
from bot.store.models import Channel, Item, KpiEvent

log = logging.getLogger("relais.demo")

PAGE_NAME = "Boulangerie Dorée"
X_USERNAME = "boulangeriedoree"


def _clean(text: str, width: int = 60) -> str:
    """One printable line of hostile text for the console."""
    flat = "".join(c if c.isprintable() else " " for c in text)
    return flat if len(flat) <= width else flat[: width - 1] + "…"


async def _serve(app: web.Application, port: int = 0) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    sockets = site._server.sockets if site._server else []  # noqa: SLF001 - the bound port
    return runner, int(sockets[0].getsockname()[1]) if port == 0 else port


def demo_settings(args: argparse.Namespace) -> Settings:
    """The user's settings (RELAIS_* and --data-dir), pointed at the demo's local servers."""
    settings = load_settings(config_file=args.config, data_dir=args.data_dir)
    settings = replace(
        settings,
        port=args.port,
        host="127.0.0.1",
        base_url=f"http://127.0.0.1:{args.port}",
        fb_app_secret=settings.fb_app_secret or Secret(secrets.token_hex(16)),
        fb_verify_token=settings.fb_verify_token or Secret(secrets.token_hex(8)),
    )
    return ensure_secret_key(settings)


async def _register_channels(services: Services, page_id: str, graph_url: str, x_id: str, x_url: str, tokens: dict[str, str]) -> dict[str, int]:
    ids = {}
    async with services.sessions.begin() as session:
        for platform, external_id, name, url, creds, interval in (
            ("facebook", page_id, PAGE_NAME, graph_url, {"page_token": tokens["fb"]}, 5.0),
            ("x", x_id, f"@{X_USERNAME}", x_url, {"bearer_token": tokens["x"], "access_token": tokens["x"], "consumer_key": "demo", "consumer_secret": "demo", "access_token_secret": "demo"}, 2.0),
        ):
            ch = await session.scalar(select(Channel).where(Channel.platform == platform, Channel.external_id == external_id))
            ch = ch or Channel(platform=platform, external_id=external_id)
            ch.name, ch.api_url, ch.credentials, ch.credentials_ref = name, url, creds, "db"
            ch.poll_interval_s, ch.status, ch.cursor = interval, "active", {}
            session.add(ch)
            await session.flush()
            ids[platform] = ch.id
    return ids


class Console:
    """Prints what happens to each item, in plain words."""

    def __init__(self, services: Services, started: float) -> None:
        self.services, self.started = services, started

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        t = time.monotonic() - self.started
        if event == "item.classified":
            review = " (needs review)" if data.get("needs_review") else ""
            line = f"item {data['item_id']} classified {data['label']} {float(data['confidence']):.2f}{review}"  # type: ignore[arg-type]
        elif event == "item.routed":
            line = f"item {data['item_id']} routed to {data['expert']} by rule {_clean(str(data['rule']), 40)!r}"
        elif event == "item.notified":
            line = f"item {data['item_id']} notification queued for {data['expert']}"
        elif event == "email.sent":
            line = f"email {data['email_id']} delivered to {data['to']}"
        elif event == "item.answered":
            line = f"item {data['item_id']} answered on the platform"
        else:
            line = f"{event} {data}"
        print(f"[{t:6.1f}s] {line}", flush=True)


async def _stream(graph: FakeGraphAPI, x: FakeXAPI, page_id: str, x_id: str, posts: dict[str, str], stop: asyncio.Event, gap_s: float) -> None:
    """Play the scenes, one every ``gap_s`` seconds, looping with new authors."""
    round_no = 0
    while not stop.is_set():
        for number, scene in enumerate(SCENES):
            if stop.is_set():
                return
            author = scene.author if round_no == 0 else f"{ALT_AUTHORS[(number + round_no) % len(ALT_AUTHORS)]} {scene.author.split()[-1]}"
            _play(graph, x, page_id, x_id, posts, scene, author, round_no * 100 + number)
            await graph.deliver_pending()
            print(f"[stream] {scene.platform:<13} {_clean(author, 18):<18} {_clean(scene.text)}", flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), gap_s)
        round_no += 1


def _play(graph: FakeGraphAPI, x: FakeXAPI, page_id: str, x_id: str, posts: dict[str, str], scene: Scene, author: str, n: int) -> None:
    if scene.platform == "facebook":
        graph.user_comment(posts[scene.on or "gateau"], author, scene.text)
    elif scene.platform == "facebook_post":
        graph.user_post(page_id, author, scene.text)
    else:
        handle = author.lower().replace(" ", "_")
        x.add_mention(x_id, str(5_000_000 + n), handle, author, scene.text, followers=120 + 37 * n)


def _answer_filter(message: EmailMessage) -> bool:
    body = message.get_body(("plain",))
    text = body.get_content() if body else ""
    return not any(scene.text[:40] in text for scene in SCENES if not scene.answer)


async def _summary(services: Services) -> None:
    async with services.sessions() as session:
        by_status = dict((await session.execute(select(Item.status, func.count()).where(Item.is_brand_post.is_(False)).group_by(Item.status))).all())
        answered = (await session.scalars(select(KpiEvent.seconds).where(KpiEvent.name == "first_response_s").order_by(KpiEvent.seconds))).all()
    print("\n=== Relais demo summary ===")
    print("items by status: " + ", ".join(f"{k}={v}" for k, v in sorted(by_status.items())))
    if answered:
        median = answered[len(answered) // 2]
        print(f"first response time: {len(answered)} answered, median {median:.1f} s, max {answered[-1]:.1f} s")
    print("see every item: relais items --format json" + (f" --data-dir {services.settings.data_dir}" if services.settings.data_dir != Path.cwd() / "data" else ""))


def _masked(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


async def run_demo(args: argparse.Namespace) -> int:
    settings = demo_settings(args)
    logs.hide_settings(settings)  # its secrets (app secret, keys, passwords) never reach a log line
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    catcher = MailCatcher()
    smtp_port = await catcher.start()
    stamp = int(time.time())
    page_id, x_id = f"10{stamp}", f"20{stamp}"
    tokens = {"fb": "demo-page-" + secrets.token_hex(8), "x": "demo-x-" + secrets.token_hex(8)}
    logs.hide(*tokens.values())
    # ids that differ from one run to the next, so a reused database never confuses two runs
    graph = FakeGraphAPI(webhook_url=f"{settings.base_url}/webhooks/facebook", app_secret=settings.fb_app_secret.reveal(), first_id=stamp * 1000)
    graph.add_page(page_id, PAGE_NAME, tokens["fb"])
    x = FakeXAPI(first_id=stamp * 10**9)
    x.add_account(x_id, X_USERNAME, tokens["x"], name=PAGE_NAME)
    posts = {key: graph.publish_post(page_id, text, promoted=promoted) for key, text, promoted in BRAND_POSTS}
    graph_runner, graph_port = await _serve(graph.app)
    x_runner, x_port = await _serve(x.app)
    graph_url, x_url = f"http://127.0.0.1:{graph_port}", f"http://127.0.0.1:{x_port}"
    settings = replace(settings, smtp_url=f"smtp://127.0.0.1:{smtp_port}")

    def demo_routes(app: web.Application, services: Services) -> None:
        app.router.add_routes(catcher.mailbox_routes("/demo/mail"))

    app = create_app(settings, extra_routes=demo_routes)
    started = time.monotonic()
    login: dict[str, str] = {}

    async def setup(app: web.Application) -> None:
        services = app[SERVICES]
        await _register_channels(services, page_id, graph_url, x_id, x_url, tokens)
        services.listeners.append(Console(services, started))
        login["email"], login["password"] = await demo_login(services)

    app.on_startup.append(setup)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", settings.port).start()
    except OSError as exc:
        print(f"relais demo: cannot listen on 127.0.0.1:{settings.port} ({exc.strerror}); try --port", file=sys.stderr)
        await runner.cleanup()
        return 2
    services = app[SERVICES]
    print(
        f"""
Relais demo is running (database {_masked(settings.database_url)})
  caught emails (open one, follow its link, reply): {settings.base_url}/demo/mail
  the simulated Facebook Page:  {graph_url}/__page/{page_id}
  the simulated X account:      {x_url}/__account/{x_id}
  health:                       {settings.base_url}/healthz
  triage UI:                    {settings.base_url}/login
    log in as {login["email"]} with the password {login["password"]}
Scripted experts answer most items after a few seconds. Ctrl-C stops.
""",
        flush=True,
    )
    speed = max(0.1, getattr(args, "speed", 1.0))
    tasks = [
        asyncio.create_task(_stream(graph, x, page_id, x_id, posts, stop, 3.0 / speed)),
        asyncio.create_task(run_experts(catcher, _answer_filter, stop, delay_s=4.0 / speed)),
    ]
    try:
        if args.duration:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.duration)
        else:
            await stop.wait()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await _summary(services)
        await runner.cleanup()
        await graph_runner.cleanup()
        await x_runner.cleanup()
        await catcher.stop()
    return 0
