"""The demo's community-manager login (bot/demo/login.py): created at start, reset on a reused
database, password from RELAIS_DEMO_PASSWORD or random."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.demo.login import demo_login
from bot.errors import ConfigError
from bot.services import Services
from bot.store.models import Expert, User
from bot.web.users import verify_password


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_demo_login_is_the_community_manager_and_is_reset_at_each_start(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RELAIS_DEMO_PASSWORD", raising=False)
    email, first = await demo_login(services)
    assert email == "camille.cm@boulangerie-doree.example" and len(first) >= 12
    monkeypatch.setenv("RELAIS_DEMO_PASSWORD", "demo password 2026")
    again, second = await demo_login(services)  # a second run on the same database
    assert (again, second) == (email, "demo password 2026")
    async with services.sessions() as session:
        assert await verify_password(session, email, first) is None
        user = await verify_password(session, email, second)
        assert user is not None and user.role == "community_manager" and user.name == "Camille Roy"
        assert user.expert_id == await session.scalar(select(Expert.id).where(Expert.email == email))
        assert len((await session.scalars(select(User))).all()) == 1
    monkeypatch.setenv("RELAIS_DEMO_PASSWORD", "short")
    with pytest.raises(ConfigError, match="RELAIS_DEMO_PASSWORD: the password must have at least 12 characters"):
        await demo_login(services)
