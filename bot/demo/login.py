"""The demo's community-manager login for the triage UI.

The password is ``RELAIS_DEMO_PASSWORD`` when set (12 characters at least), else
a fresh random one; either way it is printed at start, so a person can log in
during the demo.
"""

from __future__ import annotations

import os
import secrets

from sqlalchemy import select

from bot import logs
from bot.errors import ConfigError
from bot.services import Services
from bot.store.models import Expert
from bot.web.users import UserError, check_password_rules, ensure_user

DEFAULT_EMAIL = "camille.cm@boulangerie-doree.example"


async def demo_login(services: Services) -> tuple[str, str]:
    """Create (or reset) the demo login; returns (email, password)."""
    email = services.rules.community_manager or DEFAULT_EMAIL
    password = os.environ.get("RELAIS_DEMO_PASSWORD") or secrets.token_urlsafe(12)
    try:
        check_password_rules(password)
    except UserError as exc:
        raise ConfigError(f"RELAIS_DEMO_PASSWORD: {exc}") from None
    logs.hide(password)  # printed once on the console, never in a log line
    async with services.sessions.begin() as session:
        expert = await session.scalar(select(Expert).where(Expert.email == email))
        user = await ensure_user(
            session, email=email, role="community_manager", password=password,
            name=expert.name if expert else "Community manager", language=services.settings.ui_language,
        )
        if expert is not None:
            user.expert_id = expert.id
    return email, password
