"""The queue (``/ui/``), the item page (``/ui/items/{id}``) and the actions they post.

Roles: community managers and admins see everything and act; managers see
everything, read-only (no action forms, and the action handlers refuse them);
experts see the items assigned to them, and may reply to them and add notes.
Every action goes through :mod:`bot.triage.actions` (one audit entry each) and
answers with a redirect (post/redirect/get) that names the outcome in ``notice``.
"""

from __future__ import annotations

import dataclasses
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot.notify.compose import draft_reply, explanation_terms
from bot.pipeline.classify import parent_is_ad, thread_parent
from bot.services import Services
from bot.store.models import Channel, Expert, Item, Response
from bot.store.queries import latest_assignment, latest_classification
from bot.triage import actions, detail
from bot.triage.queue import REASONS, SORTS, UNASSIGNED, QueueFilters, count_queue, list_queue
from bot.web.auth import CurrentUser, current_user, require_role
from bot.web.triage.view import page
from bot.web.reply import safe_url

ACT = ("community_manager", "admin")
ALL = ("community_manager", "expert", "manager", "admin")
PAGE_SIZE = 100
STATUSES = ("open", "all", "spam", "new", "needs_review", "triage", "routed", "notified", "answered", "resolved", "removed")


def can_act(user: CurrentUser) -> bool:
    return user.role in ACT


def _date(value: str | None, zone: str, *, end: bool = False) -> datetime | None:
    """The start of a day (or of the next one, for ``end``) in the brand's time zone."""
    try:
        day = datetime.strptime((value or "").strip(), "%Y-%m-%d") + timedelta(days=1 if end else 0)
        tz = ZoneInfo(zone)
    except (ValueError, KeyError):
        return None
    return day.replace(tzinfo=tz).astimezone(UTC)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def parse_filters(query: Any, user: CurrentUser, zone: str = "UTC") -> QueueFilters:
    """The queue filters from the query string; an expert only ever sees their own items."""
    assignee_raw = query.get("assignee", "")
    assignee = UNASSIGNED if assignee_raw == "none" else _int(assignee_raw)
    if user.role == "expert":
        assignee = user.expert_id if user.expert_id is not None else -2  # no expert: nothing to see
    status = query.get("status", "open")
    return QueueFilters(
        platform=query.get("platform") or None,
        channel_id=_int(query.get("channel")),
        category=query.get("category") or None,
        language=query.get("language") or None,
        status=status if status in STATUSES else "open",
        assignee=assignee,
        since=_date(query.get("since"), zone),
        until=_date(query.get("until"), zone, end=True),
        search=(query.get("q") or "")[:200] or None,
        reason=query.get("reason") if query.get("reason") in REASONS else None,
        sort=query.get("sort") if query.get("sort") in SORTS else "attention",
    )


async def _experts(session: Any) -> list[Expert]:
    return list((await session.scalars(select(Expert).order_by(Expert.name))).all())


def _back(next_url: object, fallback: str, **notice: object) -> web.HTTPSeeOther:
    """A redirect to the page the form was on (same site only), with a notice."""
    target = str(next_url or fallback)
    if not target.startswith("/ui/") or target.startswith("//"):
        target = fallback
    base, _, query = target.partition("?")
    kept = [p for p in query.split("&") if p and not p.startswith(("notice=", "n=", "refused="))]
    extra = urlencode({k: str(v) for k, v in notice.items()})
    return web.HTTPSeeOther(f"{base}?{'&'.join([*kept, extra]) if extra else '&'.join(kept)}".rstrip("?"))


async def _can_see(session: Any, user: CurrentUser, item_id: int) -> bool:
    if user.role != "expert":
        return True
    assignment = await latest_assignment(session, item_id)
    return assignment is not None and user.expert_id is not None and assignment.expert_id == user.expert_id


