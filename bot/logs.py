"""Logging set-up, with secrets scrubbed from every record.

Any value registered with :func:`hide` (tokens, app secrets, passwords) is
replaced by ``***`` in log messages and their arguments, whatever logger wrote them.
"""

from __future__ import annotations

import logging
import sys

_SECRETS: set[str] = set()


def hide(*values: str | None) -> None:
    """Never let these strings reach a log line."""
    _SECRETS.update(v for v in values if v and len(v) >= 6)


def scrub(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    return text


class ScrubSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _SECRETS:
            record.msg = scrub(record.getMessage())
            record.args = None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True


def setup(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(ScrubSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiohttp.access", "sqlalchemy.engine", "mail.log", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
