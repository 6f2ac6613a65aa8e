"""The ``experts`` and ``teams`` of a rules file: validation into
:class:`ExpertSpec` and :class:`TeamSpec`. Who gets an item is :mod:`bot.pipeline.teams`."""

from __future__ import annotations

from datetime import date
from typing import Any

from bot.pipeline.rules_conditions import parse_working_hours, valid_zone, whole_number
from bot.pipeline.rules_schema import STRATEGIES, ExpertSpec, TeamSpec
from bot.pipeline.rules_yaml import Map, Problems, Seq, at, unknown_fields

EXPERT_KEYS = {"name", "email", "language", "timezone", "skills", "cap", "away", "out_of_office", "backup", "working_hours"}
TEAM_KEYS = {"name", "members", "strategy", "lead", "backup", "timezone", "working_hours"}


def parse_experts(
    raw: Any, p: Problems, pos: tuple[int, int], backups: dict[str, tuple[int, int]]
) -> dict[str, ExpertSpec]:
    """The experts; ``backups`` receives where each ``backup`` stands (checked once all are read)."""
    experts: dict[str, ExpertSpec] = {}
    if not isinstance(raw, Seq):
        p.add(pos, "experts must be a list")
        return experts
    for entry, epos in zip(raw, raw.item_pos, strict=True):
        if not isinstance(entry, Map):
            p.add(epos, "each expert must be a mapping with name and email")
            continue
        unknown_fields(entry, EXPERT_KEYS, "an expert", p)
        name, email = entry.get("name"), entry.get("email")
        if not isinstance(name, str) or not isinstance(email, str) or "@" not in email:
            p.add(epos, "an expert needs a name and an email address")
            continue
        if email in experts:
            p.add(at(entry, "email", value=True), f"expert {email!r} is listed twice")
        skills = entry.get("skills", [])
        language = entry.get("language", "fr")
        if language not in ("fr", "en"):
            p.add(at(entry, "language", value=True), "an expert's language must be fr or en")
        zone = entry.get("timezone")
        if zone is not None and not valid_zone(zone):
            p.add(at(entry, "timezone", value=True), f"unknown time zone {zone!r} (an IANA name such as Europe/Paris)")
        if not isinstance(skills, list):
            p.add(at(entry, "skills", value=True), "skills must be a list of words")
        away = entry.get("away", False)
        if not isinstance(away, bool):
            p.add(at(entry, "away", value=True), "away must be true or false")
            away = False
        backup = entry.get("backup")
        if backup is not None and (not isinstance(backup, str) or "@" not in backup):
            p.add(at(entry, "backup", value=True), "backup must be an expert's email")
            backup = None
        if backup is not None:
            backups[email] = at(entry, "backup", value=True)
        experts[email] = ExpertSpec(
            name=name,
            email=email,
            language=str(language),
            timezone=str(entry["timezone"]) if "timezone" in entry else None,
            skills=tuple(str(s) for s in skills) if isinstance(skills, list) else (),
            cap=whole_number(entry, "cap", p, "a whole number of open items (0 or more)"),
            away=away,
            out_of_office=_leave(entry, p),
            backup=backup,
            working_hours=parse_working_hours(entry, p),
        )
    return experts


def _leave(entry: Map, p: Problems) -> tuple[date, date] | None:
    """``out_of_office: {from: 2026-12-22, to: 2027-01-02}`` (both days included)."""
    if "out_of_office" not in entry:
        return None
    raw = entry["out_of_office"]
    if (
        not isinstance(raw, Map)
        or set(raw) != {"from", "to"}
        or not all(isinstance(raw[k], date) for k in ("from", "to"))
    ):
        p.add(at(entry, "out_of_office", value=True), "out_of_office must be {from: YYYY-MM-DD, to: YYYY-MM-DD}")
        return None
    if raw["to"] < raw["from"]:
        p.add(at(raw, "to", value=True), "out_of_office ends before it starts")
        return None
    return (raw["from"], raw["to"])


def parse_teams(raw: Any, experts: dict[str, ExpertSpec], p: Problems, pos: tuple[int, int]) -> dict[str, TeamSpec]:
    teams: dict[str, TeamSpec] = {}
    if not isinstance(raw, Seq):
        p.add(pos, "teams must be a list")
        return teams
    for entry, tpos in zip(raw, raw.item_pos, strict=True):
        if not isinstance(entry, Map):
            p.add(tpos, "each team must be a mapping with name and members")
            continue
        unknown_fields(entry, TEAM_KEYS, "a team", p)
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            p.add(tpos, "a team needs a name")
            continue
        if name in teams:
            p.add(at(entry, "name", value=True), f"team {name!r} is listed twice")
        members = entry.get("members")
        if not isinstance(members, Seq) or not members:
            p.add(at(entry, "members", value=True), "members must be a non-empty list of experts' emails")
            members = Seq()
        for email, mpos in zip(members, members.item_pos, strict=True):
            if email not in experts:
                p.add(mpos, f"unknown expert {email!r} in team {name!r}: list them under experts")
        strategy = entry.get("strategy", "round_robin")
        if strategy not in STRATEGIES:
            p.add(at(entry, "strategy", value=True), f"strategy must be one of: {', '.join(STRATEGIES)}")
            strategy = "round_robin"
        for key in ("lead", "backup"):
            if key in entry and entry[key] not in experts:
                p.add(at(entry, key, value=True), f"unknown expert {entry[key]!r} as {key} of team {name!r}")
        zone = entry.get("timezone")
        if zone is not None and not valid_zone(zone):
            p.add(at(entry, "timezone", value=True), f"unknown time zone {zone!r} (an IANA name such as Europe/Paris)")
            zone = None
        teams[name] = TeamSpec(
            name=name,
            members=tuple(str(m) for m in members),
            strategy=str(strategy),
            lead=entry.get("lead") if entry.get("lead") in experts else None,
            backup=entry.get("backup") if entry.get("backup") in experts else None,
            line=tpos[0],
            timezone=str(zone) if zone is not None else None,
            working_hours=parse_working_hours(entry, p),
        )
    return teams

