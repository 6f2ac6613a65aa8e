"""Live updates: ``GET /ui/events``, a server-sent event stream.

Two feeds, merged per connection:

* this process's pipeline events: a :class:`LiveHub` listens on
  ``services.listeners`` (``item.classified``, ``item.routed``, ``item.answered``,
  ``item.updated`` from the UI's own actions, ...) and copies each to every open
  stream at once;
* the database, every :data:`POLL_S` seconds: items with new rows since the last
  look (:func:`bot.triage.queue.changes`: new items, labels, assignments, replies,
  audit entries, KPI events, emails, found by primary key). Several web
  processes and separate workers (``relais worker``) announce nothing to this
  process, so this is what keeps every page current there.

Every :data:`POLL_S` seconds the stream also checks that its session still stands (read only,
so an open page does not keep an idle session alive) and ends once it does not: after a
logout, the idle or absolute time-out, or when the account is disabled, in whichever
process that happened.

Each message is ``event: item`` with ``{"event": ..., "item_id": ...}`` as data;
the page (``static/triage.js``) re-fetches what it shows. Events carry ids only,
never text, and the page re-fetches through the same role checks.
"""

from __future__ import annotations

import asyncio
import json
import logging
from aiohttp import web

from bot.services import Services
from bot.triage.queue import changes
from bot.web.auth import SESSION_COOKIE, current_user, require_role, session_in_force

log = logging.getLogger(__name__)

POLL_S = 3.0
KEEPALIVE_S = 15.0
MAX_QUEUE = 200
CLOSE: dict[str, object] = {"event": "_close"}


class LiveHub:
    """Fans the process's announcements out to the open event streams."""

    def __init__(self, services: Services) -> None:
        self.queues: set[asyncio.Queue[dict[str, object]]] = set()
        self.closed = False
        services.listeners.append(self._on_event)

    def _on_event(self, event: str, data: dict[str, object]) -> None:
        message = {"event": event, **{k: v for k, v in data.items() if k in ("item_id", "channel_id", "response_id")}}
        for queue in list(self.queues):
            if queue.qsize() < MAX_QUEUE:  # a stuck reader loses events, not memory
                queue.put_nowait(message)

    def close(self) -> None:
        """End every open stream (the server is shutting down: do not make it wait)."""
        self.closed = True
        for queue in list(self.queues):
            queue.put_nowait(CLOSE)

    def subscribe(self) -> asyncio.Queue[dict[str, object]]:
        queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        self.queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, object]]) -> None:
        self.queues.discard(queue)


def live_routes(services: Services, *, poll_s: float = POLL_S) -> list[web.RouteDef]:
    hub = LiveHub(services)

    @require_role()
    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        token, user = request.cookies.get(SESSION_COOKIE), current_user(request)
        user_id = user.id if user else None
        queue = hub.subscribe()
        async with services.sessions() as session:
            _, cursor = await changes(session, None)
        idle = 0.0

        async def send(message: dict[str, object]) -> None:
            await response.write(f"event: item\ndata: {json.dumps(message)}\n\n".encode())

        try:
            await response.write(b"retry: 3000\n: connected\n\n")
            loop = asyncio.get_running_loop()
            next_poll = loop.time() + poll_s
            while True:
                if hub.closed:
                    break
                try:
                    message = await asyncio.wait_for(queue.get(), timeout=max(0.0, next_poll - loop.time()))
                except TimeoutError:
                    pass
                else:
                    if message is CLOSE:
                        break
                    await send(message)
                    if loop.time() < next_poll:
                        continue  # a steady flow of events does not put off the poll and the session check
                next_poll = loop.time() + poll_s
                if not await session_in_force(services, token):
                    log.info("event stream of user %s ended: the session is over (logout, time-out or account disabled)", user_id)
                    break
                async with services.sessions() as session:
                    changed, cursor = await changes(session, cursor)
                for item_id in changed:
                    await send({"event": "item.changed", "item_id": item_id})
                idle = 0.0 if changed else idle + poll_s
                if idle >= KEEPALIVE_S:
                    await response.write(b": keep-alive\n\n")
                    idle = 0.0
        except ConnectionResetError:
            pass  # the page went away
        finally:
            hub.unsubscribe(queue)
        return response

    return [web.get("/ui/events", events)]


async def close_streams(app: web.Application) -> None:
    """``app.on_shutdown``: end the open event streams so the server stops at once."""
    from bot.app import SERVICES

    if SERVICES not in app:
        return
    for listener in app[SERVICES].listeners:
        hub = getattr(listener, "__self__", None)
        if isinstance(hub, LiveHub):
            hub.close()
