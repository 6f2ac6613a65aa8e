"""The triage UI in headless Chromium (Playwright, Debian's /usr/bin/chromium), against the
real app with its worker, the fake Graph API delivering signed webhooks, a mail catcher, SQLite.

One server and one browser for the module; each test gets a fresh browser context.
Covers: pages need a login; a POST without the CSRF token is refused; triage end to end
(reclassify, assign, reply that reaches the platform); bulk assign with the keyboard; a
live update arriving without reload; a hostile post rendered as text. Saves the queue's
screenshot to docs/images/triage-queue.png (shown in README.md) and the item page's to
docs/images/triage-item.png and the dashboard's to docs/images/triage-dashboard.png
(shown in docs/ui.md).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from aiohttp import web
from sqlalchemy import select

from bot import PROJECT_ROOT
from bot.app import SERVICES, create_app
from bot.channels.simulated.graph_api import FakeGraphAPI
from bot.demo.mailcatcher import MailCatcher
from bot.services import Services
from bot.store.models import Assignment, Channel, Classification, Expert, Item, Response
from tests.conftest import free_port, make_settings
from tests.web.conftest import PASSWORD, make_user

playwright_api = pytest.importorskip("playwright.async_api")
CHROMIUM = os.environ.get("RELAIS_CHROMIUM", "/usr/bin/chromium")
if not Path(CHROMIUM).exists():  # pragma: no cover
    if os.environ.get("CI"):  # like PostgreSQL: CI never passes without the browser tests
        pytest.fail(f"Chromium is required in CI but missing at {CHROMIUM} (.ci/run installs it)", pytrace=False)
    pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)

pytestmark = pytest.mark.asyncio(loop_scope="module")

PAGE_ID = "881"
TOKEN = "browser-page-token"
CM = "camille.cm@boulangerie-doree.example"
CHLOE = "chloe.qualite@boulangerie-doree.example"
SCREENSHOT = PROJECT_ROOT / "docs" / "images" / "triage-queue.png"
T = TypeVar("T")


@dataclass
class Stack:
    base_url: str
    services: Services
    graph: FakeGraphAPI
    post_id: str
    browser: Any

    async def comment(self, author: str, text: str) -> int:
        """A comment through the real path: webhook -> store -> classify -> route. Its item id."""
        comment_id = self.graph.user_comment(self.post_id, {"id": str(abs(hash(author)) % 10**6), "name": author}, text)
        assert await self.graph.deliver_pending() == [200]

        async def routed() -> int | None:
            async with self.services.sessions() as session:
                item = await session.scalar(select(Item).where(Item.external_id == comment_id))
                return item.id if item is not None and item.status in ("triage", "routed", "notified") else None

        return await eventually(routed)

    async def logged_in_page(self, email: str = CM) -> Any:
        context = await self.browser.new_context(base_url=self.base_url, viewport={"width": 1400, "height": 900},
                                                 locale="fr-FR")
        page = await context.new_page()
        await page.goto("/login")
        await page.fill("#email", email)
        await page.fill("#password", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url(re.compile(r".*/ui/$"))
        return page


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout: float = 45.0) -> T:
    async def loop() -> T:
        while True:
            found = await probe()
            if found:
                return found
            await asyncio.sleep(0.2)

    return await asyncio.wait_for(loop(), timeout)


async def _start(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("browser")
    graph = FakeGraphAPI(app_secret="test-app-secret")
    graph.add_page(PAGE_ID, "Boulangerie Dorée", TOKEN)
    graph_port, port = free_port(), free_port()
    graph_runner = await _start(graph.app, graph_port)
    catcher = MailCatcher()  # the experts' notification emails really go out
    smtp_port = await catcher.start()
    settings = make_settings(tmp, f"sqlite:///{tmp / 'relais.db'}", models_dir, base_url=f"http://127.0.0.1:{port}",
                             smtp_url=f"smtp://127.0.0.1:{smtp_port}")
    graph.webhook_url = f"{settings.base_url}/webhooks/facebook"
    app = create_app(settings, run_worker=True, run_scheduler=False)
    runner = await _start(app, port)
    services = app[SERVICES]
    async with services.sessions.begin() as session:
        session.add(Channel(platform="facebook", external_id=PAGE_ID, name="Boulangerie Dorée",
                            credentials={"page_token": TOKEN}, api_url=f"http://127.0.0.1:{graph_port}"))
    await make_user(services, CM, "community_manager", name="Camille")
    post_id = graph.publish_post(PAGE_ID, "Notre nouvelle Forêt-Noire est arrivée 🍒")
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield Stack(settings.base_url, services, graph, post_id, browser)
        finally:
            await browser.close()
            await runner.cleanup()
            await graph_runner.cleanup()
            await catcher.stop()


async def test_pages_need_a_login_and_posts_need_the_csrf_token(stack: Stack) -> None:
    context = await stack.browser.new_context(base_url=stack.base_url)
    page = await context.new_page()
    await page.goto("/ui/dashboard")
    assert re.search(r"/login\?next=/ui/dashboard$", page.url)
    await context.close()

    page = await stack.logged_in_page()
    item_id = await stack.comment("Paul Girard", "Le pain était rassis ce matin")
    refused = await page.request.post("/ui/bulk", form={"ids": str(item_id), "action": "resolve"})
    assert refused.status == 403 and "CSRF" in await refused.text()
    async with stack.services.sessions() as session:
        assert (await session.get(Item, item_id)).status != "resolved"  # type: ignore[union-attr]
    await page.goto("/ui/dashboard")
    await page.get_by_role("heading", name="Santé des canaux").wait_for()
    assert await page.locator("table.kpis tbody tr").count() >= 10
    await page.screenshot(path=str(SCREENSHOT.with_name("triage-dashboard.png")), full_page=True)
    await page.context.close()


async def test_triage_an_item_end_to_end_and_screenshot_the_queue(stack: Stack) -> None:
    for author, text in (("Julie Bouchard", "Le gâteau était sec et rassis, je veux un remboursement"),
                         ("Tom Baker", "Do you deliver to Lyon? Love your croissants"),
                         ("Inès Morel", "Quels sont vos horaires dimanche ?")):
        await stack.comment(author, text)
    item_id = await stack.comment("Lucie Martin", "La galette était crue au milieu, inadmissible")
    page = await stack.logged_in_page()
    await page.get_by_text("Lucie Martin").first.wait_for()
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT), full_page=True)

    await page.click(f"#item-{item_id} a")
    await page.wait_for_url(re.compile(rf".*/ui/items/{item_id}$"))
    await page.select_option("#reclassify-label", "product_feedback")
    await page.click("form[action$='/reclassify'] button")
    await page.wait_for_url(re.compile(r".*notice=reclassify$"))
    async with stack.services.sessions() as session:
        chloe_id = await session.scalar(select(Expert.id).where(Expert.email == CHLOE))
    await page.select_option("#assign-expert", str(chloe_id))
    await page.click("form[action$='/assign'] button")
    await page.wait_for_url(re.compile(r".*notice=assign$"))
    await page.check("input[name=mode][value=public]")
    await page.fill("#reply-text", "Toutes nos excuses Lucie, passez en boutique, on vous la remplace.")
    await page.click("form.reply-form button[type=submit]")
    await page.wait_for_url(re.compile(r".*notice=reply$"))

    comment_id = await _external_id(stack, item_id)
    replies = await eventually(lambda: _replies(stack, comment_id))
    assert replies[0]["message"] == "Toutes nos excuses Lucie, passez en boutique, on vous la remplace."
    async with stack.services.sessions() as session:
        label = await session.scalar(select(Classification).where(Classification.item_id == item_id)
                                     .order_by(Classification.id.desc()).limit(1))
        assignment = await session.scalar(select(Assignment).where(Assignment.item_id == item_id)
                                          .order_by(Assignment.id.desc()).limit(1))
        assert label is not None and (label.label, label.source) == ("product_feedback", "human")
        assert assignment is not None and assignment.expert_id == chloe_id and assignment.assigned_by == CM
    await page.reload()
    history = page.locator("ol.history")
    await history.get_by_text("reclassé").wait_for()
    await page.screenshot(path=str(SCREENSHOT.with_name("triage-item.png")), full_page=True)
    await page.context.close()


async def _external_id(stack: Stack, item_id: int) -> str:
    async with stack.services.sessions() as session:
        item = await session.get(Item, item_id)
        assert item is not None
        return item.external_id


async def _replies(stack: Stack, comment_id: str) -> list[dict[str, Any]] | None:
    return stack.graph.replies_to(comment_id) or None


async def test_bulk_assign_with_the_keyboard(stack: Stack) -> None:
    first = await stack.comment("Hugo Lambert", "Ma commande n'est jamais arrivée")
    second = await stack.comment("Emma Petit", "Le service était très lent samedi")
    page = await stack.logged_in_page()
    async with stack.services.sessions() as session:
        sarah = await session.scalar(select(Expert).where(Expert.email == "sarah.marketing@boulangerie-doree.example"))
    assert sarah is not None
    for item_id in (first, second):
        await page.focus(f"#item-{item_id} input.pick")
        await page.keyboard.press("Space")
    await page.focus("#bulk-action")
    await page.select_option("#bulk-action", "assign")
    await page.select_option("#bulk-expert", str(sarah.id))
    await page.focus("#bulk-apply")
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(r".*notice=bulk_assign.*"))
    assert await page.locator("p.notice").inner_text() == "2 élément(s) attribué(s), 0 refusé(s)."
    async with stack.services.sessions() as session:
        for item_id in (first, second):
            latest = await session.scalar(select(Assignment).where(Assignment.item_id == item_id)
                                          .order_by(Assignment.id.desc()).limit(1))
            assert latest is not None and latest.expert_id == sarah.id
    await page.context.close()


async def test_a_new_item_appears_without_reload(stack: Stack) -> None:
    page = await stack.logged_in_page()
    await page.wait_for_function("document.getElementById('live-status').textContent.length > 0")
    await page.evaluate("window.__sameDocument = true")
    item_id = await stack.comment("Nora Live", "Bonjour, la boutique de Lille est-elle ouverte ?")
    await page.locator(f"#item-{item_id}").wait_for(timeout=30_000)
    assert await page.evaluate("window.__sameDocument") is True  # no reload happened
    await page.context.close()


async def test_a_hostile_post_renders_as_text(stack: Stack) -> None:
    hostile = 'Promo <script>window.__pwned = 1; alert("x")</script> <img src=x onerror="window.__pwned = 2; alert(2)">'
    item_id = await stack.comment("Mallory", hostile)
    page = await stack.logged_in_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await page.goto(f"/ui/items/{item_id}")
    message = page.locator("blockquote.message")
    assert await message.inner_text() == hostile
    assert await page.locator("main img").count() == 0
    await page.goto("/ui/")
    assert hostile[:40] in await page.locator(f"#item-{item_id} .text").inner_text()
    assert await page.evaluate("window.__pwned") is None and dialogs == []
    async with stack.services.sessions() as session:
        assert (await session.scalar(select(Response).where(Response.item_id == item_id))) is None
    await page.context.close()
