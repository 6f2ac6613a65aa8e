"""Open channel adapters for stored channels, once each, and close them at shutdown."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from bot.channels.base import Channel, ChannelConfig
from bot.domain import Platform
from bot.errors import ConfigError
from bot.logs import hide

if TYPE_CHECKING:
    from bot.settings import Settings
    from bot.store.models import Channel as ChannelRow

#: credential names per platform; ``env:PREFIX`` references read ``PREFIX_<NAME>``.
CREDENTIAL_NAMES = {
    "facebook": ("page_token",),
    "instagram": ("page_token",),
    "x": ("bearer_token", "consumer_key", "consumer_secret", "access_token", "access_token_secret"),
}


def resolve_credentials(row: ChannelRow, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The channel's secrets, from the database or from the environment."""
    if row.credentials_ref == "db":
        return {k: str(v) for k, v in (row.credentials or {}).items()}
    if row.credentials_ref.startswith("env:"):
        env = os.environ if env is None else env
        prefix = row.credentials_ref[4:]
        found = {name: env[f"{prefix}_{name.upper()}"] for name in CREDENTIAL_NAMES[row.platform] if env.get(f"{prefix}_{name.upper()}")}
        if not found:
            raise ConfigError(f"{prefix}_*: no credentials in the environment for channel {row.name!r}")
        return found
    raise ConfigError(f"channel {row.name!r}: unknown credentials reference {row.credentials_ref!r}")


def channel_config(row: ChannelRow, settings: Settings) -> ChannelConfig:
    credentials = resolve_credentials(row)
    hide(*credentials.values())
    default_url = settings.x_api_url if row.platform == "x" else settings.fb_graph_url
    return ChannelConfig(
        platform=Platform(row.platform),
        external_id=row.external_id,
        name=row.name,
        credentials=credentials,
        api_url=row.api_url or default_url,
        options={"graph_version": settings.fb_graph_version},
    )


def _open(config: ChannelConfig) -> Channel:
    if config.platform is Platform.X:
        from bot.channels.x import XChannel

        return XChannel(config)
    if config.platform is Platform.INSTAGRAM:
        from bot.channels.instagram import InstagramChannel

        return InstagramChannel(config, graph_version=str(config.options.get("graph_version", "v21.0")))
    from bot.channels.facebook import FacebookChannel

    return FacebookChannel(config, graph_version=str(config.options.get("graph_version", "v21.0")))


class ChannelRegistry:
    """One open adapter per channel row; reopened when its credentials change."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._open: dict[int, tuple[str, Channel]] = {}

    async def get(self, row: ChannelRow) -> Channel:
        config = channel_config(row, self.settings)
        fingerprint = hashlib.sha256(
            json.dumps([config.credentials, config.api_url], sort_keys=True).encode()
        ).hexdigest()
        current = self._open.get(row.id)
        if current and current[0] == fingerprint:
            return current[1]
        if current:
            await current[1].close()
        channel = _open(config)
        self._open[row.id] = (fingerprint, channel)
        return channel

    async def close(self) -> None:
        for _, channel in self._open.values():
            await channel.close()
        self._open.clear()
