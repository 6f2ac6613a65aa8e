"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from bot.store import db
from bot.store.models import Base


def test_migrations_at_head_match_the_models(database_url: str) -> None:
    db.upgrade(database_url)
    engine = create_engine(db.sync_url(database_url))
    try:
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_every_migration_downgrades_and_upgrades_again(database_url: str) -> None:
    config = db.alembic_config(database_url)
    head = ScriptDirectory.from_config(config).get_current_head()
    db.upgrade(database_url)
    command.downgrade(config, "0001")
    assert db.current_revision(database_url) == "0001"
    db.upgrade(database_url)
    assert db.current_revision(database_url) == head
