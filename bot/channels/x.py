"""The X (Twitter) account channel, over tweepy's ``AsyncClient`` (API v2).

tweepy hard-codes ``https://api.twitter.com``; the client is given a
:class:`_RebasedSession` that sends its requests to ``config.api_url`` instead
(the OAuth 1.0a signature still names api.twitter.com: a proxy or fake must not
verify it). Rate limits are never waited for here: a 429 becomes
``RateLimited(retry_after)`` and the caller schedules the retry.
"""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import aiohttp
import tweepy
from tweepy.asynchronous import AsyncClient
from yarl import URL

from bot.channels.base import ChannelConfig, FetchResult, ReplyTarget
from bot.domain import Author, InboundItem, ItemKind, Platform, SentReply
from bot.errors import ChannelError, RateLimited, ReplyRejected, TokenInvalid, Transient

TWEEPY_HOST = "https://api.twitter.com"
DEFAULT_BACKFILL_SECONDS = 86_400
DEFAULT_RETRY_AFTER = 60.0
MAX_WEIGHTED_LENGTH = 280
TWEET_FIELDS = ["created_at", "conversation_id", "in_reply_to_user_id", "referenced_tweets",
                "public_metrics", "author_id"]
# 403 problem types that mean "these credentials may not do this", not "not this reply".
AUTH_PROBLEMS = ("client-forbidden", "unsupported-authentication", "not-authorized-for-resource")

USER_FIELDS = ["username", "name", "public_metrics"]
USER_CREDENTIALS = ("consumer_key", "consumer_secret", "access_token", "access_token_secret")
DM_EVENT_FIELDS = ["created_at", "sender_id", "dm_conversation_id", "text"]

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Page:
    items: list[InboundItem]
    newest_id: str | None

# twitter-text v3 configuration: code points in these ranges weigh 1, others 2;
# a URL weighs 23, an emoji (with its modifiers and joiners) 2; text is NFC-normalised.
_LIGHT_RANGES = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))
_URL = re.compile(r"https?://\S+|(?<![\w@.])(?:www\.)?(?:[a-z0-9-]+\.)+"
                  r"(?:com|net|org|io|co|fr|de|uk|eu|info|app|dev|ly|me)\b(?:/\S*)?",
                  re.IGNORECASE)
_EMOJI_BASE = "[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\u2300-\u23FF]"
_EMOJI_MOD = "[\uFE0F\U0001F3FB-\U0001F3FF\u20E3]*"
_EMOJI = re.compile(rf"[\U0001F1E6-\U0001F1FF]{{2}}|{_EMOJI_BASE}{_EMOJI_MOD}"
                    rf"(?:\u200D{_EMOJI_BASE}{_EMOJI_MOD})*|[0-9#*]\uFE0F?\u20E3")


def weighted_length(text: str) -> int:
    """The length X counts against 280 (twitter-text v3, without its full URL grammar)."""
    text = unicodedata.normalize("NFC", text)
    weight = 0
    for part, is_url in _split(text, _URL):
        if is_url:
            weight += 23 * 100
            continue
        for piece, is_emoji in _split(part, _EMOJI):
            if is_emoji:
                weight += 200
                continue
            for char in piece:
                point = ord(char)
                light = any(lo <= point <= hi for lo, hi in _LIGHT_RANGES)
                weight += 100 if light else 200
    return weight // 100


def _split(text: str, pattern: re.Pattern[str]) -> list[tuple[str, bool]]:
    parts: list[tuple[str, bool]] = []
    position = 0
    for match in pattern.finditer(text):
        parts += [(text[position:match.start()], False), (match.group(), True)]
        position = match.end()
    return parts + [(text[position:], False)]


