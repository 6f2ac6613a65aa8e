"""Shared fixtures: databases (SQLite and PostgreSQL), settings, services, fake platforms.

PostgreSQL: ``RELAIS_TEST_PG_URL`` (default postgresql://postgres@127.0.0.1:5432/test).
Each test gets its own schema, dropped afterwards. When the server cannot be
reached the PostgreSQL variants are skipped locally but FAIL under CI (CI=true),
so CI never passes without running them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from bot import PROJECT_ROOT
from bot.services import Services, open_services
from bot.settings import Secret, Settings, load_settings
from bot.store import db

PG_URL = os.environ.get("RELAIS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def shared_dir() -> Path:
    env = os.environ.get("RELAIS_SHARED_DIR")
    return Path(env) if env else PROJECT_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One trained model for the whole run (training takes a few seconds)."""
    return tmp_path_factory.mktemp("models")


def free_port() -> int:
    """A loopback port on which nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_available() -> str | None:
    try:
        with psycopg.connect(PG_URL, connect_timeout=3):
            return None
    except psycopg.OperationalError as exc:
        return str(exc).strip().splitlines()[0]


@contextlib.contextmanager
def fresh_pg_schema() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema of its own, dropped on exit.
    Skips when the server is unreachable, except under CI, where that fails."""
    problem = _pg_available()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI but unreachable at {PG_URL}: {problem}")
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}: {problem}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema of its own."""
    with fresh_pg_schema() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'relais.db'}"
    return request.getfixturevalue("pg_url")


def make_settings(tmp_path: Path, database_url: str, models_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "models_dir": models_dir,
        "secret_key": Secret("test-secret-key-0123456789"),
        "fb_app_secret": Secret("test-app-secret"),
        "fb_verify_token": Secret("test-verify-token"),
        "smtp_url": "smtp://127.0.0.1:1",
    }
    values.update(overrides)
    return load_settings(env={}, data_dir=tmp_path / "data", **values)


@pytest.fixture
def settings(tmp_path: Path, database_url: str, models_dir: Path) -> Settings:
    return make_settings(tmp_path, database_url, models_dir)


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    if not db.is_sqlite(settings.database_url):
        db.upgrade(settings.database_url)
    async with open_services(settings) as built:
        yield built
