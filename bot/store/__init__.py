"""Persistence: SQLAlchemy models, the engine and session, queries, migrations."""
