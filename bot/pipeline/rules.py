"""``routing_rules.yaml``: loading and validation.

The file is read once into a frozen :class:`RuleSet`; any mistake raises
:class:`bot.errors.RulesError` whose message lists every problem as
``file:line:column: message``. The rules file is the source of truth for the
experts it names (it is synced into the database on start). The reference is
``docs/routing-rules.md``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from bot.domain import ReplyMode
from bot.errors import RulesError

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


@dataclass(frozen=True)
class TeamSpec:
    name: str
    members: tuple[str, ...]  # experts' emails, in the file's order (ties go to the first)
    strategy: str = "round_robin"  # round_robin | least_loaded | skills
    lead: str | None = None
    backup: str | None = None
    line: int = 0


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


@dataclass(frozen=True)
class RuleSet:
    version: str
    path: str
    experts: dict[str, ExpertSpec]
    rules: tuple[Rule, ...]
    community_manager: str | None = None
    default_sla_seconds: int = 4 * 3600
    default_reply_mode: ReplyMode = ReplyMode.PUBLIC
    teams: dict[str, TeamSpec] = field(default_factory=dict)
    #: ``file:line:column: warning: ...`` lines (rules that can never match)
    warnings: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    #: compiled matchers, filled by bot.pipeline.route on first use
    cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


# --- YAML with positions -------------------------------------------------------------


class _Map(dict[str, Any]):
    """A mapping that remembers where each key and value stood in the file."""

    line = 1
    col = 1
    key_pos: dict[str, tuple[int, int]] = {}  # noqa: RUF012 - replaced per instance, never mutated
    value_pos: dict[str, tuple[int, int]] = {}  # noqa: RUF012


class _Seq(list[Any]):
    """A list that remembers where each entry stood in the file."""

    line = 1
    col = 1
    item_pos: list[tuple[int, int]] = []  # noqa: RUF012


class _Loader(yaml.SafeLoader):
    pass


def _map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    result = _Map()
    result.line, result.col = node.start_mark.line + 1, node.start_mark.column + 1
    result.key_pos, result.value_pos = {}, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise yaml.constructor.ConstructorError(None, None, "a key must be a plain word", key_node.start_mark)
        if key in result:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_pos[key] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        result.value_pos[key] = (value_node.start_mark.line + 1, value_node.start_mark.column + 1)
    return result


def _seq(loader: _Loader, node: yaml.SequenceNode) -> _Seq:
    result = _Seq(loader.construct_object(child, deep=True) for child in node.value)
    result.line, result.col = node.start_mark.line + 1, node.start_mark.column + 1
    result.item_pos = [(c.start_mark.line + 1, c.start_mark.column + 1) for c in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _seq)
# YAML 1.1 reads 104857_2001 as the number 1048572001; in this file such words are
# Facebook ids (page, campaign, vip), so digits with underscores stay text.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:int"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[01]+|[-+]?0[0-7]+|[-+]?(?:0|[1-9][0-9]*)|[-+]?0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)


# --- validation ----------------------------------------------------------------------


class _Problems:
    def __init__(self, path: str) -> None:
        self.path = path
        self.items: list[tuple[tuple[int, int], str]] = []

    def add(self, pos: tuple[int, int], message: str) -> None:
        self.items.append((pos, message))

    def report(self) -> str:
        return "\n".join(f"{self.path}:{line}:{col}: {msg}" for (line, col), msg in sorted(self.items))


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


_TOP_KEYS = {"version", "community_manager", "defaults", "experts", "teams", "rules"}
_EXPERT_KEYS = {"name", "email", "language", "timezone", "skills", "cap", "away", "out_of_office", "backup"}
_TEAM_KEYS = {"name", "members", "strategy", "lead", "backup"}
_DEFAULTS_KEYS = {"sla", "reply_mode"}
LANGUAGES = ("fr", "en", "other")
_RULE_KEYS = {"name", "when", "assign", "reply_mode", "sla", "default", "skills"}
_WHEN_KEYS = {
    "category", "language", "platform", "kind", "page", "min_confidence", "max_confidence",
    "parent_is_ad", "campaign", "keywords", "regex", "min_followers", "vip", "min_age", "max_age", "hours",
    "all", "any", "not",
}
_HOURS_KEYS = {"days", "from", "to", "timezone"}
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def _pos(m: _Map, key: str, *, value: bool = False) -> tuple[int, int]:
    table = m.value_pos if value else m.key_pos
    return table.get(key, (m.line, m.col))


def _unknown(m: _Map, allowed: set[str], where: str, p: _Problems) -> None:
    for key in m:
        if key not in allowed:
            p.add(_pos(m, key), f"unknown field {key!r} in {where} (allowed: {', '.join(sorted(allowed))})")


def _strings(m: _Map, key: str, allowed: tuple[str, ...] | None, p: _Problems, *, ids: bool = False) -> frozenset[str] | None:
    """A name or a list of names (``ids``: numbers are accepted too, as written)."""
    if key not in m:
        return None
    raw = m[key]
    kinds: tuple[type, ...] = (str, int) if ids else (str,)
    values = [raw] if isinstance(raw, kinds) and not isinstance(raw, bool) else raw
    if (
        not isinstance(values, list)
        or not values
        or not all(isinstance(v, kinds) and not isinstance(v, bool) for v in values)
    ):
        p.add(_pos(m, key, value=True), f"{key} must be a name or a list of names")
        return None
    if allowed is not None:
        for v in values:
            if v not in allowed:
                p.add(_pos(m, key, value=True), f"unknown {key} {v!r} (expected one of: {', '.join(allowed)})")
    return frozenset(str(v) for v in values)


def _confidence(m: _Map, key: str, p: _Problems) -> float | None:
    if key not in m:
        return None
    v = m[key]
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
        p.add(_pos(m, key, value=True), f"{key} must be a number between 0 and 1")
        return None
    return float(v)


def _regexes(m: _Map, p: _Problems) -> tuple[re.Pattern[str], ...]:
    if "regex" not in m:
        return ()
    raw = m["regex"]
    if isinstance(raw, str):
        entries, where = [raw], [_pos(m, "regex", value=True)]
    elif isinstance(raw, _Seq) and raw and all(isinstance(v, str) for v in raw):
        entries, where = list(raw), list(raw.item_pos)
    else:
        p.add(_pos(m, "regex", value=True), "regex must be a regular expression or a list of them")
        return ()
    compiled = []
    for pattern, pos in zip(entries, where, strict=True):
        try:
            compiled.append(re.compile(strip_accents(pattern), re.IGNORECASE))
        except re.error as exc:
            p.add(pos, f"invalid regex {pattern!r}: {exc.msg}" + (f" at position {exc.pos}" if exc.pos is not None else ""))
    return tuple(compiled)


def _whole(m: _Map, key: str, p: _Problems, what: str) -> int | None:
    if key not in m:
        return None
    v = m[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        p.add(_pos(m, key, value=True), f"{key} must be {what}")
        return None
    return v


def _age(m: _Map, key: str, p: _Problems) -> int | None:
    if key not in m:
        return None
    seconds = parse_duration(m[key])
    if seconds is None:
        p.add(_pos(m, key, value=True), f"{key} must be a duration such as 30m, 2h or 1d")
    return seconds


def _hours(m: _Map, p: _Problems) -> Hours | None:
    if "hours" not in m:
        return None
    raw = m["hours"]
    pos = _pos(m, "hours", value=True)
    if not isinstance(raw, _Map):
        p.add(pos, "hours must be a mapping with days, from, to and timezone")
        return None
    _unknown(raw, _HOURS_KEYS, "hours", p)
    ok = True
    days_raw = raw.get("days", list(DAYS[:5]))
    days_list = [days_raw] if isinstance(days_raw, str) else days_raw
    if not isinstance(days_list, list) or not days_list or any(d not in DAYS for d in days_list):
        p.add(_pos(raw, "days", value=True), f"hours.days must be a list of: {', '.join(DAYS)}")
        ok = False
    clock: dict[str, time] = {}
    for key in ("from", "to"):
        value = raw.get(key)
        match = _CLOCK.match(value) if isinstance(value, str) else None
        if match is None:
            p.add(_pos(raw, key, value=True), f"hours.{key} must be a time such as 09:00")
            ok = False
        else:
            clock[key] = time(int(match.group(1)), int(match.group(2)))
    zone_name = raw.get("timezone")
    if not _valid_zone(zone_name):
        p.add(_pos(raw, "timezone", value=True), f"hours.timezone must be an IANA time zone such as Europe/Paris, not {zone_name!r}")
        ok = False
    if not ok:
        return None
    return Hours(
        days=frozenset(DAYS.index(d) for d in days_list),
        start=clock["from"],
        end=clock["to"],
        timezone=str(zone_name),
        zone=ZoneInfo(str(zone_name)),
    )


def _sub_conditions(when: _Map, key: str, p: _Problems) -> tuple[Condition, ...]:
    """``all:``/``any:``/``not:``: one mapping of conditions, or a list of them."""
    if key not in when:
        return ()
    raw = when[key]
    pos = _pos(when, key, value=True)
    if isinstance(raw, _Map):
        return (_condition(raw, p, pos),)
    if isinstance(raw, _Seq) and raw:
        return tuple(_condition(entry, p, epos) for entry, epos in zip(raw, raw.item_pos, strict=True))
    p.add(pos, f"{key} must be a mapping of conditions or a non-empty list of them")
    return ()


def _condition(when: Any, p: _Problems, pos: tuple[int, int]) -> Condition:
    if when is None:
        return Condition()
    if not isinstance(when, _Map):
        p.add(pos, "when must be a mapping of conditions")
        return Condition()
    _unknown(when, _WHEN_KEYS, "when", p)
    parent_is_ad = when.get("parent_is_ad")
    if parent_is_ad is not None and not isinstance(parent_is_ad, bool):
        p.add(_pos(when, "parent_is_ad", value=True), "parent_is_ad must be true or false")
        parent_is_ad = None
    keywords = _strings(when, "keywords", None, p) or frozenset()
    low, high = _confidence(when, "min_confidence", p), _confidence(when, "max_confidence", p)
    if low is not None and high is not None and low > high:
        p.add(_pos(when, "max_confidence", value=True), "max_confidence is below min_confidence: the rule can never match")
    min_age, max_age = _age(when, "min_age", p), _age(when, "max_age", p)
    if min_age is not None and max_age is not None and min_age > max_age:
        p.add(_pos(when, "max_age", value=True), "max_age is below min_age: the rule can never match")
    vip = _strings(when, "vip", None, p, ids=True)
    # any/all/not: "any" in the file, any_of here (``any`` and ``all`` are builtins)
    return Condition(
        categories=_strings(when, "category", CATEGORIES, p),
        languages=_strings(when, "language", LANGUAGES, p),
        platforms=_strings(when, "platform", PLATFORMS, p),
        kinds=_strings(when, "kind", KINDS, p),
        pages=_strings(when, "page", None, p, ids=True),
        min_confidence=low,
        max_confidence=high,
        parent_is_ad=parent_is_ad,
        campaigns=_strings(when, "campaign", None, p, ids=True),
        min_followers=_whole(when, "min_followers", p, "a whole number of followers (0 or more)"),
        vip=frozenset(fold(v).lstrip("@") for v in vip) if vip is not None else None,
        min_age=min_age,
        max_age=max_age,
        hours=_hours(when, p),
        keywords=tuple(sorted(fold(k) for k in keywords)),
        regex=_regexes(when, p),
        all_of=_sub_conditions(when, "all", p),
        any_of=_sub_conditions(when, "any", p),
        none_of=_sub_conditions(when, "not", p),
    )


def _valid_zone(zone: Any) -> bool:
    if not isinstance(zone, str) or not zone:
        return False
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _experts(
    raw: Any, p: _Problems, pos: tuple[int, int], backups: dict[str, tuple[int, int]]
) -> dict[str, ExpertSpec]:
    """The experts; ``backups`` receives where each ``backup`` stands (checked once all are read)."""
    experts: dict[str, ExpertSpec] = {}
    if not isinstance(raw, _Seq):
        p.add(pos, "experts must be a list")
        return experts
    for entry, epos in zip(raw, raw.item_pos, strict=True):
        if not isinstance(entry, _Map):
            p.add(epos, "each expert must be a mapping with name and email")
            continue
        _unknown(entry, _EXPERT_KEYS, "an expert", p)
        name, email = entry.get("name"), entry.get("email")
        if not isinstance(name, str) or not isinstance(email, str) or "@" not in email:
            p.add(epos, "an expert needs a name and an email address")
            continue
        if email in experts:
            p.add(_pos(entry, "email", value=True), f"expert {email!r} is listed twice")
        skills = entry.get("skills", [])
        language = entry.get("language", "fr")
        if language not in ("fr", "en"):
            p.add(_pos(entry, "language", value=True), "an expert's language must be fr or en")
        zone = entry.get("timezone")
        if zone is not None and not _valid_zone(zone):
            p.add(_pos(entry, "timezone", value=True), f"unknown time zone {zone!r} (an IANA name such as Europe/Paris)")
        if not isinstance(skills, list):
            p.add(_pos(entry, "skills", value=True), "skills must be a list of words")
        away = entry.get("away", False)
        if not isinstance(away, bool):
            p.add(_pos(entry, "away", value=True), "away must be true or false")
            away = False
        backup = entry.get("backup")
        if backup is not None and (not isinstance(backup, str) or "@" not in backup):
            p.add(_pos(entry, "backup", value=True), "backup must be an expert's email")
            backup = None
        if backup is not None:
            backups[email] = _pos(entry, "backup", value=True)
        experts[email] = ExpertSpec(
            name=name,
            email=email,
            language=str(language),
            timezone=str(entry["timezone"]) if "timezone" in entry else None,
            skills=tuple(str(s) for s in skills) if isinstance(skills, list) else (),
            cap=_whole(entry, "cap", p, "a whole number of open items (0 or more)"),
            away=away,
            out_of_office=_leave(entry, p),
            backup=backup,
        )
    return experts


def _leave(entry: _Map, p: _Problems) -> tuple[date, date] | None:
    """``out_of_office: {from: 2026-12-22, to: 2027-01-02}`` (both days included)."""
    if "out_of_office" not in entry:
        return None
    raw = entry["out_of_office"]
    if (
        not isinstance(raw, _Map)
        or set(raw) != {"from", "to"}
        or not all(isinstance(raw[k], date) for k in ("from", "to"))
    ):
        p.add(_pos(entry, "out_of_office", value=True), "out_of_office must be {from: YYYY-MM-DD, to: YYYY-MM-DD}")
        return None
    if raw["to"] < raw["from"]:
        p.add(_pos(raw, "to", value=True), "out_of_office ends before it starts")
        return None
    return (raw["from"], raw["to"])


def _teams(raw: Any, experts: dict[str, ExpertSpec], p: _Problems, pos: tuple[int, int]) -> dict[str, TeamSpec]:
    teams: dict[str, TeamSpec] = {}
    if not isinstance(raw, _Seq):
        p.add(pos, "teams must be a list")
        return teams
    for entry, tpos in zip(raw, raw.item_pos, strict=True):
        if not isinstance(entry, _Map):
            p.add(tpos, "each team must be a mapping with name and members")
            continue
        _unknown(entry, _TEAM_KEYS, "a team", p)
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            p.add(tpos, "a team needs a name")
            continue
        if name in teams:
            p.add(_pos(entry, "name", value=True), f"team {name!r} is listed twice")
        members = entry.get("members")
        if not isinstance(members, _Seq) or not members:
            p.add(_pos(entry, "members", value=True), "members must be a non-empty list of experts' emails")
            members = _Seq()
        for email, mpos in zip(members, members.item_pos, strict=True):
            if email not in experts:
                p.add(mpos, f"unknown expert {email!r} in team {name!r}: list them under experts")
        strategy = entry.get("strategy", "round_robin")
        if strategy not in STRATEGIES:
            p.add(_pos(entry, "strategy", value=True), f"strategy must be one of: {', '.join(STRATEGIES)}")
            strategy = "round_robin"
        for key in ("lead", "backup"):
            if key in entry and entry[key] not in experts:
                p.add(_pos(entry, key, value=True), f"unknown expert {entry[key]!r} as {key} of team {name!r}")
        teams[name] = TeamSpec(
            name=name,
            members=tuple(str(m) for m in members),
            strategy=str(strategy),
            lead=entry.get("lead") if entry.get("lead") in experts else None,
            backup=entry.get("backup") if entry.get("backup") in experts else None,
            line=tpos[0],
        )
    return teams


def parse_rules(text: str, path: str = "routing_rules.yaml") -> RuleSet:
    """Parse and validate the text of a rules file. Raises RulesError listing every problem."""
    p = _Problems(path)
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        raise RulesError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(doc, _Map):
        raise RulesError(f"{path}:1:1: the rules file must be a mapping with experts and rules")
    _unknown(doc, _TOP_KEYS, "the file", p)
    backups: dict[str, tuple[int, int]] = {}
    experts = _experts(doc.get("experts", _Seq()), p, _pos(doc, "experts", value=True), backups)
    for email, where in backups.items():
        backup = experts[email].backup
        if backup not in experts:
            p.add(where, f"unknown expert {backup!r} as backup of {email!r}")
    teams = _teams(doc.get("teams", _Seq()), experts, p, _pos(doc, "teams", value=True))
    defaults = doc.get("defaults") or _Map()
    if isinstance(defaults, _Map):
        _unknown(defaults, _DEFAULTS_KEYS, "defaults", p)
    default_sla = parse_duration(defaults.get("sla", "4h")) if isinstance(defaults, dict) else None
    if default_sla is None:
        p.add(_pos(doc, "defaults", value=True), "defaults.sla must be a duration such as 2h or 30m")
        default_sla = 4 * 3600
    default_mode = ReplyMode.PUBLIC
    if isinstance(defaults, dict) and "reply_mode" in defaults:
        try:
            default_mode = ReplyMode(defaults["reply_mode"])
        except ValueError:
            p.add(_pos(defaults, "reply_mode", value=True), "defaults.reply_mode must be public, private or private_with_public_ack")
    cm = doc.get("community_manager")
    if cm is not None and (not isinstance(cm, str) or "@" not in cm):
        p.add(_pos(doc, "community_manager", value=True), "community_manager must be an email address")
        cm = None

    rules: list[Rule] = []
    raw_rules = doc.get("rules")
    if not isinstance(raw_rules, _Seq) or not raw_rules:
        p.add(_pos(doc, "rules", value=True), "rules must be a non-empty list")
        raw_rules = _Seq()
    names: set[str] = set()
    positions: list[tuple[int, int]] = []
    for entry, rpos in zip(raw_rules, raw_rules.item_pos, strict=True):
        if not isinstance(entry, _Map):
            p.add(rpos, "each rule must be a mapping with at least a name")
            continue
        _unknown(entry, _RULE_KEYS, "a rule", p)
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            p.add(rpos, "a rule needs a name")
            name = f"rule at line {rpos[0]}"
        elif name in names:
            p.add(_pos(entry, "name", value=True), f"rule name {name!r} is used twice")
        names.add(name)
        assign = entry.get("assign", TRIAGE)
        expert: str | None = None
        team: str | None = None
        if isinstance(assign, _Map):
            if set(assign) != {"team"} or not isinstance(assign["team"], str):
                p.add(_pos(entry, "assign", value=True), "assign must be an expert's email, 'triage' or {team: NAME}")
            elif assign["team"] not in teams:
                p.add(_pos(assign, "team", value=True), f"unknown team {assign['team']!r}: list it under teams")
            else:
                team = assign["team"]
        elif assign != TRIAGE:
            if not isinstance(assign, str) or assign not in experts:
                p.add(_pos(entry, "assign", value=True), f"unknown expert {assign!r}: assign an email listed under experts, or 'triage'")
            else:
                expert = assign
        skills = entry.get("skills", [])
        if not isinstance(skills, list) or not all(isinstance(w, str) for w in skills):
            p.add(_pos(entry, "skills", value=True), "skills must be a list of words")
            skills = []
        mode = default_mode
        if "reply_mode" in entry:
            try:
                mode = ReplyMode(entry["reply_mode"])
            except ValueError:
                p.add(_pos(entry, "reply_mode", value=True), "reply_mode must be public, private or private_with_public_ack")
        sla = default_sla
        if "sla" in entry:
            parsed = parse_duration(entry["sla"])
            if parsed is None:
                p.add(_pos(entry, "sla", value=True), "sla must be a duration such as 2h, 30m or 1d")
            else:
                sla = parsed
        is_default = entry.get("default", False)
        if not isinstance(is_default, bool):
            p.add(_pos(entry, "default", value=True), "default must be true or false")
            is_default = False
        if is_default and entry.get("when"):
            p.add(_pos(entry, "when"), "the default rule takes no conditions (it catches everything else)")
        rules.append(
            Rule(
                name=name,
                when=_condition(entry.get("when"), p, _pos(entry, "when", value=True)),
                expert_email=expert,
                reply_mode=mode,
                sla_seconds=sla,
                is_default=is_default,
                line=rpos[0],
                team=team,
                skills=tuple(skills),
            )
        )
        positions.append(rpos)
    if rules and not rules[-1].is_default:
        p.add((raw_rules.line, raw_rules.col), "missing default: the last rule must have 'default: true' (it catches everything else)")
    for rule in rules[:-1]:
        if rule.is_default:
            p.add((rule.line, 1), f"rule {rule.name!r}: only the last rule may be the default")
    if p.items:
        raise RulesError(p.report())
    return RuleSet(
        version=hashlib.sha256(text.encode("utf-8")).hexdigest()[:12],
        path=path,
        experts=experts,
        rules=tuple(rules),
        community_manager=cm,
        default_sla_seconds=default_sla,
        default_reply_mode=default_mode,
        teams=teams,
        warnings=tuple(f"{path}:{line}:{col}: warning: {message}" for (line, col), message in shadowed(rules, positions)),
    )


# --- shadowing -----------------------------------------------------------------------


def _covers(a: Condition, b: Condition) -> bool:
    """True only when every item that ``b`` matches is certainly matched by ``a``.

    Conservative: each condition ``a`` sets must be set in ``b`` at least as tightly;
    an ``a`` with combinations (all/any/not), hours or an age window covers only
    an identical ``b``.
    """
    if a == b:
        return True
    if a.all_of or a.any_of or a.none_of or a.hours is not None or a.regex:
        return False
    for name in ("categories", "languages", "platforms", "kinds", "pages", "campaigns", "vip"):
        mine, theirs = getattr(a, name), getattr(b, name)
        if mine is not None and (theirs is None or not theirs <= mine):
            return False
    if a.parent_is_ad is not None and b.parent_is_ad != a.parent_is_ad:
        return False
    for low in ("min_confidence", "min_followers", "min_age"):
        mine, theirs = getattr(a, low), getattr(b, low)
        if mine is not None and (theirs is None or theirs < mine):
            return False
    for high in ("max_confidence", "max_age"):
        mine, theirs = getattr(a, high), getattr(b, high)
        if mine is not None and (theirs is None or theirs > mine):
            return False
    # b matches only texts holding one of its keywords; each must contain one of a's
    return not a.keywords or (bool(b.keywords) and all(any(k in kb for k in a.keywords) for kb in b.keywords))


def shadowed(rules: list[Rule], positions: list[tuple[int, int]]) -> list[tuple[tuple[int, int], str]]:
    """Rules that can never match because an earlier rule catches all they would."""
    found = []
    for i, rule in enumerate(rules):
        if rule.is_default:
            continue
        for earlier in rules[:i]:
            if not earlier.is_default and _covers(earlier.when, rule.when):
                found.append(
                    (positions[i], f"rule {rule.name!r} can never match: the earlier rule {earlier.name!r} (line {earlier.line}) catches every item it would")
                )
                break
    return found


def load_rules(path: Path) -> RuleSet:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RulesError(f"{path}: the rules file does not exist") from None
    except UnicodeDecodeError:
        raise RulesError(f"{path}: the rules file is not UTF-8 text") from None
    return parse_rules(text, str(path))