def triage_pages(services: Services) -> list[web.RouteDef]:
    env = services.templates

    @require_role(*ALL)
    async def queue_page(request: web.Request) -> web.StreamResponse:
        user = current_user(request)
        assert user is not None
        filters = parse_filters(request.query, user, services.settings.timezone)
        number = max(1, _int(request.query.get("page")) or 1)
        async with services.sessions() as session:
            rows = await list_queue(session, filters, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE)
            partial = request.query.get("partial") == "rows"
            # the counters ignore the reason filter: they are what the reason links lead to
            counts = {} if partial else await count_queue(session, dataclasses.replace(filters, reason=None))
            experts = await _experts(session)
            channels = (await session.scalars(select(Channel).order_by(Channel.name))).all()
        context = {
            "rows": rows,
            "counts": counts,
            "filters": filters,
            "query": request.query,
            "experts": experts,
            "channels": channels,
            "labels": actions.LABELS,
            "statuses": STATUSES,
            "reasons": REASONS,
            "sorts": SORTS,
            "can_act": can_act(user),
            "page": number,
            "query_without_page": urlencode([(k, v) for k, v in request.query.items() if k not in ("page", "partial", "notice", "n", "refused")]),
            "has_next": len(rows) == PAGE_SIZE,
            "notice": request.query.get("notice"),
            "notice_n": _int(request.query.get("n")) or 0,
            "notice_refused": _int(request.query.get("refused")) or 0,
            "self_url": request.path_qs,
        }
        if partial:
            return page(request, services, "queue_rows.html", **context)
        return page(request, services, "queue.html", **context)

    @require_role(*ACT)
    async def bulk(request: web.Request) -> web.StreamResponse:
        user = current_user(request)
        assert user is not None
        form = await request.post()
        back = form.get("next")
        ids = [i for i in (_int(str(v)) for v in form.getall("ids", [])) if i is not None][:500]
        action = str(form.get("action", ""))
        if not ids:
            raise _back(back, "/ui/", notice="none_selected")
        kwargs: dict[str, Any] = {"actor": user.email}
        if action == "assign":
            expert_id = _int(str(form.get("expert_id", "")))
            if expert_id is None:
                raise _back(back, "/ui/", notice="choose_expert")
            result = await actions.bulk(services.sessions, ids, actions.assign, expert_id, rules=services.rules, **kwargs)
        elif action == "reclassify":
            label = str(form.get("label", ""))
            if label not in actions.LABELS:
                raise _back(back, "/ui/", notice="choose_label")
            result = await actions.bulk(services.sessions, ids, actions.reclassify, label, **kwargs)
        elif action in ("resolve", "hide", "spam"):
            fn = {"resolve": actions.resolve, "hide": actions.hide, "spam": actions.mark_spam}[action]
            result = await actions.bulk(services.sessions, ids, fn, **kwargs)
        else:
            raise _back(back, "/ui/", notice="choose_action")
        services.wake()
        for item_id in result.done:
            services.announce("item.updated", {"item_id": item_id, "action": action})
        raise _back(back, "/ui/", notice=f"bulk_{action}", n=len(result.done), refused=len(result.refused))

    @require_role(*ALL)
    async def item_page(request: web.Request) -> web.StreamResponse:
        user = current_user(request)
        assert user is not None
        item_id = _int(request.match_info["item_id"])
        async with services.sessions.begin() as session:
            item = await session.get(Item, item_id) if item_id else None
            if item is None or not await _can_see(session, user, item.id):
                raise web.HTTPNotFound(text="no such item\n")
            await detail.beat(session, item.id, user.id)
            await detail.forget_stale_viewers(session)
        async with services.sessions() as session:
            label = await latest_classification(session, item.id)
            assignment = await latest_assignment(session, item.id)
            expert = await session.get(Expert, assignment.expert_id) if assignment and assignment.expert_id else None
            channel = await session.get(Channel, item.channel_id) if item.channel_id else None
            parent = await thread_parent(session, item)
            is_ad = await parent_is_ad(session, item)
            history = await detail.item_history(session, item.id)
            viewers = await detail.other_viewers(session, item.id, user.id)
            experts = await _experts(session)
            last_reply = await session.scalar(
                select(Response).where(Response.item_id == item.id).order_by(Response.id.desc()).limit(1)
            )
        language = item.language if item.language in ("fr", "en") else user.language
        page_name = channel.name if channel else item.platform
        category = label.label if label else "other"
        may_reply = user.role != "manager"  # experts reach only their own items (_can_see)
        reply_blocked = item.status in ("answered", "removed", "brand") or (
            last_reply is not None and last_reply.status in actions.ACTIVE_REPLY
        )
        return page(
            request,
            services,
            "item.html",
            item=item,
            label=label,
            explanation=explanation_terms(label.explanation, user.language) if label else [],
            assignment=assignment,
            expert=expert,
            channel=channel,
            parent=parent,
            parent_is_ad=is_ad,
            permalink=safe_url(item.permalink),
            history=history,
            viewers=viewers,
            experts=experts,
            labels=actions.LABELS,
            can_act=can_act(user),
            may_reply=may_reply and not reply_blocked,
            may_note=user.role != "manager",
            can_hide=item.platform in actions.HIDEABLE and item.kind == "comment",
            last_reply=last_reply,
            draft=draft_reply(env, category, language, author_name=item.author_name, page_name=page_name),
            ack_draft=draft_reply(env, "acknowledgement", language, author_name=item.author_name, page_name=page_name),
            mode="public" if assignment and assignment.reply_mode == "public" and item.kind != "message" else "private",
            private_only=item.kind == "message",
            form_key=secrets.token_urlsafe(18),
            notice=request.query.get("notice"),
            error=request.query.get("error"),
        )

    def item_action(name: str, roles: tuple[str, ...] = ACT) -> Any:
        @require_role(*roles)
        async def handler(request: web.Request) -> web.StreamResponse:
            user = current_user(request)
            assert user is not None
            item_id = _int(request.match_info["item_id"]) or 0
            form = await request.post()
            here = f"/ui/items/{item_id}"
            async with services.sessions() as session:
                if not await _can_see(session, user, item_id):
                    raise web.HTTPNotFound(text="no such item\n")
            try:
                async with services.sessions.begin() as session:
                    await _do(session, name, item_id, user, form)
            except actions.ActionRefused as exc:
                raise web.HTTPSeeOther(f"{here}?{urlencode({'error': exc.reason})}") from None
            except IntegrityError:  # the same reply form posted twice at once: the first one counts
                pass
            services.wake()
            services.announce("item.updated", {"item_id": item_id, "action": name})
            raise web.HTTPSeeOther(f"{here}?{urlencode({'notice': name})}")

        return handler

    async def _do(session: Any, name: str, item_id: int, user: CurrentUser, form: Any) -> None:
        who = user.email
        if name == "assign":
            expert_id = _int(str(form.get("expert_id", "")))
            if expert_id is None:
                raise actions.ActionRefused("no_expert")
            await actions.assign(session, item_id, expert_id, actor=who, rules=services.rules)
        elif name == "reclassify":
            await actions.reclassify(session, item_id, str(form.get("label", "")), actor=who)
        elif name == "resolve":
            await actions.resolve(session, item_id, actor=who)
        elif name == "reopen":
            await actions.reopen(session, item_id, actor=who)
        elif name == "hide":
            await actions.hide(session, item_id, actor=who, hidden=form.get("hidden", "1") == "1")
        elif name == "spam":
            await actions.mark_spam(session, item_id, actor=who, spam=form.get("spam", "1") == "1")
        elif name == "note":
            await actions.add_note(session, item_id, str(form.get("text", "")), actor=who, user_id=user.id)
        elif name == "reply":
            await actions.reply(
                session, item_id, actor=who, mode=str(form.get("mode", "private")), text=str(form.get("text", "")),
                ack_text=str(form.get("ack_text", "")), form_key=str(form.get("form_key", "")) or secrets.token_hex(8),
                expert_id=user.expert_id,
            )

    @require_role(*ALL)
    async def viewers(request: web.Request) -> web.StreamResponse:
        """The page's heartbeat: records this viewer, answers with the others' names."""
        user = current_user(request)
        assert user is not None
        item_id = _int(request.match_info["item_id"]) or 0
        async with services.sessions.begin() as session:
            if await session.get(Item, item_id) is None or not await _can_see(session, user, item_id):
                raise web.HTTPNotFound(text="no such item\n")
            if request.method == "POST":
                form = await request.post()
                if form.get("leaving") == "1":
                    await detail.leave(session, item_id, user.id)
                else:
                    await detail.beat(session, item_id, user.id)
            names = await detail.other_viewers(session, item_id, user.id)
        return web.json_response({"viewers": names}, headers={"Cache-Control": "no-store"})

    async def root(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/ui/")

    roles_reply = (*ACT, "expert")
    return [
        web.get("/", root),
        web.get("/ui", root),
        web.get("/ui/", queue_page),
        web.post("/ui/bulk", bulk),
        web.get("/ui/items/{item_id}", item_page),
        web.get("/ui/items/{item_id}/viewers", viewers),
        web.post("/ui/items/{item_id}/viewers", viewers),
        web.post("/ui/items/{item_id}/assign", item_action("assign")),
        web.post("/ui/items/{item_id}/reclassify", item_action("reclassify")),
        web.post("/ui/items/{item_id}/resolve", item_action("resolve", roles_reply)),
        web.post("/ui/items/{item_id}/reopen", item_action("reopen", roles_reply)),
        web.post("/ui/items/{item_id}/hide", item_action("hide")),
        web.post("/ui/items/{item_id}/spam", item_action("spam")),
        web.post("/ui/items/{item_id}/note", item_action("note", roles_reply)),
        web.post("/ui/items/{item_id}/reply", item_action("reply", roles_reply)),
    ]

