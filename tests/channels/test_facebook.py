"""FacebookChannel against FakeGraphAPI on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import pytest
from aiohttp import web

from bot.channels.base import ChannelConfig, ReplyTarget
from bot.channels.facebook import FacebookChannel, parse_graph_time
from bot.channels.simulated.graph_api import FakeGraphAPI
from bot.domain import ItemKind, Platform
from bot.errors import RateLimited, ReplyRejected, TokenInvalid, Transient

PAGE = "1001"
TOKEN = "page-token-1001"
NOW = datetime(2026, 12, 3, 10, 0, tzinfo=timezone.utc)


@pytest.fixture
def fake() -> FakeGraphAPI:
    fake = FakeGraphAPI(now=lambda: NOW)
    fake.add_page(PAGE, "Relais Coffee", TOKEN)
    fake.add_page("2002", "Other Page", "other-token")
    return fake


@pytest.fixture
async def channel(fake: FakeGraphAPI, aiohttp_server) -> AsyncIterator[FacebookChannel]:
    server = await aiohttp_server(fake.app)
    config = ChannelConfig(platform=Platform.FACEBOOK, external_id=PAGE, name="Relais Coffee",
                           credentials={"page_token": TOKEN},
                           api_url=str(server.make_url("/")), options={"timeout": 5})
    channel = FacebookChannel(config)
    yield channel
    await channel.close()


def at(minutes: int) -> datetime:
    return NOW - timedelta(minutes=minutes)


def since(minutes: int) -> dict[str, int]:
    return {"since": int(at(minutes).timestamp())}


def test_parse_graph_time() -> None:
    assert parse_graph_time("2026-12-03T10:00:00+0000") == NOW
    assert parse_graph_time("2026-12-03T11:00:00+0100").tzinfo == timezone.utc


async def test_fetch_pages_over_several_pages_and_stops_at_cursor(
        fake: FakeGraphAPI, channel: FacebookChannel) -> None:
    old = fake.user_post(PAGE, "Old Timer", "ancient", created_time=at(600))
    posts = [fake.user_post(PAGE, f"User {i}", f"post {i}", created_time=at(300 - i))
             for i in range(60)]
    result = await channel.fetch_new(since(400))
    ids = [item.external_id for item in result.items]
    assert set(ids) == set(posts) and old not in ids
    feed_calls = [r for r in fake.requests if r.endswith("/feed")]
    assert len(feed_calls) == 3  # 25 + 25 + 10, then the old post ends the walk
    assert result.cursor == {"since": int(at(241).timestamp())}
    again = await channel.fetch_new(result.cursor)
    assert [i.external_id for i in again.items] == [posts[-1]]  # the boundary second only


async def test_items_are_classified(fake: FakeGraphAPI, channel: FacebookChannel) -> None:
    ad = fake.publish_post(PAGE, "Try our new roast", promoted=True, created_time=at(50))
    organic = fake.publish_post(PAGE, "We are open", created_time=at(40))
    visitor = fake.user_post(PAGE, {"id": "77", "name": "Ann"}, "Hello?", created_time=at(30))
    comment = fake.user_comment(ad, {"id": "88", "name": "Bob"}, "Price?", at(20))
    answer_id = (await channel.reply_public(
        ReplyTarget(comment, ItemKind.COMMENT, "88", ad, ad), "5 euros")).platform_id
    reply = fake.user_comment(ad, {"id": "99", "name": "Cy"}, "Too much", at(10), parent_id=comment)

    result = await channel.fetch_new(since(60))
    items = {item.external_id: item for item in result.items}
    assert items[ad].is_brand_post and items[ad].is_ad and items[ad].kind is ItemKind.POST
    assert items[organic].is_brand_post and not items[organic].is_ad
    assert not items[visitor].is_brand_post and items[visitor].author.name == "Ann"
    assert items[comment].kind is ItemKind.COMMENT
    assert (items[comment].parent_external_id, items[comment].thread_external_id) == (ad, ad)
    assert items[comment].created_time == at(20)
    assert items[reply].parent_external_id == comment and items[reply].thread_external_id == ad
    assert items[answer_id].is_brand_post  # the Page's own answer: never answered again
    assert channel.is_own(PAGE) and not channel.is_own("88")


async def test_first_poll_looks_back_a_bounded_window(
        fake: FakeGraphAPI, channel: FacebookChannel) -> None:
    fake.user_post(PAGE, "Ann", "last month", created_time=datetime.now(timezone.utc)
                   - timedelta(days=30))
    recent = fake.user_post(PAGE, "Ann", "just now", created_time=datetime.now(timezone.utc))
    result = await channel.fetch_new({})
    assert [item.external_id for item in result.items] == [recent]


async def test_public_reply_lands_under_the_comment(
        fake: FakeGraphAPI, channel: FacebookChannel) -> None:
    post = fake.publish_post(PAGE, "News")
    comment = fake.user_comment(post, "Ann", "Question")
    sent = await channel.reply_public(ReplyTarget(comment, ItemKind.COMMENT, "x", post, post),
                                      "Answer")
    [reply] = fake.replies_to(comment)
    assert reply["id"] == sent.platform_id and reply["message"] == "Answer"
    assert reply["from"]["id"] == PAGE


async def test_private_reply_once_per_comment(fake: FakeGraphAPI, channel: FacebookChannel) -> None:
    post = fake.publish_post(PAGE, "News")
    comment = fake.user_comment(post, {"id": "55", "name": "Ann"}, "My order?")
    target = ReplyTarget(comment, ItemKind.COMMENT, "55", post, post)
    sent = await channel.reply_private(target, "Let us check")
    [private] = fake.private_replies
    assert private["message_id"] == sent.platform_id and private["recipient_id"] == "55"
    assert private["text"] == "Let us check" and private["messaging_type"] == "RESPONSE"
    with pytest.raises(ReplyRejected, match="once") as caught:
        await channel.reply_private(target, "Again")
    assert caught.value.__cause__ is not None


async def test_private_reply_after_seven_days_is_rejected(
        fake: FakeGraphAPI, channel: FacebookChannel) -> None:
    post = fake.publish_post(PAGE, "News", created_time=at(60 * 24 * 10))
    comment = fake.user_comment(post, "Ann", "Old question", at(60 * 24 * 8))
    with pytest.raises(ReplyRejected, match="2018278"):
        await channel.reply_private(ReplyTarget(comment, ItemKind.COMMENT, "x"), "Late")


async def test_messenger_reply_goes_to_the_person(
        fake: FakeGraphAPI, channel: FacebookChannel) -> None:
    await channel.reply_private(ReplyTarget("mid.1", ItemKind.MESSAGE, "4242"), "Hi")
    assert fake.private_replies[0]["recipient"] == {"id": "4242"}


async def test_revoked_token(fake: FakeGraphAPI, channel: FacebookChannel) -> None:
    fake.revoke_token(PAGE)
    with pytest.raises(TokenInvalid):
        await channel.fetch_new({})
    with pytest.raises(TokenInvalid):
        await channel.reply_public(ReplyTarget(f"{PAGE}_1", ItemKind.POST, "x"), "hi")


async def test_another_pages_object_is_rejected(
        fake: FakeGraphAPI, channel: FacebookChannel) -> None:
    post = fake.publish_post("2002", "Not ours")
    with pytest.raises(ReplyRejected, match="200"):
        await channel.reply_public(ReplyTarget(post, ItemKind.POST, "2002"), "hi")


@pytest.mark.parametrize("code", [4, 32, 80001])
async def test_rate_limited_reads_business_use_case_header(
        fake: FakeGraphAPI, channel: FacebookChannel, code: int) -> None:
    fake.set_rate_limited(code=code, regain_minutes=7)
    with pytest.raises(RateLimited) as caught:
        await channel.fetch_new({})
    assert caught.value.retry_after == 7 * 60


async def test_rate_limited_without_estimate_follows_the_app_usage(
        fake: FakeGraphAPI, channel: FacebookChannel) -> None:
    from bot.channels.facebook import APP_USAGE_FULL_WAIT_S

    fake.set_rate_limited(code=4, regain_minutes=0)  # no estimate; X-App-Usage says 100 %
    with pytest.raises(RateLimited) as caught:
        await channel.reply_public(ReplyTarget(f"{PAGE}_1", ItemKind.POST, "x"), "hi")
    assert caught.value.retry_after == APP_USAGE_FULL_WAIT_S


@pytest.mark.parametrize("html_body", [False, True])
async def test_outage_is_transient(fake: FakeGraphAPI, channel: FacebookChannel,
                                   html_body: bool) -> None:
    fake.set_outage(503, html_body=html_body)
    with pytest.raises(Transient):
        await channel.fetch_new({})
    fake.clear_failures()
    assert (await channel.fetch_new({})).items == []


async def test_unreachable_host_is_transient(unused_tcp_port: int) -> None:
    config = ChannelConfig(platform=Platform.FACEBOOK, external_id=PAGE, name="x",
                           credentials={"page_token": TOKEN},
                           api_url=f"http://127.0.0.1:{unused_tcp_port}")
    channel = FacebookChannel(config)
    try:
        with pytest.raises(Transient):
            await channel.fetch_new({})
    finally:
        await channel.close()


async def test_paging_next_is_absolute_and_carries_the_token(
        fake: FakeGraphAPI, aiohttp_client) -> None:
    for i in range(3):
        fake.user_post(PAGE, "Ann", f"p{i}")
    client = await aiohttp_client(fake.app)
    response = await client.get(f"/v21.0/{PAGE}/feed",
                                params={"limit": "2", "access_token": TOKEN})
    body = await response.json()
    assert len(body["data"]) == 2
    assert body["paging"]["next"].startswith("http://127.0.0.1")
    assert f"access_token={TOKEN}" in body["paging"]["next"]
    bad = await client.get(f"/v21.0/{PAGE}/feed", params={"access_token": "nope"})
    assert bad.status == 400
    error = (await bad.json())["error"]
    assert error["code"] == 190 and error["type"] == "OAuthException" and error["fbtrace_id"]


async def test_webhooks_are_signed(aiohttp_server) -> None:
    import hashlib
    import hmac

    received: list[tuple[bytes, str]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.read(), request.headers["X-Hub-Signature-256"]))
        return web.Response(text="ok")

    sink = web.Application()
    sink.router.add_post("/hook", hook)
    server = await aiohttp_server(sink)
    fake = FakeGraphAPI(webhook_url=str(server.make_url("/hook")), app_secret="s3cret")
    fake.add_page(PAGE, "Relais Coffee", TOKEN)
    post = fake.publish_post(PAGE, "News")
    fake.user_comment(post, "Ann", "<script>alert(1)</script>")
    assert await fake.deliver_pending() == [200]
    body, signature = received[0]
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert signature == f"sha256={expected}"
    from bot.ingest.facebook_delivery import parse_delivery
    import json
    [item] = parse_delivery(json.loads(body))
    assert item.kind is ItemKind.COMMENT and item.thread_external_id == post


async def test_html_page_escapes_text(fake: FakeGraphAPI, aiohttp_client) -> None:
    post = fake.publish_post(PAGE, "News")
    fake.user_comment(post, "Ann", "<script>alert(1)</script>")
    client = await aiohttp_client(fake.app)
    text = await (await client.get(f"/__page/{PAGE}")).text()
    assert "&lt;script&gt;" in text and "<script>" not in text


async def test_missing_permission_while_reading_needs_a_person(
        fake: FakeGraphAPI, aiohttp_server) -> None:
    server = await aiohttp_server(fake.app)
    config = ChannelConfig(platform=Platform.FACEBOOK, external_id=PAGE, name="x",
                           credentials={"page_token": "other-token"},
                           api_url=str(server.make_url("/")))
    channel = FacebookChannel(config, graph_version="22.0")
    try:
        with pytest.raises(TokenInvalid, match="permission"):
            await channel.fetch_new({})
        assert fake.requests == [f"GET /v22.0/{PAGE}/feed"]
    finally:
        await channel.close()


# --- moderation, likes, token checks ------------------------------------------------------


async def test_hide_and_unhide_a_comment(fake: FakeGraphAPI, channel: FacebookChannel) -> None:
    post = fake.publish_post(PAGE, "News")
    comment = fake.user_comment(post, "Troll", "spam spam")
    target = ReplyTarget(comment, ItemKind.COMMENT, "x", post, post)
    await channel.hide(target, True)
    assert fake.comments[comment]["is_hidden"] is True
    assert f"POST /v21.0/{comment}" in fake.requests
    await channel.hide(target, False)
    assert fake.comments[comment]["is_hidden"] is False
    with pytest.raises(ReplyRejected, match="Only comments"):
        await channel.hide(ReplyTarget(post, ItemKind.POST, "x"), True)


async def test_like_a_comment_as_the_page(fake: FakeGraphAPI, channel: FacebookChannel) -> None:
    post = fake.publish_post(PAGE, "News")
    comment = fake.user_comment(post, "Ann", "Merci !")
    await channel.like(ReplyTarget(comment, ItemKind.COMMENT, "x", post, post))
    assert fake.likes == [(PAGE, comment)]
    assert f"POST /v21.0/{comment}/likes" in fake.requests
    other = fake.publish_post("2002", "Not ours")
    with pytest.raises(ReplyRejected):
        await channel.like(ReplyTarget(other, ItemKind.POST, "2002"))


async def test_check_token_reads_debug_token(fake: FakeGraphAPI, channel: FacebookChannel) -> None:
    status = await channel.check_token()
    assert status.valid and status.expires_at is None  # a long-lived Page token
    assert "pages_manage_engagement" in status.scopes
    fake.set_token_expiry(PAGE, NOW + timedelta(days=5))
    status = await channel.check_token()
    assert status.valid and status.expires_at == NOW + timedelta(days=5)
    assert fake.requests[-1] == "GET /v21.0/debug_token"
    fake.set_token_expiry(PAGE, NOW - timedelta(seconds=1))
    with pytest.raises(TokenInvalid, match="190/463"):
        await channel.check_token()
    fake.set_token_expiry(PAGE, None)
    fake.revoke_token(PAGE)
    with pytest.raises(TokenInvalid):
        await channel.check_token()


async def test_a_comment_under_an_older_post_is_found_by_the_next_poll(
        fake: FakeGraphAPI, channel: FacebookChannel) -> None:
    """The reconcile poll reads the comments of recent posts, not only of posts newer than
    the cursor: that is how a comment whose webhook was lost is recovered."""
    now = datetime.now(timezone.utc)
    fake.now = lambda: now
    old_post = fake.user_post(PAGE, "Ann", "Question d'hier", created_time=now - timedelta(hours=20))
    newer = fake.user_post(PAGE, "Cy", "Question du matin", created_time=now - timedelta(hours=1))
    first = await channel.fetch_new({})
    assert [i.external_id for i in first.items] == [newer, old_post]
    late = fake.user_comment(old_post, "Bob", "Moi aussi", now)
    second = await channel.fetch_new(first.cursor)  # the cursor is past old_post
    assert [i.external_id for i in second.items] == [newer, late]  # newer: the boundary second
    assert second.cursor == {"since": int(now.timestamp())}


def test_rate_limit_wait_follows_the_usage_headers() -> None:
    import json as _json

    import requests

    from bot.channels.facebook import APP_USAGE_FULL_WAIT_S, DEFAULT_RETRY_AFTER, _retry_after

    def response(headers: dict[str, str]) -> requests.Response:
        r = requests.Response()
        r.headers.update(headers)
        return r

    buc = {"1": [{"type": "pages", "estimated_time_to_regain_access": 7}]}
    assert _retry_after(response({"X-Business-Use-Case-Usage": _json.dumps(buc)})) == 7 * 60
    full = {"call_count": 100, "total_cputime": 12, "total_time": 40}
    assert _retry_after(response({"X-App-Usage": _json.dumps(full)})) == APP_USAGE_FULL_WAIT_S
    half = {"call_count": 50, "total_cputime": 12, "total_time": 40}
    assert _retry_after(response({"X-App-Usage": _json.dumps(half)})) == DEFAULT_RETRY_AFTER
    assert _retry_after(response({"X-App-Usage": "not json"})) == DEFAULT_RETRY_AFTER
