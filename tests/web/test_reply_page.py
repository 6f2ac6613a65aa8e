"""The expert's one-click reply page (bot/web/reply.py, bot/notify/links.py) in the real app,
over loopback HTTP, on SQLite and PostgreSQL: escaping, signed links, form key, one reply per
link, security headers, both languages."""

from __future__ import annotations

import asyncio
import html
import itertools
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from bot.app import SERVICES, create_app
from bot.notify import links
from bot.services import Services
from bot.store import db
from bot.store.models import Assignment, Channel, Classification, Expert, Item, Job, ReplyLink, Response
from tests.conftest import make_settings

CHLOE = "chloe.qualite@boulangerie-doree.example"  # fr, America/Montreal
SARAH = "sarah.marketing@boulangerie-doree.example"  # en, America/Toronto
SLA_DUE = datetime(2030, 5, 17, 14, 30, tzinfo=UTC)  # Friday 10:30 in Montreal and Toronto (EDT)
HOSTILE_POST = "Le gâteau était sec <script>alert(1)</script> <img src=x onerror=alert(1)> remboursez !"
_ids = itertools.count(1)


@dataclass
class Site:
    client: TestClient
    services: Services
    channel_id: int

    async def item_with_link(
        self,
        *,
        expert_email: str = CHLOE,
        text: str = HOSTILE_POST,
        author_name: str = "Julie Bouchard",
        kind: str = "comment",
        permalink: str | None = None,
        ttl_s: int = 3600,
    ) -> str:
        """An item labelled, assigned to ``expert_email`` and notified, and its reply link."""
        n = next(_ids)
        async with self.services.sessions.begin() as session:
            expert = await session.scalar(select(Expert).where(Expert.email == expert_email))
            assert expert is not None, "the experts of routing_rules.yaml are synced at start"
            item = Item(
                channel_id=self.channel_id, platform="facebook", external_id=f"777_2001_{n}",
                kind=kind, parent_external_id="777_2001", thread_external_id="777_2001",
                author_id=f"5{n:03d}", author_name=author_name, text=text,
                created_time=datetime(2030, 5, 17, 12, 0, tzinfo=UTC), permalink=permalink,
                status="notified",
            )
            session.add(item)
            await session.flush()
            session.add(Classification(item_id=item.id, label="complaint", confidence=0.91,
                                       model_version="test", explanation=["sec", "remboursez"]))
            session.add(Assignment(item_id=item.id, expert_id=expert.id, rule_name="Plaintes qualité",
                                   rules_version="test", reply_mode="private_with_public_ack",
                                   sla_due=SLA_DUE))
            return await links.create_link(session, self.services.settings.secret_key.reveal(),
                                           item.id, expert.id, ttl_s)

    async def count(self, model: Any, *where: Any) -> int:
        async with self.services.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(model).where(*where)))

    async def get(self, token: str) -> tuple[ClientResponse, str]:
        async with self.client.get(f"/reply/{token}", allow_redirects=False) as resp:
            return resp, await resp.text()

    async def post(self, token: str, form: dict[str, str]) -> tuple[ClientResponse, str]:
        async with self.client.post(f"/reply/{token}", data=form, allow_redirects=False) as resp:
            return resp, await resp.text()

    async def form_key(self, token: str) -> str:
        resp, page = await self.get(token)
        assert resp.status == 200
        found = re.search(r'name="form_key" value="([^"]+)"', page)
        assert found
        return found.group(1)

    async def good_form(self, token: str, text: str = "Toutes nos excuses, écrivez-nous en privé.") -> dict[str, str]:
        return {"form_key": await self.form_key(token), "text": text,
                "ack_text": "Nous vous avons répondu en privé.", "mode": "private"}


