"""Login, sessions, roles and CSRF for the web UI.

Sessions: the ``relais_session`` cookie carries a random token; the database keeps
only its sha256 (``web_sessions``), so a leaked table opens no session. The
cookie is HttpOnly, SameSite=Lax, and Secure when ``RELAIS_BASE_URL`` is https.
A session ends after :data:`IDLE_TIMEOUT` without a request, after
:data:`SESSION_LIFETIME` in any case, at logout, or when its user is disabled.
Logging in always starts a new session (no fixation).

CSRF: every POST/PUT/PATCH/DELETE of a logged-in session must carry the
session's token, in the form field ``_csrf`` or the ``X-CSRF-Token`` header,
else 403. Exempt: ``/webhooks/...`` (signed by the platform), ``/reply/...``
(signed links with their own form key) and ``POST /login``, which has a
pre-session double-submit token instead (a nonce cookie plus its HMAC in the
form).

Throttling: failed logins are rows of ``login_attempts`` keyed by account and by
client address, so several web processes agree. :data:`MAX_FAILURES_PER_ACCOUNT`
failures in :data:`THROTTLE_WINDOW` for an email, or
:data:`MAX_FAILURES_PER_ADDRESS` for an address, get a 429 page that says when
to retry. The error message never tells whether the email exists.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import wraps
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import Services
from bot.store.models import LoginAttempt, User, WebSession, utcnow
from bot.web import users
from bot.web.render import BANNERS, BannerCache, render
from bot.web.ui_i18n import translator

log = logging.getLogger(__name__)

ROLES = users.ROLES
SESSION_COOKIE = "relais_session"
LOGIN_COOKIE = "relais_login"
IDLE_TIMEOUT = timedelta(hours=2)
SESSION_LIFETIME = timedelta(hours=12)
TOUCH_EVERY = timedelta(seconds=60)  # last_seen_at is written at most this often
THROTTLE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_ADDRESS = 20
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_EXEMPT_PREFIXES = ("/webhooks/", "/reply/")
#: pages under this prefix need a login even if a handler forgets require_role
PROTECTED_PREFIX = "/ui"
DEFAULT_NEXT = "/ui/"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class CurrentUser:
    id: int
    email: str
    name: str
    role: str
    language: str
    expert_id: int | None
    csrf_token: str


#: request storage set by the middleware; read the user with :func:`current_user`
USER: web.RequestKey[CurrentUser | None] = web.RequestKey("user")
SESSION_ENDED: web.RequestKey[bool] = web.RequestKey("session_ended")


def current_user(request: web.Request) -> CurrentUser | None:
    """The logged-in user of this request (set by :func:`auth_middleware`), or None."""
    return request.get(USER)


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def _wants_html(request: web.Request) -> bool:
    if request.method not in ("GET", "HEAD"):
        return False
    accept = request.headers.get("Accept", "*/*")
    return "text/html" in accept or (accept.strip() in ("", "*/*"))


def _login_url(request: web.Request) -> str:
    query = {"next": request.path_qs}
    if request.get(SESSION_ENDED):
        query["expired"] = "1"
    return "/login?" + urlencode(query, quote_via=quote)


def _anonymous(request: web.Request) -> web.StreamResponse:
    if _wants_html(request):
        raise web.HTTPFound(_login_url(request))
    raise web.HTTPUnauthorized(text="log in first: POST /login\n", headers={"Cache-Control": "no-store"})


def _message(request: web.Request, status: int, title_key: str, body_key: str) -> web.Response:
    user = current_user(request)
    t = translator(user.language if user else None)
    return render(request, "auth_message.html", status=status, title=t(title_key), body=t(body_key))


def require_role(*roles: str) -> Callable[[Handler], Handler]:
    """Only logged-in users with one of ``roles`` (any role when none is named) reach the
    handler. Anonymous: an HTML GET goes to ``/login?next=...``, anything else gets 401;
    a wrong role gets a 403 page."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}")

    def decorate(handler: Handler) -> Handler:
        @wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            user = current_user(request)
            if user is None:
                return _anonymous(request)
            if roles and user.role not in roles:
                return _message(request, 403, "forbidden_title", "forbidden_body")
            return await handler(request)

        guarded.required_roles = roles  # type: ignore[attr-defined]  # for introspection in tests
        return guarded

    return decorate


# --- sessions ----------------------------------------------------------------------


async def _load_session(services: Services, token: str) -> tuple[CurrentUser | None, bool]:
    """The user of a session token and whether the cookie named a session that has ended."""
    now = utcnow()
    async with services.sessions.begin() as session:
        row = (
            await session.execute(
                select(WebSession, User).join(User, User.id == WebSession.user_id).where(WebSession.token_hash == _sha256(token))
            )
        ).first()
        if row is None:
            return None, True
        web_session, user = row
        if not _in_force(web_session, user, now):
            await session.delete(web_session)
            return None, True
        if now - web_session.last_seen_at >= TOUCH_EVERY:
            web_session.last_seen_at = now
        return (
            CurrentUser(
                id=user.id,
                email=user.email,
                name=user.name,
                role=user.role,
                language=user.language,
                expert_id=user.expert_id,
                csrf_token=web_session.csrf_token,
            ),
            False,
        )


