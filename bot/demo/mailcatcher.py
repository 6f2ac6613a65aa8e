"""A local SMTP server that keeps every mail it receives, for the demo and the tests.

It runs aiosmtpd's protocol inside the current event loop (no thread), accepts
any login, and offers two read-only pages: ``GET /demo/mail`` (the list) and
``GET /demo/mail/{n}`` (one mail, ``n`` counting from 0 in arrival order). Mail
content is hostile: the pages escape everything, and the HTML part is shown in
a sandboxed ``<iframe srcdoc>`` where scripts cannot run.
"""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Callable
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

_LINK = re.compile(r"https?://[^\s<>\"']+")
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                               "frame-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_STYLE = ("body{font-family:system-ui,sans-serif;margin:24px;color:#1f2937}"
          "table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #e5e7eb;"
          "padding:6px 8px;text-align:left;vertical-align:top}"
          "pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f8fafc;padding:12px}"
          "iframe{width:100%;height:70vh;border:1px solid #d1d5db}")


class _Handler:
    """aiosmtpd handler: parse each delivered mail and hand it to the catcher."""

    def __init__(self, catcher: MailCatcher) -> None:
        self._catcher = catcher

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode("utf-8")
        data = data.replace(b"\r\n", b"\n")  # SMTP line ends; Python's email API uses \n
        message = BytesParser(policy=default_policy).parsebytes(data)
        assert isinstance(message, EmailMessage)
        self._catcher._arrived(message)
        return "250 OK: caught"


def _accept_any_login(server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
    return AuthResult(success=True)


class MailCatcher:
    """Catch mail on a local port; ``messages`` holds them in arrival order.

    Usage: ``port = await catcher.start()`` ... ``await catcher.stop()``.
    """

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.host: str | None = None
        self.port: int | None = None
        self._server: asyncio.Server | None = None
        self._protocols: set[SMTP] = set()
        self._waiters: set[asyncio.Future[None]] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0: any free port) and return the bound port."""
        if self._server is not None:
            raise RuntimeError("MailCatcher already started")
        loop = asyncio.get_running_loop()
        handler = _Handler(self)

        def factory() -> SMTP:
            protocol = SMTP(handler, hostname="relais-mailcatcher", loop=loop,
                            enable_SMTPUTF8=True, authenticator=_accept_any_login,
                            auth_require_tls=False)
            self._protocols.add(protocol)
            return protocol

        self._server = await loop.create_server(factory, host, port)
        self.host = host
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        """Stop listening, close open connections and wait for their tasks to end."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = []
        for protocol in self._protocols:
            if protocol.transport is not None:
                protocol.transport.close()
            task = getattr(protocol, "_handler_coroutine", None)  # aiosmtpd's session task
            if task is not None:
                task.cancel()
                tasks.append(task)
        self._protocols.clear()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    async def wait_for(self, predicate: Callable[[EmailMessage], bool] = lambda m: True,
                       timeout: float = 5.0) -> EmailMessage:
        """The first message (already caught or still to come) matching ``predicate``.

        Raises TimeoutError when none arrives within ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        checked = 0
        async with asyncio.timeout(timeout):
            while True:
                for message in self.messages[checked:]:
                    if predicate(message):
                        return message
                checked = len(self.messages)
                arrival: asyncio.Future[None] = loop.create_future()
                self._waiters.add(arrival)
                try:
                    await arrival
                finally:
                    self._waiters.discard(arrival)

    def mailbox_routes(self, prefix: str = "/demo/mail") -> list[web.RouteDef]:
        """aiohttp routes for the list page and the one-mail page."""
        return [web.get(prefix, self._list_page), web.get(prefix + "/{n:\\d+}", self._mail_page)]

    def _arrived(self, message: EmailMessage) -> None:
        self.messages.append(message)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _list_page(self, request: web.Request) -> web.Response:
        base = request.path.rstrip("/")
        rows = []
        for n, message in enumerate(self.messages):
            links = " ".join(f'<a href="{_e(url)}" rel="noreferrer">{_e(url)}</a>'
                             for url in _links(_part(message, "plain")))
            rows.append(
                f'<tr><td><a href="{_e(base)}/{n}">#{n}</a></td><td>{_e(message["From"])}</td>'
                f'<td>{_e(message["To"])}</td><td>{_e(message["Subject"])}</td>'
                f"<td>{_e(message['Date'])}</td><td>{links}</td></tr>")
        body = ("<h1>Mails reçus / Received mail</h1><table><tr><th>#</th><th>From</th>"
                "<th>To</th><th>Subject</th><th>Date</th><th>Links</th></tr>"
                + "".join(rows) + "</table>")
        return _page("Relais · mail", body)

    async def _mail_page(self, request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        if n >= len(self.messages):
            raise web.HTTPNotFound(text="no such mail")
        message = self.messages[n]
        html_part = _part(message, "html")
        frame = ('<iframe sandbox="allow-popups allow-popups-to-escape-sandbox" '
                 f'title="HTML" srcdoc="{_e("<base target=_blank>" + html_part)}"></iframe>'
                 if html_part else "<p>(no HTML part)</p>")
        back = request.path.rsplit("/", 1)[0]
        body = (f'<p><a href="{_e(back)}">← list</a></p><h1>{_e(message["Subject"])}</h1>'
                f"<p>From: {_e(message['From'])}<br>To: {_e(message['To'])}<br>"
                f"Date: {_e(message['Date'])}<br>Message-ID: {_e(message['Message-ID'])}</p>"
                f"<h2>HTML</h2>{frame}<h2>Text</h2><pre>{_e(_part(message, 'plain'))}</pre>")
        return _page(f"Relais · mail #{n}", body)


def _part(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_subtype() != subtype:
        return ""
    content = part.get_content()
    return content if isinstance(content, str) else ""


def _links(text: str) -> list[str]:
    return list(dict.fromkeys(_LINK.findall(text)))


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _page(title: str, body: str) -> web.Response:
    document = (f'<!DOCTYPE html><html lang="fr"><head><meta charset="utf-8"><title>{_e(title)}'
                f"</title><style>{_STYLE}</style></head><body>{body}</body></html>")
    return web.Response(text=document, content_type="text/html", headers=_PAGE_HEADERS)
