"""Fake platform servers (real aiohttp apps) for tests and the demo.

:class:`FakeGraphAPI` plays the Facebook Graph API and its Page webhooks;
:class:`FakeXAPI` plays the X API v2. Both keep their state in memory, are
scripted with plain methods, and render an HTML view of what a person would see.
"""

from __future__ import annotations

from bot.channels.simulated.graph_api import FakeGraphAPI
from bot.channels.simulated.x_api import FakeXAPI

__all__ = ["FakeGraphAPI", "FakeXAPI"]