@pytest.fixture
async def site(tmp_path: Path, database_url: str, models_dir: Path, aiohttp_client: Any
               ) -> AsyncIterator[Site]:
    settings = make_settings(tmp_path, database_url, models_dir)
    if not db.is_sqlite(database_url):
        await asyncio.to_thread(db.upgrade, database_url)
    app = create_app(settings, run_worker=False, run_scheduler=False)
    client = await aiohttp_client(app)
    services = app[SERVICES]
    async with services.sessions.begin() as session:
        channel = Channel(platform="facebook", external_id="777", name="Boulangerie Test",
                          credentials={"page_token": "t"})
        session.add(channel)
        await session.flush()
        channel_id = channel.id
    yield Site(client, services, channel_id)


def assert_security_headers(resp: ClientResponse) -> None:
    csp = resp.headers.get("Content-Security-Policy", "")
    assert "frame-ancestors 'none'" in csp
    assert resp.headers.get("X-Content-Type-Options") == "nosniff"


def assert_no_traceback(page: str) -> None:
    for leak in ("Traceback", "File \"", "Exception", "Error:", "sqlalchemy", "bot/"):
        assert leak not in page


# --- the page ----------------------------------------------------------------------------


async def test_the_page_shows_the_item_escaped_the_draft_and_the_due_time(site: Site) -> None:
    token = await site.item_with_link(author_name="<b>Julie</b>")
    resp, page = await site.get(token)
    assert resp.status == 200
    assert resp.content_type == "text/html"
    # platform text is shown, escaped, never raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<script>" not in page and "<img src=x" not in page
    assert "Le gâteau était sec" in page
    assert "<b>Julie</b>" not in page and "&lt;b&gt;Julie&lt;/b&gt;" in page
    # the suggested reply (complaint, French) in the textarea
    textarea = re.search(r'<textarea id="text"[^>]*>(.*?)</textarea>', page, re.S)
    assert textarea
    draft = html.unescape(textarea.group(1))
    assert draft.startswith("Bonjour <b>Julie</b>,")
    assert "Nous sommes sincèrement désolés" in draft and "Boulangerie Test" in draft
    # due time in the expert's time zone, and the other facts
    assert "Réponse attendue avant" in page
    due = re.search(r"Réponse attendue avant</dt><dd>([^<]*)</dd>", page)
    assert due and "17 mai 2030" in due.group(1) and "10 h 30" in due.group(1)
    assert "(America/Montreal)" in due.group(1)
    assert "Plaintes qualité" in page and "Plainte" in page and "91 %" in page
    assert 'lang="fr"' in page
    assert_security_headers(resp)


async def test_a_javascript_permalink_is_not_made_a_link(site: Site) -> None:
    token = await site.item_with_link(permalink="javascript:alert(document.cookie)")
    resp, page = await site.get(token)
    assert resp.status == 200
    assert "javascript:" not in page


async def test_an_https_permalink_is_shown(site: Site) -> None:
    token = await site.item_with_link(permalink="https://www.facebook.com/777/posts/2001")
    _, page = await site.get(token)
    assert 'href="https://www.facebook.com/777/posts/2001"' in page


async def test_an_english_speaking_expert_gets_english_strings(site: Site) -> None:
    token = await site.item_with_link(expert_email=SARAH, text="The cake was stale")
    resp, page = await site.get(token)
    assert resp.status == 200
    assert 'lang="en"' in page
    for english in ("Reply", "Reply due by", "Your reply", "Send the reply", "Complaint"):
        assert english in page
    due = re.search(r"Reply due by</dt><dd>([^<]*)</dd>", page)
    assert due and "17 May 2030" in due.group(1) and "10:30 AM" in due.group(1)
    assert "(America/Toronto)" in due.group(1)
    for french in ("Réponse attendue avant", "Envoyer la réponse", "Votre réponse"):
        assert french not in page
    textarea = re.search(r'<textarea id="text"[^>]*>(.*?)</textarea>', page, re.S)
    assert textarea and html.unescape(textarea.group(1)).startswith("Hello Julie Bouchard,")


# --- links that do not open --------------------------------------------------------------


