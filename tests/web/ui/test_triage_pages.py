"""The triage pages over loopback HTTP in the real app, on SQLite and PostgreSQL: login and
roles, escaping, bulk actions and CSRF, the item page (history, viewers, reply once), live
events (in-process announcements and the database fallback), dashboard, CSV, dead letters."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import itertools
import json
import re
from datetime import UTC, datetime, timedelta

import aiohttp
from sqlalchemy import func, select

from bot.store.models import (
    Assignment,
    AuditEntry,
    Channel,
    Classification,
    CrisisIncident,
    CrisisIncidentItem,
    Expert,
    Item,
    Job,
    Response,
)
from bot.web.triage.dashboard import periods
from tests.web.conftest import UiServer, login, make_user

CM = "camille.cm@boulangerie-doree.example"
CHLOE = "chloe.qualite@boulangerie-doree.example"
HOSTILE = 'Nul <script>alert("x")</script> <img src=x onerror=alert(1)> & co'
_ids = itertools.count(1)


def _earlier_today(server: UiServer) -> datetime:
    """Half an hour ago, but never before midnight in the brand's time zone: the dashboard's
    "today" column must count the item whatever time the test runs."""
    now = datetime.now(UTC)
    today = periods(now, server.services.settings.timezone)["today"][0]
    return max(now - timedelta(minutes=30), today + (now - today) / 2)


async def _seed(server: UiServer, *, text: str = "Pain rassis", expert: str | None = None, status: str = "triage",
                channel_status: str = "active") -> int:
    n = next(_ids)
    async with server.services.sessions.begin() as session:
        channel = await session.scalar(select(Channel).where(Channel.external_id == f"page-{channel_status}"))
        if channel is None:
            channel = Channel(platform="facebook", external_id=f"page-{channel_status}", name=f"Boulangerie {channel_status}",
                              status=channel_status)
            session.add(channel)
            await session.flush()
        item = Item(channel_id=channel.id, platform="facebook", external_id=f"p_{n}", kind="comment",
                    parent_external_id="p", author_id=f"a{n}", author_name=f"Client {n}", text=text, language="fr",
                    created_time=_earlier_today(server), status=status)
        session.add(item)
        await session.flush()
        session.add(Classification(item_id=item.id, label="complaint", confidence=0.8, model_version="t",
                                   explanation=["rassis"]))
        expert_id = await session.scalar(select(Expert.id).where(Expert.email == expert)) if expert else None
        session.add(Assignment(item_id=item.id, expert_id=expert_id, rule_name="Plaintes", rules_version="abc123",
                               reply_mode="public", sla_due=datetime.now(UTC) + timedelta(hours=3),
                               trace=["Plaintes: category complaint matched"]))
        return item.id


async def _text(resp: aiohttp.ClientResponse) -> str:
    async with resp:
        return await resp.text()


async def test_pages_need_a_login_and_root_goes_to_the_queue(ui_server: UiServer) -> None:
    async with aiohttp.ClientSession(base_url=ui_server.base_url) as client:
        for path in ("/ui/", "/ui/items/1", "/ui/dashboard", "/ui/dead-letters", "/ui/dashboard.csv"):
            async with client.get(path, allow_redirects=False, headers={"Accept": "text/html"}) as resp:
                assert resp.status == 302 and resp.headers["Location"].startswith("/login?next="), path
        async with client.get("/ui/events", allow_redirects=False, headers={"Accept": "text/event-stream"}) as resp:
            assert resp.status == 401
        async with client.post("/ui/bulk", data={"ids": "1", "action": "resolve"}, allow_redirects=False) as resp:
            assert resp.status in (401, 403)
        async with client.get("/", allow_redirects=False) as resp:
            assert resp.status == 302 and resp.headers["Location"] == "/ui/"


async def test_queue_escapes_text_bulk_assigns_and_refuses_without_csrf(ui_server: UiServer) -> None:
    services = ui_server.services
    await make_user(services, CM, "community_manager", name="Camille")
    hostile = await _seed(ui_server, text=HOSTILE)
    other = await _seed(ui_server)
    done = await _seed(ui_server, status="answered")
    logged = await login(ui_server.base_url, CM)
    try:
        page = await _text(await logged.client.get("/ui/"))
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &lt;img src=x onerror=alert(1)&gt; &amp; co" in page
        assert f'id="item-{hostile}"' in page and f'id="item-{other}"' in page and f'id="item-{done}"' not in page
        assert 'action="/ui/bulk"' in page and "Sans expert" in page  # French by default

        async with services.sessions() as session:
            chloe_id = await session.scalar(select(Expert.id).where(Expert.email == CHLOE))
        form = {"action": "assign", "expert_id": str(chloe_id), "next": "/ui/?status=open"}
        # without the CSRF token: refused, nothing assigned
        async with logged.client.post("/ui/bulk", data=[("ids", str(hostile)), *form.items()], allow_redirects=False) as resp:
            assert resp.status == 403
        async with services.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(Assignment).where(Assignment.expert_id == chloe_id)) == 0
        resp = await logged.post("/ui/bulk")  # no ids: a notice, nothing done
        assert resp.status == 303 and "notice=none_selected" in resp.headers["Location"]
        resp.release()
        data = [("_csrf", logged.csrf_token), ("ids", str(hostile)), ("ids", str(other)), *form.items()]
        async with logged.client.post("/ui/bulk", data=data, allow_redirects=False) as resp:
            assert resp.status == 303
            assert resp.headers["Location"].startswith("/ui/?status=open&notice=bulk_assign&n=2&refused=0")
        async with services.sessions() as session:
            for item_id in (hostile, other):
                latest = await session.scalar(select(Assignment).where(Assignment.item_id == item_id)
                                              .order_by(Assignment.id.desc()).limit(1))
                assert latest is not None and latest.expert_id == chloe_id and latest.assigned_by == CM
                assert (await session.get(Item, item_id)).status == "routed"  # type: ignore[union-attr]
            audits = (await session.scalars(select(AuditEntry.action).where(AuditEntry.actor == CM))).all()
            assert sorted(audits) == ["assign", "assign"]  # both were in triage (no expert)
        shown = await _text(await logged.client.get("/ui/?notice=bulk_assign&n=2&refused=0&assignee=" + str(chloe_id)))
        assert "2 élément(s) attribué(s), 0 refusé(s)." in shown and "Chloé Tremblay" in shown
        rows = await _text(await logged.client.get("/ui/?partial=rows&q=rassis"))
        assert rows.lstrip().startswith("<tr") and "<html" not in rows and f'id="item-{other}"' in rows
        assert f'id="item-{hostile}"' not in rows
    finally:
        await logged.client.close()


async def test_roles_manager_reads_only_and_expert_sees_own_items(ui_server: UiServer) -> None:
    services = ui_server.services
    await make_user(services, "manon@boulangerie-doree.example", "manager", name="Manon", language="en")
    await make_user(services, CHLOE, "expert", name="Chloé", expert_email=CHLOE)
    mine = await _seed(ui_server, expert=CHLOE, status="notified")
    theirs = await _seed(ui_server, expert="sarah.marketing@boulangerie-doree.example", status="notified")
    manager = await login(ui_server.base_url, "manon@boulangerie-doree.example")
    expert = await login(ui_server.base_url, CHLOE)
    try:
        page = await _text(await manager.client.get("/ui/"))
        assert "Triage queue" in page and 'action="/ui/bulk"' not in page and 'class="pick"' not in page
        assert f'id="item-{mine}"' in page and f'id="item-{theirs}"' in page
        item_page = await _text(await manager.client.get(f"/ui/items/{mine}"))
        assert "/reply" not in item_page and "/assign" not in item_page and "/note" not in item_page
        resp = await manager.post("/ui/bulk", {"ids": str(mine), "action": "resolve"})
        assert resp.status == 403
        resp.release()
        resp = await manager.post(f"/ui/items/{mine}/resolve")
        assert resp.status == 403
        resp.release()

        page = await _text(await expert.client.get("/ui/?assignee=none"))  # an expert cannot widen the view
        assert f'id="item-{mine}"' in page and f'id="item-{theirs}"' not in page
        async with expert.client.get(f"/ui/items/{theirs}", allow_redirects=False) as resp:
            assert resp.status == 404
        item_page = await _text(await expert.client.get(f"/ui/items/{mine}"))
        assert f'action="/ui/items/{mine}/reply"' in item_page and "/assign" not in item_page
        resp = await expert.post(f"/ui/items/{mine}/assign", {"expert_id": "1"})
        assert resp.status == 403
        resp.release()
        async with services.sessions() as session:
            assert (await session.get(Item, mine)).status == "notified"  # type: ignore[union-attr]
    finally:
        await manager.client.close()
        await expert.client.close()


async def test_item_page_history_viewers_reclassify_reply_once(ui_server: UiServer) -> None:
    services = ui_server.services
    await make_user(services, CM, "community_manager", name="Camille")
    await make_user(services, "admin@boulangerie-doree.example", "admin", name="Alex", language="en")
    item_id = await _seed(ui_server, text=HOSTILE)
    cm = await login(ui_server.base_url, CM)
    admin = await login(ui_server.base_url, "admin@boulangerie-doree.example")
    try:
        await _text(await cm.client.get(f"/ui/items/{item_id}"))  # Camille opens it (a heartbeat)
        page = await _text(await admin.client.get(f"/ui/items/{item_id}"))
        assert "Camille is also viewing this item" in page
        assert "&lt;img src=x onerror=alert(1)&gt;" in page and "<img src=x" not in page
        assert "abc123" in page and "Plaintes: category complaint matched" in page  # rules version, trace
        async with admin.client.post(f"/ui/items/{item_id}/viewers", data={"_csrf": admin.csrf_token}) as resp:
            assert (await resp.json()) == {"viewers": ["Camille"]}
        async with cm.client.post(f"/ui/items/{item_id}/viewers", data={"_csrf": cm.csrf_token, "leaving": "1"}) as resp:
            assert resp.status == 200
        async with admin.client.get(f"/ui/items/{item_id}/viewers") as resp:
            assert (await resp.json()) == {"viewers": []}

        resp = await cm.post(f"/ui/items/{item_id}/reclassify", {"label": "product_feedback"})
        assert resp.status == 303 and resp.headers["Location"] == f"/ui/items/{item_id}?notice=reclassify"
        resp.release()
        resp = await cm.post(f"/ui/items/{item_id}/note", {"text": "Voir <b>avec</b> la boutique"})
        resp.release()
        form_key = re.search(r'name="form_key" value="([^"]+)"', await _text(await cm.client.get(f"/ui/items/{item_id}")))
        assert form_key
        reply = {"mode": "private", "text": "Bonjour, écrivez-nous en privé", "ack_text": "Nous vous répondons en privé.",
                 "form_key": form_key.group(1)}
        first, second = await asyncio.gather(cm.post(f"/ui/items/{item_id}/reply", reply),
                                             cm.post(f"/ui/items/{item_id}/reply", reply))
        assert {first.status, second.status} == {303}
        first.release()
        second.release()
        async with services.sessions() as session:
            responses = (await session.scalars(select(Response).where(Response.item_id == item_id))).all()
            assert len(responses) == 1 and responses[0].mode == "private"
            assert responses[0].ack_text == "Nous vous répondons en privé."
            jobs = (await session.scalars(select(Job.payload).where(Job.kind == "respond"))).all()
            assert jobs == [{"response_id": responses[0].id}]
            label = await session.scalar(select(Classification).where(Classification.item_id == item_id)
                                         .order_by(Classification.id.desc()).limit(1))
            assert label is not None and label.source == "human" and label.label == "product_feedback"
        page = await _text(await cm.client.get(f"/ui/items/{item_id}"))
        history = page[page.index('class="history"'):]
        order = [history.index(s) for s in ("étiquette du modèle", "reclassé", "note interne", "réponse")]
        assert order == sorted(order)
        assert "Voir &lt;b&gt;avec&lt;/b&gt; la boutique" in history
        assert 'action="/ui/items/%d/reply"' % item_id not in page  # one reply: the form is gone
        resp = await cm.post(f"/ui/items/{item_id}/reply", {**reply, "form_key": "another"})
        assert resp.headers["Location"] == f"/ui/items/{item_id}?error=answered"
        resp.release()
    finally:
        await cm.client.close()
        await admin.client.close()


async def _next_event(stream: aiohttp.StreamReader, wanted: int, timeout: float = 20.0) -> dict[str, object]:
    async def read() -> dict[str, object]:
        while True:
            line = (await stream.readline()).decode()
            if line.startswith("data: "):
                data = json.loads(line[6:])
                if data.get("item_id") == wanted:
                    return data

    return await asyncio.wait_for(read(), timeout)


async def test_live_events_from_announcements_and_from_the_database(make_ui_server: object) -> None:
    first: UiServer = await make_ui_server()  # type: ignore[operator]
    second: UiServer = await make_ui_server()  # type: ignore[operator]  # another web process, same database
    await make_user(first.services, CM, "community_manager", name="Camille")
    logged = await login(first.base_url, CM)
    try:
        async with logged.client.get("/ui/events", headers={"Accept": "text/event-stream"}) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
            first.services.announce("item.routed", {"item_id": 4242, "expert": CHLOE})
            assert await _next_event(resp.content, 4242) == {"event": "item.routed", "item_id": 4242}
            # an item stored by another process: this one hears of it through the database
            item_id = await _seed(second)
            assert (await _next_event(resp.content, item_id))["event"] == "item.changed"
    finally:
        await logged.client.close()


async def test_dashboard_csv_banners_and_dead_letters(ui_server: UiServer) -> None:
    services = ui_server.services
    await make_user(services, CM, "community_manager", name="Camille")
    await make_user(services, "manon@boulangerie-doree.example", "manager", name="Manon")
    item_id = await _seed(ui_server, channel_status="token_invalid")
    services.rules_status = dataclasses.replace(services.rules_status, error="routing_rules.yaml:7:3: unknown key 'asign'")
    now = datetime.now(UTC)
    async with services.sessions.begin() as session:
        incident = CrisisIncident(scope="post", scope_key="p", label="Galette <crue>", reason="5 complaints in 30 min",
                                  started_at=now, last_item_at=now)
        session.add(incident)
        await session.flush()
        session.add(CrisisIncidentItem(incident_id=incident.id, item_id=item_id))
        session.add(Job(kind="send_email", payload={"email_id": 99}, status="dead", attempts=12, max_attempts=12,
                        last_error="SMTP 550 <mailbox unavailable>", finished_at=datetime.now(UTC)))
    cm = await login(ui_server.base_url, CM)
    manager = await login(ui_server.base_url, "manon@boulangerie-doree.example")
    try:
        page = await _text(await cm.client.get("/ui/dashboard"))
        assert "Santé des canaux" in page and "Boulangerie token_invalid" in page and "Jeton invalide" in page
        banners = page[page.index('class="banners"'):page.index('id="main"')]
        assert "Le jeton de « Boulangerie token_invalid » n’est plus valide : reconnectez la page." in banners
        assert "unknown key &#39;asign&#39;" in banners  # the rules file's reload error
        assert "Crise en cours : Galette &lt;crue&gt; (1 réclamation(s))." in banners
        assert "Reçus" in page and "Cette semaine" in page  # the KPI table
        async with cm.client.get("/ui/dashboard.csv") as resp:
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/csv")
            rows = list(csv.reader(io.StringIO(await resp.text())))
        assert rows[0] == ["kpi", "today", "this_week"]
        figures = {row[0]: row[1:] for row in rows[1:]}
        assert figures["received"] == ["1", "1"] and "first_response_s.median" in figures

        dead = await _text(await cm.client.get("/ui/dead-letters"))
        assert "SMTP 550 &lt;mailbox unavailable&gt;" in dead
        job_id = int(re.search(r'action="/ui/dead-letters/(\d+)/retry"', dead).group(1))  # type: ignore[union-attr]
        async with manager.client.get("/ui/dead-letters", allow_redirects=False) as resp:
            assert resp.status == 403
        resp = await cm.post(f"/ui/dead-letters/{job_id}/retry")
        assert resp.status == 303 and resp.headers["Location"] == "/ui/dead-letters?notice=retried"
        resp.release()
        async with services.sessions() as session:
            job = await session.get(Job, job_id)
            assert job is not None and job.status == "queued" and job.attempts == 0
            audit = await session.scalar(select(AuditEntry).where(AuditEntry.action == "retry_job"))
            assert audit is not None and audit.actor == CM and audit.detail == {"job_id": job_id, "kind": "send_email"}
    finally:
        await cm.client.close()
        await manager.client.close()
