"""The order of the stages, in one place.

    webhook / poll ─► ingest_delivery / poll_channel ─► store_items
        ─► classify ─► route ─► notify ─► send_email
                                  └─► sla_check (reminders at 50 % and 75 % of the
                                      target, escalation at 100 %) ─► send_email
        (the expert answers on the reply page)
        ─► respond ─► KPI events

    beside it, once a day per Facebook Page / Instagram account:
        token_check ─► (token dead or expiring) community-manager alert ─► send_email

Each job kind maps to the plain async function that does the stage's work.
"""

from __future__ import annotations

from typing import Any

from bot.ingest.poller import poll_channel, token_check
from bot.ingest.webhooks import ingest_delivery
from bot.notify.outbox import notify_expert, send_email, sla_check
from bot.pipeline.classify import classify_item
from bot.pipeline.respond import respond
from bot.pipeline.route import route_item
from bot.pipeline.worker import Handler
from bot.services import Services


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

    async def mail(p: dict[str, Any]) -> None:
        await send_email(services, p["email_id"])

    async def reply(p: dict[str, Any]) -> None:
        await respond(services, p["response_id"])

    return {
        "ingest_delivery": ingest,
        "poll_channel": poll,
        "token_check": check_token,
        "classify": classify,
        "route": route,
        "notify": notify,
        "send_email": mail,
        "sla_check": sla,
        "respond": reply,
    }