def tampered(token: str) -> dict[str, str]:
    link_id, _, signature = token.partition(".")
    flipped = "A" if signature[-1] != "A" else "B"
    other_id = ("x" if link_id[0] != "x" else "y") + link_id[1:]
    return {
        "signature-altered": f"{link_id}.{signature[:-1]}{flipped}",
        "id-altered": f"{other_id}.{signature}",
        "truncated": token[:-4],
        "id-only": link_id,
        "no-id": f".{signature}",
        "garbage": "not-a-token",
        "dots": "a.b.c",
        "very-long": token + "A" * 4000,
    }


async def test_a_tampered_link_gets_a_clear_404_page(site: Site) -> None:
    token = await site.item_with_link()
    for how, bad in tampered(token).items():
        resp, page = await site.get(bad)
        assert resp.status == 404, how
        assert "Lien invalide" in page and "pas valide" in page, how
        assert_no_traceback(page)
        assert_security_headers(resp)
    resp, _ = await site.get(token)  # the real one still opens
    assert resp.status == 200


async def test_a_non_ascii_signature_gets_the_404_page_not_a_crash(site: Site) -> None:
    token = await site.item_with_link()
    link_id, _, signature = token.partition(".")
    resp, page = await site.get(f"{link_id}.é{signature[1:]}")
    assert resp.status == 404
    assert "Lien invalide" in page
    assert_no_traceback(page)


async def test_a_post_with_a_tampered_link_is_refused(site: Site) -> None:
    token = await site.item_with_link()
    form = await site.good_form(token)
    resp, page = await site.post(tampered(token)["signature-altered"], form)
    assert resp.status == 404
    assert await site.count(Response) == 0


async def test_an_expired_link_gets_410(site: Site) -> None:
    token = await site.item_with_link(ttl_s=-60)
    resp, page = await site.get(token)
    assert resp.status == 410
    assert "Lien expiré" in page
    assert_no_traceback(page)
    assert_security_headers(resp)
    resp, _ = await site.post(token, {"form_key": "x", "text": "trop tard"})
    assert resp.status == 410
    assert await site.count(Response) == 0


async def test_an_english_speaking_expert_gets_the_expired_page_in_english(site: Site) -> None:
    token = await site.item_with_link(expert_email=SARAH, ttl_s=-60)
    resp, page = await site.get(token)
    assert resp.status == 410
    assert "Link expired" in page and "Lien expiré" not in page


# --- sending -----------------------------------------------------------------------------


async def test_a_post_without_the_right_form_key_is_refused(site: Site) -> None:
    token = await site.item_with_link()
    for form_key in (None, "", "0" * 32, "wrong-key"):
        form = await site.good_form(token)
        if form_key is None:
            del form["form_key"]
        else:
            form["form_key"] = form_key
        resp, page = await site.post(token, form)
        assert 400 <= resp.status < 500, form_key
        assert_no_traceback(page)
    assert await site.count(Response) == 0
    assert await site.count(Job, Job.kind == "respond") == 0
    # the link is still good for the real form
    resp, _ = await site.post(token, await site.good_form(token))
    assert resp.status == 303


async def test_a_non_ascii_form_key_is_refused_not_a_crash(site: Site) -> None:
    token = await site.item_with_link()
    form = await site.good_form(token)
    form["form_key"] = "é" * 32
    resp, page = await site.post(token, form)
    assert 400 <= resp.status < 500
    assert await site.count(Response) == 0


@pytest.mark.parametrize("text", ["", "   \n\t "], ids=["empty", "blank"])
async def test_an_empty_reply_is_400_with_the_error_shown(site: Site, text: str) -> None:
    token = await site.item_with_link()
    form = await site.good_form(token, text=text)
    resp, page = await site.post(token, form)
    assert resp.status == 400
    assert "La réponse est vide." in page
    assert 'role="alert"' in page
    assert_security_headers(resp)
    assert await site.count(Response) == 0
    # nothing was spent: the same link still sends
    resp, _ = await site.post(token, await site.good_form(token))
    assert resp.status == 303


async def test_a_too_long_reply_is_400_and_keeps_the_text(site: Site) -> None:
    token = await site.item_with_link()
    form = await site.good_form(token, text="a" * 8001)
    resp, page = await site.post(token, form)
    assert resp.status == 400
    assert "8001" in page.replace("\u202f", "").replace(" ", "")
    assert "a" * 8001 in page
    assert await site.count(Response) == 0


