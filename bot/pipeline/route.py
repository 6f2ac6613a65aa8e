"""Routing: which expert answers an item, how, and by when. A plain function.

The stage that stores the decision is :func:`route_item` below.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from bot.domain import RouteDecision
from bot.kpi import events
from bot.pipeline import queue
from bot.pipeline.classify import parent_is_ad
from bot.pipeline.rules import Condition, Rule, RuleSet, fold
from bot.services import Services
from bot.store.models import Assignment, Expert, Item, utcnow
from bot.store.queries import latest_classification


@dataclass(frozen=True)
class RoutingFacts:
    """What the rules may look at."""

    category: str
    confidence: float
    needs_review: bool
    language: str
    platform: str
    kind: str
    parent_is_ad: bool
    text: str


def _mismatch(when: Condition, facts: RoutingFacts, folded_text: str) -> str | None:
    """Why ``when`` does not hold for ``facts``, or None when it does."""
    if when.categories is not None and facts.category not in when.categories:
        return f"category is {facts.category}"
    if when.languages is not None and facts.language not in when.languages:
        return f"language is {facts.language}"
    if when.platforms is not None and facts.platform not in when.platforms:
        return f"platform is {facts.platform}"
    if when.kinds is not None and facts.kind not in when.kinds:
        return f"kind is {facts.kind}"
    if when.min_confidence is not None and facts.confidence < when.min_confidence:
        return f"confidence {facts.confidence:.2f} < {when.min_confidence}"
    if when.max_confidence is not None and facts.confidence > when.max_confidence:
        return f"confidence {facts.confidence:.2f} > {when.max_confidence}"
    if when.parent_is_ad is not None and facts.parent_is_ad != when.parent_is_ad:
        return "parent is an ad" if facts.parent_is_ad else "parent is not an ad"
    if when.keywords and not any(k in folded_text for k in when.keywords):
        return "no keyword found"
    return None


def _decision(rule: Rule, rules: RuleSet, trace: list[str], *, triage: bool = False) -> RouteDecision:
    return RouteDecision(
        rule_name=rule.name,
        rules_version=rules.version,
        expert_email=None if triage else rule.expert_email,
        reply_mode=rule.reply_mode,
        sla_seconds=rule.sla_seconds,
        trace=tuple(trace),
    )


def route(facts: RoutingFacts, rules: RuleSet) -> RouteDecision:
    """First matching rule wins; an item that needs review goes to triage."""
    default = rules.rules[-1]
    if facts.needs_review:
        return _decision(default, rules, [f"needs review (confidence {facts.confidence:.2f}): triage queue"], triage=True)
    folded = fold(facts.text)
    trace: list[str] = []
    for rule in rules.rules:
        why_not = None if rule.is_default else _mismatch(rule.when, facts, folded)
        if why_not is None:
            trace.append(f"{rule.name}: matched")
            return _decision(rule, rules, trace)
        trace.append(f"{rule.name}: no ({why_not})")
    raise AssertionError("the last rule is the default and always matches")  # parse_rules ensures it


async def route_item(services: Services, item_id: int) -> None:
    """Store the routing decision for a classified item and queue the expert's email."""
    async with services.sessions.begin() as session:
        item = await session.get(Item, item_id, with_for_update=True)
        if item is None or item.status not in ("classified", "needs_review"):
            return  # already routed (a retried job), removed, or answered
        label = await latest_classification(session, item.id)
        if label is None:
            return
        facts = RoutingFacts(
            category=label.label,
            confidence=label.confidence,
            needs_review=item.status == "needs_review",
            language=item.language or "other",
            platform=item.platform,
            kind=item.kind,
            parent_is_ad=await parent_is_ad(session, item),
            text=item.text,
        )
        decision = route(facts, services.rules)
        expert = None
        if decision.expert_email:
            expert = await session.scalar(select(Expert).where(Expert.email == decision.expert_email))
        now = utcnow()
        assignment = Assignment(
            item_id=item.id,
            expert_id=expert.id if expert else None,
            rule_name=decision.rule_name,
            rules_version=decision.rules_version,
            reply_mode=decision.reply_mode.value,
            sla_due=item.created_time + timedelta(seconds=decision.sla_seconds),
            trace=list(decision.trace),
            assigned_at=now,
        )
        session.add(assignment)
        await session.flush()
        if expert is None:
            item.status = "triage"
        else:
            item.status = "routed"
            await events.record(
                session, events.TIME_TO_ASSIGNMENT, item, events.elapsed(item.created_time, now), now, expert_id=expert.id
            )
            await queue.enqueue(session, "notify", {"assignment_id": assignment.id}, dedupe_key=f"notify:{assignment.id}")
    services.wake()
    services.announce(
        "item.routed",
        {"item_id": item_id, "rule": decision.rule_name, "expert": decision.expert_email or "triage"},
    )
