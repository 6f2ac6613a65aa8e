"""Hostile X API answers (mentions and direct messages) read by the real X channel
(bot/channels/x.py, over tweepy) from a fake server on loopback: a FetchResult of
well-formed items, or one of our ChannelErrors, never another exception."""

from __future__ import annotations

import json
from collections.abc import Iterator
from copy import deepcopy
from typing import Any

import pytest
from aiohttp import web
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.channels.base import ChannelConfig
from bot.channels.x import XChannel
from bot.domain import Platform
from bot.errors import ChannelError
from tests.fuzz.conftest import LiveApp, profile
from tests.fuzz.strategies import JSON_VALUES, _paths

ACCOUNT = "2244994945"
CREDENTIALS = {"bearer_token": "bearer-fuzz", "consumer_key": "ck-fuzz", "consumer_secret": "cs-fuzz",
               "access_token": "at-fuzz", "access_token_secret": "ats-fuzz"}
MENTIONS = {
    "data": [{"id": "1790000000000000001", "text": "@boulangerie mon pain est rassis", "author_id": "77",
              "created_at": "2026-05-01T10:00:00.000Z", "conversation_id": "1790000000000000001",
              "edit_history_tweet_ids": ["1790000000000000001"],
              "referenced_tweets": [{"type": "replied_to", "id": "1790000000000000000"}]}],
    "includes": {"users": [{"id": "77", "name": "Client", "username": "client",
                            "public_metrics": {"followers_count": 12}}]},
    "meta": {"newest_id": "1790000000000000001", "result_count": 1},
}
DMS = {
    "data": [{"id": "1800000000000000001", "event_type": "MessageCreate", "text": "bonjour",
              "sender_id": "77", "dm_conversation_id": "77-2244994945",
              "created_at": "2026-05-01T10:00:00.000Z"}],
    "includes": {"users": [{"id": "77", "name": "Client", "username": "client"}]},
    "meta": {"result_count": 1},
}


class FakeX:
    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {}
        self.app = web.Application()
        self.app.router.add_get("/2/users/{id}/mentions", self._serve("mentions"))
        self.app.router.add_get("/2/dm_events", self._serve("dms"))

    def _serve(self, what: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=self.bodies[what], content_type="application/json")
        return handler


@pytest.fixture(scope="module")
def fake_x() -> Iterator[tuple[FakeX, LiveApp]]:
    fake = FakeX()
    live = LiveApp(fake.app)
    live.start()
    yield fake, live
    live.stop()


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    body = deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(body)))
        if not path:
            return draw(JSON_VALUES)
        parent: Any = body
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JSON_VALUES)
    return body


def encode(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


@pytest.mark.filterwarnings("ignore:Tweet data missing:RuntimeWarning")  # tweepy's own warning
@settings(profile())
@given(mentions=mutated(MENTIONS).map(encode) | st.binary(max_size=50), dms=mutated(DMS).map(encode))
@example(mentions=encode(MENTIONS), dms=encode(DMS))
@example(mentions=encode({**MENTIONS, "data": [{**MENTIONS["data"][0], "created_at": "2026-05-01T10:00:00"}]}),
         dms=encode(DMS))
def test_any_x_answer_gives_items_or_a_channel_error(fake_x: tuple[FakeX, LiveApp], mentions: bytes,
                                                     dms: bytes) -> None:
    fake, live = fake_x
    fake.bodies = {"mentions": mentions, "dms": dms}

    async def fetch() -> Any:
        channel = XChannel(ChannelConfig(platform=Platform.X, external_id=ACCOUNT, name="fuzz",
                                         credentials=CREDENTIALS, api_url=live.url))
        try:
            return await channel.fetch_new({"since_id": "1", "dms": True, "dm_since_id": "1"})
        except ChannelError as exc:
            return exc
        finally:
            await channel.close()

    result = live.run(fetch())
    if isinstance(result, ChannelError):
        return
    for item in result.items:
        assert item.external_id and isinstance(item.text, str)
        assert item.created_time.tzinfo is not None, "a naive time cannot be stored (UTC columns)"
        assert item.author.followers is None or isinstance(item.author.followers, int)
