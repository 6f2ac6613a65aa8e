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
from bot.ingest.webhooks import DeliveryWriter, facebook_routes
from bot.pipeline.flow import handlers
from bot.pipeline.rules_reload import watch_rules
from bot.pipeline.worker import SHUTDOWN_GRACE_S, Worker
from bot.services import Services, open_services
from bot.settings import Settings
from bot.web.auth import auth_middleware, auth_routes
from bot.web.health import health_routes
from bot.web.metrics import metrics_middleware, metrics_routes
from bot.web.reply import reply_routes
from bot.web.triage import close_streams, triage_routes

log = logging.getLogger(__name__)

SERVICES = web.AppKey("services", Services)
WORKER = web.AppKey("worker", Worker)
DELIVERY_WRITER = web.AppKey("delivery_writer", DeliveryWriter)

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
    except Exception:  # a bug: logged here, so that even this answer carries the headers
        log.exception("error handling %s %s", request.method, request.path)
        response = web.Response(status=500, text="500: internal server error\n")
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
    return response


def create_app(
    settings: Settings,
    *,
    run_worker: bool = True,
    run_scheduler: bool = True,
    extra_routes: Callable[[web.Application, Services], None] | None = None,
) -> web.Application:
    """The application for ``settings``; routes are added once the services are up."""
    app = web.Application(
        middlewares=[metrics_middleware, security_headers], client_max_size=settings.webhook_max_bytes
    )

    async def services_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_services(settings) as services:
            app[SERVICES] = services
            worker = Worker(
                services.sessions, handlers(services), concurrency=settings.worker_concurrency,
                lease_s=settings.worker_lease_s, batch_limit=settings.worker_batch,
            )
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
        tasks.append(asyncio.create_task(watch_rules(services, stop), name="relais-rules-reload"))
        yield
        stop.set()
        worker.stop()
        for task in tasks:
            try:
                await asyncio.wait_for(task, timeout=SHUTDOWN_GRACE_S)  # then cancelled: unfinished jobs released
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
        app[DELIVERY_WRITER] = writer = DeliveryWriter(app[SERVICES])
        yield
        await writer.close()

    app.cleanup_ctx.append(services_ctx)
    app.cleanup_ctx.append(webhooks_ctx)
    app.cleanup_ctx.append(background_ctx)
    async def add_routes(app: web.Application) -> None:
        _add_routes(app, extra_routes)

    app.on_startup.append(add_routes)
    app.on_shutdown.append(close_streams)  # end the live-update streams before the server waits for them
    return app


def _add_routes(
    app: web.Application, extra: Callable[[web.Application, Services], None] | None
) -> None:
    services = app[SERVICES]
    app.middlewares.append(auth_middleware(services))  # after security_headers: its refusals get them too
    app.router.add_routes(auth_routes(services))
    app.router.add_routes(health_routes(services))
    app.router.add_routes(metrics_routes(services))
    app.router.add_routes(facebook_routes(services, app[DELIVERY_WRITER]))
    app.router.add_routes(reply_routes(services))
    app.router.add_static("/static", services.settings.templates_dir / "web" / "static")
    app.router.add_routes(triage_routes(services))  # /ui/... and "/" -> /ui/
    if extra:
        extra(app, services)
