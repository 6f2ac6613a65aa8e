"""parse_delivery on the real sample payloads and on hostile shapes; reactions counted through the webhook endpoint."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy import select

from bot.domain import ChangeVerb, ItemKind, Platform
from bot.errors import InvalidDelivery
from bot.ingest.facebook_delivery import Reaction, parse_delivery
from bot.store.models import Item, Job
from tests.conftest import shared_dir
from tests.ingest.test_webhooks import PAGE_ID, Hook, delivery, hook  # noqa: F401 (hook: fixture)

SAMPLES = shared_dir() / "samples" / "facebook"


def sample(name: str) -> Any:
    """A sample body; Meta's documentation pages wrap it in [...] (see SOURCE.txt)."""
    found = sorted(SAMPLES.glob(f"{name}_*.json"))
    assert found, f"sample {name}_*.json not found in {SAMPLES} (set RELAIS_SHARED_DIR)"
    body = json.loads(found[0].read_text())
    return body[0] if isinstance(body, list) else body


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def test_every_sample_parses() -> None:
    files = sorted(SAMPLES.glob("*.json"))
    assert len(files) == 7
    for path in files:
        body = json.loads(path.read_text())
        parse_delivery(body[0] if isinstance(body, list) else body)


def test_01_modern_post() -> None:
    [item] = parse_delivery(sample("01"))
    assert item.platform is Platform.FACEBOOK and item.kind is ItemKind.POST
    assert item.external_id == "{page-post-id}" and item.channel_external_id == "{page-id}"
    assert item.author.id == "{user-id}" and item.author.name == "Cinderella Hoover"
    assert item.text == "It's Thursday and I want to eat cake."
    assert item.created_time == utc(1520544814) and item.verb is ChangeVerb.ADD
    assert not item.is_brand_post


def test_02_legacy_comment_by_the_page_itself() -> None:
    [item] = parse_delivery(sample("02"))
    assert item.kind is ItemKind.COMMENT
    assert item.external_id == "500158316696377_500219983356877_5405676"
    assert item.parent_external_id == "500158316696377_500219983356877"
    assert item.thread_external_id == "500158316696377_500219983356877"
    assert item.author.id == "500158316696377" and item.is_brand_post
    assert item.created_time == utc(1361535969) and item.text == ""


def test_03_legacy_post_with_numeric_id_and_entry_time() -> None:
    [item] = parse_delivery(sample("03"))
    assert item.kind is ItemKind.POST
    assert item.external_id == "500158316696377_502116146500594"
    assert item.created_time == utc(1361951210)  # no created_time: the entry's time
    assert item.author.id == ""


def test_04_messenger_message() -> None:
    [item] = parse_delivery(sample("04"))
    assert item.kind is ItemKind.MESSAGE and item.text == "hello27"
    assert item.external_id == "mid.$cAAC6AFgUYTphs6kk2lbgmPaOon0R"
    assert item.author.id == "1846048872078817" and item.channel_external_id == "247349599062786"
    assert item.created_time == utc(1492541234.394)
    assert item.thread_external_id == "1846048872078817" and not item.is_brand_post


def test_05_echo_is_ignored() -> None:
    assert parse_delivery(sample("05")) == []


def test_06_instagram_comment() -> None:
    [item] = parse_delivery(sample("06"))
    assert item.platform is Platform.INSTAGRAM and item.kind is ItemKind.COMMENT
    assert item.external_id == "17867301270523379" and item.text == "LINK"
    assert item.author.id == "848067418322071" and item.author.handle == "m_waqarsikandar"
    assert item.parent_external_id == item.thread_external_id == "18050310947722369"
    assert item.channel_external_id == "17841430541631416"
    assert item.created_time == utc(1776339591)


def test_07_group_feed_comment_in_messaging() -> None:
    [item] = parse_delivery(sample("07"))
    assert item.kind is ItemKind.COMMENT and item.external_id == "COMMENT-ID"
    assert item.parent_external_id == "PARENT-ID" and item.thread_external_id == "POST-ID"
    assert item.author.name == "Cinderella Hoover" and item.text == "Does this shirt come in blue?"
    assert item.created_time == utc(1680575789)


def change(value: dict[str, Any], page: str = "123") -> dict[str, Any]:
    return {"object": "page", "entry": [{"id": page, "time": 1_700_000_000_000,
                                         "changes": [{"field": "feed", "value": value}]}]}


@pytest.mark.parametrize(("verb", "expected"), [
    ("add", ChangeVerb.ADD), ("edited", ChangeVerb.EDIT), ("remove", ChangeVerb.REMOVE),
    ("hide", ChangeVerb.HIDE), ("unhide", ChangeVerb.UNHIDE)])
def test_verbs(verb: str, expected: ChangeVerb) -> None:
    [item] = parse_delivery(change({"item": "comment", "verb": verb, "comment_id": "9_1",
                                    "post_id": "123_9", "from": {"id": "5", "name": "A"}}))
    assert item.verb is expected
    assert item.created_time == utc(1_700_000_000)  # entry time in milliseconds


