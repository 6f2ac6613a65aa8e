"""Fixtures: the real ``relais`` command in a subprocess against a real database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.relais_runner import Relais, make_relais
from tests.conftest import fresh_pg_schema


@pytest.fixture
def relais(tmp_path: Path, database_url: str, models_dir: Path) -> Relais:
    return make_relais(tmp_path / "one", database_url, models_dir)


@pytest.fixture
def second_database_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """Another fresh database of the same kind as ``database_url``."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'second.db'}"
        return
    with fresh_pg_schema() as url:
        yield url
