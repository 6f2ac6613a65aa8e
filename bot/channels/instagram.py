"""An Instagram professional account, over the same Graph API client as Facebook Pages.

Instagram comments reach Relais through the linked Facebook Page's app
(``object: instagram`` webhooks, :mod:`bot.ingest.facebook_delivery`) and are
answered with the linked Page's access token:

* public reply to a comment: ``POST /{ig-comment-id}/replies`` (``message``);
  a comment on a media: ``POST /{ig-media-id}/comments``;
* hide or show a comment: ``POST /{ig-comment-id}`` with ``hide=true|false``;
* polling (reconcile): ``GET /{ig-user-id}/media?fields=...,comments{...}``,
  newest media first, comments of the media of the look-back window.

Not done: private replies (Instagram's messaging API needs another permission
and a conversation the person opened): they are refused with the advice to
answer in public. Polling reads the first page of comments of each media
(Graph's default, about 50) and top-level comments only.
"""

from __future__ import annotations

import time
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlparse

from bot.channels.base import FetchResult, ReplyTarget
from bot.channels.facebook import (
    DEFAULT_BACKFILL_SECONDS,
    DEFAULT_COMMENT_LOOKBACK_SECONDS,
    FacebookChannel,
    parse_graph_time,
)
from bot.domain import Author, InboundItem, ItemKind, Platform, SentReply
from bot.errors import ReplyRejected

COMMENT_FIELDS = "id,text,timestamp,username,from{id,username},hidden"
MEDIA_FIELDS = f"id,caption,timestamp,permalink,comments{{{COMMENT_FIELDS}}}"


class InstagramChannel(FacebookChannel):
    """One Instagram professional account (``external_id``: its Instagram user id).

    Credentials: ``page_token``, the access token of the Facebook Page linked
    to the account (with ``instagram_manage_comments``). The cursor is
    ``{"since": <unix seconds>}``, as for Pages.
    """

    @property
    def account_id(self) -> str:
        return self.page_id

    async def fetch_new(self, cursor: dict[str, Any]) -> FetchResult:
        """Comments created since ``cursor["since"]`` on media of the look-back window."""
        options = self.config.options
        since = int(cursor.get("since") or time.time()
                    - int(options.get("backfill_seconds", DEFAULT_BACKFILL_SECONDS)))
        oldest_media = min(since, int(time.time()) - int(
            options.get("comment_lookback_seconds", DEFAULT_COMMENT_LOOKBACK_SECONDS)))
        items: list[InboundItem] = []
        newest = since
        args: dict[str, Any] = {"fields": MEDIA_FIELDS, "limit": 25}
        while True:
            page = await self._call(partial(self._graph.get_connections, self.account_id, "media",
                                            **args), writing=False)
            older_reached = False
            for media in page.get("data") or []:
                if media.get("timestamp") and \
                        parse_graph_time(media["timestamp"]).timestamp() < oldest_media:
                    older_reached = True
                    break
                for comment in (media.get("comments") or {}).get("data") or []:
                    item = self._comment(comment, str(media["id"]))
                    if item.created_time.timestamp() >= since:
                        items.append(item)
                        newest = max(newest, int(item.created_time.timestamp()))
            next_url = (page.get("paging") or {}).get("next")
            if older_reached or not next_url:
                break
            args = {key: values[-1] for key, values in parse_qs(urlparse(next_url).query).items()
                    if key != "access_token"}
        return FetchResult(items=items, cursor={"since": newest})

    async def reply_public(self, target: ReplyTarget, text: str) -> SentReply:
        """A reply under the comment ``target`` (or a comment on the media ``target``)."""
        edge = "comments" if target.kind is ItemKind.POST else "replies"
        result = await self._call(partial(self._graph.put_object, target.external_id, edge,
                                          message=text), writing=True)
        return SentReply(platform_id=str(result["id"]))

    async def find_public_reply(self, target: ReplyTarget, text: str, since: datetime) -> SentReply | None:
        """Not available for Instagram yet: an interrupted reply is left ``in_doubt`` for a person."""
        raise NotImplementedError

    async def reply_private(self, target: ReplyTarget, text: str) -> SentReply:
        raise ReplyRejected("Relais cannot send Instagram private replies yet: answer in public "
                            "(the person may then write to the account in a direct message)",
                            "not_allowed")

    async def hide(self, target: ReplyTarget, hidden: bool = True) -> None:
        """Hide (or show again) the comment ``target``."""
        await self._call(partial(self._graph.request, f"{self._graph.version}/{target.external_id}",
                                 post_args={"hide": "true" if hidden else "false"}),
                         writing=True)

    def _comment(self, comment: dict[str, Any], media_id: str) -> InboundItem:
        who = comment.get("from") if isinstance(comment.get("from"), dict) else {}
        author = Author(id=str(who.get("id") or ""),
                        handle=str(who.get("username") or comment.get("username") or ""))
        return InboundItem(
            platform=Platform.INSTAGRAM, external_id=str(comment["id"]), kind=ItemKind.COMMENT,
            channel_external_id=self.account_id, author=author, text=str(comment.get("text") or ""),
            created_time=parse_graph_time(comment["timestamp"]), parent_external_id=media_id,
            thread_external_id=media_id, is_brand_post=self.is_own(author.id), raw=comment)
