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

Each job kind maps to the plain async function that does the stage's work.
"""

from __future__ import annotations

from typing import Any

from bot import logs
from bot.ingest.poller import poll_channel, token_check
from bot.ingest.webhooks import ingest_delivery
from bot.kpi.crisis import crisis_check
from bot.kpi.digest import digest_job
from bot.notify.outbox import notify_expert, notify_fyi, send_email, sla_check
from bot.pipeline.classify import classify_item
from bot.pipeline.respond import respond
from bot.pipeline.route import route_item
from bot.pipeline.worker import Handler
from bot.privacy.retention import retention_job
from bot.services import Services
from bot.triage.moderation import hide_item


def handlers(services: Services) -> dict[str, Handler]:
    async def ingest(p: dict[str, Any]) -> None:
        await ingest_delivery(services, p["delivery_id"])

    async def poll(p: dict[str, Any]) -> None:
        await poll_channel(services, p["channel_id"])

    async def check_token(p: dict[str, Any]) -> None:
        await token_check(services, p["channel_id"])

    async def classify(p: dict[str, Any]) -> None:
        await classify_item(services, p["item_id"], relabel_only=p.get("relabel_only", False))

    async def route(p: dict[str, Any]) -> None:
        await route_item(services, p["item_id"])

    async def notify(p: dict[str, Any]) -> None:
        await notify_expert(services, p["assignment_id"])

    async def sla(p: dict[str, Any]) -> None:
        await sla_check(services, p["assignment_id"], p["step"])

    async def fyi(p: dict[str, Any]) -> None:
        await notify_fyi(services, p["assignment_id"], p["to"])

    async def mail(p: dict[str, Any]) -> None:
        await send_email(services, p["email_id"])

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
        "ingest_delivery": ingest,
        "poll_channel": poll,
        "token_check": check_token,
        "classify": classify,
        "route": route,
        "notify": notify,
        "send_email": mail,
        "sla_check": sla,
        "notify_fyi": fyi,
        "respond": reply,
        "digest": digest,
        "crisis_check": crisis,
        "hide_item": hide,
        "retention": retention,
    })
