"""The Facebook Page channel, over facebook-sdk's synchronous ``GraphAPI``.

facebook-sdk 3.1.0 is unmaintained: it rejects API versions above 3.1, prefixes
every URL with the module constant ``FACEBOOK_GRAPH_URL`` and hides response
headers. :class:`_PageGraph` sets the version after the SDK's check and sends
its requests through :class:`_GraphSession`, which rebases URLs onto
``config.api_url`` and remembers the last response so errors can read
``X-Business-Use-Case-Usage``. Every SDK call runs on the channel's own
single-thread executor (a ``requests.Session`` is not meant to be shared across
threads), never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import warnings
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import Any, Callable, TypeVar
from urllib.parse import parse_qs, urlparse

import requests

with warnings.catch_warnings():
    # facebook-sdk 3.1.0 contains the invalid escape "\d": compiling it without a .pyc warns.
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.simplefilter("ignore", SyntaxWarning)
    import facebook

from bot.channels.base import ChannelConfig, FetchResult, ReplyTarget
from bot.domain import Author, InboundItem, ItemKind, Platform, SentReply
from bot.errors import ChannelError, RateLimited, ReplyRejected, TokenInvalid, Transient

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://graph.facebook.com"
DEFAULT_BACKFILL_SECONDS = 86_400
DEFAULT_COMMENT_LOOKBACK_SECONDS = 2 * 86_400
DEFAULT_RETRY_AFTER = 60.0
# 80000-80014: Business Use Case limits (80001 is Pages).
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, *range(80000, 80015)})
TRANSIENT_CODES = frozenset({1, 2})
POST_FIELDS = "id,message,from,created_time,permalink_url,promotion_status"
COMMENT_FIELDS = "id,message,from,created_time,parent{id},permalink_url"
# filter(stream): replies to comments too, not only top-level comments.
FEED_FIELDS = f"{POST_FIELDS},comments.filter(stream).limit(100){{{COMMENT_FIELDS}}}"

T = TypeVar("T")


class _GraphSession(requests.Session):
    """Sends the SDK's requests to ``base_url`` and remembers each thread's last response."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/") + "/"
        self._local = threading.local()

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        url = url.decode() if isinstance(url, bytes) else url
        if url.startswith(facebook.FACEBOOK_GRAPH_URL):
            url = self.base_url + url[len(facebook.FACEBOOK_GRAPH_URL):]
        self._local.last = None
        response = super().request(method, url, *args, **kwargs)
        self._local.last = response
        return response

    @property
    def last_response(self) -> requests.Response | None:
        return getattr(self._local, "last", None)


class _PageGraph(facebook.GraphAPI):
    """``GraphAPI`` with any version string and an injected session."""

    def __init__(self, token: str, version: str, session: _GraphSession, timeout: float) -> None:
        super().__init__(access_token=token, timeout=timeout, session=session)
        self.version = version if version.startswith("v") else f"v{version}"

    def request(self, path: str, args: Any = None, post_args: Any = None, files: Any = None,
                method: Any = None) -> Any:
        try:
            return super().request(path, args, post_args, files, method)
        except KeyError as exc:  # the SDK indexes headers["content-type"] blindly
            raise facebook.GraphAPIError(f"response without content-type: {exc}") from exc


def parse_graph_time(value: str) -> datetime:
    """Graph's "2026-12-03T10:00:00+0000" as an aware UTC datetime."""
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z").astimezone(timezone.utc)


#: Meta's app-level usage (X-App-Usage) is a rolling one-hour window: at 100 % wait a while
APP_USAGE_FULL_WAIT_S = 600.0


def _retry_after(response: requests.Response | None) -> float:
    """Seconds to wait: X-Business-Use-Case-Usage's estimated_time_to_regain_access, else,
    when X-App-Usage says the app is at 100 % of a quota, a longer pause, else the default."""
    if response is None:
        return DEFAULT_RETRY_AFTER
    minutes = 0.0
    try:
        usage = json.loads(response.headers.get("X-Business-Use-Case-Usage") or "{}")
        for entries in usage.values():
            for entry in entries:
                minutes = max(minutes, float(entry.get("estimated_time_to_regain_access") or 0))
    except (ValueError, TypeError, AttributeError):
        minutes = 0.0
    if minutes > 0:
        return minutes * 60
    try:
        app = json.loads(response.headers.get("X-App-Usage") or "{}")
        percent = max(float(app.get(k) or 0) for k in ("call_count", "total_cputime", "total_time"))
    except (ValueError, TypeError, AttributeError):
        percent = 0.0
    return APP_USAGE_FULL_WAIT_S if percent >= 100 else DEFAULT_RETRY_AFTER


