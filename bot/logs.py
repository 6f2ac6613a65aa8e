"""Logging set-up, with secrets scrubbed from every record, as text or JSON lines.

Any value registered with :func:`hide` (tokens, app secrets, passwords) is
replaced by ``***`` in log messages, their arguments and tracebacks, whatever
logger wrote them.

``RELAIS_LOG_FORMAT=json`` writes one JSON object per line: ``time``, ``level``,
``logger``, ``message``, ``exc`` (a traceback), and the context fields known
where the line was written (``job_id``, ``job_kind``, ``item_id``,
``delivery_id``, ``email_id``, ...) set by :func:`context` — the worker sets
them for every job, from its payload. Text lines show the same fields as
``[job_kind=classify item_id=12]``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

_SECRETS: set[str] = set()
_CONTEXT: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar("relais_log_context", default={})

#: payload keys worth showing on every line a job writes
CONTEXT_KEYS = ("item_id", "delivery_id", "email_id", "assignment_id", "response_id", "channel_id")


def hide(*values: str | None) -> None:
    """Never let these strings reach a log line."""
    _SECRETS.update(v for v in values if v and len(v) >= 6)


def hide_settings(settings: Any) -> None:
    """Hide every secret of a :class:`bot.settings.Settings`: its ``Secret`` fields and URL passwords."""
    from dataclasses import fields

    from bot.settings import Secret, url_passwords

    hide(*(value.reveal() for f in fields(settings) if isinstance(value := getattr(settings, f.name), Secret)))
    hide(*url_passwords(settings))


def scrub(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    return text


@contextmanager
def context(**fields: object) -> Iterator[None]:
    """Add ``fields`` (item_id=..., ...) to every log line written inside the block."""
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def _ids(payloads: list[dict[str, Any]]) -> dict[str, object]:
    """The ids a log line names: ``item_id=7``, or for a batch ``item_ids=[7, 8]`` (the first 20)."""
    ids: dict[str, object] = {}
    for key in CONTEXT_KEYS:
        found: list[object] = []
        for payload in payloads:
            value, many = payload.get(key), payload.get(key + "s")
            if isinstance(value, int | str):
                found.append(value)
            elif isinstance(many, list):
                found += [v for v in many if isinstance(v, int | str)]
        if len(found) == 1:
            ids[key] = found[0]
        elif found:
            ids[key + "s"] = found[:20]
    return ids


def with_job_context(handlers: dict[str, Any]) -> dict[str, Any]:
    """The same job handlers (plain or :class:`bot.pipeline.worker.BatchHandler`), each
    logging inside a context of its kind and payload ids."""
    from bot.pipeline.worker import BatchHandler

    def wrap(kind: str, handler: Callable[[dict[str, Any]], Awaitable[None]]
             ) -> Callable[[dict[str, Any]], Awaitable[None]]:
        async def run(payload: dict[str, Any]) -> None:
            with context(job_kind=kind, **_ids([payload])):
                await handler(payload)

        return run

    def wrap_batch(kind: str, handler: BatchHandler) -> BatchHandler:
        async def run(payloads: list[dict[str, Any]]) -> None:
            with context(job_kind=kind, **_ids(payloads)):
                await handler.run(payloads)

        return BatchHandler(run)

    return {
        kind: wrap_batch(kind, handler) if isinstance(handler, BatchHandler) else wrap(kind, handler)
        for kind, handler in handlers.items()
    }


class ScrubSecrets(logging.Filter):
    """Scrubs secrets and attaches the context fields (``record.context``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.context = dict(_CONTEXT.get())
        if _SECRETS:
            record.msg = scrub(record.getMessage())
            record.args = None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
            elif record.exc_text:
                record.exc_text = scrub(record.exc_text)
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "context", None)
        if fields:
            first, newline, rest = line.partition("\n")
            line = first + " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]" + newline + rest
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line; the fields of ``extra={...}`` that are JSON values come too."""

    _STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "context"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "context", None) or {})
        for key, value in vars(record).items():
            if key not in self._STANDARD and isinstance(value, str | int | float | bool | None):
                entry.setdefault(key, scrub(value) if isinstance(value, str) else value)
        if record.exc_info and record.exc_info[1] is not None:
            entry["exc"] = scrub(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup(level: int = logging.INFO, log_format: str = "text") -> None:
    """Route every logger to stderr through the scrubbing filter, as text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(ScrubSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiohttp.access", "sqlalchemy.engine", "mail.log", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
