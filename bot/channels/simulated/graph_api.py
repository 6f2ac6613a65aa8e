"""A fake Facebook Graph API: Page feed, comments, private replies, webhooks.

Paths are ``/{version}/...`` for any ``vNN.N``. Documented behaviour it keeps:
feeds newest first with cursor paging (``paging.next`` is an absolute URL that
carries ``access_token``); field expansion such as
``comments.filter(stream).limit(100){id,parent{id}}``; one private reply per
comment, within 7 days (else code 10, subcode 2018278); Page tokens checked per
Page (unknown or revoked: code 190, HTTP 400); error bodies
``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}``.

Scripting is synchronous; when ``webhook_url`` is set, ``user_post`` and
``user_comment`` also queue a signed ``feed`` webhook, sent by
``await deliver_pending()``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import itertools
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
from aiohttp import web

PRIVATE_REPLY_WINDOW = timedelta(days=7)
Json = dict[str, Any]


@dataclass
class _Field:
    modifiers: dict[str, str]
    sub: dict[str, _Field] | None


def parse_fields(spec: str) -> dict[str, _Field]:
    """Graph field expansion: ``a,b.limit(5){c,d{e}}`` -> {name: _Field}."""
    fields: dict[str, _Field] = {}
    depth, start = 0, 0
    for i, char in enumerate(spec + ","):
        if char in "{(":
            depth += 1
        elif char in "})":
            depth -= 1
        if char == "," and depth == 0:
            token = spec[start:i].strip()
            start = i + 1
            if not token:
                continue
            head, _, tail = token.partition("{")
            name, *mods = head.split(".")
            modifiers = {m.partition("(")[0]: m.partition("(")[2].rstrip(")") for m in mods}
            fields[name] = _Field(modifiers, parse_fields(tail[:-1]) if tail else None)
    return fields


def graph_time(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+0000")


def _cursor(object_id: str) -> str:
    return base64.urlsafe_b64encode(object_id.encode()).decode().rstrip("=")


def _uncursor(token: str) -> str:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode(errors="replace")


class GraphError(Exception):
    def __init__(self, status: int, message: str, code: int, subcode: int | None = None,
                 type_: str = "OAuthException", headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.subcode = status, message, code, subcode
        self.type, self.headers = type_, dict(headers or {})

    def response(self) -> web.Response:
        error: Json = {"message": self.message, "type": self.type, "code": self.code}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        error["fbtrace_id"] = secrets.token_urlsafe(8)
        return web.json_response({"error": error}, status=self.status, headers=self.headers)


def _not_found(object_id: str) -> GraphError:
    return GraphError(400, f"Unsupported get request. Object with ID '{object_id}' does not "
                      "exist, cannot be loaded due to missing permissions, or does not support "
                      "this operation.", 100, 33, "GraphMethodException")


class FakeGraphAPI:
    """In-memory Pages, posts and comments behind a Graph-shaped HTTP API."""

    def __init__(self, *, webhook_url: str | None = None, app_secret: str | None = None,
                 now: Callable[[], datetime] | None = None, first_id: int = 1001) -> None:
        self.webhook_url, self.app_secret = webhook_url, app_secret
        self.now = now or (lambda: datetime.now(timezone.utc))
        self.pages: dict[str, Json] = {}
        self.posts: dict[str, Json] = {}
        self.comments: dict[str, Json] = {}
        self.private_replies: list[Json] = []
        self.pending_webhooks: list[tuple[str, Json]] = []
        self.requests: list[str] = []  # "GET /v21.0/1/feed", for assertions
        self._failure: GraphError | None = None
        self._html_outage: int | None = None
        self._ids = itertools.count(first_id)
        self._app: web.Application | None = None

    # -- scripting ------------------------------------------------------------

    def add_page(self, page_id: str, name: str, token: str) -> None:
        self.pages[page_id] = {"id": page_id, "name": name, "token": token, "revoked": False}

    def revoke_token(self, page_id: str) -> None:
        self.pages[page_id]["revoked"] = True

    def publish_post(self, page_id: str, text: str, *, promoted: bool = False,
                     created_time: datetime | None = None) -> str:
        """A post by the Page itself; ``promoted`` makes it a boosted post (an ad)."""
        page = self.pages[page_id]
        return self._add_post(page_id, {"id": page_id, "name": page["name"]}, text,
                              promoted, created_time, notify=False)

    def user_post(self, page_id: str, author: str | Mapping[str, str], text: str, *,
                  created_time: datetime | None = None) -> str:
        """A visitor post on the Page; ``author`` is ``{"id", "name"}`` or a name."""
        return self._add_post(page_id, self._who(author), text, False, created_time, notify=True)

    def user_comment(self, post_id: str, author: str | Mapping[str, str], text: str,
                     created_time: datetime | None = None, *, parent_id: str | None = None) -> str:
        """A comment on ``post_id`` (or a reply to the comment ``parent_id``)."""
        comment_id = self._add_comment(post_id, self._who(author), text, created_time, parent_id)
        comment = self.comments[comment_id]
        self._queue(comment["page_id"], {
            "from": comment["from"], "item": "comment", "verb": "add", "post_id": post_id,
            "comment_id": comment_id, "parent_id": parent_id or post_id,
            "created_time": int(comment["created_time"].timestamp()), "message": text})
        return comment_id

    def replies_to(self, object_id: str) -> list[Json]:
        """Comments answering ``object_id`` (a post or a comment), oldest first."""
        found = [c for c in self.comments.values()
                 if object_id in (c["parent_id"], c["in_reply_to"])
                 or (c["post_id"] == object_id and c["parent_id"] is None)]
        return [self._render_comment(c, None) for c in sorted(found, key=_order)]

    def set_rate_limited(self, code: int = 4, regain_minutes: int = 5) -> None:
        """Answer every API call with a rate-limit error until :meth:`clear_failures`."""
        usage = {"call_count": 100, "total_cputime": 100, "total_time": 100}
        buc = {page_id: [dict(usage, type="pages", estimated_time_to_regain_access=regain_minutes)]
               for page_id in self.pages}
        self._failure = GraphError(
            400 if code != 4 else 403, "(#4) Application request limit reached" if code == 4
            else f"(#{code}) There have been too many calls", code,
            headers={"X-App-Usage": json.dumps(usage),
                     "X-Business-Use-Case-Usage": json.dumps(buc)})

    def set_outage(self, status: int = 503, *, html_body: bool = False) -> None:
        """Answer every API call with a 5xx: Graph's code 2 JSON, or a proxy's HTML page."""
        if html_body:
            self._html_outage = status
        else:
            self._failure = GraphError(status, "An unexpected error has occurred. Please retry "
                                       "your request later.", 2)

    def clear_failures(self) -> None:
        self._failure, self._html_outage = None, None

    async def deliver_pending(self) -> list[int]:
        """POST every queued webhook to ``webhook_url``, signed; returns the HTTP statuses."""
        statuses: list[int] = []
        if not self.webhook_url or not self.pending_webhooks:
            return statuses
        queued, self.pending_webhooks = self.pending_webhooks, []
        async with aiohttp.ClientSession() as session:
            for page_id, value in queued:
                body = json.dumps({"object": "page", "entry": [{
                    "id": page_id, "time": int(self.now().timestamp() * 1000),
                    "changes": [{"field": "feed", "value": value}]}]}).encode()
                digest = hmac.new((self.app_secret or "").encode(), body, hashlib.sha256)
                async with session.post(self.webhook_url, data=body, headers={
                        "Content-Type": "application/json",
                        "X-Hub-Signature-256": f"sha256={digest.hexdigest()}"}) as response:
                    statuses.append(response.status)
        return statuses

    # -- state ---------------------------------------------------------------

    def _who(self, author: str | Mapping[str, str]) -> Json:
        if isinstance(author, str):
            digits = int(hashlib.sha256(author.encode()).hexdigest()[:12], 16)
            return {"id": str(10_000_000_000_000 + digits % 10**13), "name": author}
        return {"id": str(author["id"]), "name": str(author.get("name", ""))}

    def _add_post(self, page_id: str, who: Json, text: str, promoted: bool,
                  created_time: datetime | None, notify: bool) -> str:
        if page_id not in self.pages:
            raise KeyError(f"unknown page {page_id!r}")
        post_id = f"{page_id}_{next(self._ids)}"
        created = created_time or self.now()
        self.posts[post_id] = {"id": post_id, "page_id": page_id, "message": text, "from": who,
                               "created_time": created, "promoted": promoted}
        if notify:
            self._queue(page_id, {"from": who, "item": "status", "verb": "add",
                                  "post_id": post_id, "published": 1, "message": text,
                                  "created_time": int(created.timestamp())})
        return post_id

    def _add_comment(self, post_id: str, who: Json, text: str, created_time: datetime | None,
                     parent_id: str | None, in_reply_to: str | None = None) -> str:
        post = self.posts[post_id]
        comment_id = f"{post_id.split('_')[-1]}_{next(self._ids)}"
        self.comments[comment_id] = {
            "id": comment_id, "post_id": post_id, "page_id": post["page_id"], "message": text,
            "from": who, "created_time": created_time or self.now(), "parent_id": parent_id,
            "in_reply_to": in_reply_to}
        return comment_id

    def _queue(self, page_id: str, value: Json) -> None:
        if self.webhook_url:
            self.pending_webhooks.append((page_id, value))

    # -- rendering -----------------------------------------------------------

    def _render_post(self, post: Json, fields: dict[str, _Field], request: web.Request) -> Json:
        page_id, number = post["id"].split("_", 1)
        own = post["from"]["id"] == page_id
        values: Json = {
            "id": post["id"], "message": post["message"], "from": post["from"],
            "created_time": graph_time(post["created_time"]),
            "permalink_url": f"https://www.facebook.com/{page_id}/posts/{number}"}
        if own:
            values["promotion_status"] = "active" if post["promoted"] else "inactive"
        out = {k: v for k, v in values.items() if k in fields or k == "id"}
        if "comments" in fields:
            spec = fields["comments"]
            out["comments"] = self._comment_page(post["id"], spec.modifiers, spec.sub or {},
                                                 request, nested=True)
        return out

    def _render_comment(self, comment: Json, fields: dict[str, _Field] | None) -> Json:
        values: Json = {
            "id": comment["id"], "message": comment["message"], "from": comment["from"],
            "created_time": graph_time(comment["created_time"]),
            "permalink_url": f"https://www.facebook.com/{comment['post_id']}"
                             f"?comment_id={comment['id']}"}
        if comment["parent_id"]:
            values["parent"] = {"id": comment["parent_id"]}
        return {k: v for k, v in values.items() if fields is None or k in fields or k == "id"}

    def _comment_page(self, object_id: str, params: Mapping[str, str],
                      fields: dict[str, _Field], request: web.Request, nested: bool = False
                      ) -> Json:
        stream = params.get("filter") == "stream"
        found = [c for c in self.comments.values()
                 if (c["post_id"] == object_id and (stream or c["parent_id"] is None))
                 or c["parent_id"] == object_id]
        base = {}
        if nested:  # the next page of a nested edge is the edge itself
            base = {"filter": params.get("filter", "toplevel"),
                    "fields": ",".join(fields) if fields else "id,message,created_time",
                    "access_token": _token(request) or ""}
            version = request.match_info["version"]
            request = request.clone(rel_url=request.url.with_path(
                f"/{version}/{object_id}/comments").with_query(base).relative())
        return self._paged(sorted(found, key=_order), params, request,
                           lambda c: self._render_comment(c, fields or None))

    def _paged(self, rows: list[Json], params: Mapping[str, str], request: web.Request,
               render: Callable[[Json], Json]) -> Json:
        limit = max(1, min(int(params.get("limit") or 25), 100))
        if params.get("after"):
            after = _uncursor(params["after"])
            ids = [row["id"] for row in rows]
            rows = rows[ids.index(after) + 1:] if after in ids else []
        chunk = rows[:limit]
        out: Json = {"data": [render(row) for row in chunk]}
        if chunk:
            out["paging"] = {"cursors": {"before": _cursor(chunk[0]["id"]),
                                         "after": _cursor(chunk[-1]["id"])}}
            if len(rows) > limit:
                query = dict(request.query, after=_cursor(chunk[-1]["id"]), limit=str(limit))
                query["access_token"] = _token(request) or ""
                out["paging"]["next"] = str(request.url.with_query(query))
        return out

    # -- HTTP ----------------------------------------------------------------

    @property
    def app(self) -> web.Application:
        if self._app is None:
            self._app = self.make_app()
        return self._app

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/__page/{page_id}", self._html_page)
        app.router.add_route("*", r"/{version:v\d+\.\d+}/{path:.+}", self._api)
        return app

    async def _api(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path}")
        if self._html_outage:
            return web.Response(status=self._html_outage, content_type="text/html",
                                text="<html><body>502 Bad Gateway</body></html>")
        try:
            if self._failure is not None:
                raise self._failure
            form: Json = dict(await request.post()) if request.method == "POST" else {}
            if request.method == "POST" and request.content_type == "application/json":
                form = await request.json()
            return web.json_response(self._dispatch(request, form))
        except GraphError as exc:
            return exc.response()

    def _dispatch(self, request: web.Request, form: Json) -> Json:
        token = form.get("access_token") or _token(request)
        page = next((p for p in self.pages.values() if p["token"] == token), None)
        if page is None or page["revoked"]:
            message = ("Error validating access token: The session has been invalidated."
                       if page else "Invalid OAuth access token - Cannot parse access token")
            raise GraphError(400, message, 190, 460 if page else None)
        object_id, _, edge = request.match_info["path"].strip("/").partition("/")
        owner = self._owner(object_id)
        if owner != page["id"]:
            raise GraphError(403, "(#200) Permissions error", 200, type_="OAuthException")
        fields = parse_fields(request.query.get("fields", ""))
        key = (request.method, edge)
        if key == ("GET", "feed") and object_id in self.pages:
            posts = [p for p in self.posts.values() if p["page_id"] == object_id]
            rows = sorted(posts, key=_order, reverse=True)
            return self._paged(rows, request.query, request,
                               lambda p: self._render_post(p, fields or parse_fields(
                                   "id,message,created_time"), request))
        if key == ("GET", "comments"):
            return self._comment_page(object_id, request.query, fields, request)
        if key == ("GET", ""):
            if object_id in self.pages:
                return {"id": object_id, "name": self.pages[object_id]["name"]}
            if object_id in self.posts:
                return self._render_post(self.posts[object_id], fields or parse_fields(
                    "id,message,created_time"), request)
            return self._render_comment(self.comments[object_id], fields or None)
        if key == ("POST", "comments"):
            return self._post_comment(page, object_id, str(form.get("message") or ""))
        if key == ("POST", "messages") and object_id in self.pages:
            return self._private_reply(object_id, form)
        raise GraphError(400, f"Unknown path components: /{edge}", 2500)

    def _owner(self, object_id: str) -> str:
        if object_id in self.pages:
            return object_id
        if object_id in self.posts:
            return str(self.posts[object_id]["page_id"])
        if object_id in self.comments:
            return str(self.comments[object_id]["page_id"])
        raise _not_found(object_id)

    def _post_comment(self, page: Json, object_id: str, message: str) -> Json:
        if object_id in self.pages:
            raise GraphError(400, "(#100) Use /{page-id}/feed to publish on a Page", 100)
        if not message.strip():
            raise GraphError(400, "(#100) The parameter message is required", 100)
        who = {"id": page["id"], "name": page["name"]}
        if object_id in self.posts:
            return {"id": self._add_comment(object_id, who, message, None, None, object_id)}
        target = self.comments[object_id]
        top = target["parent_id"] or object_id  # Facebook threads are two levels deep
        return {"id": self._add_comment(target["post_id"], who, message, None, top, object_id)}

    def _private_reply(self, page_id: str, form: Json) -> Json:
        try:
            recipient = _json_arg(form.get("recipient"))
            text = str(_json_arg(form.get("message")).get("text") or "")
        except (ValueError, AttributeError) as exc:
            raise GraphError(400, f"(#100) Invalid parameter: {exc}", 100) from exc
        target_id = recipient.get("comment_id") or recipient.get("post_id")
        if target_id:
            target = self.comments.get(target_id) or self.posts.get(target_id)
            if target is None or target["page_id"] != page_id:
                raise _not_found(str(target_id))
            if self.now() - target["created_time"] > PRIVATE_REPLY_WINDOW:
                raise GraphError(400, "(#10) This message is sent outside of allowed window.",
                                 10, 2018278)
            if any(r["recipient"].get("comment_id", r["recipient"].get("post_id")) == target_id
                   for r in self.private_replies):
                raise GraphError(400, "(#10) Only one private reply can be sent per comment; "
                                 "this message is sent outside of allowed window.", 10, 2018278)
            user_id = target["from"]["id"]
        elif recipient.get("id"):
            user_id = str(recipient["id"])
        else:
            raise GraphError(400, "(#100) The parameter recipient is required", 100)
        message_id = f"m_{secrets.token_urlsafe(16)}"
        self.private_replies.append({"page_id": page_id, "recipient": recipient, "text": text,
                                     "recipient_id": user_id, "message_id": message_id,
                                     "messaging_type": form.get("messaging_type")})
        return {"recipient_id": user_id, "message_id": message_id}

    async def _html_page(self, request: web.Request) -> web.Response:
        page = self.pages.get(request.match_info["page_id"])
        if page is None:
            raise web.HTTPNotFound(text="no such page")
        e = html.escape
        parts = [f"<!doctype html><meta charset='utf-8'><title>{e(page['name'])}</title>",
                 f"<h1>{e(page['name'])}</h1>"]
        posts = sorted((p for p in self.posts.values() if p["page_id"] == page["id"]),
                       key=_order, reverse=True)
        for post in posts:
            badge = " <em>(sponsored)</em>" if post["promoted"] else ""
            parts.append(f"<article id='{e(post['id'])}'><p><b>{e(post['from']['name'])}</b>"
                         f"{badge} · {e(graph_time(post['created_time']))}</p>"
                         f"<p>{e(post['message'])}</p><ul>")
            for c in sorted((c for c in self.comments.values() if c["post_id"] == post["id"]),
                            key=lambda c: (c["parent_id"] or c["id"], _order(c))):
                style = " class='page'" if c["from"]["id"] == page["id"] else ""
                indent = " style='margin-left:2em'" if c["parent_id"] else ""
                parts.append(f"<li{style}{indent}><b>{e(c['from']['name'])}</b>: "
                             f"{e(c['message'])}</li>")
            parts.append("</ul></article>")
        for reply in (r for r in self.private_replies if r["page_id"] == page["id"]):
            parts.append(f"<p>Private reply to {e(reply['recipient_id'])}: {e(reply['text'])}</p>")
        return web.Response(text="\n".join(parts), content_type="text/html")


def _order(row: Json) -> tuple[datetime, int]:
    return row["created_time"], int(row["id"].rsplit("_", 1)[-1])


def _token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith(("Bearer ", "OAuth ")):
        return header.split(" ", 1)[1].strip()
    return request.query.get("access_token")


def _json_arg(value: Any) -> Json:
    parsed = json.loads(value) if isinstance(value, str) else value
    if not isinstance(parsed, dict):
        raise ValueError(f"expected a JSON object, got {value!r}")
    return parsed