def test_reactions_are_reaction_events_not_items() -> None:
    [on_post] = parse_delivery(change({"item": "reaction", "verb": "add", "post_id": "123_9",
                                       "reaction_type": "LOVE", "from": {"id": "5"}}))
    assert isinstance(on_post, Reaction)
    assert (on_post.external_id, on_post.kind, on_post.reaction_type) == ("123_9", ItemKind.POST, "love")
    [on_comment] = parse_delivery(change({"item": "reaction", "verb": "remove", "post_id": "123_9",
                                          "comment_id": "9_4", "parent_id": "123_9",
                                          "reaction_type": "haha", "from": {"id": "6"}}))
    assert on_comment.external_id == "9_4" and on_comment.verb is ChangeVerb.REMOVE
    [legacy] = parse_delivery(change({"item": "like", "verb": "add", "post_id": 9, "sender_id": 7}))
    assert isinstance(legacy, Reaction) and legacy.external_id == "123_9"
    assert legacy.reaction_type == "like" and legacy.author.id == "7"
    # without its author a reaction cannot be counted once: skipped, not raised
    assert parse_delivery(change({"item": "reaction", "verb": "add", "post_id": "123_9"})) == []


def test_brand_ad_post() -> None:
    [item] = parse_delivery(change({"item": "status", "verb": "add", "post_id": "123_9",
                                    "from": {"id": "123", "name": "Brand"}, "message": "Sale",
                                    "post": {"promotion_status": "active"}}))
    assert item.is_brand_post and item.is_ad


@pytest.mark.parametrize("body", [None, [], "x", 3, {"object": "page"}, {"entry": []},
                                  {"object": "page", "entry": {}}])
def test_not_a_delivery(body: object) -> None:
    with pytest.raises(InvalidDelivery):
        parse_delivery(body)


def test_weird_shapes_are_skipped_with_an_escaped_warning(caplog: pytest.LogCaptureFixture
                                                           ) -> None:
    hostile = "\x1b[31m\nFAKE LOG LINE"
    body = {"object": "page", "entry": [
        "nope", {"id": None}, {"id": "1", "changes": ["x", {"field": "feed", "value": None}]},
        {"id": "1", "changes": [{"field": "feed", "value": {"item": "comment", "verb": hostile}}]},
        {"id": "1", "changes": [{"field": "feed", "value": {"item": "comment", "verb": "add"}}]},
        {"id": "1", "changes": [{"field": "feed", "value": {"item": "post", "verb": "add",
                                                           "post_id": {"a": 1}}}]},
        {"id": "1", "messaging": [{"message": {"text": "no mid"}}, 7]},
        {"id": "1", "changes": [{"field": "feed", "value": {
            "item": "post", "verb": "add", "post_id": "1_2", "created_time": "garbage",
            "from": {"id": 5}, "message": hostile}}]},
    ]}
    with caplog.at_level(logging.WARNING):
        [item] = parse_delivery(body)
    assert item.text == hostile and item.author.id == "5"
    assert "\x1b" not in caplog.text and "\nFAKE" not in caplog.text


def test_object_we_do_not_follow() -> None:
    assert parse_delivery({"object": "user", "entry": [{"id": "1"}]}) == []


# --- through the real webhook endpoint and the ingest stage ------------------------------



def reaction(who: int, verb: str = "add", kind: str = "like", post: str = f"{PAGE_ID}_2001",
             comment_id: str | None = None) -> dict[str, Any]:
    value = {"item": "reaction", "verb": verb, "post_id": post, "reaction_type": kind,
             "from": {"id": str(who), "name": f"Fan {who}"}, "created_time": 1_717_000_100}
    if comment_id:
        value.update(comment_id=comment_id, parent_id=post)
    return {"field": "feed", "value": value}


async def test_reactions_are_counted_on_their_post_not_queued(hook: Hook) -> None:  # noqa: F811
    post = {"field": "feed", "value": {"item": "status", "verb": "add", "post_id": f"{PAGE_ID}_2001",
                                       "from": {"id": "41", "name": "Ann"}, "message": "Le pain ?",
                                       "created_time": 1_717_000_000}}
    assert (await hook.post(delivery(post)))[0] == 200
    await hook.process_deliveries()
    jobs_before = await hook.count(Job)
    batch = delivery(reaction(1), reaction(2, kind="love"), reaction(3, kind="angry"),
                     reaction(3, verb="edit", kind="haha"), reaction(2, verb="remove", kind="love"),
                     reaction(4, post=f"{PAGE_ID}_404"))  # a post we do not have: dropped
    assert (await hook.post(batch))[0] == 200
    assert (await hook.post(batch))[0] == 200  # Meta redelivers: counted once
    await hook.process_deliveries()
    async with hook.services.sessions() as session:
        items = (await session.scalars(select(Item))).all()
    [stored] = items  # reactions are never items
    assert stored.raw["reactions"] == {"like": 1, "haha": 1}
    assert stored.raw["reactors"] == {"1": "like", "3": "haha"}
    assert stored.raw["message"] == "Le pain ?"  # the post's own payload is kept
    assert stored.status == "new"
    # only the two ingest_delivery jobs: nothing classified or routed because of a reaction
    assert await hook.count(Job) == jobs_before + 2
    assert len(await hook.classify_queued()) == 1
