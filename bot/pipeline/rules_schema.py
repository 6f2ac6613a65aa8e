"""The rules file as data: the frozen dataclasses :func:`bot.pipeline.rules.parse_rules` builds.

Also the small vocabularies (categories, platforms, kinds, days, priorities), text
folding for keywords, durations, and :class:`RulesStatus` (which version is in use,
and whether the last reload failed).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from bot.domain import ReplyMode

CATEGORIES = ("complaint", "product_feedback", "ad_reaction", "other")
PLATFORMS = ("facebook", "instagram", "x")
KINDS = ("post", "comment", "mention", "message")
TRIAGE = "triage"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)\s*$")
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _no_mark(match: re.Match[str]) -> str:
    char = match.group()
    return "" if unicodedata.combining(char) else char


def fold(text: str) -> str:
    """Lower case without accents: ``"Déçu"`` -> ``"decu"``."""
    if text.isascii():
        return text.lower()
    # after NFKD an accent is a combining mark, and marks are never ASCII: look only there
    return _NON_ASCII.sub(_no_mark, unicodedata.normalize("NFKD", text.casefold()))


def strip_accents(text: str) -> str:
    """Without accents, case kept (for regular expressions: ``\\S`` must stay upper case)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PRIORITIES = ("low", "normal", "high", "urgent")


@dataclass(frozen=True)
class WorkingHours:
    """When an expert or team works, in their own time zone: ``days`` (0 = Monday),
    ``start`` to ``end`` local time (the same window each listed day)."""

    days: frozenset[int]
    start: time
    end: time


@dataclass(frozen=True)
class ExpertSpec:
    name: str
    email: str
    language: str = "fr"
    timezone: str | None = None  # None: the brand's time zone (RELAIS_TIMEZONE)
    skills: tuple[str, ...] = ()
    cap: int | None = None  # most open items (routed or notified) at once
    away: bool = False
    out_of_office: tuple[date, date] | None = None  # both days included, in the expert's zone
    backup: str | None = None  # an expert's email
    working_hours: WorkingHours | None = None  # for business-hours SLA clocks


@dataclass(frozen=True)
class TeamSpec:
    name: str
    members: tuple[str, ...]  # experts' emails, in the file's order (ties go to the first)
    strategy: str = "round_robin"  # round_robin | least_loaded | skills
    lead: str | None = None
    backup: str | None = None
    line: int = 0
    timezone: str | None = None  # None: the brand's time zone (RELAIS_TIMEZONE)
    working_hours: WorkingHours | None = None  # for business-hours SLA clocks


STRATEGIES = ("round_robin", "least_loaded", "skills")


@dataclass(frozen=True)
class Hours:
    """A weekly window: ``days`` (0 = Monday), from ``start`` to ``end`` local time in ``zone``.
    When ``end`` is not after ``start`` the window runs past midnight into the next day."""

    days: frozenset[int]
    start: time
    end: time
    timezone: str
    zone: ZoneInfo = field(compare=False, repr=False)


@dataclass(frozen=True)
class Condition:
    """All given fields must hold (an absent field matches anything).

    ``all_of``: every one of these conditions holds; ``any_of``: at least one does;
    ``none_of`` (``not:`` in the file): none of them does.
    """

    categories: frozenset[str] | None = None
    languages: frozenset[str] | None = None
    platforms: frozenset[str] | None = None
    kinds: frozenset[str] | None = None
    pages: frozenset[str] | None = None  # channel external ids (Page id, X account id)
    min_confidence: float | None = None
    max_confidence: float | None = None
    parent_is_ad: bool | None = None
    crisis: bool | None = None  # items.in_crisis (set while a crisis incident covers the item)
    campaigns: frozenset[str] | None = None  # external ids of brand posts (ads) the item answers
    min_followers: int | None = None
    vip: frozenset[str] | None = None  # author ids and handles, folded, without "@"
    min_age: int | None = None  # seconds between the post and the routing
    max_age: int | None = None
    hours: Hours | None = None
    keywords: tuple[str, ...] = ()  # folded; any one of them
    regex: tuple[re.Pattern[str], ...] = ()  # on the folded text; any one of them
    all_of: tuple[Condition, ...] = ()
    any_of: tuple[Condition, ...] = ()
    none_of: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class Rule:
    name: str
    when: Condition
    expert_email: str | None  # None: the triage queue (or the team's pick)
    reply_mode: ReplyMode
    sla_seconds: int
    is_default: bool = False
    line: int = 0
    team: str | None = None  # assign: {team: NAME}
    skills: tuple[str, ...] = ()  # for a team with the skills strategy
    #: the SLA clock counts only the assignee's (or team's) working hours
    business_hours: bool = False
    priority: str = "normal"  # low | normal | high | urgent (assignments.priority)
    template: str | None = None  # suggested reply: templates/replies/<template>.<fr|en>.txt.j2
    notify: tuple[str, ...] = ()  # experts' emails who get an FYI copy
    hide: bool = False  # hide the comment on the platform (spam, insults)
    auto_ack: str | None = None  # template of a public acknowledgement posted at once

    @property
    def has_effects(self) -> bool:
        """Whether a match does more than assign (hide, auto-acknowledge, FYI copies)."""
        return self.hide or self.auto_ack is not None or bool(self.notify)


@dataclass(frozen=True)
class RuleSet:
    version: str
    path: str
    experts: dict[str, ExpertSpec]
    rules: tuple[Rule, ...]
    community_manager: str | None = None
    default_sla_seconds: int = 4 * 3600
    default_reply_mode: ReplyMode = ReplyMode.PUBLIC
    default_priority: str = "normal"
    teams: dict[str, TeamSpec] = field(default_factory=dict)
    #: ``file:line:column: warning: ...`` lines (rules that can never match)
    warnings: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    #: compiled matchers, filled by bot.pipeline.route on first use
    cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def parse_duration(value: Any) -> int | None:
    """``"2h"``, ``"30m"``, ``"1d"``, ``"90s"`` or a number of seconds -> seconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and value > 0:
        return int(value)
    if isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = int(float(m.group(1)) * _UNITS[m.group(2)])
        return seconds if seconds > 0 else None
    return None


@dataclass(frozen=True)
class RulesStatus:
    """The rules in use: their version (hash), when they were loaded, and the error of
    the last reload when the file on disk is invalid (the last good version stays in use)."""

    version: str
    loaded_at: datetime
    error: str | None = None
