"""Build a MIME message and deliver it over SMTP, converting failures into our errors.

    RelaisError
     +-- SmtpError
          +-- SmtpUnavailable   retry later: nothing listening, timeout, connection lost,
          |                     TLS or login trouble, any 4xx answer
          +-- SmtpRejected      permanent: the server refused this recipient or this
                                message with a 5xx answer; retrying will not help

Login and sender refusals count as "unavailable": they concern every mail, not
this one, so the mail must wait until an operator fixes ``RELAIS_SMTP_URL``.
Passwords never reach a log line, a repr or an error message.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from email.encoders import encode_base64
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr, parseaddr
from urllib.parse import parse_qsl, unquote, urlsplit

import aiosmtplib

from bot.errors import RelaisError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
URL_SETTING = "RELAIS_SMTP_URL"
_URL_FORMS = ("smtp://[user:password@]host[:port][?starttls=true|false] "
              "or smtps://[user:password@]host[:port]")
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
_BREAKS_AND_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_HEADER_NAME = re.compile(r"[!-9;-~]+")
_MANAGED_HEADERS = {"from", "to", "subject", "message-id", "date", "mime-version",
                    "content-type", "content-transfer-encoding", "content-disposition"}


class SmtpError(RelaisError):
    """Delivery failed; ``code`` is the server's reply code when there was one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class SmtpUnavailable(SmtpError):
    """The mail server could not take the message now; retry later, with backoff."""


class SmtpRejected(SmtpError):
    """The mail server refused this message for good (5xx); do not retry it."""


@dataclass(frozen=True, repr=False)
class SmtpSettings:
    """Where and how to deliver mail.

    ``use_tls`` is implicit TLS from the first byte (smtps://, usually port 465).
    ``start_tls``: True requires STARTTLS, False never uses it, None upgrades
    when the server offers it. ``repr`` masks the password.
    """

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    use_tls: bool = False
    start_tls: bool | None = None
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if self.use_tls and self.start_tls:
            raise ValueError("use_tls (smtps) and start_tls cannot both be on")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")

    def __repr__(self) -> str:
        password = None if self.password is None else "***"
        return (f"SmtpSettings(host={self.host!r}, port={self.port!r}, "
                f"username={self.username!r}, password={password!r}, "
                f"use_tls={self.use_tls!r}, start_tls={self.start_tls!r}, "
                f"timeout={self.timeout!r})")

    @classmethod
    def from_url(cls, url: str) -> SmtpSettings:
        """Parse the value of RELAIS_SMTP_URL.

        ``smtp://[user:password@]host[:port][?starttls=true|false][&timeout=seconds]``
        (default port 25, or 587 with ``starttls=true``; without ``starttls``
        the connection upgrades when the server offers it) or
        ``smtps://[user:password@]host[:port][?timeout=seconds]`` (default port
        465). Credentials are percent-decoded. Anything else raises ValueError
        naming RELAIS_SMTP_URL; the message never repeats the URL, which may
        hold a password.
        """
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError:
            raise _url_error("the port is not a number between 0 and 65535") from None
        scheme = parts.scheme.lower()
        if scheme not in ("smtp", "smtps"):
            raise _url_error(f"the scheme must be smtp or smtps, not {scheme!r}")
        if not parts.hostname:
            raise _url_error("the host is missing")
        if parts.path not in ("", "/") or parts.fragment:
            raise _url_error("there must be nothing after the host and port but ?options")
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        if password is not None and username is None:
            raise _url_error("a password is given without a user name")
        start_tls: bool | None = None
        timeout = DEFAULT_TIMEOUT
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key == "starttls" and scheme == "smtp" and value.lower() in _TRUE | _FALSE:
                start_tls = value.lower() in _TRUE
            elif key == "timeout" and _is_positive_number(value):
                timeout = float(value)
            else:
                raise _url_error(f"unsupported option {key!r} "
                                 "(options: starttls for smtp://, timeout)")
        use_tls = scheme == "smtps"
        default_port = 465 if use_tls else 587 if start_tls else 25
        return cls(host=parts.hostname, port=port or default_port, username=username,
                   password=password, use_tls=use_tls,
                   start_tls=False if use_tls else start_tls, timeout=timeout)


