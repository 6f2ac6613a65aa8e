"""The order of the stages, in one place.

    webhook / poll ─► ingest_delivery / poll_channel ─► store_items
        ─► classify ─► route ─► notify ─► send_email
                                  └─► sla_check (reminders at 50 % and 75 % of the
                                      target, escalation at 100 %) ─► send_email
        (the expert answers on the reply page)
        ─► respond ─► KPI events

    beside it, once a day per Facebook Page / Instagram account:
        token_check ─► (token dead or expiring) community-manager alert ─► send_email

    and, from the KPI file (bot.kpi.jobs): digest once a week ─► send_email;
        crisis_check once a minute ─► (incident) community-manager alert ─► send_email

    and, from the triage UI (bot.triage.actions) or a rule's ``hide``: hide_item ─► platform;
        the UI's replies take the reply page's path: responses row ─► respond

Each job kind maps to the plain async function that does the stage's work. The stages an
item goes through on its way to the expert take many items per call (``BatchHandler``): a
worker that claims several jobs of such a kind runs them as one batch, and a job carries
a list of ids (``{"item_ids": [...]}``), so a delivery of 100 comments costs a few
statements per stage, not a few per comment. A batch that fails is run again job by job,
and a job of many ids that fails is split into one job per id, so one bad item never
holds back the others and ends up alone in the dead letters.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from bot import logs
from bot.ingest.poller import poll_channel, token_check
from bot.ingest.webhooks import ingest_deliveries
from bot.kpi.crisis import crisis_check
from bot.kpi.digest import digest_job
from bot.notify.outbox import notify_experts, notify_fyi, send_emails, sla_check
from bot.pipeline import queue
from bot.pipeline.classify import classify_items
from bot.pipeline.respond import respond
from bot.pipeline.route import route_items
from bot.pipeline.worker import BatchHandler, Handler
from bot.privacy.retention import retention_job
from bot.services import Services
from bot.triage.moderation import hide_item


log = logging.getLogger(__name__)


def payload_ids(payloads: Iterable[Mapping[str, Any]], key: str = "item_id") -> list[int]:
    """The ids named by job payloads, ``{"item_ids": [...]}`` or the older ``{"item_id": N}``,
    in order, each once."""
    ids: list[int] = []
    for payload in payloads:
        many = payload.get(key + "s")
        ids += [int(i) for i in many] if isinstance(many, list) else [int(payload[key])] if key in payload else []
    return list(dict.fromkeys(ids))


def _split_on_failure(
    services: Services, kind: str, key: str, stage: Callable[[list[int]], Awaitable[None]], extra: dict[str, Any] | None = None
) -> Callable[[list[dict[str, Any]]], Awaitable[None]]:
    """``stage`` on the ids the payloads name, together. If that fails: for several jobs, the
    error is raised, and the worker runs each job alone (``BatchHandler``); for one job of
    several ids, one job per id is queued instead (each then retried, and dead-lettered, on
    its own); for one id, the failure is the job's."""

    async def run(payloads: list[dict[str, Any]]) -> None:
        ids = payload_ids(payloads, key)
        if not ids:
            return
        try:
            await stage(ids)
        except Exception as exc:
            if len(payloads) > 1 or len(ids) < 2:
                raise
            log.warning("%s of %d ids failed (%r): queued one job per id", kind, len(ids), exc)
            async with services.sessions.begin() as session:
                await queue.enqueue_many(session, [(kind, {key + "s": [one], **(extra or {})}, None, None, 8) for one in ids])
            services.wake()

    return run


def handlers(services: Services) -> dict[str, Handler]:
    async def ingest(payloads: list[dict[str, Any]]) -> None:
        await ingest_deliveries(services, payload_ids(payloads, "delivery_id"))

    async def classify(payloads: list[dict[str, Any]]) -> None:
        for relabel in (False, True):
            group = [p for p in payloads if bool(p.get("relabel_only")) == relabel]
            if group:
                stage = _split_on_failure(services, "classify", "item_id",
                                          lambda i, r=relabel: classify_items(services, i, relabel_only=r),
                                          {"relabel_only": True} if relabel else None)
                await stage(group)

    route = _split_on_failure(services, "route", "item_id", lambda i: route_items(services, i))
    notify = _split_on_failure(services, "notify", "assignment_id", lambda i: notify_experts(services, i))

    async def mail(payloads: list[dict[str, Any]]) -> None:
        await send_emails(services, payload_ids(payloads, "email_id"))

    async def poll(p: dict[str, Any]) -> None:
        await poll_channel(services, p["channel_id"])

    async def check_token(p: dict[str, Any]) -> None:
        await token_check(services, p["channel_id"])

    async def sla(p: dict[str, Any]) -> None:
        await sla_check(services, p["assignment_id"], p["step"])

    async def fyi(p: dict[str, Any]) -> None:
        await notify_fyi(services, p["assignment_id"], p["to"])

    async def reply(p: dict[str, Any]) -> None:
        await respond(services, p["response_id"])

    async def digest(p: dict[str, Any]) -> None:
        await digest_job(services, p["week"])

    async def crisis(p: dict[str, Any]) -> None:
        await crisis_check(services)

    async def hide(p: dict[str, Any]) -> None:
        await hide_item(services, p["item_id"], p.get("hidden", True))

    async def retention(p: dict[str, Any]) -> None:
        await retention_job(services)

    return logs.with_job_context({  # every log line of a job names its kind and ids
        "ingest_delivery": BatchHandler(ingest),
        "poll_channel": poll,
        "token_check": check_token,
        "classify": BatchHandler(classify),
        "route": BatchHandler(route),
        "notify": BatchHandler(notify),
        "send_email": BatchHandler(mail),
        "sla_check": sla,
        "notify_fyi": fyi,
        "respond": reply,
        "digest": digest,
        "crisis_check": crisis,
        "hide_item": hide,
        "retention": retention,
    })
