"""Reading Facebook and Instagram webhook bodies into :class:`InboundItem`s.

Pure parsing, no I/O. Understood:

* ``object: page``, ``changes[].field == "feed"``: posts (item post, status,
  photo, video, share, link) and comments; ``verb`` add, edited/edit, remove,
  hide, unhide becomes ``InboundItem.verb``. Reactions and likes (``item``
  reaction or like) are not items: they become :class:`Reaction` events, which
  ``store_items`` counts on the post or comment they react to. Modern (``from{id,name}``, ``message``) and legacy
  (``sender_id``/``sender_name``, numeric ids) shapes; a bare numeric
  ``post_id`` becomes ``"{page-id}_{post-id}"``, as the Graph API names posts.
* ``messaging[]``: Messenger messages become ``kind=message`` (echoes of what
  the Page sent are ignored; ``thread_external_id`` is the person's id); a feed
  event delivered there (``group_feed``, with ``item``/``verb``) is read like a
  feed change.
* ``object: instagram``, ``field == "comments"``: comments on the media
  ``value.media.id``.

Times: ``created_time`` in seconds, else the entry's ``time`` (seconds or ms),
else the moment of parsing. An item whose author is the Page or account itself
(author id == entry id) is ``is_brand_post=True``. A body that is not an object
with ``object`` and ``entry`` raises :class:`InvalidDelivery`; any other odd
shape is skipped with a warning, never raised.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from bot.domain import Author, ChangeVerb, InboundItem, ItemKind, Platform
from bot.errors import InvalidDelivery

log = logging.getLogger(__name__)

POST_ITEMS = frozenset({"post", "status", "photo", "video", "share", "link"})
REACTION_ITEMS = frozenset({"reaction", "like"})
VERBS = {"add": ChangeVerb.ADD, "edited": ChangeVerb.EDIT, "edit": ChangeVerb.EDIT,
         "update": ChangeVerb.EDIT, "remove": ChangeVerb.REMOVE, "delete": ChangeVerb.REMOVE,
         "hide": ChangeVerb.HIDE, "unhide": ChangeVerb.UNHIDE}
PLATFORMS = {"page": Platform.FACEBOOK, "instagram": Platform.INSTAGRAM}
Json = dict[str, Any]


@dataclass(frozen=True)
class Reaction(InboundItem):
    """A reaction added, changed or removed on a post or comment: counted, never answered.

    ``external_id`` names the object reacted to (the comment when there is one,
    else the post); ``author`` is who reacted; ``verb`` is add, edit or remove;
    ``reaction_type`` is like, love, haha, wow, sad, angry or care.
    """

    reaction_type: str = "like"


def parse_delivery(body: object) -> list[InboundItem]:
    """Every post, comment and message in one webhook body, in delivery order."""
    if not isinstance(body, dict) or not isinstance(body.get("entry"), list) \
            or not isinstance(body.get("object"), str):
        raise InvalidDelivery("a webhook body must be a JSON object with a string 'object' and "
                              f"an 'entry' list; got {type(body).__name__}")
    platform = PLATFORMS.get(body["object"])
    if platform is None:
        log.info("ignoring a delivery for object %r", body["object"])
        return []
    items: list[InboundItem] = []
    for entry in body["entry"]:
        if not isinstance(entry, dict) or _id(entry.get("id")) is None:
            log.warning("skipping an entry without an id: %r", entry)
            continue
        events = [(change.get("field"), change.get("value")) if isinstance(change, dict)
                  else (None, change) for change in _list(entry.get("changes"))]
        events += [("messaging", event) for event in _list(entry.get("messaging"))]
        for field, value in events:
            try:
                item = _parse_event(platform, entry, field, value)
            except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
                log.warning("skipping an unparsable %r event (%r): %r", field, exc, value)
                continue
            if item is not None:
                items.append(item)
    return items


def _parse_event(platform: Platform, entry: Json, field: object, value: object
                 ) -> InboundItem | None:
    if not isinstance(value, dict):
        raise TypeError(f"event value is {type(value).__name__}, not an object")
    if field == "messaging":
        if "item" in value and "verb" in value:  # a feed event delivered as messaging (group_feed)
            return _feed_item(platform, entry, value)
        return _message_item(platform, entry, value)
    if platform is Platform.INSTAGRAM and field == "comments":
        return _instagram_comment(entry, value)
    if field in ("feed", "group_feed"):
        return _feed_item(platform, entry, value)
    log.debug("ignoring %r change", field)
    return None


def _feed_item(platform: Platform, entry: Json, value: Json) -> InboundItem | None:
    page_id = str(_id(entry["id"]))
    kind_name = str(value.get("item", ""))
    verb = VERBS.get(str(value.get("verb", "")))
    if verb is None:
        raise ValueError(f"unknown verb {value.get('verb')!r}")
    post_id = _post_id(page_id, value.get("post_id"))
    if kind_name in REACTION_ITEMS:
        return _reaction(platform, entry, value, page_id, post_id, verb)
    author = _author(value)
    is_own = author.id == page_id
    common = dict(platform=platform, channel_external_id=page_id, author=author,
                  text=str(value.get("message") or ""),
                  created_time=_created(value.get("created_time"), entry), verb=verb,
                  is_brand_post=is_own, raw=value)
    if kind_name == "comment":
        comment_id = _id(value.get("comment_id"))
        if comment_id is None:
            raise ValueError("a comment without comment_id")
        parent = _id(value.get("parent_id"))
        if post_id is None and parent and parent.startswith(f"{page_id}_"):
            post_id = parent  # legacy deliveries name the post only as the parent
        return InboundItem(external_id=comment_id, kind=ItemKind.COMMENT,
                           parent_external_id=parent or post_id, thread_external_id=post_id,
                           **common)  # type: ignore[arg-type]
    if kind_name in POST_ITEMS:
        if post_id is None:
            raise ValueError("a post without post_id")
        post = value.get("post") if isinstance(value.get("post"), dict) else {}
        is_ad = is_own and post.get("promotion_status") == "active"
        return InboundItem(external_id=post_id, kind=ItemKind.POST, thread_external_id=post_id,
                           permalink=post.get("permalink_url"), is_ad=is_ad,
                           **common)  # type: ignore[arg-type]
    log.debug("ignoring feed item %r", kind_name)
    return None


def _reaction(platform: Platform, entry: Json, value: Json, page_id: str, post_id: str | None,
              verb: ChangeVerb) -> Reaction:
    target = _id(value.get("comment_id")) or post_id
    if target is None:
        raise ValueError("a reaction without post_id or comment_id")
    author = _author(value)
    if not author.id:
        raise ValueError("a reaction without its author: it could not be counted once")
    kind = ItemKind.COMMENT if _id(value.get("comment_id")) else ItemKind.POST
    return Reaction(platform=platform, external_id=target, kind=kind, channel_external_id=page_id,
                    author=author, text="", created_time=_created(value.get("created_time"), entry),
                    thread_external_id=post_id, verb=verb, is_brand_post=author.id == page_id,
                    raw=value, reaction_type=str(value.get("reaction_type") or "like").lower())


def _message_item(platform: Platform, entry: Json, event: Json) -> InboundItem | None:
    message = event.get("message")
    if not isinstance(message, dict) or message.get("is_echo"):
        return None  # echoes, reads, deliveries, postbacks: not something to answer
    mid = _id(message.get("mid"))
    sender = _id((event.get("sender") or {}).get("id"))
    if mid is None or sender is None:
        raise ValueError("a message without mid or sender")
    page_id = str(_id(entry["id"]))
    return InboundItem(
        platform=platform, external_id=mid, kind=ItemKind.MESSAGE, channel_external_id=page_id,
        author=Author(id=sender), text=str(message.get("text") or ""),
        created_time=_created(event.get("timestamp"), entry), thread_external_id=sender,
        is_brand_post=sender == page_id, raw=event)


def _instagram_comment(entry: Json, value: Json) -> InboundItem:
    account_id = str(_id(entry["id"]))
    comment_id = _id(value.get("id"))
    if comment_id is None:
        raise ValueError("an Instagram comment without id")
    who = value.get("from") if isinstance(value.get("from"), dict) else {}
    author = Author(id=str(_id(who.get("id")) or ""), handle=str(who.get("username") or ""))
    media_id = _id((value.get("media") or {}).get("id"))
    return InboundItem(
        platform=Platform.INSTAGRAM, external_id=comment_id, kind=ItemKind.COMMENT,
        channel_external_id=account_id, author=author, text=str(value.get("text") or ""),
        created_time=_created(value.get("created_time"), entry),
        parent_external_id=_id(value.get("parent_id")) or media_id,
        thread_external_id=media_id, is_brand_post=author.id == account_id, raw=value)


def _author(value: Json) -> Author:
    who = value.get("from")
    if isinstance(who, dict):
        return Author(id=str(_id(who.get("id")) or ""), name=str(who.get("name") or ""))
    return Author(id=str(_id(value.get("sender_id")) or ""),
                  name=str(value.get("sender_name") or ""))


def _post_id(page_id: str, value: object) -> str | None:
    post_id = _id(value)
    if post_id is not None and "_" not in post_id and post_id.isdigit():
        return f"{page_id}_{post_id}"
    return post_id


def _id(value: object) -> str | None:
    """Ids arrive as strings or JSON numbers."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _created(value: object, entry: Json) -> datetime:
    for candidate in (value, entry.get("time")):
        moment = _timestamp(candidate)
        if moment is not None:
            return moment
    log.warning("no usable time in entry %r; using the time of parsing", entry.get("id"))
    return datetime.now(timezone.utc)


def _timestamp(value: object) -> datetime | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text.isdigit():
            try:
                parsed = datetime.fromisoformat(text.replace("+0000", "+00:00"))
            except ValueError:
                return None
            return parsed.astimezone(timezone.utc) if parsed.tzinfo else \
                parsed.replace(tzinfo=timezone.utc)
        value = int(text)
    if not isinstance(value, (int, float)) or value <= 0:
        return None
    seconds = value / 1000 if value > 100_000_000_000 else value  # ms after 1973 in seconds
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):  # beyond year 9999, inf, NaN: not a time
        return None


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []
