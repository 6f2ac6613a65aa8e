"""A fake Facebook Graph API: Page feed, comments, private replies, webhooks.

Paths are ``/{version}/...`` for any ``vNN.N``. Documented behaviour it keeps:
feeds newest first with cursor paging (``paging.next`` is an absolute URL that
carries ``access_token``); field expansion such as
``comments.filter(stream).limit(100){id,parent{id}}``; one private reply per
comment, within 7 days (else code 10, subcode 2018278); Page tokens checked per
Page (unknown or revoked: code 190, HTTP 400); error bodies
``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}``.

Also: hiding a comment (``POST /{comment-id}`` with ``is_hidden``), likes
(``POST /{object-id}/likes``), ``GET /debug_token`` and ``GET /me`` for token
checks (tokens may expire: code 190, subcode 463), and Instagram professional
accounts linked to a Page (its Page token works for them): media, comments,
``POST /{ig-comment-id}/replies``, ``POST /{ig-comment-id}`` with ``hide``,
``GET /{ig-user-id}/media?fields=comments{...}``.

Scripting is synchronous; when ``webhook_url`` is set, ``user_post``,
``user_comment`` and ``user_reaction`` queue a signed ``feed`` webhook and
``instagram_comment`` a signed Instagram ``comments`` webhook, sent by
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
        self.pending_webhooks: list[tuple[str, Json, str, str]] = []  # entry id, value, object, field
        self.likes: list[tuple[str, str]] = []  # (page id, object id)
        self.ig_accounts: dict[str, Json] = {}
        self.ig_media: dict[str, Json] = {}
        self.ig_comments: dict[str, Json] = {}
        self.requests: list[str] = []  # "GET /v21.0/1/feed", for assertions
        self._failure: GraphError | None = None
        self._html_outage: int | None = None
        self._ids = itertools.count(first_id)
        self._app: web.Application | None = None

    # -- scripting ------------------------------------------------------------

    def add_page(self, page_id: str, name: str, token: str, *,
                 expires_at: datetime | None = None) -> None:
        """A Page and its token; ``expires_at`` None: a long-lived token that never expires."""
        self.pages[page_id] = {"id": page_id, "name": name, "token": token, "revoked": False,
                               "expires_at": expires_at}

    def set_token_expiry(self, page_id: str, expires_at: datetime | None) -> None:
        self.pages[page_id]["expires_at"] = expires_at

    def add_instagram_account(self, ig_id: str, username: str, page_id: str) -> None:
        """An Instagram professional account linked to ``page_id`` (whose token reaches it)."""
        self.ig_accounts[ig_id] = {"id": ig_id, "username": username, "page_id": page_id}

    def instagram_media(self, ig_id: str, caption: str, *, created_time: datetime | None = None
                        ) -> str:
        media_id = str(17_900_000_000_000_000 + next(self._ids))
        self.ig_media[media_id] = {"id": media_id, "ig_id": ig_id, "caption": caption,
                                   "created_time": created_time or self.now(),
                                   "page_id": self.ig_accounts[ig_id]["page_id"]}
        return media_id

    def instagram_comment(self, media_id: str, author: Mapping[str, str], text: str, *,
                          created_time: datetime | None = None) -> str:
        """A comment on an Instagram media; ``author`` is ``{"id", "username"}``."""
        comment_id = self._ig_add_comment(media_id, {"id": str(author["id"]),
                                                     "username": str(author["username"])},
                                          text, created_time, None)
        media = self.ig_media[media_id]
        if self.webhook_url:
            self.pending_webhooks.append((media["ig_id"], {
                "from": self.ig_comments[comment_id]["from"],
                "media": {"id": media_id, "media_product_type": "FEED"},
                "id": comment_id, "text": text}, "instagram", "comments"))
        return comment_id

    def instagram_replies(self, comment_id: str) -> list[Json]:
        return [c for c in self.ig_comments.values() if c["parent_id"] == comment_id]

    def user_reaction(self, object_id: str, author: str | Mapping[str, str],
                      reaction_type: str = "like", verb: str = "add") -> None:
        """A reaction to a post or comment: only a webhook (the fake keeps no count)."""
        who = self._who(author)
        target = self.posts.get(object_id) or self.comments[object_id]
        value: Json = {"from": who, "item": "reaction", "verb": verb,
                       "reaction_type": reaction_type,
                       "post_id": target.get("post_id", object_id),
                       "created_time": int(self.now().timestamp())}
        if object_id in self.comments:
            value.update(comment_id=object_id, parent_id=target["post_id"])
        self._queue(target["page_id"], value)

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
            for entry_id, value, object_, field in queued:
                body = json.dumps({"object": object_, "entry": [{
                    "id": entry_id, "time": int(self.now().timestamp() * 1000),
                    "changes": [{"field": field, "value": value}]}]}).encode()
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

    def _ig_add_comment(self, media_id: str, who: Json, text: str, created_time: datetime | None,
                        parent_id: str | None) -> str:
        media = self.ig_media[media_id]
        comment_id = str(17_800_000_000_000_000 + next(self._ids))
        self.ig_comments[comment_id] = {
            "id": comment_id, "media_id": media_id, "page_id": media["page_id"], "text": text,
            "from": who, "username": who.get("username", ""), "parent_id": parent_id,
            "created_time": created_time or self.now(), "hidden": False}
        return comment_id

    def _queue(self, page_id: str, value: Json) -> None:
        if self.webhook_url:
            self.pending_webhooks.append((page_id, value, "page", "feed"))

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
        if page["expires_at"] is not None and page["expires_at"] <= self.now():
            raise GraphError(400, "Error validating access token: Session has expired on "
                             f"{graph_time(page['expires_at'])}.", 190, 463)
        object_id, _, edge = request.match_info["path"].strip("/").partition("/")
        if (request.method, object_id, edge) == ("GET", "debug_token", ""):
            return self._debug_token(request.query.get("input_token", ""))
        if object_id == "me":
            object_id = page["id"]
        if object_id in self.ig_accounts or object_id in self.ig_media \
                or object_id in self.ig_comments:
            return self._instagram(page, request, form, object_id, edge)
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
        if key == ("POST", "likes") and object_id not in self.pages:
            if (page["id"], object_id) not in self.likes:
                self.likes.append((page["id"], object_id))
            return {"success": True}
        if key == ("POST", "") and "is_hidden" in form:
            if object_id not in self.comments:
                raise GraphError(400, "(#100) Only comments can be hidden", 100)
            self.comments[object_id]["is_hidden"] = _flag(form["is_hidden"])
            return {"success": True}
        raise GraphError(400, f"Unknown path components: /{edge}", 2500)

    def _debug_token(self, input_token: str) -> Json:
        page = next((p for p in self.pages.values() if p["token"] == input_token), None)
        if page is None or page["revoked"]:
            return {"data": {"is_valid": False, "error": {
                "code": 190, "message": "The access token is invalid or has been revoked"}}}
        expires = page["expires_at"]
        return {"data": {
            "app_id": "1000000000", "type": "PAGE", "application": "Relais", "is_valid":
            expires is None or expires > self.now(), "profile_id": page["id"],
            "expires_at": int(expires.timestamp()) if expires else 0,
            "data_access_expires_at": int((self.now() + timedelta(days=90)).timestamp()),
            "scopes": ["pages_manage_metadata", "pages_read_engagement",
                       "pages_read_user_content", "pages_manage_engagement", "pages_messaging"]}}

    def _instagram(self, page: Json, request: web.Request, form: Json, object_id: str,
                   edge: str) -> Json:
        """Instagram Graph API objects; the linked Page's token reaches them."""
        owner = (self.ig_accounts.get(object_id) or self.ig_media.get(object_id)
                 or self.ig_comments[object_id])["page_id"]
        if owner != page["id"]:
            raise GraphError(403, "(#200) Permissions error", 200)
        key = (request.method, edge)
        if key == ("POST", "replies") and object_id in self.ig_comments:
            message = str(form.get("message") or "")
            if not message.strip():
                raise GraphError(400, "(#100) The parameter message is required", 100)
            account = self.ig_accounts[self.ig_media[self.ig_comments[object_id]["media_id"]]
                                       ["ig_id"]]
            who = {"id": account["id"], "username": account["username"]}
            return {"id": self._ig_add_comment(self.ig_comments[object_id]["media_id"], who,
                                               message, None, object_id)}
        if key == ("POST", "") and "hide" in form and object_id in self.ig_comments:
            self.ig_comments[object_id]["hidden"] = _flag(form["hide"])
            return {"success": True}
        if key == ("GET", "media") and object_id in self.ig_accounts:
            media = sorted((m for m in self.ig_media.values() if m["ig_id"] == object_id),
                           key=_order, reverse=True)
            fields = parse_fields(request.query.get("fields", "id,caption"))
            return self._paged(media, request.query, request,
                               lambda m: self._render_media(m, fields))
        raise GraphError(400, f"Unknown path components: /{edge}", 2500)

    def _render_media(self, media: Json, fields: dict[str, _Field]) -> Json:
        out: Json = {"id": media["id"]}
        if "caption" in fields:
            out["caption"] = media["caption"]
        if "timestamp" in fields:
            out["timestamp"] = graph_time(media["created_time"])
        if "comments" in fields:
            wanted = fields["comments"].sub or {"id": _Field({}, None), "text": _Field({}, None)}
            rows = sorted((c for c in self.ig_comments.values() if c["media_id"] == media["id"]
                           and c["parent_id"] is None), key=_order)
            rendered = []
            for c in rows:
                values = {"id": c["id"], "text": c["text"], "username": c["username"],
                          "from": c["from"], "timestamp": graph_time(c["created_time"]),
                          "hidden": c["hidden"]}
                rendered.append({k: v for k, v in values.items() if k in wanted or k == "id"})
            out["comments"] = {"data": rendered}
        return out

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


def _flag(value: Any) -> bool:
    return str(value).lower() in ("true", "1")


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
