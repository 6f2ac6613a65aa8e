"""``routing_rules.yaml``: loading and validation.

The file is read into a frozen :class:`RuleSet`; any mistake raises
:class:`bot.errors.RulesError` whose message lists every problem as
``file:line:column: message``. The reference is ``docs/routing-rules.md``.

The work is split by part of the file:

- :mod:`bot.pipeline.rules_schema`: the dataclasses (RuleSet, Rule, Condition...);
- :mod:`bot.pipeline.rules_yaml`: YAML with positions, and the problem list;
- :mod:`bot.pipeline.rules_people`: ``experts`` and ``teams``;
- :mod:`bot.pipeline.rules_conditions`: ``when`` conditions and shadowing warnings;
- :mod:`bot.pipeline.rules_actions`: what a rule does (assign, SLA, priority, template...);
- :mod:`bot.pipeline.rules_reload`: the server's hot reload of the file.

This module puts them together and keeps the names the rest of the code imports.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from bot.errors import RulesError
from bot.pipeline.rules_actions import parse_defaults, parse_rule
from bot.pipeline.rules_conditions import LANGUAGES, shadowed
from bot.pipeline.rules_people import parse_experts, parse_teams
from bot.pipeline.rules_schema import (
    CATEGORIES,
    DAYS,
    KINDS,
    PLATFORMS,
    PRIORITIES,
    STRATEGIES,
    TRIAGE,
    Condition,
    ExpertSpec,
    Hours,
    Rule,
    RuleSet,
    RulesStatus,
    TeamSpec,
    WorkingHours,
    fold,
    parse_duration,
    strip_accents,
)
from bot.pipeline.rules_yaml import Loader, Map, Problems, Seq, at, unknown_fields

__all__ = [
    "CATEGORIES", "DAYS", "KINDS", "LANGUAGES", "PLATFORMS", "PRIORITIES", "STRATEGIES", "TRIAGE",
    "Condition", "ExpertSpec", "Hours", "Rule", "RuleSet", "RulesStatus", "TeamSpec", "WorkingHours",
    "fold", "load_rules", "parse_duration", "parse_rules", "shadowed", "strip_accents",
]

TOP_KEYS = {"version", "community_manager", "defaults", "experts", "teams", "rules"}


def parse_rules(text: str, path: str = "routing_rules.yaml", *, templates_dir: Path | None = None) -> RuleSet:
    """Parse and validate the text of a rules file. Raises RulesError listing every problem.

    With ``templates_dir``, the reply templates a rule names (``template``,
    ``auto_ack``) must exist there in French and English."""
    p = Problems(path)
    try:
        doc = yaml.load(text, Loader=Loader)  # noqa: S506 - Loader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        raise RulesError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    except RecursionError:  # hostile nesting; a real rules file is a few levels deep
        raise RulesError(f"{path}:1:1: not valid YAML: nested too deep") from None
    if not isinstance(doc, Map):
        raise RulesError(f"{path}:1:1: the rules file must be a mapping with experts and rules")
    unknown_fields(doc, TOP_KEYS, "the file", p)
    backups: dict[str, tuple[int, int]] = {}
    experts = parse_experts(doc.get("experts", Seq()), p, at(doc, "experts", value=True), backups)
    for email, where in backups.items():
        backup = experts[email].backup
        if backup not in experts:
            p.add(where, f"unknown expert {backup!r} as backup of {email!r}")
    teams = parse_teams(doc.get("teams", Seq()), experts, p, at(doc, "teams", value=True))
    defaults = parse_defaults(doc, p)
    cm = doc.get("community_manager")
    if cm is not None and (not isinstance(cm, str) or "@" not in cm):
        p.add(at(doc, "community_manager", value=True), "community_manager must be an email address")
        cm = None

    rules: list[Rule] = []
    raw_rules = doc.get("rules")
    if not isinstance(raw_rules, Seq) or not raw_rules:
        p.add(at(doc, "rules", value=True), "rules must be a non-empty list")
        raw_rules = Seq()
    names: set[str] = set()
    positions: list[tuple[int, int]] = []
    for entry, rpos in zip(raw_rules, raw_rules.item_pos, strict=True):
        if not isinstance(entry, Map):
            p.add(rpos, "each rule must be a mapping with at least a name")
            continue
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            p.add(rpos, "a rule needs a name")
            name = f"rule at line {rpos[0]}"
        elif name in names:
            p.add(at(entry, "name", value=True), f"rule name {name!r} is used twice")
        names.add(name)
        rules.append(
            parse_rule(entry, name, rpos, p, experts=experts, teams=teams, defaults=defaults, templates_dir=templates_dir)
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
        default_sla_seconds=defaults.sla_seconds,
        default_reply_mode=defaults.reply_mode,
        default_priority=defaults.priority,
        teams=teams,
        warnings=tuple(f"{path}:{line}:{col}: warning: {message}" for (line, col), message in shadowed(rules, positions)),
    )


def load_rules(path: Path, templates_dir: Path | None = None) -> RuleSet:
    """Read and validate the rules file at ``path`` (see :func:`parse_rules`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RulesError(f"{path}: the rules file does not exist") from None
    except UnicodeDecodeError:
        raise RulesError(f"{path}: the rules file is not UTF-8 text") from None
    return parse_rules(text, str(path), templates_dir=templates_dir)
