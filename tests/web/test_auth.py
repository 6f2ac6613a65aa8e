"""Login, sessions, CSRF, throttling and roles (bot/web/auth.py) in the real app on a loopback
port, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from bot.errors import ConfigError
from bot.services import Services
from bot.settings import load_settings
from bot.store.models import LoginAttempt, User, WebSession, utcnow
from bot.web import render as render_module
from bot.web.auth import current_user, require_role, safe_next
from bot.web.render import render
from bot.web.triage import live
from bot.web.users import set_active
from tests.web.conftest import PASSWORD, SESSION_COOKIE, Login, StartServer, UiServer, login, login_form_token, make_user

#: checks that do not depend on the database run on SQLite only (the suite shares 2 CPUs)
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
CM = "camille@example.com"
MANAGER = "marc.manager@example.com"
EXPERT = "chloe.qualite@boulangerie-doree.example"
ADMIN = "ada.admin@example.com"


def probe_routes(app: web.Application, services: Services) -> None:
    """Test-only pages guarded by require_role (outside /ui, so the decorator alone guards them)."""

    @require_role("community_manager", "admin")
    async def act(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        user = current_user(request)
        assert user is not None
        return web.json_response({"done_by": user.email, "value": form.get("value")})

    @require_role("admin")
    async def admin_page(request: web.Request) -> web.StreamResponse:
        return render(request, "auth_message.html", title="Administration", body="admins only")

    @require_role()
    async def any_page(request: web.Request) -> web.StreamResponse:
        # ``render`` returns the page; awaiting it (as some handlers do) gives the same page
        return await render(request, "auth_message.html", title="Bienvenue", body="any role")

    app.router.add_post("/probe/action", act)
    app.router.add_get("/probe/admin", admin_page)
    app.router.add_get("/probe/page", any_page)


@dataclass
class Site:
    server: UiServer
    http: aiohttp.ClientSession  # an anonymous browser

    @property
    def services(self) -> Services:
        return self.server.services

    async def login(self, email: str, password: str = PASSWORD) -> Login:
        logged = await login(self.server.base_url, email, password)
        self.opened.append(logged.client)
        return logged

    async def try_login(self, email: str, password: str, *, next_url: str | None = None,
                        http: aiohttp.ClientSession | None = None) -> tuple[int, str, aiohttp.ClientResponse]:
        http = http or self.http
        async with http.get("/login") as resp:
            token = login_form_token(await resp.text())
        form = {"email": email, "password": password, "_csrf": token}
        if next_url is not None:
            form["next"] = next_url
        async with http.post("/login", data=form, allow_redirects=False) as resp:
            return resp.status, await resp.text(), resp

    async def sessions_of(self, email: str) -> list[WebSession]:
        async with self.services.sessions() as session:
            user_id = await session.scalar(select(User.id).where(User.email == email))
            return list((await session.scalars(select(WebSession).where(WebSession.user_id == user_id))).all())

    def __post_init__(self) -> None:
        self.opened: list[aiohttp.ClientSession] = []


def browser(base_url: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(base_url=base_url, cookie_jar=aiohttp.CookieJar(unsafe=True))


@pytest.fixture
async def site(make_ui_server: StartServer) -> AsyncIterator[Site]:
    server = await make_ui_server(extra_routes=probe_routes)
    for email, role in ((CM, "community_manager"), (MANAGER, "manager"), (ADMIN, "admin")):
        await make_user(server.services, email, role, name=email.split("@")[0])
    await make_user(server.services, EXPERT, "expert", language="en", expert_email=EXPERT, name="<b>Chloé</b>")
    http = browser(server.base_url)
    built = Site(server, http)
    yield built
    await http.close()
    for opened in built.opened:
        await opened.close()


def set_cookie_line(resp: aiohttp.ClientResponse, name: str) -> str:
    lines = [line for line in resp.headers.getall("Set-Cookie", []) if line.startswith(f"{name}=")]
    assert lines, f"no Set-Cookie for {name}"
    return lines[-1]


# --- logging in --------------------------------------------------------------------------


async def test_login_opens_a_session_with_a_safe_cookie_whose_token_is_stored_only_hashed(site: Site) -> None:
    status, _, resp = await site.try_login(CM, PASSWORD, next_url="/ui/items/7?tab=history")
    assert status == 303
    assert resp.headers["Location"] == "/ui/items/7?tab=history"
    cookie = set_cookie_line(resp, SESSION_COOKIE)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # base_url is http here
    token = resp.cookies[SESSION_COOKIE].value
    stored = await site.sessions_of(CM)
    assert [s.token_hash for s in stored] == [hashlib.sha256(token.encode()).hexdigest()]
    assert stored[0].expires_at - stored[0].created_at == timedelta(hours=12)
    async with site.http.get("/session") as me:
        assert me.status == 200
        body = await me.json()
    assert body["email"] == CM and body["role"] == "community_manager" and body["csrf_token"] == stored[0].csrf_token
    # a logged-in visit to /login goes on to the queue
    async with site.http.get("/login", allow_redirects=False) as again:
        assert again.status == 303 and again.headers["Location"] == "/ui/"
    async with site.services.sessions() as session:
        user = await session.scalar(select(User).where(User.email == CM))
        assert user is not None and user.last_login_at is not None
        assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash


@SQLITE_ONLY
async def test_the_cookies_are_secure_when_the_base_url_is_https(make_ui_server: StartServer) -> None:
    server = await make_ui_server(base_url="https://relais.example.com")
    await make_user(server.services, CM, "community_manager")
    # a client that keeps no cookies: a Secure cookie is not sent back over http by a jar
    async with aiohttp.ClientSession(base_url=server.base_url, cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.get("/login") as resp:
            login_cookie = set_cookie_line(resp, "relais_login")
            token = login_form_token(await resp.text())
        assert "Secure" in login_cookie and "HttpOnly" in login_cookie
        nonce = login_cookie.split(";")[0].split("=", 1)[1]
        async with http.post("/login", data={"email": CM, "password": PASSWORD, "_csrf": token},
                             headers={"Cookie": f"relais_login={nonce}"}, allow_redirects=False) as resp:
            assert resp.status == 303
            cookie = set_cookie_line(resp, SESSION_COOKIE)
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


async def test_a_failed_login_says_the_same_thing_for_a_wrong_password_an_unknown_email_and_a_disabled_account(
    site: Site,
) -> None:
    async with site.services.sessions.begin() as session:
        await set_active(session, MANAGER, False)
    answers = [
        await site.try_login(CM, "not the right password"),
        await site.try_login("nobody@example.com", "not the right password"),
        await site.try_login(MANAGER, PASSWORD),  # right password, disabled account
    ]
    errors = set()
    for status, page, resp in answers:
        assert status == 401
        assert SESSION_COOKIE not in resp.cookies
        found = re.search(r'<p id="login-error" class="error" role="alert">([^<]+)</p>', page)
        assert found
        errors.add(found.group(1))
        # the error is tied to the fields for screen readers
        assert page.count('aria-describedby="login-error"') == 2
    assert errors == {"Adresse e-mail ou mot de passe incorrect."}
    assert await site.sessions_of(CM) == [] and await site.sessions_of(MANAGER) == []


@SQLITE_ONLY
async def test_only_a_local_path_is_followed_after_login(site: Site) -> None:
    for hostile in ("//evil.example/", "https://evil.example/", "/\\evil.example", "/logout"):
        async with browser(site.server.base_url) as http:
            status, _, resp = await site.try_login(CM, PASSWORD, next_url=hostile, http=http)
        assert status == 303 and resp.headers["Location"] == "/ui/", hostile


@SQLITE_ONLY
async def test_the_login_form_needs_its_pre_session_token(site: Site) -> None:
    async with site.http.get("/login") as resp:
        token = login_form_token(await resp.text())
    attempts = [
        {"email": CM, "password": PASSWORD},  # no token
        {"email": CM, "password": PASSWORD, "_csrf": "0" * 64},  # a forged one
    ]
    for form in attempts:
        async with site.http.post("/login", data=form, allow_redirects=False) as resp:
            assert resp.status == 403
            assert "Le formulaire de connexion a expiré" in await resp.text()
            assert SESSION_COOKIE not in resp.cookies
    # a valid token without the cookie it was made for (another browser's) is refused too
    async with browser(site.server.base_url) as other:
        async with other.post("/login", data={"email": CM, "password": PASSWORD, "_csrf": token},
                              allow_redirects=False) as resp:
            assert resp.status == 403
    assert await site.sessions_of(CM) == []


async def test_logging_in_again_replaces_the_session_id(site: Site) -> None:
    site.http.cookie_jar.update_cookies({SESSION_COOKIE: "planted-by-an-attacker"})
    status, _, first = await site.try_login(CM, PASSWORD)
    assert status == 303
    first_token = first.cookies[SESSION_COOKIE].value
    assert first_token != "planted-by-an-attacker"
    # this browser, still logged in, posts the login form again (a second tab, say)
    async with browser(site.server.base_url) as other, other.get("/login") as page:
        token = login_form_token(await page.text())
        nonce = page.cookies["relais_login"].value
    site.http.cookie_jar.update_cookies({"relais_login": nonce})
    async with site.http.post("/login", data={"email": ADMIN, "password": PASSWORD, "_csrf": token},
                              allow_redirects=False) as second:
        assert second.status == 303
    assert second.cookies[SESSION_COOKIE].value != first_token
    assert await site.sessions_of(CM) == []  # the previous session of this browser is gone
    async with browser(site.server.base_url) as replay:
        replay.cookie_jar.update_cookies({SESSION_COOKIE: first_token})
        async with replay.get("/session") as resp:
            assert resp.status == 401


# --- throttling --------------------------------------------------------------------------


async def test_five_failures_lock_the_account_for_fifteen_minutes_in_every_web_process(
    site: Site, make_ui_server: StartServer
) -> None:
    for _ in range(5):
        status, _, _ = await site.try_login(CM, "wrong password, again")
        assert status == 401
    status, page, resp = await site.try_login(CM, PASSWORD)  # even the right password waits
    assert status == 429
    assert "Trop de tentatives de connexion. Réessayez dans 15 min" in page
    assert 800 < int(resp.headers["Retry-After"]) <= 900
    assert await site.sessions_of(CM) == []
    # a second web process on the same database agrees
    other = await make_ui_server()
    async with browser(other.base_url) as http:
        status, page, _ = await site.try_login(CM, PASSWORD, http=http)
    assert status == 429
    # the lock is per account: another person logs in from the same address
    async with browser(site.server.base_url) as http:
        status, _, _ = await site.try_login(ADMIN, PASSWORD, http=http)
    assert status == 303
    # once the failures are older than the window, the account opens again
    async with site.services.sessions.begin() as session:
        await session.execute(update(LoginAttempt).values(at=utcnow() - timedelta(minutes=16)))
    status, _, _ = await site.try_login(CM, PASSWORD)
    assert status == 303


async def test_twenty_failures_from_one_address_lock_that_address(site: Site) -> None:
    for n in range(20):
        status, _, _ = await site.try_login(f"guess{n}@example.com", "wrong password")
        assert status == 401
    status, page, _ = await site.try_login(CM, PASSWORD)
    assert status == 429 and "Réessayez dans" in page
    async with site.services.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(LoginAttempt).where(LoginAttempt.key.like("ip:%"))) == 20
        # accounts are keyed by a hash of the email, never the address itself
        keys = (await session.scalars(select(LoginAttempt.key))).all()
        assert not any("@" in key for key in keys)


# --- CSRF, logout ------------------------------------------------------------------------


@SQLITE_ONLY
async def test_a_state_changing_request_needs_the_sessions_csrf_token(site: Site) -> None:
    cm = await site.login(CM)
    refused = [
        await cm.client.post("/probe/action", data={"value": "1"}, allow_redirects=False),
        await cm.client.post("/probe/action", data={"value": "1", "_csrf": "x" * 43}, allow_redirects=False),
        await cm.client.post("/probe/action", json={"value": "1"}, headers={"X-CSRF-Token": "wrong"}),
    ]
    for resp in refused:
        assert resp.status == 403
        assert "Le jeton de sécurité (CSRF) manque ou ne correspond pas" in await resp.text()
        assert resp.headers["X-Frame-Options"] == "DENY"  # refusals carry the security headers
    # another user's token does not do either
    admin = await site.login(ADMIN)
    resp = await cm.client.post("/probe/action", data={"value": "1", "_csrf": admin.csrf_token})
    assert resp.status == 403
    # the right token, in the form or in the header
    resp = await cm.post("/probe/action", {"value": "form"})
    assert resp.status == 200 and await resp.json() == {"done_by": CM, "value": "form"}
    resp = await cm.client.post("/probe/action", data={"value": "header"}, headers={"X-CSRF-Token": cm.csrf_token})
    assert resp.status == 200 and (await resp.json())["value"] == "header"


async def test_logout_needs_the_token_and_ends_the_session(site: Site) -> None:
    cm = await site.login(CM)
    resp = await cm.client.post("/logout", allow_redirects=False)
    assert resp.status == 403
    assert len(await site.sessions_of(CM)) == 1  # a forged logout changes nothing
    resp = await cm.post("/logout")
    assert resp.status == 303 and resp.headers["Location"] == "/login?msg=logged_out"
    assert "Max-Age=0" in set_cookie_line(resp, SESSION_COOKIE)
    assert await site.sessions_of(CM) == []
    async with browser(site.server.base_url) as replay:  # the old cookie, kept by an attacker
        replay.cookie_jar.update_cookies({SESSION_COOKIE: cm.cookie})
        async with replay.get("/ui/", allow_redirects=False) as page:
            assert page.status == 302 and page.headers["Location"].startswith("/login?next=/ui/")
        async with replay.post("/probe/action", data={"value": "1", "_csrf": cm.csrf_token}) as act:
            assert act.status == 401
    async with cm.client.get("/login?msg=logged_out") as page:
        assert "Vous êtes déconnecté·e." in await page.text()


@SQLITE_ONLY
async def test_an_open_event_stream_ends_with_its_session(site: Site) -> None:
    cm, admin = await site.login(CM), await site.login(ADMIN)
    streams = [await who.client.get("/ui/events") for who in (cm, admin)]
    try:
        for stream in streams:
            assert stream.status == 200 and b": connected" in await stream.content.readuntil(b"connected\n\n")
        assert (await cm.post("/logout")).status == 303
        ended = await asyncio.wait_for(streams[0].content.read(), timeout=live.POLL_S * 3)  # EOF: the server closed it
        assert streams[0].content.at_eof() and b"data:" not in ended
        # the other user's stream went through the same checks and is still open
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(streams[1].content.read(), timeout=live.POLL_S)
        assert not streams[1].content.at_eof()
    finally:
        for stream in streams:
            stream.close()


async def test_an_idle_or_too_old_session_ends(site: Site) -> None:
    idle = await site.login(CM)
    old = await site.login(ADMIN)
    async with site.services.sessions.begin() as session:
        await session.execute(update(WebSession).where(WebSession.token_hash == hashlib.sha256(idle.cookie.encode()).hexdigest())
                              .values(last_seen_at=utcnow() - timedelta(hours=2, minutes=1)))
        await session.execute(update(WebSession).where(WebSession.token_hash == hashlib.sha256(old.cookie.encode()).hexdigest())
                              .values(expires_at=utcnow() - timedelta(seconds=1)))
    for logged in (idle, old):
        async with logged.client.get("/probe/page", allow_redirects=False) as resp:
            assert resp.status == 302
            assert resp.headers["Location"] == "/login?next=/probe/page&expired=1"
        async with logged.client.get("/login?next=/probe/page&expired=1") as page:
            assert "Votre session a expiré" in await page.text()
    assert await site.sessions_of(CM) == [] and await site.sessions_of(ADMIN) == []
    # a session that ended and is never used again is swept at the next login of anyone
    forgotten = await site.login(MANAGER)
    async with site.services.sessions.begin() as session:
        await session.execute(update(WebSession).where(WebSession.token_hash == hashlib.sha256(forgotten.cookie.encode()).hexdigest())
                              .values(last_seen_at=utcnow() - timedelta(hours=3)))
    await site.login(EXPERT)
    assert await site.sessions_of(MANAGER) == [] and len(await site.sessions_of(EXPERT)) == 1


async def test_disabling_a_user_ends_their_open_session(site: Site) -> None:
    cm = await site.login(CM)
    async with site.services.sessions.begin() as session:
        await set_active(session, CM, False)
    async with cm.client.get("/session") as resp:
        assert resp.status == 401


# --- pages and roles ---------------------------------------------------------------------


@SQLITE_ONLY
async def test_anonymous_requests_go_to_the_login_page_or_get_401(site: Site) -> None:
    async with site.http.get("/ui/", allow_redirects=False) as resp:
        assert resp.status == 302 and resp.headers["Location"] == "/login?next=/ui/"
    async with site.http.get("/ui/dashboard?week=2026-W49&team=a", allow_redirects=False) as resp:
        location = urlsplit(resp.headers["Location"])
        assert location.path == "/login" and parse_qs(location.query) == {"next": ["/ui/dashboard?week=2026-W49&team=a"]}
    async with site.http.get("/ui/events", headers={"Accept": "text/event-stream"}) as resp:
        assert resp.status == 401
    async with site.http.post("/ui/items/1/resolve", data={}) as resp:
        assert resp.status == 401
    async with site.http.post("/probe/action", data={"value": "1"}) as resp:
        assert resp.status == 401
    async with site.http.get("/probe/admin", allow_redirects=False) as resp:
        assert resp.status == 302 and resp.headers["Location"] == "/login?next=/probe/admin"
    # the login page follows "next" through the form
    async with site.http.get("/login?next=%2Fprobe%2Fpage") as resp:
        assert 'name="next" value="/probe/page"' in await resp.text()


@SQLITE_ONLY
async def test_roles_are_enforced(site: Site) -> None:
    manager = await site.login(MANAGER)
    resp = await manager.post("/probe/action", {"value": "1"})  # read-only: no actions
    assert resp.status == 403 and "Accès refusé" in await resp.text()
    expert = await site.login(EXPERT)
    async with expert.client.get("/probe/admin") as resp:
        assert resp.status == 403
        assert "Access denied" in await resp.text()  # in the expert's language
    async with expert.client.get("/probe/page") as resp:
        assert resp.status == 200 and "any role" in await resp.text()
    admin = await site.login(ADMIN)
    async with admin.client.get("/probe/admin") as resp:
        assert resp.status == 200 and "admins only" in await resp.text()
    resp = await admin.post("/probe/action", {"value": "ok"})
    assert resp.status == 200


@SQLITE_ONLY
async def test_the_layout_shows_the_user_navigation_banners_and_token(site: Site) -> None:
    async def crisis(services: Services) -> list[tuple[str, str]]:
        return [("error", "Crise en cours : <script>alert(1)</script>")]

    async def broken(services: Services) -> list[tuple[str, str]]:
        raise RuntimeError("a banner source that fails")

    render_module.BANNER_SOURCES.extend([crisis, broken])
    try:
        cm = await site.login(CM)
        async with cm.client.get("/probe/page") as resp:
            page = await resp.text()
        expert = await site.login(EXPERT)
        async with expert.client.get("/probe/page") as resp:
            expert_page = await resp.text()
    finally:
        render_module.BANNER_SOURCES.remove(crisis)
        render_module.BANNER_SOURCES.remove(broken)
    assert resp.headers["Cache-Control"] == "no-store"
    assert f'<meta name="csrf-token" content="{cm.csrf_token}">' in page
    assert f'<input type="hidden" name="_csrf" value="{cm.csrf_token}">' in page  # the logout form
    assert 'href="/ui/dead-letters"' in page and 'href="/ui/dashboard"' in page
    assert 'role="alert">Crise en cours : &lt;script&gt;alert(1)&lt;/script&gt;</p>' in page
    assert '<html lang="fr">' in page and "Se déconnecter" in page
    # an expert: English, no dead letters, their name escaped
    assert '<html lang="en">' in expert_page and "Log out" in expert_page
    assert 'href="/ui/dead-letters"' not in expert_page
    assert "&lt;b&gt;Chloé&lt;/b&gt;" in expert_page and "<b>Chloé</b>" not in expert_page


@SQLITE_ONLY
async def test_the_login_page_speaks_the_configured_language_and_labels_its_fields(make_ui_server: StartServer) -> None:
    server = await make_ui_server(ui_language="en")
    async with browser(server.base_url) as http, http.get("/login") as resp:
        page = await resp.text()
    assert '<html lang="en">' in page and "<h1>Log in</h1>" in page
    for field in ("email", "password"):
        assert f'<label for="{field}">' in page and f'<input id="{field}" name="{field}"' in page
    assert 'autocomplete="current-password"' in page
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'self'")


@SQLITE_ONLY
async def test_a_hash_made_with_older_parameters_is_upgraded_at_login(site: Site) -> None:
    from argon2 import PasswordHasher

    from bot.web import users

    async with site.services.sessions() as session:
        before = await session.scalar(select(User.password_hash).where(User.email == CM))
    assert before is not None and ",t=1," in before  # made by the tests' cheap hasher
    production = PasswordHasher()
    previous = users.use_hasher(production)
    try:
        status, _, _ = await site.try_login(CM, PASSWORD)
    finally:
        users.use_hasher(previous)
    assert status == 303
    async with site.services.sessions() as session:
        after = await session.scalar(select(User.password_hash).where(User.email == CM))
    assert after is not None and after != before and not production.check_needs_rehash(after)
    assert production.verify(after, PASSWORD)


@given(st.text(max_size=40) | st.sampled_from(["//evil.example", "/\\evil", "/ui/items/3", "/\t/evil", "https://x"]).map(str))
def test_the_next_page_after_login_never_leaves_the_site(value: str) -> None:
    target = safe_next(value)
    resolved = urlsplit(urljoin("https://relais.example.com/login", target))
    assert resolved.scheme == "https" and resolved.netloc == "relais.example.com"
    assert target == "/ui/" or target == value


def test_the_ui_language_setting_is_fr_en_or_refused_by_name(tmp_path: Path) -> None:
    env = {"RELAIS_DATA_DIR": str(tmp_path)}
    assert load_settings(env=env).ui_language == "fr"
    assert load_settings(env={**env, "RELAIS_UI_LANGUAGE": "en"}).ui_language == "en"
    with pytest.raises(ConfigError, match="RELAIS_UI_LANGUAGE must be fr or en, got 'de'"):
        load_settings(env={**env, "RELAIS_UI_LANGUAGE": "de"})
