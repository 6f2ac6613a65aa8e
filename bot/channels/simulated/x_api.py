"""A fake X API v2: mentions timeline, tweet lookup, reply tweets, direct messages.

Shapes follow docs.x.com: ``{"data", "includes", "errors", "meta"}`` newest
first, with ``since_id``/``until_id`` (exclusive), ``start_time``/``end_time``,
``max_results`` and opaque ``pagination_token``; errors as problem JSON
``{"title", "detail", "type", "status"}``; a referenced tweet that no longer
exists is a partial error in ``errors[]`` beside ``data`` (status 200). Reading
mentions and tweets takes the account's bearer token; writing and reading direct
messages take an OAuth 1.0a header whose ``oauth_token`` is the account's access
token (the signature is not verified). Switches simulate 429s (with or without
the ``x-rate-limit-*`` headers, for every caller or one account) and 5xx outages.
"""

from __future__ import annotations

import base64
import html
import itertools
import re
import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from bot.channels.x import MAX_WEIGHTED_LENGTH, weighted_length

Json = dict[str, Any]
PROBLEMS = "https://api.x.com/2/problems/"


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str, kind: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.type = PROBLEMS + kind if kind else "about:blank"
        self.headers = headers or {}

    def response(self) -> web.Response:
        return web.json_response({"title": self.title, "detail": self.detail, "type": self.type,
                                  "status": self.status}, status=self.status,
                                 headers=self.headers)


