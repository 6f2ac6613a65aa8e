"""A migrated database (SQLite or PostgreSQL, from ``database_url``) and its sessions,
for tests of the queue and the worker that need no classifier nor channels."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.store import db


@pytest.fixture
async def migrated_url(database_url: str) -> str:
    await asyncio.to_thread(db.upgrade, database_url)
    return database_url


@pytest.fixture
async def sessions(migrated_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = db.create_engine(migrated_url)
    yield db.sessionmaker(engine)
    await engine.dispose()
