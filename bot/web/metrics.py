"""``GET /metrics``: Prometheus text format, for a bearer token or an admin session.

Two kinds of figures:

* counted by this process since it started (prometheus-client counters and
  histograms in :data:`REGISTRY`): HTTP and webhook latency, webhook deliveries
  by answer, job failures, SMTP and platform errors. Each process counts its
  own: scrape every web process (docs/operations.md).
* read from the database at each scrape, the same from any process: items per
  pipeline status, jobs per kind and status, the age of the oldest due job
  (queue lag), deliveries not yet read, channels per status.

Access: ``Authorization: Bearer <RELAIS_METRICS_TOKEN>``, or a logged-in admin.
Without a token configured, only admins can read it.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select

from bot.services import Services
from bot.store.models import Channel, Delivery, Item, Job, utcnow

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_SECONDS = Histogram(
    "relais_http_request_seconds", "Time to answer an HTTP request, by route.",
    ["route", "method", "status"], registry=REGISTRY,
)
WEBHOOK_SECONDS = Histogram(
    "relais_webhook_seconds", "Time from a webhook request to its answer (a 200 means stored).",
    ["platform"], registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
WEBHOOK_DELIVERIES = Counter(
    "relais_webhook_deliveries", "Webhook POSTs by HTTP status (200 stored, 400 unreadable, "
    "403 bad signature, 413 too large).", ["platform", "status"], registry=REGISTRY,
)
JOB_FAILURES = Counter(
    "relais_job_failures", "Failed job attempts, by job kind and error type.",
    ["kind", "error"], registry=REGISTRY,
)
PLATFORM_ERRORS = Counter(
    "relais_platform_errors", "Facebook, Instagram and X errors (RateLimited, Transient, TokenInvalid, "
    "ReplyRejected), by the job kind that met them.", ["kind", "error"], registry=REGISTRY,
)
SMTP_ERRORS = Counter(
    "relais_smtp_errors", "SMTP failures (SmtpUnavailable: retried; SmtpRejected: permanent).",
    ["error"], registry=REGISTRY,
)


def job_failed(kind: str, exc: BaseException) -> None:
    """Count a failed job attempt (the worker calls this), and the platform or SMTP error under it."""
    from bot.errors import ChannelError
    from bot.notify.smtp import SmtpError

    causes = [exc, exc.__cause__] if exc.__cause__ is not None else [exc]
    JOB_FAILURES.labels(kind, type(exc).__name__).inc()
    for cause in causes:
        if isinstance(cause, ChannelError):
            PLATFORM_ERRORS.labels(kind, type(cause).__name__).inc()
            break
        if isinstance(cause, SmtpError):
            SMTP_ERRORS.labels(type(cause).__name__).inc()
            break


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Time every request (by route pattern, never by raw path: the label set stays small)."""
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - start
        key = (_route(request), request.method, status)
        observers = _OBSERVERS.get(key)
        for observe in _observers(*key) if observers is None else observers:
            observe(elapsed)


#: (route, method, status) -> what to record for a request: prometheus-client's ``labels()``
#: takes a lock and builds a key at each call, so each combination is looked up once.
_OBSERVERS: dict[tuple[str, str, int], list[Callable[[float], None]]] = {}


def _observers(route: str, method: str, status: int) -> list[Callable[[float], None]]:
    observers: list[Callable[[float], None]] = []
    if not route.startswith("/ui/events"):  # a live stream lasts minutes: not a latency
        observers.append(HTTP_SECONDS.labels(route, method, str(status)).observe)
    if route.startswith("/webhooks/") and method == "POST":
        platform = route.removeprefix("/webhooks/").split("/")[0]
        delivered = WEBHOOK_DELIVERIES.labels(platform, str(status))
        observers += [WEBHOOK_SECONDS.labels(platform).observe, lambda _elapsed: delivered.inc()]
    if len(_OBSERVERS) < 10_000:  # routes are patterns and statuses few; a bound all the same
        _OBSERVERS[(route, method, status)] = observers
    return observers


async def database_metrics(services: Services) -> list[Metric]:
    """Figures read from the database: the same whichever process answers."""
    now = utcnow()
    async with services.sessions() as session:
        items = (await session.execute(select(Item.status, func.count()).group_by(Item.status))).all()
        jobs = (await session.execute(select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status))).all()
        oldest = (await session.execute(
            select(Job.kind, func.min(Job.run_at)).where(Job.status == "queued", Job.run_at <= now).group_by(Job.kind)
        )).all()
        unread = await session.scalar(select(func.count()).select_from(Delivery).where(Delivery.processed_at.is_(None)))
        channels = (await session.execute(
            select(Channel.platform, Channel.status, func.count()).group_by(Channel.platform, Channel.status)
        )).all()
    families: list[Metric] = []
    g = GaugeMetricFamily("relais_items", "Stored items by pipeline status.", labels=["status"])
    for status, count in items:
        g.add_metric([status], count)
    families.append(g)
    g = GaugeMetricFamily("relais_jobs", "Jobs by kind and status (queued = queue depth, dead = parked).",
                          labels=["kind", "status"])
    for kind, status, count in jobs:
        g.add_metric([kind, status], count)
    families.append(g)
    g = GaugeMetricFamily("relais_queue_oldest_due_seconds", "Age of the oldest due queued job, by kind "
                          "(queue lag; absent when nothing is due).", labels=["kind"])
    for kind, run_at in oldest:
        g.add_metric([kind], max(0.0, (now - run_at).total_seconds()))
    families.append(g)
    families.append(GaugeMetricFamily("relais_deliveries_unread", "Stored webhook deliveries not yet read.",
                                      value=int(unread or 0)))
    g = GaugeMetricFamily("relais_channels", "Channels by platform and status (active, paused, token_invalid).",
                          labels=["platform", "status"])
    for platform, status, count in channels:
        g.add_metric([platform, status], count)
    families.append(g)
    return families


class _Fixed:
    """A collector that yields metrics already read (the database ones, read asynchronously)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def _token_ok(request: web.Request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    if not token or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header.removeprefix("Bearer ").strip().encode("utf-8", "replace"), token.encode())


def _is_admin(request: web.Request) -> bool:
    try:
        from bot.web.auth import current_user
    except ImportError:  # pragma: no cover - the UI is part of the package
        return False
    user = current_user(request)
    return user is not None and user.role == "admin"


def metrics_routes(services: Services) -> list[web.RouteDef]:
    token = services.settings.metrics_token.reveal()

    async def metrics(request: web.Request) -> web.Response:
        if not (_token_ok(request, token) or _is_admin(request)):
            return web.Response(
                status=401, text="metrics need Authorization: Bearer <RELAIS_METRICS_TOKEN> or an admin session\n",
                headers={"WWW-Authenticate": 'Bearer realm="relais-metrics"'},
            )
        scrape = CollectorRegistry(auto_describe=False)
        try:
            scrape.register(_Fixed(await database_metrics(services)))  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - the process figures are still worth serving
            log.warning("metrics: database figures unavailable: %r", exc)
        body = generate_latest(REGISTRY) + generate_latest(scrape)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return [web.get("/metrics", metrics)]
