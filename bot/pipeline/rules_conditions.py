"""The ``when`` conditions of a rule: validation into :class:`Condition`, and shadowing.

Each ``parse_*`` function reads one part of the file and adds what is wrong to
:class:`~bot.pipeline.rules_yaml.Problems`; :func:`shadowed` finds rules that an
earlier rule makes unreachable. Matching is in :mod:`bot.pipeline.route`.
"""

from __future__ import annotations

import re
from datetime import time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.pipeline.rules_schema import (
    CATEGORIES,
    DAYS,
    KINDS,
    PLATFORMS,
    Condition,
    Hours,
    Rule,
    WorkingHours,
    fold,
    parse_duration,
    strip_accents,
)
from bot.pipeline.rules_yaml import Map, Problems, Seq, at, unknown_fields

LANGUAGES = ("fr", "en", "other")
WHEN_KEYS = {
    "category", "language", "platform", "kind", "page", "min_confidence", "max_confidence",
    "parent_is_ad", "campaign", "keywords", "regex", "min_followers", "vip", "min_age", "max_age", "hours",
    "crisis", "all", "any", "not",
}
_HOURS_KEYS = {"days", "from", "to", "timezone"}
_WORKING_HOURS_KEYS = {"days", "from", "to"}
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def names(m: Map, key: str, allowed: tuple[str, ...] | None, p: Problems, *, ids: bool = False) -> frozenset[str] | None:
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
        p.add(at(m, key, value=True), f"{key} must be a name or a list of names")
        return None
    if allowed is not None:
        for v in values:
            if v not in allowed:
                p.add(at(m, key, value=True), f"unknown {key} {v!r} (expected one of: {', '.join(allowed)})")
    return frozenset(str(v) for v in values)


def _confidence(m: Map, key: str, p: Problems) -> float | None:
    if key not in m:
        return None
    v = m[key]
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
        p.add(at(m, key, value=True), f"{key} must be a number between 0 and 1")
        return None
    return float(v)


def _regexes(m: Map, p: Problems) -> tuple[re.Pattern[str], ...]:
    if "regex" not in m:
        return ()
    raw = m["regex"]
    if isinstance(raw, str):
        entries, where = [raw], [at(m, "regex", value=True)]
    elif isinstance(raw, Seq) and raw and all(isinstance(v, str) for v in raw):
        entries, where = list(raw), list(raw.item_pos)
    else:
        p.add(at(m, "regex", value=True), "regex must be a regular expression or a list of them")
        return ()
    compiled = []
    for pattern, pos in zip(entries, where, strict=True):
        try:
            compiled.append(re.compile(strip_accents(pattern), re.IGNORECASE))
        except re.error as exc:
            p.add(pos, f"invalid regex {pattern!r}: {exc.msg}" + (f" at position {exc.pos}" if exc.pos is not None else ""))
    return tuple(compiled)