@dataclass(frozen=True)
class TokenStatus:
    """A Page token as ``debug_token`` describes it; ``expires_at`` None: it never expires."""

    valid: bool
    expires_at: datetime | None
    detail: str = ""
    scopes: tuple[str, ...] = ()


class FacebookChannel:
    """One Facebook Page: polls its feed, answers comments publicly or by private reply.

    Beyond the channel contract: :meth:`hide` and :meth:`like` (moderation),
    :meth:`check_token` (the daily token check) and :meth:`backfill` (a past
    window, for ``relais backfill facebook``).

    Credentials: ``page_token``. Options: ``backfill_seconds`` (first poll's look
    back, default one day), ``timeout`` (seconds per HTTP call, default 30).
    The cursor is ``{"since": <unix seconds of the newest created_time seen>}``;
    items created in that very second are returned again (the caller deduplicates)
    so that none is skipped.

    Polling pages the feed newest post first and stops at the first post older
    than both the cursor and ``comment_lookback_seconds`` (option, default two
    days): new comments under posts of that window are found too, which is
    what lets the reconcile poll recover comments a webhook missed. A comment
    under an older post is only seen through webhooks
    (:mod:`bot.ingest.facebook_delivery`); only the first 100 comments of a
    post are read.
    """

    def __init__(self, config: ChannelConfig, graph_version: str = "v21.0") -> None:
        self.config = config
        self.page_id = config.external_id
        self._session = _GraphSession(config.api_url or DEFAULT_API_URL)
        timeout = float(config.options.get("timeout", 30))
        self._graph = _PageGraph(config.credentials["page_token"], graph_version,
                                 self._session, timeout)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="facebook")

    async def fetch_new(self, cursor: dict[str, Any]) -> FetchResult:
        """Posts and comments created since ``cursor["since"]`` (or the backfill window)."""
        backfill = int(self.config.options.get("backfill_seconds", DEFAULT_BACKFILL_SECONDS))
        lookback = int(self.config.options.get("comment_lookback_seconds",
                                               DEFAULT_COMMENT_LOOKBACK_SECONDS))
        since = int(cursor.get("since") or time.time() - backfill)
        oldest_post = min(since, int(time.time()) - lookback)
        items: list[InboundItem] = []
        newest = since
        args: dict[str, Any] = {"fields": FEED_FIELDS, "limit": 25}
        while True:
            page = await self._call(partial(self._graph.get_connections, self.page_id, "feed",
                                            **args), writing=False)
            older_reached = False
            for post in page.get("data") or []:
                created = parse_graph_time(post["created_time"])
                if created.timestamp() < oldest_post:
                    older_reached = True
                    break
                if created.timestamp() >= since:
                    items.append(self._post_item(post, created))
                    newest = max(newest, int(created.timestamp()))
                for comment in (post.get("comments") or {}).get("data") or []:
                    item = self._comment_item(comment, post["id"])
                    if item.created_time.timestamp() >= since:
                        items.append(item)
                        newest = max(newest, int(item.created_time.timestamp()))
            next_url = (page.get("paging") or {}).get("next")
            if older_reached or not next_url:
                break
            args = {key: values[-1] for key, values in parse_qs(urlparse(next_url).query).items()
                    if key != "access_token"}
        return FetchResult(items=items, cursor={"since": newest})

    async def backfill(self, since: datetime, until: datetime | None = None
                       ) -> AsyncIterator[list[InboundItem]]:
        """Posts created in [since, until) and their comments in that window, one feed page at a
        time (newest first). The live poll cursor is not involved."""
        start, end = since.timestamp(), (until.timestamp() if until else float("inf"))
        args: dict[str, Any] = {"fields": FEED_FIELDS, "limit": 25}
        while True:
            page = await self._call(partial(self._graph.get_connections, self.page_id, "feed",
                                            **args), writing=False)
            items: list[InboundItem] = []
            older_reached = False
            for post in page.get("data") or []:
                created = parse_graph_time(post["created_time"])
                if created.timestamp() < start:
                    older_reached = True
                    break
                if created.timestamp() >= end:
                    continue
                items.append(self._post_item(post, created))
                for comment in (post.get("comments") or {}).get("data") or []:
                    item = self._comment_item(comment, post["id"])
                    if start <= item.created_time.timestamp() < end:
                        items.append(item)
            yield items
            next_url = (page.get("paging") or {}).get("next")
            if older_reached or not next_url:
                return
            args = {key: values[-1] for key, values in parse_qs(urlparse(next_url).query).items()
                    if key != "access_token"}

    async def reply_public(self, target: ReplyTarget, text: str) -> SentReply:
        """Comment under the post or comment ``target``."""
        result = await self._call(partial(self._graph.put_object, target.external_id,
                                          "comments", message=text), writing=True)
        return SentReply(platform_id=str(result["id"]))

    async def find_public_reply(self, target: ReplyTarget, text: str, since: datetime) -> SentReply | None:
        """The Page's own comment with exactly ``text``, created at or after ``since``, under
        ``target`` or in its thread (a reply to a reply lands on the thread's top comment).

        How a reply interrupted mid-call (worker killed) is checked before sending it again.
        Reads at most 500 comments per object, newest last; raises our errors like any call.
        """
        wanted = text.strip()
        for object_id in dict.fromkeys(filter(None, (target.external_id, target.parent_external_id))):
            args: dict[str, Any] = {"fields": "id,message,from,created_time", "limit": 100}
            for _ in range(5):
                page = await self._call(partial(self._graph.get_connections, object_id, "comments", **args),
                                        writing=False)
                for comment in page.get("data") or []:
                    author = (comment.get("from") or {}).get("id")
                    created = comment.get("created_time")
                    if (str(author) == self.page_id and str(comment.get("message", "")).strip() == wanted
                            and (not created or parse_graph_time(created) >= since.replace(microsecond=0))):
                        return SentReply(platform_id=str(comment["id"]))
                after = ((page.get("paging") or {}).get("cursors") or {}).get("after")
                if not (page.get("paging") or {}).get("next") or not after:
                    break
                args["after"] = after
        return None

    async def reply_private(self, target: ReplyTarget, text: str) -> SentReply:
        """A Messenger private reply to a comment or visitor post, or an answer to a message."""
        if target.kind is ItemKind.MESSAGE:
            recipient = {"id": target.author_id}
        elif target.kind is ItemKind.POST:
            recipient = {"post_id": target.external_id}
        else:
            recipient = {"comment_id": target.external_id}
        result = await self._call(partial(
            self._graph.put_object, self.page_id, "messages",
            recipient=json.dumps(recipient), message=json.dumps({"text": text}),
            messaging_type="RESPONSE"), writing=True)
        return SentReply(platform_id=str(result["message_id"]))

    async def hide(self, target: ReplyTarget, hidden: bool = True) -> None:
        """Hide (or show again) the comment ``target``: its author and their friends still see it."""
        await self._call(partial(self._graph.request, f"{self._graph.version}/{target.external_id}",
                                 post_args={"is_hidden": "true" if hidden else "false"}),
                         writing=True)

    async def like(self, target: ReplyTarget) -> None:
        """Like the post or comment ``target`` as the Page."""
        await self._call(partial(self._graph.put_like, target.external_id), writing=True)

    async def check_token(self) -> TokenStatus:
        """What Graph says of the Page token (``GET /debug_token``, the token inspecting itself).

        A token Graph refuses outright raises :class:`TokenInvalid`; rate limits
        and outages raise as usual.
        """
        token = self.config.credentials["page_token"]
        result = await self._call(partial(self._graph.request, f"{self._graph.version}/debug_token",
                                          args={"input_token": token}), writing=False)
        data = result.get("data") if isinstance(result, dict) else None
        if not isinstance(data, dict):
            raise Transient(f"debug_token answered without data: {result!r}"[:300])
        error = data.get("error") if isinstance(data.get("error"), dict) else {}
        expires = int(data.get("expires_at") or 0)
        return TokenStatus(
            valid=bool(data.get("is_valid")),
            expires_at=datetime.fromtimestamp(expires, tz=timezone.utc) if expires > 0 else None,
            detail=str(error.get("message") or ""),
            scopes=tuple(str(scope) for scope in data.get("scopes") or ()))

    def is_own(self, author_id: str) -> bool:
        return str(author_id) == self.page_id

    async def close(self) -> None:
        # Waiting for a running call (bounded by ``timeout``) off the event loop.
        await asyncio.get_running_loop().run_in_executor(
            None, partial(self._executor.shutdown, wait=True, cancel_futures=True))
        self._session.close()

    # -- conversion -------------------------------------------------------

    def _author(self, data: dict[str, Any]) -> Author:
        who = data.get("from") or {}
        return Author(id=str(who.get("id", "")), name=str(who.get("name", "")))

    def _post_item(self, post: dict[str, Any], created: datetime) -> InboundItem:
        author = self._author(post)
        own = self.is_own(author.id)
        # Graph has no "is this an ad" field on a feed post: a boosted post is
        # promotion_status "active"; an "is_ad" key (set by a proxy) also counts.
        is_ad = own and (post.get("promotion_status") == "active" or post.get("is_ad") is True)
        return InboundItem(
            platform=Platform.FACEBOOK, external_id=str(post["id"]), kind=ItemKind.POST,
            channel_external_id=self.page_id, author=author, text=post.get("message") or "",
            created_time=created, thread_external_id=str(post["id"]),
            permalink=post.get("permalink_url"), is_brand_post=own, is_ad=is_ad, raw=post)

    def _comment_item(self, comment: dict[str, Any], post_id: str) -> InboundItem:
        author = self._author(comment)
        parent = (comment.get("parent") or {}).get("id")
        return InboundItem(
            platform=Platform.FACEBOOK, external_id=str(comment["id"]), kind=ItemKind.COMMENT,
            channel_external_id=self.page_id, author=author, text=comment.get("message") or "",
            created_time=parse_graph_time(comment["created_time"]),
            parent_external_id=str(parent or post_id), thread_external_id=str(post_id),
            permalink=comment.get("permalink_url"), is_brand_post=self.is_own(author.id),
            raw=comment)

    # -- calls and errors -------------------------------------------------

    async def _call(self, func: Callable[[], T], *, writing: bool) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(self._guarded, func, writing))

    def _guarded(self, func: Callable[[], T], writing: bool) -> T:
        """Runs on the executor thread, where the session's last response is visible."""
        try:
            return func()
        except facebook.GraphAPIError as exc:
            raise self._map_error(exc, self._session.last_response, writing) from exc
        except requests.RequestException as exc:
            raise Transient(f"Facebook unreachable: {exc}") from exc

    def _map_error(self, exc: facebook.GraphAPIError, response: requests.Response | None,
                   writing: bool) -> ChannelError:
        result = exc.result if isinstance(exc.result, dict) else {}
        error = result.get("error") if isinstance(result.get("error"), dict) else {}
        code = exc.code if isinstance(exc.code, int) else None
        subcode = error.get("error_subcode")
        status = response.status_code if response is not None else None
        what = f"Facebook error {code}/{subcode}: {exc.message}"
        if code in RATE_LIMIT_CODES:
            return RateLimited(what, retry_after=_retry_after(response))
        if code == 190:
            return TokenInvalid(f"{what} (the Page token is invalid or revoked)")
        if code in TRANSIENT_CODES or error.get("is_transient") or (status or 0) >= 500:
            return Transient(what)
        if code is None and response is None:
            return Transient(what)
        permission = code == 10 or (code is not None and 200 <= code < 300)
        if not writing:
            if permission:
                return TokenInvalid(f"{what} (the Page token lacks a permission)")
            return Transient(what)
        message = str(exc.message).lower()
        if code == 551:
            return ReplyRejected(f"Facebook cannot reach this person right now: {what}", "not_allowed")
        if subcode == 2018278 or ("outside" in message and "window" in message):
            return ReplyRejected(f"Facebook will not deliver this private reply: a comment gets "
                                 f"only one, sent once within 7 days of the comment (a Messenger "
                                 f"conversation: within 24 h of the last message); {what}",
                                 "private_window")
        if permission:
            return ReplyRejected(f"Facebook refused this reply: the Page token lacks the "
                                 f"permission, or the object is not this Page's; {what}", "not_allowed")
        return ReplyRejected(f"Facebook refused this reply: {what}")
