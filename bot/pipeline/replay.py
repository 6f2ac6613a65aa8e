"""``relais rules replay``: what a candidate rules file would change on stored history.

Each stored item that has a label is routed again, with the same :func:`route`
and the facts it had (its latest label, whether it went to review, the routing
time of its latest assignment), through the candidate file. The report lists the items whose
assignee would change, the load per person per day before and after, and the
items whose first-response target would change. Nothing is written.

Limits: a rule that names a team shows as ``team NAME`` (which member would get
it depends on the load at that moment); availability, caps and backups are not
replayed.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from bot.errors import ConfigError
from bot.pipeline.classify import REVIEW_THRESHOLDS, parent_is_ad
from bot.pipeline.route import facts_of, route
from bot.pipeline.rules import RuleSet, load_rules
from bot.services import Services, open_services
from bot.settings import Settings
from bot.store.models import Assignment, Channel, Classification, Expert, Item
from bot.store.queries import latest_assignment, latest_classification


@dataclass(frozen=True)
class Replayed:
    """One item, before (as stored) and after (through the candidate file)."""

    item_id: int
    created_time: str
    day: str  # the routing day, in the brand's time zone
    before: str  # an email, "triage", or "unrouted" (no assignment, e.g. imported without assignee)
    before_rule: str | None
    after: str  # an email, "triage" or "team NAME"
    after_rule: str
    sla_before_s: int | None
    sla_after_s: int


@dataclass(frozen=True)
class Report:
    rules: str
    version: str
    items: int
    moved: list[Replayed]
    sla_changed: list[Replayed]
    load: list[dict[str, object]]  # {"day", "who", "before", "after"}

    def as_json(self) -> str:
        return json.dumps(
            {
                "rules": self.rules,
                "version": self.version,
                "items": self.items,
                "moved": [asdict(r) for r in self.moved],
                "sla_changed": [asdict(r) for r in self.sla_changed],
                "load": self.load,
            },
            ensure_ascii=False,
            indent=2,
        )


def parse_since(text: str, zone: str) -> datetime:
    """``YYYY-MM-DD`` (midnight in the brand's zone) or an ISO date-time."""
    try:
        when = datetime.combine(date.fromisoformat(text), time()) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"--since: {text!r} is not a date (YYYY-MM-DD) or an ISO date-time") from exc
    return when if when.tzinfo else when.replace(tzinfo=ZoneInfo(zone))


def _needed_review(item: Item, label: Classification, stored: Assignment | None) -> bool:
    """Whether the classify stage sent the item to review: as recorded when it can be told
    (the item's status, the routing trace), else by the default thresholds."""
    if label.source == "human":
        return False
    if item.status == "needs_review":
        return True
    if stored is not None and stored.rules_version != "import":
        return bool(stored.trace) and str(stored.trace[0]).startswith("needs review")
    return label.confidence < REVIEW_THRESHOLDS.get(label.label, 0.5)


async def replay(services: Services, candidate: RuleSet, since: datetime | None = None) -> Report:
    zone = ZoneInfo(services.settings.timezone)
    rows: list[Replayed] = []
    async with services.sessions() as session:
        emails = {e.id: e.email for e in (await session.scalars(select(Expert))).all()}
        channels = {c.id: c.external_id for c in (await session.scalars(select(Channel))).all()}
        query = select(Item).where(Item.is_brand_post.is_(False), Item.status != "removed").order_by(Item.created_time, Item.id)
        if since is not None:
            query = query.where(Item.created_time >= since)
        for item in (await session.scalars(query)).all():
            label = await latest_classification(session, item.id)
            if label is None:
                continue
            stored = await latest_assignment(session, item.id)
            now = stored.assigned_at if stored else item.received_at
            facts = facts_of(
                item,
                label.label,
                label.confidence,
                needs_review=_needed_review(item, label, stored),
                is_reply_to_ad=await parent_is_ad(session, item),
                channel=channels.get(item.channel_id, "") if item.channel_id else "",
                now=now,
            )
            decision = route(facts, candidate)
            rule = next(r for r in candidate.rules if r.name == decision.rule_name)
            if facts.needs_review or (rule.team is None and rule.expert_email is None):
                after = "triage"
            else:
                after = f"team {rule.team}" if rule.team else str(rule.expert_email)
            if stored is None:
                before, before_rule, sla_before = "unrouted", None, None
            else:
                before = emails.get(stored.expert_id, "?") if stored.expert_id else "triage"
                before_rule = stored.rule_name
                # an imported assignment has no target (its sla_due is the post time)
                sla_before = None if stored.rules_version == "import" else int((stored.sla_due - item.created_time).total_seconds())
            rows.append(
                Replayed(
                    item_id=item.id,
                    created_time=item.created_time.isoformat(),
                    day=now.astimezone(zone).date().isoformat(),
                    before=before,
                    before_rule=before_rule,
                    after=after,
                    after_rule=decision.rule_name,
                    sla_before_s=sla_before,
                    sla_after_s=decision.sla_seconds,
                )
            )
    before_load = Counter((r.day, r.before) for r in rows if r.before != "unrouted")
    after_load = Counter((r.day, r.after) for r in rows)
    load = [
        {"day": day, "who": who, "before": before_load[(day, who)], "after": after_load[(day, who)]}
        for day, who in sorted(set(before_load) | set(after_load))
    ]
    return Report(
        rules=candidate.path,
        version=candidate.version,
        items=len(rows),
        moved=[r for r in rows if r.before != r.after],
        sla_changed=[r for r in rows if r.sla_before_s is not None and r.sla_before_s != r.sla_after_s],
        load=load,
    )


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def render_table(report: Report) -> str:
    lines = [f"{report.rules} (version {report.version}): {report.items} items replayed, {len(report.moved)} would move"]
    if report.moved:
        lines += ["", "items that would move:"]
        lines += [
            f"  #{r.item_id} {r.created_time[:16]}  {r.before} ({r.before_rule or '-'}) -> {r.after} ({r.after_rule})"
            for r in report.moved
        ]
    lines += ["", "load per day (before -> after):"]
    lines += [f"  {row['day']}  {row['who']:<40} {row['before']:>4} -> {row['after']}" for row in report.load]
    if report.sla_changed:
        lines += ["", "first-response targets that change:"]
        lines += [
            f"  #{r.item_id}  {_duration(r.sla_before_s)} -> {_duration(r.sla_after_s)}  ({r.before_rule} -> {r.after_rule})"
            for r in report.sla_changed
        ]
    return "\n".join(lines)


async def replay_command(settings: Settings, rules_path: Path, since: str | None, fmt: str) -> int:
    """Load the candidate (refusing an invalid one), replay, print the report."""
    candidate = load_rules(rules_path)
    for warning in candidate.warnings:
        print(warning, file=sys.stderr)
    start = parse_since(since, settings.timezone) if since else None
    async with open_services(settings, load_model=False) as services:
        report = await replay(services, candidate, start)
    print(report.as_json() if fmt == "json" else render_table(report))
    return 0