def build_message(
    *,
    sender: str,
    to: str,
    subject: str,
    text: str,
    html: str | None,
    message_id: str,
    headers: dict[str, str] | None = None,
    date: datetime | None = None,
    inline_images: list[tuple[str, str, bytes]] | None = None,
) -> Message:
    """A UTF-8 message: text/plain, or multipart/alternative (text then HTML).

    ``message_id`` ("local@domain", angle brackets optional) is used as is, so
    building the same notification again, for a retry, gives the same
    Message-ID. Header injection is impossible: line breaks and control
    characters in the subject and extra header values become spaces; a sender,
    recipient or Message-ID containing them raises ValueError, as does an extra
    header that would override one set here. ``Auto-Submitted: auto-generated``
    is added unless ``headers`` sets it. ``inline_images`` are (cid, content type,
    bytes) parts the HTML shows as ``<img src="cid:...">`` (multipart/related).

    Built with the stdlib's ``email.mime`` classes (the compat32 API), bodies in base64 and
    non-ASCII header words RFC 2047-encoded: about a third of the time the ``EmailMessage``
    API takes to build and serialise the same mail (measured in bench/README.md), the largest
    cost of a worker sending notifications.
    """
    extra = {"Auto-Submitted": "auto-generated", **(headers or {})}
    for name in extra:
        if not _HEADER_NAME.fullmatch(name) or name.lower() in _MANAGED_HEADERS:
            raise ValueError(f"header {name!r} cannot be set through headers=")
    envelope = {
        "From": _mailbox(_address(sender, "sender")),
        "To": _mailbox(_address(to, "to")),
        "Subject": _text_header(_flatten(subject)),
        "Date": format_datetime(date or datetime.now(timezone.utc)),
        "Message-ID": _message_id(message_id),
    } | {name: _text_header(_flatten(value)) for name, value in extra.items()}
    plain = MIMEText(text, "plain", "utf-8")
    message: Message
    if html is None:
        message = plain
    else:
        message = MIMEMultipart("alternative")
        message.attach(plain)
        html_part: Message = MIMEText(html, "html", "utf-8")
        if inline_images:
            related = MIMEMultipart("related")
            related.attach(html_part)
            for cid, content_type, data in inline_images:
                maintype, _, subtype = content_type.partition("/")
                image = MIMENonMultipart(maintype, subtype)
                image.set_payload(data)
                encode_base64(image)
                image["Content-ID"] = f"<{cid}>"
                image["Content-Disposition"] = "inline"
                related.attach(image)
            html_part = related
        message.attach(html_part)
    for name, value in envelope.items():
        message[name] = value
    return message


class SmtpConnection:
    """One SMTP session for several messages (connect once, ``send`` each, quit).

    ``async with SmtpConnection(settings) as smtp: await smtp.send(message)``.
    Connecting (and logging in) raises :class:`SmtpUnavailable`; ``send`` raises
    :class:`SmtpRejected` for a message refused for good, :class:`SmtpUnavailable`
    otherwise. After a failure, ``usable`` says whether the session can take the
    next message (a refused recipient) or is gone (connection lost, time-out).
    """

    def __init__(self, settings: SmtpSettings) -> None:
        self.where = f"{settings.host}:{settings.port}"
        self._client = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            username=settings.username,
            password=settings.password,
            use_tls=settings.use_tls,
            start_tls=settings.start_tls,
            timeout=settings.timeout,
        )
        self._broken = False

    async def __aenter__(self) -> SmtpConnection:
        try:
            await self._client.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            self._client.close()
            raise _convert(exc, self.where) from exc
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            if self.usable:
                await self._client.quit()
        except (aiosmtplib.SMTPException, OSError):
            pass  # every message already has its outcome
        finally:
            self._client.close()

    @property
    def usable(self) -> bool:
        return not self._broken and self._client.is_connected

    async def send(self, message: Message) -> None:
        """Deliver ``message`` to the recipients in its headers; returns once the
        server has accepted it."""
        message_id = message.get("Message-ID", "?")
        try:
            refused, _ = await self._client.send_message(message)
        except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
            if isinstance(exc, OSError):  # lost, timed out: the session is gone
                self._broken = True
            raise _convert(exc, self.where, message_id) from exc
        if refused:
            log.warning("mail %s: %s refused some recipients: %s", message_id, self.where, sorted(refused))
        log.info("mail %s delivered to %s via %s", message_id, message.get("To"), self.where)


