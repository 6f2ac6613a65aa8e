"""The KPI settings file (``RELAIS_KPI_FILE``, default ``kpi.yaml``): business calendar,
weekly digest and early-warning thresholds. A missing file means the defaults.

See docs/kpis.md, "Configuration".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot.errors import ConfigError
from bot.kpi.calendar import BusinessCalendar
from bot.kpi.schedule import parse_schedule
from bot.settings import Settings


@dataclass(frozen=True)
class DigestConfig:
    schedule: str = ""  # empty: the server does not send the digest by itself
    language: str = "fr"
    #: decision-makers: the whole digest (summary, every team)
    recipients: tuple[str, ...] = ()
    #: each team's lead (routing_rules.yaml ``teams[].lead``) gets the summary and their team's section
    team_leads: bool = True


@dataclass(frozen=True)
class CrisisConfig:
    enabled: bool = False
    window_minutes: int = 60
    #: an incident when a post, page or keyword gets at least this many complaints in the window...
    min_complaints: int = 5
    #: ...or this many times its usual rate for that hour of the week (and at least ``min_baseline_complaints``)
    baseline_factor: float = 3.0
    min_baseline_complaints: int = 3
    baseline_weeks: int = 4
    keywords: tuple[str, ...] = ()
    #: an open incident with no new complaint for this long is closed
    quiet_minutes: int = 180


@dataclass(frozen=True)
class KpiConfig:
    calendar: BusinessCalendar
    digest: DigestConfig = field(default_factory=DigestConfig)
    crisis: CrisisConfig = field(default_factory=CrisisConfig)


_CACHE: dict[tuple[object, ...], KpiConfig] = {}


def load_kpi_config(settings: Settings) -> KpiConfig:
    """:func:`read_kpi_config`, cached until the file changes (the scheduler asks every second)."""
    path = settings.kpi_file
    stamp = path.stat().st_mtime_ns if path is not None and path.exists() else None
    key = (path, stamp, settings.digest_schedule, settings.timezone)
    if key not in _CACHE:
        if len(_CACHE) > 32:
            _CACHE.clear()
        _CACHE[key] = read_kpi_config(settings)
    return _CACHE[key]


def read_kpi_config(settings: Settings) -> KpiConfig:
    """Read ``settings.kpi_file`` (None: the defaults, with no digest schedule and no early warning).

    Raises ConfigError naming the file and the key.
    """
    path: Path | None = settings.kpi_file
    doc: dict[str, Any] = {}
    if path is not None:
        if not path.exists():
            raise ConfigError(f"RELAIS_KPI_FILE: {path} does not exist")
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: expected a mapping with calendar, digest, crisis")
    try:
        cal = doc.get("calendar") or {}
        calendar = BusinessCalendar.from_config(
            str(cal.get("timezone") or settings.timezone), cal.get("hours"), cal.get("holidays") or ()
        )
        dig = doc.get("digest") or {}
        schedule = settings.digest_schedule or str(dig.get("schedule") or "")
        if schedule:
            parse_schedule(schedule)
        language = str(dig.get("language") or "fr")
        if language not in ("fr", "en"):
            raise ValueError(f"digest.language must be fr or en, not {language!r}")
        digest = DigestConfig(
            schedule=schedule,
            language=language,
            recipients=tuple(str(r) for r in dig.get("recipients") or ()),
            team_leads=bool(dig.get("team_leads", True)),
        )
        cri = doc.get("crisis") or {}
        known = set(CrisisConfig.__dataclass_fields__)
        unknown = set(cri) - known
        if unknown:
            raise ValueError(f"crisis: unknown key(s) {', '.join(sorted(unknown))}")
        values = {k: (tuple(str(x).lower() for x in v) if k == "keywords" else type(getattr(CrisisConfig, k))(v))
                  for k, v in cri.items()}
        crisis = CrisisConfig(**values)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return KpiConfig(calendar=calendar, digest=digest, crisis=crisis)
