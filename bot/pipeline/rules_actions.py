"""What a matching rule does: validation of a rule's actions into a :class:`Rule`.

A rule assigns (an expert, a team or ``triage``) with a reply mode, a first-response
target (``sla``, optionally counted in working hours), a priority, a suggested reply
``template``, extra people to ``notify``, and may ``hide`` the comment or post an
automatic public acknowledgement (``auto_ack``). Carrying them out is
:mod:`bot.pipeline.route` (the decision), :mod:`bot.pipeline.rule_effects` (hide,
auto-acknowledge) and :mod:`bot.notify.outbox` (mails, SLA clock).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.domain import ReplyMode
from bot.pipeline.rules_conditions import parse_condition
from bot.pipeline.rules_schema import PRIORITIES, TRIAGE, ExpertSpec, Rule, TeamSpec, parse_duration
from bot.pipeline.rules_yaml import Map, Problems, Seq, at, unknown_fields

RULE_KEYS = {
    "name", "when", "assign", "reply_mode", "sla", "default", "skills",
    "priority", "template", "notify", "hide", "auto_ack",
}
DEFAULTS_KEYS = {"sla", "reply_mode", "priority"}
_SLA_KEYS = {"target", "business_hours"}
TEMPLATE_NAME = re.compile(r"^[a-z0-9_]+$")
#: the acknowledgement posted by ``auto_ack: true``
DEFAULT_ACK_TEMPLATE = "auto_ack"


@dataclass(frozen=True)
class Defaults:
    sla_seconds: int = 4 * 3600
    business_hours: bool = False
    reply_mode: ReplyMode = ReplyMode.PUBLIC
    priority: str = "normal"


def parse_sla(m: Map, key: str, p: Problems, where: str) -> tuple[int, bool | None] | None:
    """``sla: 2h`` or ``sla: {target: 4h, business_hours: true}`` -> (seconds, business hours);
    business hours is None for a bare duration (it keeps the defaults' setting)."""
    raw = m[key]
    if isinstance(raw, Map):
        unknown_fields(raw, _SLA_KEYS, where, p)
        seconds = parse_duration(raw.get("target"))
        if seconds is None:
            p.add(at(raw, "target", value=True), f"{where}.target must be a duration such as 2h, 30m or 1d")
        business = raw.get("business_hours", False)
        if not isinstance(business, bool):
            p.add(at(raw, "business_hours", value=True), f"{where}.business_hours must be true or false")
            return None
        return None if seconds is None else (seconds, business)
    seconds = parse_duration(raw)
    if seconds is None:
        p.add(at(m, key, value=True), f"{where} must be a duration such as 2h, 30m or 1d, or {{target: 4h, business_hours: true}}")
        return None
    return seconds, None


def _priority(m: Map, p: Problems, default: str, where: str = "priority") -> str:
    if "priority" not in m:
        return default
    value = m["priority"]
    if value not in PRIORITIES:
        p.add(at(m, "priority", value=True), f"{where} must be one of: {', '.join(PRIORITIES)}")
        return default
    return str(value)


def parse_defaults(doc: Map, p: Problems) -> Defaults:
    raw = doc.get("defaults") or Map()
    if not isinstance(raw, Map):
        p.add(at(doc, "defaults", value=True), "defaults must be a mapping with sla, reply_mode and priority")
        return Defaults()
    unknown_fields(raw, DEFAULTS_KEYS, "defaults", p)
    sla, business = 4 * 3600, False
    if "sla" in raw:
        parsed = parse_sla(raw, "sla", p, "defaults.sla")
        if parsed is not None:
            sla, business = parsed[0], bool(parsed[1])
    mode = ReplyMode.PUBLIC
    if "reply_mode" in raw:
        try:
            mode = ReplyMode(raw["reply_mode"])
        except ValueError:
            p.add(at(raw, "reply_mode", value=True), "defaults.reply_mode must be public, private or private_with_public_ack")
    return Defaults(sla, business, mode, _priority(raw, p, "normal", "defaults.priority"))


def missing_template(name: str, templates_dir: Path | None) -> str | None:
    """Why ``templates/replies/<name>.<fr|en>.txt.j2`` cannot be used, or None."""
    if templates_dir is None:
        return None
    absent = [lang for lang in ("fr", "en") if not (templates_dir / "replies" / f"{name}.{lang}.txt.j2").is_file()]
    if absent:
        return f"unknown template {name!r}: write {', '.join(f'replies/{name}.{lang}.txt.j2' for lang in absent)} in {templates_dir}"
    return None


def _template(m: Map, key: str, p: Problems, templates_dir: Path | None) -> str | None:
    value = m[key]
    if not isinstance(value, str) or not TEMPLATE_NAME.match(value):
        p.add(at(m, key, value=True), f"{key} must be a template name such as refund (lower case letters, digits and _)")
        return None
    if (why := missing_template(value, templates_dir)) is not None:
        p.add(at(m, key, value=True), why)
    return value


def _auto_ack(m: Map, p: Problems, templates_dir: Path | None) -> str | None:
    """``auto_ack: true`` (the ``acknowledgement`` template) or ``auto_ack: TEMPLATE``."""
    if "auto_ack" not in m:
        return None
    value = m["auto_ack"]
    if value is False:
        return None
    if value is True:
        value = DEFAULT_ACK_TEMPLATE
        if (why := missing_template(value, templates_dir)) is not None:
            p.add(at(m, "auto_ack", value=True), why)
        return value
    if not isinstance(value, str):
        p.add(at(m, "auto_ack", value=True), "auto_ack must be true, false or a template name")
        return None
    return _template(m, "auto_ack", p, templates_dir)


def _notify(m: Map, p: Problems, experts: dict[str, ExpertSpec]) -> tuple[str, ...]:
    if "notify" not in m:
        return ()
    raw = m["notify"]
    if isinstance(raw, str):
        entries, where = [raw], [at(m, "notify", value=True)]
    elif isinstance(raw, Seq) and raw and all(isinstance(e, str) for e in raw):
        entries, where = list(raw), list(raw.item_pos)
    else:
        p.add(at(m, "notify", value=True), "notify must be an expert's email or a list of them")
        return ()
    for email, pos in zip(entries, where, strict=True):
        if email not in experts:
            p.add(pos, f"unknown expert {email!r} in notify: list them under experts")
    return tuple(dict.fromkeys(e for e in entries if e in experts))


def _assign(entry: Map, p: Problems, experts: dict[str, ExpertSpec], teams: dict[str, TeamSpec]) -> tuple[str | None, str | None]:
    """(expert's email, team name); both None for triage."""
    assign = entry.get("assign", TRIAGE)
    if isinstance(assign, Map):
        if set(assign) != {"team"} or not isinstance(assign["team"], str):
            p.add(at(entry, "assign", value=True), "assign must be an expert's email, 'triage' or {team: NAME}")
        elif assign["team"] not in teams:
            p.add(at(assign, "team", value=True), f"unknown team {assign['team']!r}: list it under teams")
        else:
            return None, assign["team"]
    elif assign != TRIAGE:
        if not isinstance(assign, str) or assign not in experts:
            p.add(at(entry, "assign", value=True), f"unknown expert {assign!r}: assign an email listed under experts, or 'triage'")
        else:
            return assign, None
    return None, None


def _flag(m: Map, key: str, p: Problems) -> bool:
    value = m.get(key, False)
    if not isinstance(value, bool):
        p.add(at(m, key, value=True), f"{key} must be true or false")
        return False
    return value


def parse_rule(
    entry: Map,
    name: str,
    rpos: tuple[int, int],
    p: Problems,
    *,
    experts: dict[str, ExpertSpec],
    teams: dict[str, TeamSpec],
    defaults: Defaults,
    templates_dir: Path | None,
) -> Rule:
    """One entry of ``rules:`` (its name already checked) into a :class:`Rule`."""
    unknown_fields(entry, RULE_KEYS, "a rule", p)
    expert, team = _assign(entry, p, experts, teams)
    skills: Any = entry.get("skills", [])
    if not isinstance(skills, list) or not all(isinstance(w, str) for w in skills):
        p.add(at(entry, "skills", value=True), "skills must be a list of words")
        skills = []
    mode = defaults.reply_mode
    if "reply_mode" in entry:
        try:
            mode = ReplyMode(entry["reply_mode"])
        except ValueError:
            p.add(at(entry, "reply_mode", value=True), "reply_mode must be public, private or private_with_public_ack")
    sla, business = defaults.sla_seconds, defaults.business_hours
    if "sla" in entry and (parsed := parse_sla(entry, "sla", p, "sla")) is not None:
        sla = parsed[0]
        business = business if parsed[1] is None else parsed[1]
    is_default = _flag(entry, "default", p)
    if is_default and entry.get("when"):
        p.add(at(entry, "when"), "the default rule takes no conditions (it catches everything else)")
    hide = _flag(entry, "hide", p)
    auto_ack = _auto_ack(entry, p, templates_dir)
    if hide and auto_ack is not None:
        p.add(at(entry, "auto_ack"), "auto_ack on a hidden comment: hide and auto_ack cannot go together")
    return Rule(
        name=name,
        when=parse_condition(entry.get("when"), p, at(entry, "when", value=True)),
        expert_email=expert,
        reply_mode=mode,
        sla_seconds=sla,
        is_default=is_default,
        line=rpos[0],
        team=team,
        skills=tuple(skills),
        business_hours=business,
        priority=_priority(entry, p, defaults.priority),
        template=_template(entry, "template", p, templates_dir) if "template" in entry else None,
        notify=_notify(entry, p, experts),
        hide=hide,
        auto_ack=auto_ack,
    )

