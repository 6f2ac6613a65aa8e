"""SMTP settings, message building and delivery against real aiosmtpd servers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.policy import default as default_policy
from typing import Any

import jinja2
import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from bot.demo.mailcatcher import MailCatcher
from bot.errors import RelaisError
from bot.notify.compose import NotificationView, compose_notification
from bot.notify.smtp import SmtpRejected, SmtpSettings, SmtpUnavailable, build_message, send

ServerFactory = Callable[..., contextlib.AbstractAsyncContextManager[int]]


def _message(**changes: Any) -> Message:
    fields: dict[str, Any] = {
        "sender": "Relais <relais@example.com>",
        "to": "julie.gagnon@example.com",
        "subject": "[Relais] Plainte · Boulangerie Dorée 🥐",
        "text": "Bonjour Julie,\nUn client a écrit : « le pain était froid » 🥖\n",
        "html": "<p>Bonjour Julie, 🥖 <a href=\"https://relais.example/r/1\">Répondre</a></p>",
        "message_id": "<notify-42-new@relais.example>",
    }
    fields.update(changes)
    return build_message(**fields)


def _local(port: int, **changes: Any) -> SmtpSettings:
    return SmtpSettings(**{"host": "127.0.0.1", "port": port, "start_tls": False,
                           "timeout": 5.0, **changes})


# -- settings ----------------------------------------------------------------------------------

def test_settings_from_url() -> None:
    plain = SmtpSettings.from_url("smtp://mail.example.com")
    assert (plain.host, plain.port, plain.use_tls, plain.start_tls) == (
        "mail.example.com", 25, False, None)
    assert plain.username is None and plain.password is None

    submission = SmtpSettings.from_url(
        "smtp://relais%40example.com:p%40ss%3Aw%2Frd@mail.example.com?starttls=true&timeout=7")
    assert submission.username == "relais@example.com"
    assert submission.password == "p@ss:w/rd"
    assert (submission.port, submission.start_tls, submission.timeout) == (587, True, 7.0)

    implicit = SmtpSettings.from_url("smtps://u:pw@mail.example.com")
    assert (implicit.port, implicit.use_tls, implicit.start_tls) == (465, True, False)

    cleartext = SmtpSettings.from_url("smtp://localhost:1025?starttls=false")
    assert (cleartext.port, cleartext.start_tls) == (1025, False)


@pytest.mark.parametrize("url", [
    "http://mail.example.com",
    "mail.example.com:25",
    "smtp://",
    "smtp://u:hunter2@mail.example.com:99999",
    "smtp://u:hunter2@mail.example.com:port",
    "smtp://u:hunter2@mail.example.com/path",
    "smtp://u:hunter2@mail.example.com?tls=yes",
    "smtp://u:hunter2@mail.example.com?starttls=maybe",
    "smtps://u:hunter2@mail.example.com?starttls=true",
    "smtp://u:hunter2@mail.example.com?timeout=-1",
    "smtp://:hunter2@mail.example.com",
])
def test_bad_urls_name_the_setting_and_hide_the_password(url: str) -> None:
    with pytest.raises(ValueError, match="RELAIS_SMTP_URL") as caught:
        SmtpSettings.from_url(url)
    assert "hunter2" not in str(caught.value)


def test_repr_masks_the_password() -> None:
    settings = SmtpSettings.from_url("smtp://relais:s3cr%C3%A9t@mail.example.com")
    assert settings.password == "s3crét"
    assert "s3cr" not in repr(settings) and "***" in repr(settings)
    assert "password=None" in repr(SmtpSettings.from_url("smtp://mail.example.com"))


# -- building ----------------------------------------------------------------------------------

def _wire(message: Message) -> EmailMessage:
    """The message as a mail client reads it: serialised, then parsed."""
    parsed = BytesParser(policy=default_policy).parsebytes(message.as_bytes())
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_build_message_is_multipart_utf8_with_the_given_id() -> None:
    message = _wire(_message())

    assert message.get_content_type() == "multipart/alternative"
    assert message["Message-ID"] == "<notify-42-new@relais.example>"
    assert message["Date"] and message["Auto-Submitted"] == "auto-generated"
    assert message["Subject"] == "[Relais] Plainte · Boulangerie Dorée 🥐"
    assert message["From"] == "Relais <relais@example.com>"
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and plain.get_content_charset() == "utf-8"
    assert plain.get_content() == "Bonjour Julie,\nUn client a écrit : « le pain était froid » 🥖\n"
    assert html is not None and "🥖" in html.get_content()
    assert _message(message_id="notify-42-new@relais.example")["Message-ID"] == (
        "<notify-42-new@relais.example>")
    assert _wire(_message(html=None)).get_content_type() == "text/plain"


def test_a_non_ascii_display_name_is_encoded_and_a_non_ascii_address_refused() -> None:
    message = _message(to="Émilie Côté <emilie@example.com>")
    assert b"\nTo: =?utf-8?" in message.as_bytes()
    assert _wire(message)["To"] == "Émilie Côté <emilie@example.com>"
    with pytest.raises(ValueError, match="ASCII"):
        _message(to="Émilie <émilie@example.com>")


def test_inline_images_ride_with_the_html_as_a_related_part() -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    message = _wire(_message(html='<p><img src="cid:chart-1"></p>', inline_images=[("chart-1", "image/png", png)]))

    alternative = list(message.iter_parts())
    assert [p.get_content_type() for p in alternative] == ["text/plain", "multipart/related"]
    html, image = alternative[1].iter_parts()
    assert html.get_content_type() == "text/html" and "cid:chart-1" in html.get_content()
    assert image.get_content_type() == "image/png" and image["Content-ID"] == "<chart-1>"
    assert image.get_content_disposition() == "inline" and image.get_content() == png


def test_header_injection_is_neutralised() -> None:
    message = _message(subject="Hello\r\nBcc: victim@example.com\nX-Evil: 1",
                       headers={"X-Relais-Item": "42\r\nBcc: victim@example.com"})

    assert message["Bcc"] is None and message["X-Evil"] is None
    assert message["Subject"] == "Hello Bcc: victim@example.com X-Evil: 1"
    wire = message.as_bytes()
    assert b"\nBcc:" not in wire and b"\nX-Evil:" not in wire
    assert wire.count(b"\nSubject:") + wire.startswith(b"Subject:") == 1

    for bad in ({"to": "a@example.com\r\nBcc: victim@example.com"},
                {"sender": "relais@example.com\n"},
                {"message_id": "<id@x>\r\nBcc: victim@example.com"},
                {"headers": {"Content-Type": "text/html"}},
                {"headers": {"X-Bad\r\nBcc": "victim@example.com"}}):
        with pytest.raises(ValueError):
            _message(**bad)


# -- delivery ----------------------------------------------------------------------------------

async def test_send_to_the_catcher_and_read_back(
    catcher: MailCatcher, env: jinja2.Environment, make_view: Callable[..., NotificationView]
) -> None:
    view = make_view(text="Le pain était froid 🥶🥖 — « vraiment »\n<script>alert(1)</script>")
    mail = compose_notification(env, view)
    message = build_message(sender="Relais <relais@example.com>", to="julie@example.com",
                            subject=mail.subject, text=mail.text, html=mail.html,
                            message_id="<notify-42-new@relais.example>")
    assert catcher.port is not None

    await send(_local(catcher.port), message)
    received = await catcher.wait_for(timeout=5)

    assert len(catcher.messages) == 1
    assert received["Message-ID"] == "<notify-42-new@relais.example>"
    assert received["Subject"] == mail.subject
    assert received["To"] == "julie@example.com"
    plain = received.get_body(preferencelist=("plain",))
    html = received.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    assert plain.get_content() == mail.text
    assert html.get_content() == mail.html
    assert "Le pain était froid 🥶🥖 — « vraiment »" in plain.get_content()
    assert "https://relais.example/reply/42?t=abc" in plain.get_content()


async def test_login_uses_the_decoded_credentials(plain_smtp_server: ServerFactory) -> None:
    logins: list[tuple[bytes, bytes]] = []
    received: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope.content)
            return "250 OK"

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                      data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        logins.append((data.login, data.password))
        # handled=False: let aiosmtpd answer 535 itself when the login fails.
        return AuthResult(success=data.password == "p@ss:wörd".encode(), handled=False)

    async with plain_smtp_server(Handler(), authenticator=authenticator,
                                 auth_require_tls=False) as port:
        settings = SmtpSettings.from_url(
            f"smtp://relais:p%40ss%3Aw%C3%B6rd@127.0.0.1:{port}?starttls=false&timeout=5")
        await send(settings, _message())
        wrong = SmtpSettings.from_url(
            f"smtp://relais:nope@127.0.0.1:{port}?starttls=false&timeout=5")
        with pytest.raises(SmtpUnavailable) as caught:
            await send(wrong, _message())

    assert logins[0] == (b"relais", "p@ss:wörd".encode())
    assert len(received) == 1
    assert caught.value.code == 535 and "nope" not in str(caught.value)


async def test_down_then_up_delivers_exactly_once(free_port: int) -> None:
    message = _message()
    settings = _local(free_port, timeout=2.0)

    with pytest.raises(SmtpUnavailable) as caught:
        await send(settings, message)
    assert isinstance(caught.value, RelaisError)

    catcher = MailCatcher()
    await catcher.start(port=free_port)
    try:
        await send(settings, message)
        await catcher.wait_for(timeout=5)
        assert len(catcher.messages) == 1
        assert catcher.messages[0]["Message-ID"] == "<notify-42-new@relais.example>"
    finally:
        await catcher.stop()


@pytest.mark.parametrize(("answer", "error"), [
    ("550 5.1.1 No such user", SmtpRejected),
    ("450 4.2.1 Mailbox busy, try later", SmtpUnavailable),
])
async def test_recipient_refusals(plain_smtp_server: ServerFactory, answer: str,
                                  error: type[Exception]) -> None:
    class Handler:
        async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                              rcpt_options: list[str]) -> str:
            return answer

    async with plain_smtp_server(Handler()) as port:
        with pytest.raises(error) as caught:
            await send(_local(port), _message())

    assert caught.value.code == int(answer[:3])  # type: ignore[attr-defined]


async def test_a_silent_server_times_out() -> None:
    connections: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)  # never sends the 220 greeting

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(SmtpUnavailable):
            await send(_local(port, timeout=0.3), _message())
    finally:
        for writer in connections:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        server.close()
        await server.wait_closed()
