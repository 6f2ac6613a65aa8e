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
from pathlib import Path
from typing import Any

import yaml

from bot.domain import ReplyMode
from bot.errors import RulesError

CATEGORIES = ("complaint", "product_feedback", "ad_reaction", "other")
PLATFORMS = ("facebook", "instagram", "x")
KINDS = ("post", "comment", "mention", "message")
TRIAGE = "triage"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)\s*$")
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def fold(text: str) -> str:
    """Lower case without accents: ``"Déçu"`` -> ``"decu"``."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@dataclass(frozen=True)
class ExpertSpec:
    name: str
    email: str
    language: str = "fr"
    timezone: str | None = None  # None: the brand's time zone (RELAIS_TIMEZONE)
    skills: tuple[str, ...] = ()


@dataclass(frozen=True)
class Condition:
    """All given fields must hold (an absent field matches anything)."""

    categories: frozenset[str] | None = None
    languages: frozenset[str] | None = None
    platforms: frozenset[str] | None = None
    kinds: frozenset[str] | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None
    parent_is_ad: bool | None = None
    keywords: tuple[str, ...] = ()  # folded; any one of them


@dataclass(frozen=True)
class Rule:
    name: str
    when: Condition
    expert_email: str | None  # None: the triage queue
    reply_mode: ReplyMode
    sla_seconds: int
    is_default: bool = False
    line: int = 0


@dataclass(frozen=True)
class RuleSet:
    version: str
    path: str
    experts: dict[str, ExpertSpec]
    rules: tuple[Rule, ...]
    community_manager: str | None = None
    default_sla_seconds: int = 4 * 3600
    default_reply_mode: ReplyMode = ReplyMode.PUBLIC
    meta: dict[str, Any] = field(default_factory=dict)


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


_TOP_KEYS = {"version", "community_manager", "defaults", "experts", "rules"}
_EXPERT_KEYS = {"name", "email", "language", "timezone", "skills"}
_DEFAULTS_KEYS = {"sla", "reply_mode"}
LANGUAGES = ("fr", "en", "other")
_RULE_KEYS = {"name", "when", "assign", "reply_mode", "sla", "default"}
_WHEN_KEYS = {
    "category", "language", "platform", "kind", "min_confidence", "max_confidence",
    "parent_is_ad", "keywords",
}


def _pos(m: _Map, key: str, *, value: bool = False) -> tuple[int, int]:
    table = m.value_pos if value else m.key_pos
    return table.get(key, (m.line, m.col))


def _unknown(m: _Map, allowed: set[str], where: str, p: _Problems) -> None:
    for key in m:
        if key not in allowed:
            p.add(_pos(m, key), f"unknown field {key!r} in {where} (allowed: {', '.join(sorted(allowed))})")


def _strings(m: _Map, key: str, allowed: tuple[str, ...] | None, p: _Problems) -> frozenset[str] | None:
    if key not in m:
        return None
    raw = m[key]
    values = [raw] if isinstance(raw, str) else raw
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values) or not values:
        p.add(_pos(m, key, value=True), f"{key} must be a name or a list of names")
        return None
    if allowed is not None:
        for v in values:
            if v not in allowed:
                p.add(_pos(m, key, value=True), f"unknown {key} {v!r} (expected one of: {', '.join(allowed)})")
    return frozenset(values)


def _confidence(m: _Map, key: str, p: _Problems) -> float | None:
    if key not in m:
        return None
    v = m[key]
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
        p.add(_pos(m, key, value=True), f"{key} must be a number between 0 and 1")
        return None
    return float(v)


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
    return Condition(
        categories=_strings(when, "category", CATEGORIES, p),
        languages=_strings(when, "language", LANGUAGES, p),
        platforms=_strings(when, "platform", PLATFORMS, p),
        kinds=_strings(when, "kind", KINDS, p),
        min_confidence=low,
        max_confidence=high,
        parent_is_ad=parent_is_ad,
        keywords=tuple(sorted(fold(k) for k in keywords)),
    )


def _valid_zone(zone: Any) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(zone, str) or not zone:
        return False
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _experts(raw: Any, p: _Problems, pos: tuple[int, int]) -> dict[str, ExpertSpec]:
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
        experts[email] = ExpertSpec(
            name=name,
            email=email,
            language=str(language),
            timezone=str(entry["timezone"]) if "timezone" in entry else None,
            skills=tuple(str(s) for s in skills) if isinstance(skills, list) else (),
        )
    return experts


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
    experts = _experts(doc.get("experts", _Seq()), p, _pos(doc, "experts", value=True))
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
        if assign != TRIAGE:
            if not isinstance(assign, str) or assign not in experts:
                p.add(_pos(entry, "assign", value=True), f"unknown expert {assign!r}: assign an email listed under experts, or 'triage'")
            else:
                expert = assign
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
            )
        )
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
    )


def load_rules(path: Path) -> RuleSet:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RulesError(f"{path}: the rules file does not exist") from None
    except UnicodeDecodeError:
        raise RulesError(f"{path}: the rules file is not UTF-8 text") from None
    return parse_rules(text, str(path))