async def send(settings: SmtpSettings, message: Message) -> None:
    """Deliver ``message`` alone, over a connection of its own.

    Raises :class:`SmtpUnavailable` (retryable) or :class:`SmtpRejected`
    (permanent). Returns only once the server has accepted the message.
    """
    async with SmtpConnection(settings) as connection:
        await connection.send(message)


def _convert(exc: Exception, where: str, message_id: str | None = None) -> SmtpError:
    """The error of ours for an aiosmtplib or socket failure: 4xx and anything about the
    connection are retryable, a 5xx about this recipient or message is permanent."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [refusal.code for refusal in exc.recipients]
        detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        if codes and all(400 <= code < 500 for code in codes):
            return SmtpUnavailable(f"{where} deferred the recipients: {detail}", codes[0])
        code = next((c for c in codes if c >= 500), None)
        return SmtpRejected(f"{where} refused the recipients: {detail}", code)
    if isinstance(exc, aiosmtplib.SMTPDataError):
        error = SmtpRejected if exc.code >= 500 else SmtpUnavailable
        return error(f"{where} refused the message: {exc.code} {exc.message}", exc.code)
    if isinstance(exc, aiosmtplib.SMTPResponseException):  # greeting, HELO, login, sender...
        return SmtpUnavailable(f"{where} answered {exc.code} {exc.message}", exc.code)
    if isinstance(exc, (aiosmtplib.SMTPException, OSError)):  # refused, lost, timeout, TLS
        return SmtpUnavailable(f"{where} unreachable: {type(exc).__name__}: {exc}")
    # a ValueError: an address aiosmtplib cannot send safely
    return SmtpRejected(f"cannot send {message_id or '?'}: {exc}")


def _url_error(reason: str) -> ValueError:
    return ValueError(f"{URL_SETTING}: {reason}; expected {_URL_FORMS}")


def _is_positive_number(value: str) -> bool:
    try:
        return float(value) > 0
    except ValueError:
        return False


def _flatten(value: str) -> str:
    return " ".join(_BREAKS_AND_CONTROLS.sub(" ", value).split())


def _address(value: str, what: str) -> str:
    if _BREAKS_AND_CONTROLS.search(value) or not value.strip():
        raise ValueError(f"{what} address is empty or contains a line break or control character")
    return value.strip()


def _text_header(value: str) -> str | Header:
    """A header value as is when ASCII, else RFC 2047 words (the generator folds them)."""
    return value if value.isascii() else Header(value, "utf-8")


def _mailbox(value: str) -> str:
    """``Name <addr@host>`` with a non-ASCII display name RFC 2047-encoded."""
    if value.isascii():
        return value
    name, address = parseaddr(value)
    if not address.isascii() or not address:
        raise ValueError("the address itself must be ASCII (no SMTPUTF8)")
    return formataddr((name, address), charset="utf-8")


def _message_id(value: str) -> str:
    bare = value.strip().removeprefix("<").removesuffix(">")
    if "@" not in bare or re.search(r"[\s<>]", bare) or _BREAKS_AND_CONTROLS.search(bare):
        raise ValueError("message_id must look like local@domain, without spaces or line breaks")
    return f"<{bare}>"