def _in_force(web_session: WebSession, user: User, now: datetime) -> bool:
    """A session stands while its user is active, before its end and its idle time-out."""
    return user.active and now < web_session.expires_at and now - web_session.last_seen_at < IDLE_TIMEOUT


async def session_in_force(services: Services, token: str | None) -> bool:
    """Whether the session of this cookie still stands, read only: a check by a long-lived
    request (the live event stream) does not count as activity, so idle sessions still end."""
    if not token:
        return False
    async with services.sessions() as session:
        row = (await session.execute(
            select(WebSession, User).join(User, User.id == WebSession.user_id).where(WebSession.token_hash == _sha256(token))
        )).first()
    return row is not None and _in_force(row[0], row[1], utcnow())


async def start_session(session: AsyncSession, user: User) -> str:
    """A new session for ``user``; returns the cookie token (only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    # sweep the sessions that have ended (anyone's): the table holds only live ones
    await session.execute(
        delete(WebSession).where((WebSession.expires_at < now) | (WebSession.last_seen_at < now - IDLE_TIMEOUT))
    )
    session.add(
        WebSession(
            token_hash=_sha256(token),
            user_id=user.id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + SESSION_LIFETIME,
            last_seen_at=now,
        )
    )
    return token


def _secure(services: Services) -> bool:
    return services.settings.base_url.startswith("https://")


def _set_cookie(services: Services, response: web.StreamResponse, name: str, value: str, path: str = "/") -> None:
    response.set_cookie(name, value, path=path, httponly=True, samesite="Lax", secure=_secure(services))


# --- CSRF ----------------------------------------------------------------------------


def _csrf_exempt(path: str) -> bool:
    return path == "/login" or path.startswith(CSRF_EXEMPT_PREFIXES)


async def _sent_csrf_token(request: web.Request) -> str:
    header = request.headers.get("X-CSRF-Token")
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()  # cached: the handler's request.post() sees the same form
        value = form.get("_csrf")
        return value if isinstance(value, str) else ""
    return ""


def _same(a: str, b: str) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


def _login_form_token(services: Services, nonce: str) -> str:
    key = services.settings.secret_key.reveal().encode()
    return hmac.new(key, f"login:{nonce}".encode("utf-8", "replace"), hashlib.sha256).hexdigest()


# --- the middleware ------------------------------------------------------------------


def auth_middleware(services: Services) -> Any:
    """Loads the session's user into ``request["user"]`` (None when anonymous), refuses
    state-changing requests without the session's CSRF token, keeps anonymous people out
    of ``/ui``, and collects the page banners for logged-in HTML pages."""
    banners = BannerCache(services)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[USER] = None
        if request.path.startswith(("/static/", "/webhooks/")):
            return await handler(request)
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            loaded, ended = await _load_session(services, token)
            request[USER] = loaded
            request[SESSION_ENDED] = ended
        user = request[USER]
        if (request.path == PROTECTED_PREFIX or request.path.startswith(PROTECTED_PREFIX + "/")) and user is None:
            return _anonymous(request)
        if request.method in UNSAFE_METHODS and user is not None and not _csrf_exempt(request.path):
            if not _same(await _sent_csrf_token(request), user.csrf_token):
                log.warning("CSRF token missing or wrong: %s %s by user %s", request.method, request.path, user.id)
                return _message(request, 403, "csrf_title", "csrf_body")
        if user is not None and request.method == "GET" and _wants_html(request):
            request[BANNERS] = await banners.get()
        return await handler(request)

    return middleware


# --- login and logout ------------------------------------------------------------------


def safe_next(value: str | None) -> str:
    """Only a local path is followed after login (never ``//evil.example``)."""
    if (
        not value
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(c) < 32 or ord(c) == 127 for c in value)
        or value.startswith(("/login", "/logout"))
    ):
        return DEFAULT_NEXT
    return value


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"


def _throttle_keys(email: str, address: str) -> list[tuple[str, int]]:
    return [
        (f"email:{_sha256(users.normalise_email(email))}", MAX_FAILURES_PER_ACCOUNT),
        (f"ip:{address[:200]}", MAX_FAILURES_PER_ADDRESS),
    ]


async def throttled_until(session: AsyncSession, email: str, address: str) -> datetime | None:
    """When the next login attempt will be allowed, if it is not allowed now."""
    since = utcnow() - THROTTLE_WINDOW
    until: datetime | None = None
    for key, limit in _throttle_keys(email, address):
        recent = (
            await session.scalars(
                select(LoginAttempt.at).where(LoginAttempt.key == key, LoginAttempt.at > since).order_by(LoginAttempt.at.desc()).limit(limit)
            )
        ).all()
        if len(recent) >= limit:
            # the oldest of the last ``limit`` failures must leave the window first
            candidate = recent[limit - 1] + THROTTLE_WINDOW
            until = candidate if until is None else max(until, candidate)
    return until