async def test_a_private_message_cannot_get_a_public_reply(site: Site) -> None:
    token = await site.item_with_link(kind="message")
    form = await site.good_form(token)
    form["mode"] = "public"
    resp, page = await site.post(token, form)
    assert resp.status == 400
    assert "réponse privée" in page
    assert await site.count(Response) == 0


async def test_a_valid_post_stores_a_pending_response_and_its_job(site: Site) -> None:
    token = await site.item_with_link()
    text = "Toutes nos excuses <3, écrivez-nous en privé."
    resp, _ = await site.post(token, await site.good_form(token, text=text))
    assert resp.status == 303
    assert resp.headers["Location"] == f"/reply/{token}/status"
    assert_security_headers(resp)

    async with site.services.sessions() as session:
        [response] = (await session.scalars(select(Response))).all()
        [job] = (await session.scalars(select(Job).where(Job.kind == "respond"))).all()
        link = await session.get(ReplyLink, token.partition(".")[0])
        expert = await session.scalar(select(Expert).where(Expert.email == CHLOE))
    assert response.status == "pending" and response.text == text and response.mode == "private"
    assert response.ack_text == "Nous vous avons répondu en privé."
    assert expert is not None and response.expert_id == expert.id
    assert job.payload == {"response_id": response.id} and job.status == "queued"
    assert link is not None and link.used_at is not None


async def test_the_status_page_follows_the_sent_reply(site: Site) -> None:
    token = await site.item_with_link()
    text = "Toutes nos excuses <3, écrivez-nous en privé."
    resp, _ = await site.post(token, await site.good_form(token, text=text))
    assert resp.status == 303
    async with site.client.get(f"/reply/{token}/status") as status:
        assert status.status == 200
        assert_security_headers(status)
        page = await status.text()
    assert "Réponse en cours d’envoi" in page
    assert "Toutes nos excuses &lt;3" in page


async def test_a_second_post_with_the_same_link_is_409_already_used(site: Site) -> None:
    token = await site.item_with_link()
    form = await site.good_form(token)
    first, _ = await site.post(token, form)
    assert first.status == 303
    second, page = await site.post(token, dict(form, text="Une deuxième réponse"))
    assert second.status == 409
    assert "Lien déjà utilisé" in page
    assert_security_headers(second)
    assert await site.count(Response) == 1
    assert await site.count(Job, Job.kind == "respond") == 1


async def test_two_simultaneous_posts_store_one_response(site: Site) -> None:
    token = await site.item_with_link()
    form = await site.good_form(token)
    results = await asyncio.gather(*(site.post(token, dict(form, text=f"réponse {n}")) for n in range(2)))
    assert await site.count(Response) == 1
    assert await site.count(Job, Job.kind == "respond") == 1
    # the loser is told the link was used, not sent to a status page for a reply it did not make
    assert sorted(resp.status for resp, _ in results) == [303, 409]


async def test_an_english_speaking_expert_gets_the_used_page_in_english(site: Site) -> None:
    token = await site.item_with_link(expert_email=SARAH, text="The cake was stale")
    resp, _ = await site.post(token, await site.good_form(token, text="So sorry!"))
    assert resp.status == 303
    resp, page = await site.get(token)
    assert resp.status == 409
    assert "Link already used" in page and "Lien déjà utilisé" not in page


async def test_a_removed_item_gets_a_clear_page_and_takes_no_reply(site: Site) -> None:
    from bot.store.models import Item, Response

    token = await site.item_with_link()
    form = await site.good_form(token)
    async with site.services.sessions.begin() as session:
        item = (await session.scalars(select(Item))).one()
        item.status, item.text = "removed", ""  # the author deleted the comment
    resp, page = await site.get(token)
    assert resp.status == 410 and "supprimé" in page
    resp, page = await site.post(token, form)
    assert resp.status == 410
    assert await site.count(Response) == 0
