"""The long-lived objects the stages share, built once by the app (or a command)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import jinja2
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.channels.registry import ChannelRegistry
from bot.pipeline.rules import RuleSet
from bot.pipeline.rules_schema import RulesStatus
from bot.settings import Settings

if TYPE_CHECKING:
    from classifiers import Model

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    model: Model
    rules: RuleSet
    channels: ChannelRegistry
    templates: jinja2.Environment
    #: called after a transaction that enqueued jobs commits, to wake an idle worker
    wake: Callable[[], None] = lambda: None
    #: set to receive a message for every item that changes (live views, demo log)
    listeners: list[Callable[[str, dict[str, object]], None]] = field(default_factory=list)
    #: the rules version in use and the error of the last failed reload (bot.pipeline.rules_reload)
    rules_status: RulesStatus = field(init=False)

    def __post_init__(self) -> None:
        self.rules_status = RulesStatus(self.rules.version, datetime.now(UTC))

    def announce(self, event: str, data: dict[str, object]) -> None:
        """Tell listeners that something happened (``event`` such as "item.routed")."""
        for listener in list(self.listeners):
            listener(event, data)


@asynccontextmanager
async def open_services(settings: Settings, *, load_model: bool = True) -> AsyncIterator[Services]:
    """Build every shared object for ``settings`` and release them on exit.

    Upgrades a SQLite database by itself (PostgreSQL is upgraded with
    ``relais db upgrade``, as part of a deployment); refuses an invalid rules file.
    """
    from bot.notify.compose import make_environment
    from bot.pipeline.rules import load_rules
    from bot.store import db
    from bot.store.queries import sync_experts

    rules = load_rules(settings.rules_file, settings.templates_dir)
    if db.is_sqlite(settings.database_url):
        await asyncio.to_thread(db.upgrade, settings.database_url)
    engine = db.create_engine(settings.database_url)
    sessions = db.sessionmaker(engine)
    model = None
    if load_model:
        from classifiers import load_or_train

        log.info("loading the classifier from %s (the first run trains it: a few seconds)", settings.model_dir)
        model = await asyncio.to_thread(load_or_train, settings.model_dir)
    registry = ChannelRegistry(settings)
    try:
        async with sessions.begin() as session:
            await sync_experts(session, rules, settings.timezone)
        yield Services(
            settings=settings,
            engine=engine,
            sessions=sessions,
            model=model,  # type: ignore[arg-type]  # None only for commands that never classify
            rules=rules,
            channels=registry,
            templates=make_environment(settings.templates_dir),
        )
    finally:
        await registry.close()
        await engine.dispose()