def whole_number(m: Map, key: str, p: Problems, what: str) -> int | None:
    if key not in m:
        return None
    v = m[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        p.add(at(m, key, value=True), f"{key} must be {what}")
        return None
    return v


def _age(m: Map, key: str, p: Problems) -> int | None:
    if key not in m:
        return None
    seconds = parse_duration(m[key])
    if seconds is None:
        p.add(at(m, key, value=True), f"{key} must be a duration such as 30m, 2h or 1d")
    return seconds


def _days_and_clock(raw: Map, where: str, p: Problems) -> tuple[frozenset[int], time, time] | None:
    """``days`` (default Monday to Friday), ``from`` and ``to`` of an ``hours`` or
    ``working_hours`` mapping."""
    ok = True
    days_raw = raw.get("days", list(DAYS[:5]))
    days_list = [days_raw] if isinstance(days_raw, str) else days_raw
    if not isinstance(days_list, list) or not days_list or any(d not in DAYS for d in days_list):
        p.add(at(raw, "days", value=True), f"{where}.days must be a list of: {', '.join(DAYS)}")
        ok = False
    clock: dict[str, time] = {}
    for key in ("from", "to"):
        value = raw.get(key)
        match = _CLOCK.match(value) if isinstance(value, str) else None
        if match is None:
            p.add(at(raw, key, value=True), f"{where}.{key} must be a time such as 09:00")
            ok = False
        else:
            clock[key] = time(int(match.group(1)), int(match.group(2)))
    if not ok:
        return None
    return frozenset(DAYS.index(d) for d in days_list), clock["from"], clock["to"]


def _window(m: Map, p: Problems) -> Hours | None:
    if "hours" not in m:
        return None
    raw = m["hours"]
    pos = at(m, "hours", value=True)
    if not isinstance(raw, Map):
        p.add(pos, "hours must be a mapping with days, from, to and timezone")
        return None
    unknown_fields(raw, _HOURS_KEYS, "hours", p)
    parsed = _days_and_clock(raw, "hours", p)
    zone_name = raw.get("timezone")
    if not valid_zone(zone_name):
        p.add(at(raw, "timezone", value=True), f"hours.timezone must be an IANA time zone such as Europe/Paris, not {zone_name!r}")
        return None
    if parsed is None:
        return None
    days, start, end = parsed
    return Hours(days=days, start=start, end=end, timezone=str(zone_name), zone=ZoneInfo(str(zone_name)))


def parse_working_hours(m: Map, p: Problems) -> WorkingHours | None:
    """An expert's or team's ``working_hours: {days: [...], from: "09:00", to: "18:00"}``,
    in their own time zone (for business-hours SLA clocks)."""
    if "working_hours" not in m:
        return None
    raw = m["working_hours"]
    if not isinstance(raw, Map):
        p.add(at(m, "working_hours", value=True), "working_hours must be a mapping with days, from and to")
        return None
    unknown_fields(raw, _WORKING_HOURS_KEYS, "working_hours", p)
    parsed = _days_and_clock(raw, "working_hours", p)
    if parsed is None:
        return None
    days, start, end = parsed
    if end <= start:
        p.add(at(raw, "to", value=True), "working_hours.to must be after working_hours.from (no night shifts)")
        return None
    return WorkingHours(days=days, start=start, end=end)


def _sub_conditions(when: Map, key: str, p: Problems) -> tuple[Condition, ...]:
    """``all:``/``any:``/``not:``: one mapping of conditions, or a list of them."""
    if key not in when:
        return ()
    raw = when[key]
    pos = at(when, key, value=True)
    if isinstance(raw, Map):
        return (parse_condition(raw, p, pos),)
    if isinstance(raw, Seq) and raw:
        return tuple(parse_condition(entry, p, epos) for entry, epos in zip(raw, raw.item_pos, strict=True))
    p.add(pos, f"{key} must be a mapping of conditions or a non-empty list of them")
    return ()


def parse_condition(when: Any, p: Problems, pos: tuple[int, int]) -> Condition:
    if when is None:
        return Condition()
    if not isinstance(when, Map):
        p.add(pos, "when must be a mapping of conditions")
        return Condition()
    unknown_fields(when, WHEN_KEYS, "when", p)
    parent_is_ad = when.get("parent_is_ad")
    if parent_is_ad is not None and not isinstance(parent_is_ad, bool):
        p.add(at(when, "parent_is_ad", value=True), "parent_is_ad must be true or false")
        parent_is_ad = None
    crisis = when.get("crisis")
    if crisis is not None and not isinstance(crisis, bool):
        p.add(at(when, "crisis", value=True), "crisis must be true or false")
        crisis = None
    keywords = names(when, "keywords", None, p) or frozenset()
    low, high = _confidence(when, "min_confidence", p), _confidence(when, "max_confidence", p)
    if low is not None and high is not None and low > high:
        p.add(at(when, "max_confidence", value=True), "max_confidence is below min_confidence: the rule can never match")
    min_age, max_age = _age(when, "min_age", p), _age(when, "max_age", p)
    if min_age is not None and max_age is not None and min_age > max_age:
        p.add(at(when, "max_age", value=True), "max_age is below min_age: the rule can never match")
    vip = names(when, "vip", None, p, ids=True)
    # any/all/not: "any" in the file, any_of here (``any`` and ``all`` are builtins)
    return Condition(
        categories=names(when, "category", CATEGORIES, p),
        languages=names(when, "language", LANGUAGES, p),
        platforms=names(when, "platform", PLATFORMS, p),
        kinds=names(when, "kind", KINDS, p),
        pages=names(when, "page", None, p, ids=True),
        min_confidence=low,
        max_confidence=high,
        parent_is_ad=parent_is_ad,
        crisis=crisis,
        campaigns=names(when, "campaign", None, p, ids=True),
        min_followers=whole_number(when, "min_followers", p, "a whole number of followers (0 or more)"),
        vip=frozenset(fold(v).lstrip("@") for v in vip) if vip is not None else None,
        min_age=min_age,
        max_age=max_age,
        hours=_window(when, p),
        keywords=tuple(sorted(fold(k) for k in keywords)),
        regex=_regexes(when, p),
        all_of=_sub_conditions(when, "all", p),
        any_of=_sub_conditions(when, "any", p),
        none_of=_sub_conditions(when, "not", p),
    )


def valid_zone(zone: Any) -> bool:
    if not isinstance(zone, str) or not zone:
        return False
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True



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
    for flag in ("parent_is_ad", "crisis"):
        if getattr(a, flag) is not None and getattr(b, flag) != getattr(a, flag):
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