class _RebasedSession:
    """What tweepy needs of an ``aiohttp.ClientSession``, sending to another host."""

    def __init__(self, base_url: str | None, timeout: aiohttp.ClientTimeout) -> None:
        self._base = base_url.rstrip("/") if base_url else None
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None  # opened inside the event loop

    def request(self, method: str, url: str | URL, **kwargs: Any) -> Any:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session.request(method, self._rebase(url), **kwargs)

    def _rebase(self, url: str | URL) -> str | URL:
        text = str(url)
        if self._base is None or not text.startswith(TWEEPY_HOST):
            return url
        moved = self._base + text[len(TWEEPY_HOST):]
        return URL(moved, encoded=True) if isinstance(url, URL) else moved

    @property
    def closed(self) -> bool:
        return self._session is None or self._session.closed

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class XChannel:
    """One X account: polls its mentions, replies in public or by direct message.

    ``config.external_id`` is the account's user id. Credentials: bearer_token
    (reading), consumer_key, consumer_secret, access_token, access_token_secret
    (writing and direct messages, OAuth 1.0a). Options: ``backfill_seconds`` (first
    poll, default a day), ``timeout`` (seconds per call, default 30). Cursor:
    ``{"since_id": "...", "dms": true, "dm_since_id": "..."}``; ``dms`` switches
    direct messages on (``relais channels add x --dms``), the ids are where to resume.
    """

    def __init__(self, config: ChannelConfig) -> None:
        self.config = config
        self.user_id = config.external_id
        creds = config.credentials
        timeout = aiohttp.ClientTimeout(total=float(config.options.get("timeout", 30)))
        self._session = _RebasedSession(config.api_url, timeout)
        self._client = AsyncClient(
            bearer_token=creds.get("bearer_token"), consumer_key=creds.get("consumer_key"),
            consumer_secret=creds.get("consumer_secret"), access_token=creds.get("access_token"),
            access_token_secret=creds.get("access_token_secret"), wait_on_rate_limit=False)
        self._client.session = self._session  # duck-typed: tweepy only calls .request()

    async def fetch_new(self, cursor: dict[str, Any]) -> FetchResult:
        """Mentions newer than ``cursor["since_id"]`` (or of the backfill window at first),
        and, when ``cursor["dms"]`` is true, direct messages newer than ``cursor["dm_since_id"]``.

        The returned cursor keeps every other key of ``cursor`` (the ``dms`` switch).
        """
        since_id = cursor.get("since_id")
        start_time = None if since_id else self._backfill_start()
        items: list[InboundItem] = []
        newest_id: str | None = None
        async for page in self._mention_pages(since_id=since_id, start_time=start_time):
            if newest_id is None and page.newest_id:
                newest_id = page.newest_id
            items += page.items
        new_cursor = dict(cursor)
        if newest_id:
            new_cursor["since_id"] = newest_id
        if cursor.get("dms"):
            self._require_user_auth("read direct messages")
            messages, newest_dm = await self._dms_since(cursor.get("dm_since_id"))
            items += messages
            if newest_dm:
                new_cursor["dm_since_id"] = newest_dm
        return FetchResult(items=items, cursor=new_cursor)

    async def backfill(self, start_time: datetime,
                       end_time: datetime | None = None) -> AsyncIterator[list[InboundItem]]:
        """Mentions created between ``start_time`` and ``end_time``, one list per page.

        Independent of the polling cursor: the caller stores the pages and leaves
        ``since_id`` alone. X serves only the most recent mentions of an account
        (about the last 800 at the time of writing), whatever ``start_time`` says.
        """
        async for page in self._mention_pages(since_id=None, start_time=start_time,
                                              end_time=end_time):
            yield page.items

    async def fetch_tweet(self, tweet_id: str) -> InboundItem:
        """One tweet by id; a tweet of the account itself comes back as a brand ``post``."""
        response = await self._call(self._client.get_tweet(
            tweet_id, expansions=["author_id"], tweet_fields=TWEET_FIELDS,
            user_fields=USER_FIELDS), writing=False)
        self._log_partial_errors(response, "tweet lookup")
        if response.data is None:
            raise ReplyRejected(f"X has no tweet {tweet_id} (deleted, or not visible)")
        users = _users(response)
        item = self._item(response.data.data, users)
        return replace(item, kind=ItemKind.POST) if item.is_brand_post else item

    async def reply_public(self, target: ReplyTarget, text: str) -> SentReply:
        """A reply tweet under ``target``."""
        self._check_length(text)
        self._require_user_auth("post a reply")
        response = await self._call(self._client.create_tweet(
            text=text, in_reply_to_tweet_id=target.external_id, user_auth=True), writing=True)
        return SentReply(platform_id=str(response.data["id"]))

    async def find_public_reply(self, target: ReplyTarget, text: str, since: datetime) -> SentReply | None:
        """The account's own reply tweet to ``target`` created since ``since`` (the account's
        timeline, ``GET /2/users/:id/tweets``, at most 500 tweets), or None.

        How a reply interrupted mid-call (worker killed) is checked before sending it again.
        Matched on the replied-to tweet, not the text (X rewrites links to t.co): Relais
        answers an item once, so any reply of ours to it since the reply was written is it.
        """
        token: str | None = None
        for _ in range(5):
            page = await self._call(self._client.get_users_tweets(
                self.user_id, start_time=since, max_results=100, pagination_token=token,
                tweet_fields=["referenced_tweets", "created_at"]), writing=False)
            for tweet in page.data or []:
                refs = tweet.data.get("referenced_tweets") or []
                if any(r.get("type") == "replied_to" and str(r.get("id")) == target.external_id for r in refs):
                    return SentReply(platform_id=str(tweet.data["id"]))
            token = (page.meta or {}).get("next_token") if isinstance(page.meta, dict) else None
            if not token:
                return None
        return None

    async def reply_private(self, target: ReplyTarget, text: str) -> SentReply:
        """A direct message to the author of ``target``."""
        self._require_user_auth("send a direct message")
        response = await self._call(self._client.create_direct_message(
            participant_id=target.author_id, text=text, user_auth=True), writing=True)
        return SentReply(platform_id=str(response.data["dm_event_id"]))

    def is_own(self, author_id: str) -> bool:
        return str(author_id) == self.user_id

    async def close(self) -> None:
        await self._session.close()

    def _require_user_auth(self, what: str) -> None:
        """OAuth 1.0a user context is needed to write and to read DMs; say so before tweepy fails."""
        missing = [name for name in USER_CREDENTIALS if not self.config.credentials.get(name)]
        if missing:
            raise TokenInvalid(f"X needs OAuth 1.0a user credentials to {what}; "
                               f"missing: {', '.join(missing)} (relais channels add x ...)")

    def _check_length(self, text: str) -> None:
        length = weighted_length(text)
        if length > MAX_WEIGHTED_LENGTH:
            raise ReplyRejected(f"This reply is too long for X: {length}/{MAX_WEIGHTED_LENGTH} "
                                "(links count 23, emoji and most non-Latin characters 2).", "too_long")

    def _item(self, tweet: dict[str, Any], users: dict[str, dict[str, Any]]) -> InboundItem:
        author_id = str(tweet.get("author_id", ""))
        user = users.get(author_id, {})
        username = str(user.get("username", ""))
        followers = (user.get("public_metrics") or {}).get("followers_count")
        parent = next((str(ref["id"]) for ref in tweet.get("referenced_tweets") or []
                       if ref.get("type") == "replied_to"), None)
        tweet_id = str(tweet["id"])
        return InboundItem(
            platform=Platform.X, external_id=tweet_id, kind=ItemKind.MENTION,
            channel_external_id=self.user_id,
            author=Author(id=author_id, name=str(user.get("name", "")), handle=username,
                          followers=int(followers) if followers is not None else None),
            text=str(tweet.get("text", "")),
            created_time=_x_datetime(tweet.get("created_at")),
            parent_external_id=parent,
            thread_external_id=str(tweet.get("conversation_id") or tweet_id),
            permalink=f"https://x.com/{username or 'i/web'}/status/{tweet_id}",
            is_brand_post=self.is_own(author_id), raw=tweet)

    def _backfill_start(self) -> datetime:
        backfill = int(self.config.options.get("backfill_seconds", DEFAULT_BACKFILL_SECONDS))
        return datetime.now(timezone.utc) - timedelta(seconds=backfill)

    async def _mention_pages(self, *, since_id: str | None, start_time: datetime | None,
                             end_time: datetime | None = None) -> AsyncIterator[_Page]:
        """The mentions timeline, newest first, page after page (``next_token``)."""
        token: str | None = None
        seen_tokens: set[str] = set()
        while True:
            page = await self._call(self._client.get_users_mentions(
                self.user_id, since_id=since_id, start_time=start_time, end_time=end_time,
                pagination_token=token, max_results=100,
                expansions=["author_id", "referenced_tweets.id"], tweet_fields=TWEET_FIELDS,
                user_fields=USER_FIELDS), writing=False)
            self._log_partial_errors(page, "mentions")
            meta = page.meta if isinstance(page.meta, dict) else {}
            users = _users(page)
            newest = str(meta["newest_id"]) if meta.get("newest_id") else None
            yield _Page(self._readable(page.data, users, self._item), newest)
            token = _token(meta)
            if not token or token in seen_tokens:
                return
            seen_tokens.add(token)

    async def _dms_since(self, since_id: str | None) -> tuple[list[InboundItem], str | None]:
        """Direct messages received after event ``since_id`` (at first: the backfill window).

        ``GET /2/dm_events`` has no ``since_id``: it pages newest first, so paging
        stops at the first event already seen (ids grow with time). Events the
        account sent itself are skipped, but still move the cursor.
        """
        start = None if since_id else self._backfill_start()
        items: list[InboundItem] = []
        newest: str | None = None
        token: str | None = None
        seen_tokens: set[str] = set()
        while True:
            page = await self._call(self._client.get_direct_message_events(
                event_types="MessageCreate", max_results=100, pagination_token=token,
                dm_event_fields=DM_EVENT_FIELDS, expansions=["sender_id"],
                user_fields=USER_FIELDS, user_auth=True), writing=False)
            self._log_partial_errors(page, "direct messages")
            users = _users(page)
            done = False
            for event in page.data or []:
                data = event.data
                try:
                    created, seen = _x_datetime(data.get("created_at")), bool(since_id and int(data["id"]) <= int(since_id))
                except (KeyError, ValueError, TypeError, OverflowError):
                    log.warning("X %s: skipping a DM event without id or time: %r", self.config.name, data)
                    continue
                if seen or (start and created < start):
                    done = True
                    break
                newest = newest or str(data["id"])
                if not self.is_own(str(data.get("sender_id", ""))):
                    items += self._readable([event], users, self._message)
            token = _token(page.meta)
            if done or not token or token in seen_tokens:
                return items, newest
            seen_tokens.add(token)

    def _message(self, event: dict[str, Any], users: dict[str, dict[str, Any]]) -> InboundItem:
        sender = str(event.get("sender_id", ""))
        user = users.get(sender, {})
        followers = (user.get("public_metrics") or {}).get("followers_count")
        conversation = str(event.get("dm_conversation_id") or "")
        return InboundItem(
            platform=Platform.X, external_id=str(event["id"]), kind=ItemKind.MESSAGE,
            channel_external_id=self.user_id,
            author=Author(id=sender, name=str(user.get("name", "")),
                          handle=str(user.get("username", "")),
                          followers=int(followers) if followers is not None else None),
            text=str(event.get("text", "")), created_time=_x_datetime(event.get("created_at")),
            thread_external_id=conversation or None,
            permalink=f"https://x.com/messages/{conversation}" if conversation else None,
            raw=event)

    def _readable(self, objects: Any, users: dict[str, dict[str, Any]],
                  read: Callable[[dict[str, Any], dict[str, dict[str, Any]]], InboundItem]) -> list[InboundItem]:
        """``read`` applied to each tweet or DM event; one that cannot be read is skipped with a warning."""
        items = []
        for obj in objects or []:
            try:
                items.append(read(obj.data, users))
            except (KeyError, ValueError, TypeError, AttributeError, OverflowError) as exc:
                log.warning("X %s: skipping an unreadable object (%r): %r", self.config.name, exc, obj.data)
        return items

    def _log_partial_errors(self, response: Any, what: str) -> None:
        """A 200 may carry ``errors[]`` beside ``data`` (a deleted referenced tweet...)."""
        for error in getattr(response, "errors", None) or []:
            log.warning("X %s for %s: partial error %r", what, self.config.name, error)

    async def _call(self, call: Awaitable[T], *, writing: bool) -> T:
        try:
            return await call
        except tweepy.TooManyRequests as exc:
            wait = DEFAULT_RETRY_AFTER
            if exc.reset_time is not None:
                wait = max(1.0, exc.reset_time - time.time())
            raise RateLimited(f"X rate limit reached: {exc}", retry_after=wait) from exc
        except tweepy.Unauthorized as exc:
            raise TokenInvalid(f"X refused the credentials: {exc}") from exc
        except tweepy.Forbidden as exc:
            raise self._forbidden(exc, await _problem_type(exc), writing) from exc
        except tweepy.BadRequest as exc:
            raise ReplyRejected(f"X rejected the request: {_detail(exc)}") from exc
        except tweepy.NotFound as exc:
            if writing:
                raise ReplyRejected(f"X could not find it: {_detail(exc)}", "not_allowed") from exc
            raise Transient(f"X answered 404: {_detail(exc)}") from exc
        except tweepy.TwitterServerError as exc:
            raise Transient(f"X server error: {exc}") from exc
        except tweepy.HTTPException as exc:
            raise Transient(f"X answered unexpectedly: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Transient(f"X unreachable: {exc!r}") from exc
        except (KeyError, ValueError, TypeError, AttributeError) as exc:  # tweepy could not read the answer
            if writing:  # it may be posted: not a ChannelError, so the respond stage parks it in doubt
                raise
            raise Transient(f"X sent an answer that cannot be read: {exc!r}") from exc

    def _forbidden(self, exc: tweepy.Forbidden, problem: str, writing: bool) -> ChannelError:
        """403 on a reply is usually about that reply (duplicate, too long, not allowed)."""
        if writing and not any(kind in problem for kind in AUTH_PROBLEMS):
            detail = _detail(exc)
            reason = "too_long" if "too long" in detail.lower() else "not_allowed"
            return ReplyRejected(f"X refused this reply: {detail}", reason)
        return TokenInvalid(f"X forbids this for these credentials: {_detail(exc)}")


def _users(response: Any) -> dict[str, dict[str, Any]]:
    """The answer's ``includes.users`` by id; an odd shape gives none."""
    includes = getattr(response, "includes", None)
    users = includes.get("users") if isinstance(includes, dict) else None
    return {str(u.data["id"]): u.data for u in users if isinstance(getattr(u, "data", None), dict)
            and "id" in u.data} if isinstance(users, list) else {}


def _token(meta: object) -> str | None:
    """``meta.next_token``, the next page, when it is a string."""
    token = meta.get("next_token") if isinstance(meta, dict) else None
    return token if isinstance(token, str) and token else None


def _x_datetime(value: object) -> datetime:
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _detail(exc: tweepy.HTTPException) -> str:
    return "; ".join(str(m) for m in exc.api_messages) or str(exc)


async def _problem_type(exc: tweepy.HTTPException) -> str:
    """The problem ``type`` of an error body (tweepy keeps messages, not the type)."""
    try:
        body = await exc.response.json(content_type=None)
    except (ValueError, aiohttp.ClientError, AttributeError, TypeError):
        return ""
    return str(body.get("type", "")) if isinstance(body, dict) else ""
