"""The KPI jobs the poll scheduler queues on each tick: the weekly digest and the early warning.

    digest        once per ISO week, when ``digest.schedule`` says (bot.kpi.digest)
    crisis_check  once a minute, when ``crisis.enabled`` (bot.kpi.crisis)
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.errors import ConfigError
from bot.kpi.config import load_kpi_config
from bot.kpi.digest import schedule_digests
from bot.pipeline import queue
from bot.services import Services

log = logging.getLogger(__name__)


async def schedule_kpi_jobs(services: Services, session: AsyncSession, now: datetime) -> None:
    """Queue what is due at ``now`` (deduplicated, so several schedulers queue it once).

    A broken KPI file is logged and skipped: it must not stop the polls.
    """
    try:
        config = load_kpi_config(services.settings)
    except ConfigError as exc:
        log.error("KPI jobs not scheduled: %s", exc)
        return
    await schedule_digests(services, session, now)
    if config.crisis.enabled:
        await queue.enqueue(session, "crisis_check", {}, dedupe_key=f"crisis_check:{now:%Y%m%d%H%M}", max_attempts=2)
