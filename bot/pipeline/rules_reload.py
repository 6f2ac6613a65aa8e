"""Hot reload of the rules file by a running server.

Every ``RELAIS_RULES_RELOAD_INTERVAL`` seconds (5 by default) :func:`watch_rules`
reads the file and compares its hash with the version in use. When it changed:

- a valid file replaces ``services.rules`` (routing from then on records its
  version), its experts are synced into the database (the file wins, see
  :func:`bot.store.queries.sync_experts`) and ``services.rules_status.error`` is
  cleared;
- an invalid (or missing, or unreadable) file changes nothing: the last good version
  stays in use, the problems are logged once as ``file:line:column: message``,
  and ``services.rules_status.error`` holds them (the web UI shows a banner)
  until a later valid file clears it.

A routing that started before a swap finishes with the version it started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging

from bot.errors import RulesError
from bot.pipeline.rules import load_rules
from bot.pipeline.rules_schema import RulesStatus
from bot.services import Services
from bot.store.models import utcnow
from bot.store.queries import sync_experts

log = logging.getLogger(__name__)


def _fingerprint(data: bytes) -> str:
    """The same 12 hex digits as :attr:`RuleSet.version` (a hash of the text)."""
    return hashlib.sha256(data).hexdigest()[:12]


class RulesWatcher:
    """Looks at the rules file of ``services`` and reloads it when its content changes."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._failed: str | None = None  # fingerprint of the invalid content already reported

    async def check(self) -> bool:
        """Reload when the file changed. True when a new version is now in use."""
        services = self.services
        path = services.settings.rules_file
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            self._fail("missing", f"{path}: the rules file cannot be read ({exc.strerror or exc})")
            return False
        seen = _fingerprint(data)
        if seen == services.rules.version:
            if services.rules_status.error is not None:  # put back as it was: nothing to report
                services.rules_status = RulesStatus(services.rules.version, services.rules_status.loaded_at)
                self._failed = None
            return False
        if seen == self._failed:
            return False
        try:
            rules = await asyncio.to_thread(load_rules, path, services.settings.templates_dir)
        except RulesError as exc:
            self._fail(seen, str(exc))
            return False
        async with services.sessions.begin() as session:
            await sync_experts(session, rules, services.settings.timezone)
        previous = services.rules.version
        services.rules = rules
        services.rules_status = RulesStatus(rules.version, utcnow())
        self._failed = None
        log.info("rules file %s reloaded: version %s -> %s", path, previous, rules.version)
        for warning in rules.warnings:
            log.warning("%s", warning)
        services.announce("rules.reloaded", {"version": rules.version, "previous": previous})
        return True

    def _fail(self, fingerprint: str, problems: str) -> None:
        services = self.services
        if fingerprint != self._failed:
            log.error(
                "rules file not reloaded, still using version %s:\n%s", services.rules.version, problems
            )
            services.announce("rules.invalid", {"version": services.rules.version, "error": problems})
        self._failed = fingerprint
        services.rules_status = RulesStatus(services.rules.version, services.rules_status.loaded_at, problems)


async def watch_rules(services: Services, stop: asyncio.Event) -> None:
    """Check the rules file every ``settings.rules_reload_s`` seconds until ``stop`` is set."""
    watcher = RulesWatcher(services)
    interval = services.settings.rules_reload_s
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
        if stop.is_set():
            break
        try:
            await watcher.check()
        except Exception:  # a database hiccup while syncing experts: try again next time
            log.exception("rules reload failed; will try again")
