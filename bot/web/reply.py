"""The expert's one-click reply page, reached from the notification email.

No login: the signed link is the key (see :mod:`bot.notify.links`). Tampered,
expired and used links get a clear page in the expert's language, never a
stack trace. Sending stores the reply as ``pending`` with its ``respond`` job;
the status page follows it to the platform.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from aiohttp import web
from sqlalchemy import select, update

from bot.notify import links
from bot.notify.compose import draft_reply, explanation_terms, format_localtime
from bot.pipeline import queue
from bot.pipeline.classify import thread_parent, parent_is_ad
from bot.services import Services
from bot.store.models import Channel, Expert, Item, ReplyLink, Response, utcnow
from bot.store.queries import latest_assignment, latest_classification
from bot.web.i18n import CATEGORY_NAMES, strings

MAX_REPLY_CHARS = 8000
MAX_ACK_CHARS = 500
#: a reply in one of these states is on its way or out: the item takes no second one
ACTIVE_REPLY = ("pending", "sending", "private_sent", "ack_sending", "sent", "in_doubt")


def safe_url(url: str | None) -> str | None:
    """Only http(s) links are shown: a ``javascript:`` permalink is hostile input."""
    return url if url and url.startswith(("https://", "http://")) else None


def _form_key(secret: str, token: str) -> str:
    return hmac.new(secret.encode(), f"form:{token}".encode("utf-8", "replace"), hashlib.sha256).hexdigest()[:32]


def reply_routes(services: Services) -> list[web.RouteDef]:
    secret = services.settings.secret_key.reveal()
    env = services.templates

    def page(name: str, status: int = 200, *, language: str = "fr", **context: Any) -> web.Response:
        html = env.get_template(name).render(lang=language, t=strings(language), **context)
        return web.Response(text=html, content_type="text/html", status=status)

    async def link_problem(session: Any, exc: links.LinkError) -> web.Response:
        expert = await session.get(Expert, exc.link.expert_id) if exc.link else None
        language = expert.language if expert and expert.language in ("fr", "en") else "fr"
        t = strings(language)
        status = {"invalid": 404, "expired": 410, "used": 409}[exc.reason]
        return page("web/message.html", status, language=language, title=t[f"{exc.reason}_title"], body=t[f"{exc.reason}_body"])

    async def _context(session: Any, link: Any, token: str) -> dict[str, Any]:
        item = await session.get(Item, link.item_id)
        expert = await session.get(Expert, link.expert_id)
        assignment = await latest_assignment(session, item.id)
        label = await latest_classification(session, item.id)
        channel = await session.get(Channel, item.channel_id) if item.channel_id else None
        language = expert.language if expert.language in ("fr", "en") else "fr"
        category = label.label if label else "other"
        page_name = channel.name if channel else item.platform
        parent = await thread_parent(session, item)
        reply_language = item.language if item.language in ("fr", "en") else language
        return {
            "item": item,
            "expert": expert,
            "assignment": assignment,
            "language": language,
            "page_name": page_name,
            "parent": parent,
            "parent_is_ad": await parent_is_ad(session, item),
            "permalink": safe_url(item.permalink),
            "category_name": CATEGORY_NAMES[language].get(category, category),
            "confidence": label.confidence if label else 0.0,
            "explanation": explanation_terms(label.explanation, language) if label else [],
            "created_local": format_localtime(item.created_time, expert.timezone, language),
            "due_local": format_localtime(assignment.sla_due, expert.timezone, language) if assignment else "",
            "draft": draft_reply(
                env, (assignment.template if assignment else None) or category, reply_language,
                author_name=item.author_name, page_name=page_name,
            ),
            "ack_text": draft_reply(env, "acknowledgement", reply_language, author_name=item.author_name, page_name=page_name)
            if assignment and assignment.reply_mode == "private_with_public_ack"
            else "",
            "mode": "public" if assignment and assignment.reply_mode == "public" else "private",
            "private_only": item.kind == "message",
            "token": token,
            "form_key": _form_key(secret, token),
            "error": None,
        }

    async def show(request: web.Request) -> web.Response:
        token = request.match_info["token"]
        async with services.sessions() as session:
            try:
                link = await links.open_link(session, secret, token)
            except links.LinkError as exc:
                return await link_problem(session, exc)
            ctx = await _context(session, link, token)
            refused = await session.scalar(
                select(Response).where(Response.idempotency_key.like(f"link:{link.id}:%")).order_by(Response.id.desc()).limit(1)
            )
        if refused is not None and refused.status == "failed":  # the expert comes back to correct it
            t = strings(ctx["language"])
            ctx.update(draft=refused.text, error=t[f"fail_{refused.error_code or 'other'}"])
            if refused.error_code in ("private_window", "not_allowed") and not ctx["private_only"]:
                ctx["mode"] = "public"
        if ctx["item"].status == "answered":
            t = strings(ctx["language"])
            return page("web/message.html", 409, language=ctx["language"], title=t["used_title"], body=t["answered"])
        if ctx["item"].status == "removed":
            t = strings(ctx["language"])
            return page("web/message.html", 410, language=ctx["language"], title=t["removed_title"], body=t["removed_body"])
        return page("web/reply.html", **ctx)

    async def send(request: web.Request) -> web.Response:
        token = request.match_info["token"]
        form = await request.post()
        text = str(form.get("text", "")).strip()
        ack_text = str(form.get("ack_text", "")).strip()
        mode = "public" if form.get("mode") == "public" else "private"
        async with services.sessions.begin() as session:
            try:
                link = await links.open_link(session, secret, token, for_update=True)
            except links.LinkError as exc:
                return await link_problem(session, exc)
            if not hmac.compare_digest(_form_key(secret, token).encode(), str(form.get("form_key", "")).encode("utf-8", "replace")):
                return await link_problem(session, links.LinkInvalid("form key"))
            ctx = await _context(session, link, token)
            t = strings(ctx["language"])
            item: Item = ctx["item"]
            error = None
            if not text:
                error = t["empty"]
            elif len(text) > MAX_REPLY_CHARS or len(ack_text) > MAX_ACK_CHARS:
                error = t["too_long"].format(n=len(text)) if len(text) > MAX_REPLY_CHARS else t["ack_too_long"]
            elif mode == "public" and item.kind == "message":
                error = t["private_only"]
            elif item.status == "removed":
                return page("web/message.html", 410, language=ctx["language"], title=t["removed_title"], body=t["removed_body"])
            elif item.status == "answered" or await session.scalar(
                select(Response.id)
                .where(Response.item_id == item.id, Response.status.in_(ACTIVE_REPLY), Response.mode != "ack")
                .limit(1)
            ):
                return page("web/message.html", 409, language=ctx["language"], title=t["used_title"], body=t["answered"])
            if error:
                ctx.update(draft=text, ack_text=ack_text, mode=mode, error=error)
                return page("web/reply.html", 400, **ctx)
            attempt = await session.scalar(
                select(Response.id).where(Response.idempotency_key.like(f"link:{link.id}:%")).order_by(Response.id.desc()).limit(1)
            )
            response = Response(
                item_id=item.id,
                expert_id=link.expert_id,
                mode=mode,
                text=text,
                ack_text=ack_text if mode == "private" and item.kind != "message" and ack_text else None,
                idempotency_key=f"link:{link.id}:{(attempt or 0) + 1}",
                status="pending",
            )
            # claim the link atomically: of two simultaneous posts, one only gets it
            claimed = await session.execute(
                update(ReplyLink).where(ReplyLink.id == link.id, ReplyLink.used_at.is_(None)).values(used_at=utcnow())
            )
            if claimed.rowcount != 1:
                return page("web/message.html", 409, language=ctx["language"], title=t["used_title"], body=t["used_body"])
            session.add(response)
            await session.flush()
            # a platform outage may last hours: the reply waits (backoff capped at 15 min), it is not dropped
            await queue.enqueue(session, "respond", {"response_id": response.id}, dedupe_key=f"respond:{response.id}", max_attempts=60)
        services.wake()
        raise web.HTTPSeeOther(f"/reply/{token}/status")

    async def status(request: web.Request) -> web.Response:
        token = request.match_info["token"]
        async with services.sessions() as session:
            link_id = token.partition(".")[0]
            try:
                await links.open_link(session, secret, token)
            except links.LinkUsed:
                pass  # a used link may still follow its reply
            except links.LinkError as exc:
                return await link_problem(session, exc)
            response = await session.scalar(
                select(Response).where(Response.idempotency_key.like(f"link:{link_id}:%")).order_by(Response.id.desc()).limit(1)
            )
            link = await session.get(ReplyLink, link_id)
            expert = await session.get(Expert, link.expert_id) if link else None
            language = expert.language if expert and expert.language in ("fr", "en") else "fr"
        t = strings(language)
        if response is None:
            raise web.HTTPSeeOther(f"/reply/{token}")
        held = response.status == "pending" and bool(response.error)
        explanation = t[f"fail_{response.error_code or 'other'}"] if response.status == "failed" else None
        title = {"sent": t["sent_title"], "failed": t["failed_title"]}.get(response.status, t["queued_title"])
        return page(
            "web/reply_status.html",
            language=language,
            title=title,
            reply_status=response.status,
            error=response.error,
            explanation=explanation,
            held=held,
            text=response.text,
            token=token,
            refresh=None if response.status in ("sent", "failed", "in_doubt") else 2,
        )

    return [
        web.get("/reply/{token}", show),
        web.post("/reply/{token}", send),
        web.get("/reply/{token}/status", status),
    ]
