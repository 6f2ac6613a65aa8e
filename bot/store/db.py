"""The database engine, sessions and schema upgrades.

``RELAIS_DATABASE_URL`` is written the plain way (``sqlite:///data/relais.db``,
``postgresql://user@host/db``); the drivers are chosen here: aiosqlite or
psycopg (async) for the application, the sync drivers for Alembic.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def async_url(url: str) -> str:
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        return str(u.set(drivername="sqlite+aiosqlite"))
    return u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def sync_url(url: str) -> str:
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        return str(u.set(drivername="sqlite"))
    return u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def dialect_insert(session: AsyncSession) -> Any:
    """``insert`` of the session's dialect, for ``ON CONFLICT DO NOTHING`` (SQLite and PostgreSQL)."""
    return pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _ensure_sqlite_folder(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def create_engine(url: str) -> AsyncEngine:
    """An async engine for ``url``, with SQLite set up for one writer and many readers."""
    if is_sqlite(url):
        _ensure_sqlite_folder(url)
        # SQLite takes one writer at a time: a small pool queues work in Python instead of
        # leaving many connections to sleep in SQLite's busy handler (long latency tails)
        engine = create_async_engine(async_url(url), connect_args={"timeout": 30}, pool_size=2, max_overflow=0)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # pool_size above the worker concurrency: overflow connections are closed on return, so a
    # pool smaller than the jobs in flight would open and close a connection per job
    return create_async_engine(async_url(url), pool_size=24, max_overflow=8)


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema at ``url`` to ``revision`` (idempotent)."""
    if is_sqlite(url):
        _ensure_sqlite_folder(url)
    command.upgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine as create_sync_engine

    engine = create_sync_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
