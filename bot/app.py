"""``create_app(settings)``: the web server, the worker and the poll scheduler, in one process.

Everything with a lifetime (database engine, classifier, channel adapters, the
worker and scheduler tasks) starts and stops in ``cleanup_ctx``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from bot.ingest.poller import schedule_polls
from bot.ingest.webhooks import facebook_routes
from bot.pipeline.flow import handlers
from bot.pipeline.worker import Worker
from bot.services import Services, open_services
from bot.settings import Settings
from bot.web.health import health_routes
from bot.web.reply import reply_routes

log = logging.getLogger(__name__)

SERVICES = web.AppKey("services", Services)
WORKER = web.AppKey("worker", Worker)

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "frame-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@web.middleware
async def security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update({k: v for k, v in SECURITY_HEADERS.items() if k not in exc.headers})
        raise
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
    return response


async def _index(request: web.Request) -> web.Response:
    return web.Response(
        text="Relais is running. Health: /healthz\n", content_type="text/plain"
    )


def create_app(
    settings: Settings,
    *,
    run_worker: bool = True,
    run_scheduler: bool = True,
    extra_routes: Callable[[web.Application, Services], None] | None = None,
) -> web.Application:
    """The application for ``settings``; routes are added once the services are up."""
    app = web.Application(
        middlewares=[security_headers], client_max_size=settings.webhook_max_bytes
    )

    async def services_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_services(settings) as services:
            app[SERVICES] = services
            worker = Worker(services.sessions, handlers(services), concurrency=settings.worker_concurrency)
            services.wake = worker.wake
            app[WORKER] = worker
            yield

    async def background_ctx(app: web.Application) -> AsyncIterator[None]:
        services, worker = app[SERVICES], app[WORKER]
        stop = asyncio.Event()
        tasks = []
        if run_worker:
            tasks.append(asyncio.create_task(worker.run(), name="relais-worker"))
        if run_scheduler:
            tasks.append(asyncio.create_task(schedule_polls(services, stop), name="relais-polls"))
        yield
        stop.set()
        worker.stop()
        for task in tasks:
            try:
                await asyncio.wait_for(task, timeout=10)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app.cleanup_ctx.append(services_ctx)
    app.cleanup_ctx.append(background_ctx)
    async def add_routes(app: web.Application) -> None:
        _add_routes(app, extra_routes)

    app.on_startup.append(add_routes)
    return app


def _add_routes(
    app: web.Application, extra: Callable[[web.Application, Services], None] | None
) -> None:
    services = app[SERVICES]
    app.router.add_routes(health_routes(services))
    app.router.add_routes(facebook_routes(services))
    app.router.add_routes(reply_routes(services))
    app.router.add_static("/static", services.settings.templates_dir / "web" / "static")
    app.router.add_get("/", _index)
    if extra:
        extra(app, services)