def x_time(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{value.microsecond // 1000:03d}Z"


class FakeXAPI:
    """In-memory accounts, tweets and DMs behind an X-API-v2-shaped HTTP API."""

    def __init__(self, *, first_id: int = 1_860_000_000_000_000_000) -> None:
        self.accounts: dict[str, Json] = {}
        self.users: dict[str, Json] = {}
        self.tweets: dict[str, Json] = {}
        self.mentions: dict[str, list[str]] = {}
        self.dms: list[Json] = []
        self.requests: list[str] = []
        self._rate_limit: Json | None = None
        self._outage: int | None = None
        self._ids = itertools.count(first_id, 4_194_304)
        self._app: web.Application | None = None

    # -- scripting ------------------------------------------------------------

    def add_account(self, user_id: str, username: str, bearer_token: str, *,
                    access_token: str | None = None, name: str | None = None) -> None:
        """The brand account; writes need ``access_token`` (default: ``bearer_token``)."""
        self.accounts[user_id] = {"bearer_token": bearer_token,
                                  "access_token": access_token or bearer_token, "revoked": False}
        self._user(user_id, username, name or username)
        self.mentions.setdefault(user_id, [])

    def revoke(self, user_id: str) -> None:
        self.accounts[user_id]["revoked"] = True

    def add_tweet(self, account_id: str, text: str, created_at: datetime | None = None) -> str:
        """A tweet of the account itself (a brand post, such as a promotion)."""
        return self._tweet(account_id, text, None, created_at)

    def delete_tweet(self, tweet_id: str) -> None:
        """Gone: lookups answer a partial error, tweets that referenced it stay."""
        del self.tweets[tweet_id]
        for ids in self.mentions.values():
            if tweet_id in ids:
                ids.remove(tweet_id)

    def add_dm(self, account_id: str, sender_id: str, username: str, name: str, text: str,
               created_at: datetime | None = None) -> str:
        """A direct message from ``sender_id`` to the account; returns its event id."""
        self._user(sender_id, username, name)
        return self._dm(sender_id, account_id, text, created_at)

    def add_mention(self, account_id: str, author_id: str, username: str, name: str, text: str,
                    in_reply_to: str | None = None, created_at: datetime | None = None, *,
                    followers: int = 0) -> str:
        """A tweet mentioning the account (``@handle`` is prefixed when missing)."""
        handle = "@" + self.users[account_id]["username"]
        if handle.lower() not in text.lower():
            text = f"{handle} {text}"
        self._user(author_id, username, name, followers)
        tweet_id = self._tweet(author_id, text, in_reply_to, created_at)
        self.mentions[account_id].append(tweet_id)
        return tweet_id

    def replies_to(self, tweet_id: str) -> list[Json]:
        return [t for t in self.tweets.values() if _replied_to(t) == tweet_id]

    def set_rate_limited(self, *, reset_in: float | None = 60, headers: bool = True,
                         account: str | None = None) -> None:
        """Answer 429 until :meth:`clear_failures`; ``headers=False`` omits x-rate-limit-*;
        ``account`` limits only the requests made with that account's tokens."""
        self._rate_limit = {"reset_in": reset_in, "headers": headers, "account": account}

    def set_outage(self, status: int = 503) -> None:
        self._outage = status

    def clear_failures(self) -> None:
        self._rate_limit, self._outage = None, None

    def _user(self, user_id: str, username: str, name: str, followers: int = 0) -> None:
        user = self.users.setdefault(user_id, {"id": user_id, "public_metrics": {
            "followers_count": followers, "following_count": 0, "tweet_count": 0,
            "listed_count": 0}})
        user.update(username=username, name=name)
        if followers:
            user["public_metrics"]["followers_count"] = followers

    def _tweet(self, author_id: str, text: str, in_reply_to: str | None,
               created_at: datetime | None) -> str:
        tweet_id = str(next(self._ids))
        tweet: Json = {"id": tweet_id, "text": text, "author_id": author_id,
                       "created_at": x_time(created_at or datetime.now(timezone.utc)),
                       "conversation_id": tweet_id, "edit_history_tweet_ids": [tweet_id],
                       "public_metrics": {"retweet_count": 0, "reply_count": 0,
                                          "like_count": 0, "quote_count": 0}}
        parent = self.tweets.get(in_reply_to or "")
        if in_reply_to:
            tweet["referenced_tweets"] = [{"type": "replied_to", "id": in_reply_to}]
            tweet["conversation_id"] = parent["conversation_id"] if parent else in_reply_to
            tweet["in_reply_to_user_id"] = parent["author_id"] if parent else author_id
            if parent:
                parent["public_metrics"]["reply_count"] += 1
        self.tweets[tweet_id] = tweet
        return tweet_id

    def _dm(self, sender: str, participant: str, text: str, created_at: datetime | None) -> str:
        event_id = str(next(self._ids))
        conversation = "-".join(sorted([sender, participant], key=int))
        self.dms.append({"dm_event_id": event_id, "dm_conversation_id": conversation,
                         "sender_id": sender, "participant_id": participant, "text": text,
                         "event_type": "MessageCreate",
                         "created_at": x_time(created_at or datetime.now(timezone.utc))})
        return event_id

    # -- HTTP ----------------------------------------------------------------

    @property
    def app(self) -> web.Application:
        if self._app is None:
            self._app = self.make_app()
        return self._app

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/2/users/{user_id}/mentions", self._get_mentions)
        app.router.add_get("/2/tweets/{tweet_id}", self._get_tweet)
        app.router.add_get("/2/users/{user_id}/tweets", self._get_user_tweets)
        app.router.add_post("/2/tweets", self._post_tweet)
        app.router.add_get("/2/dm_events", self._get_dm_events)
        app.router.add_post("/2/dm_conversations/with/{participant_id}/messages", self._post_dm)
        app.router.add_get("/__account/{user_id}", self._html_account)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith("/2/"):
            return await handler(request)
        self.requests.append(f"{request.method} {request.path_qs}")
        try:
            if self._outage:
                raise Problem(self._outage, "Service Unavailable", "Service Unavailable")
            if self._rate_limit is not None and self._rate_limit.get("account") in (
                    None, self._caller(request)):
                raise self._too_many()
            return await handler(request)
        except Problem as problem:
            return problem.response()

    def _too_many(self) -> Problem:
        settings = self._rate_limit or {}
        headers: dict[str, str] = {}
        if settings.get("headers"):
            headers = {"x-rate-limit-limit": "450", "x-rate-limit-remaining": "0"}
            if settings.get("reset_in") is not None:
                headers["x-rate-limit-reset"] = str(int(time.time() + settings["reset_in"]))
        return Problem(429, "Too Many Requests", "Too Many Requests", headers=headers)

    def _caller(self, request: web.Request) -> str | None:
        """The account whose token a request carries (revoked or not), if any."""
        header = request.headers.get("Authorization", "")
        match = re.search(r'oauth_token="([^"]*)"', header)
        token = unquote(match.group(1)) if match else header.removeprefix("Bearer ").strip()
        return next((user_id for user_id, account in self.accounts.items()
                     if token in (account["bearer_token"], account["access_token"])), None)

    def _reader(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else None
        for user_id, account in self.accounts.items():
            if token and token == account["bearer_token"] and not account["revoked"]:
                return user_id
        return self._writer(request)

    def _writer(self, request: web.Request) -> str:
        match = re.search(r'oauth_token="([^"]*)"', request.headers.get("Authorization", ""))
        token = unquote(match.group(1)) if match else None
        for user_id, account in self.accounts.items():
            if token and token == account["access_token"] and not account["revoked"]:
                return user_id
        raise Problem(401, "Unauthorized", "Unauthorized")

    async def _get_mentions(self, request: web.Request) -> web.Response:
        self._reader(request)
        user_id = request.match_info["user_id"]
        if user_id not in self.mentions:
            raise Problem(400, "Invalid Request", "One or more parameters to your request was "
                          f"invalid: user {user_id} not found", "invalid-request")
        query = request.query
        try:
            limit = int(query.get("max_results", "10"))
            if not 5 <= limit <= 100:
                raise ValueError(limit)
        except ValueError as exc:
            raise Problem(400, "Invalid Request", "The `max_results` query parameter value "
                          f"[{query.get('max_results')}] is not between 5 and 100",
                          "invalid-request") from exc
        ids = sorted(self.mentions[user_id], key=int, reverse=True)
        if "since_id" in query:
            ids = [i for i in ids if int(i) > int(query["since_id"])]
        if "until_id" in query:
            ids = [i for i in ids if int(i) < int(query["until_id"])]
        ids = [i for i in ids if i in self.tweets]
        if "start_time" in query:
            start = x_time(datetime.fromisoformat(query["start_time"].replace("Z", "+00:00")))
            ids = [i for i in ids if self.tweets[i]["created_at"] >= start]
        if "end_time" in query:
            end = x_time(datetime.fromisoformat(query["end_time"].replace("Z", "+00:00")))
            ids = [i for i in ids if self.tweets[i]["created_at"] < end]
        if "pagination_token" in query:
            below = base64.urlsafe_b64decode(query["pagination_token"] + "==").decode()
            ids = [i for i in ids if int(i) < int(below)]
        page, rest = ids[:limit], ids[limit:]
        meta: Json = {"result_count": len(page)}
        if page:
            meta.update(newest_id=page[0], oldest_id=page[-1])
        if rest:
            meta["next_token"] = base64.urlsafe_b64encode(page[-1].encode()).decode().rstrip("=")
        body: Json = {"data": [self._render(self.tweets[i], query) for i in page]} if page else {}
        includes = self._includes(page, query)
        if includes:
            body["includes"] = includes
        errors = self._missing_references(page, query)
        if errors:
            body["errors"] = errors
        body["meta"] = meta
        return web.json_response(body, headers={"x-rate-limit-limit": "450",
                                                "x-rate-limit-remaining": "449",
                                                "x-rate-limit-reset": str(int(time.time()) + 900)})

    def _missing_references(self, page: list[str], query: Any) -> list[Json]:
        """Partial errors: expanded tweets that no longer exist."""
        if "referenced_tweets.id" not in query.get("expansions", "").split(","):
            return []
        return [{"value": r["id"], "detail": f"Could not find tweet with referenced_tweets.id: "
                 f"[{r['id']}].", "title": "Not Found Error", "resource_type": "tweet",
                 "parameter": "referenced_tweets.id", "resource_id": r["id"],
                 "type": "https://api.twitter.com/2/problems/resource-not-found"}
                for i in page for r in self.tweets[i].get("referenced_tweets", [])
                if r["id"] not in self.tweets]

    async def _get_user_tweets(self, request: web.Request) -> web.Response:
        """The user's own tweets (replies included), newest first, paged; ``start_time``."""
        self._reader(request)
        user_id, query = request.match_info["user_id"], request.query
        ids = sorted((t["id"] for t in self.tweets.values() if t["author_id"] == user_id), key=int, reverse=True)
        if "start_time" in query:
            start = x_time(datetime.fromisoformat(query["start_time"].replace("Z", "+00:00")))
            ids = [i for i in ids if self.tweets[i]["created_at"] >= start]
        if "pagination_token" in query:
            below = base64.urlsafe_b64decode(query["pagination_token"] + "==").decode()
            ids = [i for i in ids if int(i) < int(below)]
        limit = max(5, min(int(query.get("max_results", "10")), 100))
        page, rest = ids[:limit], ids[limit:]
        meta: Json = {"result_count": len(page)}
        if rest:
            meta["next_token"] = base64.urlsafe_b64encode(page[-1].encode()).decode().rstrip("=")
        body: Json = {"data": [self._render(self.tweets[i], query) for i in page]} if page else {}
        body["meta"] = meta
        return web.json_response(body)

    async def _get_tweet(self, request: web.Request) -> web.Response:
        self._reader(request)
        tweet_id = request.match_info["tweet_id"]
        if tweet_id not in self.tweets:
            return web.json_response({"errors": [{
                "value": tweet_id, "detail": f"Could not find tweet with id: [{tweet_id}].",
                "title": "Not Found Error", "resource_type": "tweet", "parameter": "id",
                "resource_id": tweet_id,
                "type": "https://api.twitter.com/2/problems/resource-not-found"}]})
        body: Json = {"data": self._render(self.tweets[tweet_id], request.query)}
        includes = self._includes([tweet_id], request.query)
        if includes:
            body["includes"] = includes
        return web.json_response(body)

    async def _get_dm_events(self, request: web.Request) -> web.Response:
        """The account's DM events (sent and received), newest first, paged."""
        user_id = self._writer(request)  # DM lookup needs user context (OAuth 1.0a)
        query = request.query
        try:
            limit = int(query.get("max_results", "100"))
            if not 1 <= limit <= 100:
                raise ValueError(limit)
        except ValueError as exc:
            raise Problem(400, "Invalid Request", "The `max_results` query parameter value "
                          f"[{query.get('max_results')}] is not between 1 and 100",
                          "invalid-request") from exc
        events = sorted((e for e in self.dms if user_id in (e["sender_id"], e["participant_id"])),
                        key=lambda e: int(e["dm_event_id"]), reverse=True)
        if query.get("event_types"):
            events = [e for e in events if e["event_type"] in query["event_types"].split(",")]
        if "pagination_token" in query:
            below = int(base64.urlsafe_b64decode(query["pagination_token"] + "==").decode())
            events = [e for e in events if int(e["dm_event_id"]) < below]
        page, rest = events[:limit], events[limit:]
        wanted = {"id", "event_type", "text"}
        wanted |= set(filter(None, query.get("dm_event.fields", "").split(",")))
        data = [{k: v for k, v in {"id": e["dm_event_id"], **e}.items() if k in wanted}
                for e in page]
        body: Json = {"data": data} if data else {}
        if "sender_id" in query.get("expansions", "").split(",") and page:
            fields = {"id", "name", "username"}
            fields |= set(filter(None, query.get("user.fields", "").split(",")))
            senders = dict.fromkeys(e["sender_id"] for e in page)
            body["includes"] = {"users": [{k: v for k, v in self.users[s].items() if k in fields}
                                          for s in senders if s in self.users]}
        meta: Json = {"result_count": len(page)}
        if rest:
            meta["next_token"] = base64.urlsafe_b64encode(
                page[-1]["dm_event_id"].encode()).decode().rstrip("=")
        body["meta"] = meta
        return web.json_response(body)

    def _render(self, tweet: Json, query: Any) -> Json:
        wanted = {"id", "text", "edit_history_tweet_ids"}
        wanted |= set(filter(None, query.get("tweet.fields", "").split(",")))
        return {k: v for k, v in tweet.items() if k in wanted}

    def _includes(self, page: list[str], query: Any) -> Json:
        expansions = set(query.get("expansions", "").split(","))
        includes: Json = {}
        if "author_id" in expansions and page:
            wanted = {"id", "name", "username"}
            wanted |= set(filter(None, query.get("user.fields", "").split(",")))
            authors = dict.fromkeys(self.tweets[i]["author_id"] for i in page)
            includes["users"] = [{k: v for k, v in self.users[a].items() if k in wanted}
                                 for a in authors]
        if "referenced_tweets.id" in expansions:
            refs = [r["id"] for i in page for r in self.tweets[i].get("referenced_tweets", [])
                    if r["id"] in self.tweets]
            if refs:
                includes["tweets"] = [self._render(self.tweets[r], query) for r in refs]
        return includes

    async def _post_tweet(self, request: web.Request) -> web.Response:
        author_id = self._writer(request)
        body = await request.json()
        text = str(body.get("text") or "")
        length = weighted_length(text)
        if length > MAX_WEIGHTED_LENGTH:
            raise Problem(403, "Forbidden", "Your Tweet text is too long. For more information "
                          "on how X determines text length, see https://github.com/twitter/"
                          "twitter-text.")
        reply_to = str((body.get("reply") or {}).get("in_reply_to_tweet_id") or "") or None
        if reply_to and reply_to not in self.tweets:
            raise Problem(403, "Forbidden", "You attempted to reply to a Tweet that is deleted "
                          "or not visible to you.")
        if any(t["author_id"] == author_id and t["text"] == text for t in self.tweets.values()):
            raise Problem(403, "Forbidden",
                          "You are not allowed to create a Tweet with duplicate content.")
        tweet_id = self._tweet(author_id, text, reply_to, None)
        return web.json_response({"data": {"id": tweet_id, "text": text,
                                           "edit_history_tweet_ids": [tweet_id]}}, status=201)

    async def _post_dm(self, request: web.Request) -> web.Response:
        sender = self._writer(request)
        participant = request.match_info["participant_id"]
        text = str((await request.json()).get("text") or "")
        if not text:
            raise Problem(400, "Invalid Request", "text or attachments is required",
                          "invalid-request")
        event_id = self._dm(sender, participant, text, None)
        conversation = self.dms[-1]["dm_conversation_id"]
        return web.json_response({"data": {"dm_conversation_id": conversation,
                                           "dm_event_id": event_id}}, status=201)

    async def _html_account(self, request: web.Request) -> web.Response:
        user_id = request.match_info["user_id"]
        if user_id not in self.accounts:
            raise web.HTTPNotFound(text="no such account")
        e = html.escape
        parts = [f"<!doctype html><meta charset='utf-8'><h1>@{e(self.users[user_id]['username'])}"
                 "</h1><ul>"]
        for tweet_id in sorted(self.mentions[user_id], key=int, reverse=True):
            tweet = self.tweets[tweet_id]
            author = self.users[tweet["author_id"]]
            parts.append(f"<li><b>@{e(author['username'])}</b>: {e(tweet['text'])}<ul>")
            parts += [f"<li><b>@{e(self.users[r['author_id']]['username'])}</b>: "
                      f"{e(r['text'])}</li>" for r in self.replies_to(tweet_id)]
            parts.append("</ul></li>")
        parts.append("</ul><h2>Direct messages</h2><ul>")
        parts += [f"<li>to {e(dm['participant_id'])}: {e(dm['text'])}</li>"
                  if dm["sender_id"] == user_id else
                  f"<li>from {e(dm['sender_id'])}: {e(dm['text'])}</li>"
                  for dm in self.dms if user_id in (dm["sender_id"], dm["participant_id"])]
        parts.append("</ul>")
        return web.Response(text="\n".join(parts), content_type="text/html")


def _replied_to(tweet: Json) -> str | None:
    return next((r["id"] for r in tweet.get("referenced_tweets", [])
                 if r["type"] == "replied_to"), None)