async def record_failure(session: AsyncSession, email: str, address: str) -> None:
    now = utcnow()
    for key, _ in _throttle_keys(email, address):
        session.add(LoginAttempt(key=key, at=now))
    await session.execute(delete(LoginAttempt).where(LoginAttempt.at < now - timedelta(days=1)))


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def auth_routes(services: Services) -> list[web.RouteDef]:
    def login_page(
        request: web.Request, *, status: int = 200, email: str = "", error: str | None = None, next_url: str = DEFAULT_NEXT
    ) -> web.Response:
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not (16 <= len(nonce) <= 64) or status == 403:
            nonce = secrets.token_urlsafe(24)
        t = translator(services.settings.ui_language)
        notice = None
        if request.query.get("msg") == "logged_out":
            notice = t("logged_out")
        elif request.query.get("expired") == "1" or request.get(SESSION_ENDED):
            notice = t("session_expired")
        page = render(
            request,
            "login.html",
            status=status,
            email=email,
            error=error,
            notice=notice,
            next_url=next_url,
            login_token=_login_form_token(services, nonce),
        )
        _set_cookie(services, page, LOGIN_COOKIE, nonce, path="/login")
        return page

    async def show_login(request: web.Request) -> web.StreamResponse:
        next_url = safe_next(request.query.get("next"))
        if current_user(request) is not None:
            raise web.HTTPSeeOther(next_url)
        return login_page(request, next_url=next_url)

    async def do_login(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        email = str(form.get("email", "")).strip()[:300]
        password = str(form.get("password", ""))
        next_url = safe_next(str(form.get("next", "")))
        t = translator(services.settings.ui_language)
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not nonce or not _same(str(form.get("_csrf", "")), _login_form_token(services, nonce)):
            return login_page(request, status=403, email=email, error=t("login_expired_form"), next_url=next_url)
        address = client_address(request)
        async with services.sessions.begin() as session:
            until = await throttled_until(session, email, address)
            if until is not None:
                wait = max(1, int((until - utcnow()).total_seconds() + 59) // 60)
                page = login_page(
                    request, status=429, email=email, next_url=next_url,
                    error=t("login_throttled", minutes=wait, at=until.strftime("%H:%M")),
                )
                page.headers["Retry-After"] = str(max(1, int((until - utcnow()).total_seconds()) + 1))
                log.warning("login throttled for a client at %s", address)
                return page
            user = await users.verify_password(session, email, password)
            if user is None:
                await record_failure(session, email, address)
                log.info("failed login from %s", address)
                return login_page(request, status=401, email=email, error=t("login_failed"), next_url=next_url)
            old = request.cookies.get(SESSION_COOKIE)
            if old:  # a new id at every login: a planted cookie never becomes a session
                await session.execute(delete(WebSession).where(WebSession.token_hash == _sha256(old)))
            await session.execute(
                delete(LoginAttempt).where(LoginAttempt.key == _throttle_keys(email, address)[0][0])
            )
            user.last_login_at = utcnow()
            token = await start_session(session, user)
            log.info("user %s logged in", user.id)
        response = _see_other(next_url)
        _set_cookie(services, response, SESSION_COOKIE, token)
        response.del_cookie(LOGIN_COOKIE, path="/login")
        return response

    async def logout(request: web.Request) -> web.StreamResponse:
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            async with services.sessions.begin() as session:
                await session.execute(delete(WebSession).where(WebSession.token_hash == _sha256(token)))
        response = _see_other("/login?msg=logged_out")
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    async def whoami(request: web.Request) -> web.StreamResponse:
        user = current_user(request)
        if user is None:
            raise web.HTTPUnauthorized(text="not logged in\n")
        return web.json_response(
            {"email": user.email, "name": user.name, "role": user.role, "language": user.language, "csrf_token": user.csrf_token},
            headers={"Cache-Control": "no-store"},
        )

    return [
        web.get("/login", show_login),
        web.post("/login", do_login),
        web.post("/logout", logout),
        web.get("/session", whoami),
    ]


async def end_sessions(session: AsyncSession, user_id: int) -> int:
    """Log a user out everywhere (used when disabling an account); returns the count."""
    count = await session.scalar(select(func.count()).select_from(WebSession).where(WebSession.user_id == user_id))
    await session.execute(delete(WebSession).where(WebSession.user_id == user_id))
    return int(count or 0)


__all__ = [
    "ROLES",
    "USER",
    "CurrentUser",
    "auth_middleware",
    "auth_routes",
    "current_user",
    "end_sessions",
    "require_role",
    "safe_next",
]
