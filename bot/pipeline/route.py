"""Routing: which expert answers an item, how, and by when. A plain function.

:func:`route` tries the rules of a :class:`RuleSet` in order against
:class:`RoutingFacts`. Each rule's conditions are compiled once per RuleSet
(:func:`compile_condition`) into one function that returns None (the rule
holds) or the reason it does not, so the trace says why each rule was skipped.
The text is folded, and each keyword looked for, once per call. The stage that
stores the decision (and picks a team member, :mod:`bot.pipeline.teams`) is
:func:`route_item` below.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from bot.domain import RouteDecision
from bot.kpi import events
from bot.pipeline import queue
from bot.pipeline.classify import ad_parents
from bot.pipeline.rules import DAYS, Condition, Hours, Rule, RuleSet, fold
from bot.pipeline.sla_clock import calendar_for, due_time
from bot.services import Services
from bot.store.models import Assignment, Channel, Expert, Item, utcnow
from bot.store.queries import latest_classifications


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
    author_id: str = ""
    author_handle: str = ""
    author_followers: int | None = None
    channel: str = ""  # the channel's external id (Page id, X account id)
    parent_id: str = ""  # the external id of the post or comment it answers
    thread_id: str = ""  # the external id of its thread's root post
    created_time: datetime | None = None  # the platform's post time
    now: datetime | None = None  # the routing time (None: the clock, when a rule needs it)
    in_crisis: bool = False  # items.in_crisis: a crisis incident covers the item


class _Ctx:
    """One route() call: the facts, and what is derived from them only when a rule needs it."""

    __slots__ = ("_folded", "_now", "_present", "facts", "keywords")

    def __init__(self, facts: RoutingFacts, keywords: tuple[str, ...], folded: str | None = None) -> None:
        self.facts = facts
        self.keywords = keywords  # every keyword of the rules being tried
        self._folded = folded
        self._now: datetime | None = facts.now
        self._present: frozenset[str] | None = None

    @property
    def present(self) -> frozenset[str]:
        """The keywords found in the text, each looked for once per call whatever the number of rules."""
        if self._present is None:
            folded = self.folded
            self._present = frozenset(k for k in self.keywords if k in folded)
        return self._present

    @property
    def folded(self) -> str:
        if self._folded is None:
            self._folded = fold(self.facts.text)
        return self._folded

    @property
    def now(self) -> datetime:
        if self._now is None:
            self._now = datetime.now(UTC)
        return self._now


Check = Callable[[_Ctx], str | None]


def _in_hours(hours: Hours, moment: datetime) -> bool:
    local = moment.astimezone(hours.zone)
    clock, day = local.time(), local.weekday()
    if hours.start < hours.end:
        return day in hours.days and hours.start <= clock < hours.end
    # past midnight: the evening of a listed day, or the early hours of the day after one
    return (day in hours.days and clock >= hours.start) or ((day - 1) % 7 in hours.days and clock < hours.end)


def _age(ctx: _Ctx) -> float | None:
    created = ctx.facts.created_time
    return None if created is None else (ctx.now - created).total_seconds()


def _leaves(when: Condition) -> list[Check | tuple[str, object]]:
    """One step per condition set in ``when``, cheapest first: a closure, or for the
    simple ones a line of Python and the value it names (see :func:`compile_condition`)."""
    checks: list[Check | tuple[str, object]] = []
    for attr, values in (
        ("category", when.categories), ("language", when.languages),
        ("platform", when.platforms), ("kind", when.kinds),
    ):
        if values is not None:
            checks.append((f"if f.{attr} not in {{v}}: return '{attr} is ' + f.{attr}", values))
    if when.pages is not None:
        checks.append(("if f.channel not in {v}: return 'page is ' + (f.channel or 'unknown')", when.pages))
    if when.min_confidence is not None:
        low = when.min_confidence
        checks.append((f"if f.confidence < {low!r}: return f'confidence {{{{f.confidence:.2f}}}} < {low!r}'", None))
    if when.max_confidence is not None:
        high = when.max_confidence
        checks.append((f"if f.confidence > {high!r}: return f'confidence {{{{f.confidence:.2f}}}} > {high!r}'", None))
    if when.parent_is_ad is not None:
        checks.append(
            ("if f.parent_is_ad != {v}: return 'parent is an ad' if f.parent_is_ad else 'parent is not an ad'", when.parent_is_ad)
        )
    if when.crisis is not None:
        checks.append(("if f.in_crisis != {v}: return 'in a crisis' if f.in_crisis else 'not in a crisis'", when.crisis))
    if when.campaigns is not None:
        checks.append(("if f.parent_id not in {v} and f.thread_id not in {v}: return 'not under a listed campaign'", when.campaigns))
    if when.min_followers is not None:
        least = when.min_followers

        def followers(ctx: _Ctx) -> str | None:
            n = ctx.facts.author_followers
            if n is None:
                return "followers unknown" if least > 0 else None
            return None if n >= least else f"{n} followers < {least}"

        checks.append(followers)
    if when.vip is not None:
        vip = when.vip

        def is_vip(ctx: _Ctx) -> str | None:
            f = ctx.facts
            if fold(f.author_id) in vip or (f.author_handle and fold(f.author_handle).lstrip("@") in vip):
                return None
            return "author is not a VIP"

        checks.append(is_vip)
    if when.min_age is not None or when.max_age is not None:
        oldest, youngest = when.max_age, when.min_age

        def age(ctx: _Ctx) -> str | None:
            seconds = _age(ctx)
            if seconds is None:
                return "age unknown"
            if youngest is not None and seconds < youngest:
                return f"age {int(seconds)}s < {youngest}s"
            if oldest is not None and seconds > oldest:
                return f"age {int(seconds)}s > {oldest}s"
            return None

        checks.append(age)
    if when.hours is not None:
        hours = when.hours

        def within(ctx: _Ctx) -> str | None:
            if _in_hours(hours, ctx.now):
                return None
            local = ctx.now.astimezone(hours.zone)
            return f"outside hours ({DAYS[local.weekday()]} {local:%H:%M} {hours.timezone})"

        checks.append(within)
    if when.keywords:
        checks.append(("if {v}.isdisjoint(ctx.present): return 'no keyword found'", frozenset(when.keywords)))
    if when.regex:
        patterns = when.regex

        def has_match(ctx: _Ctx) -> str | None:
            folded = ctx.folded
            for pattern in patterns:
                if pattern.search(folded):
                    return None
            return "no regex match"

        checks.append(has_match)
    for sub in when.all_of:
        checks.append(compile_condition(sub))
    if when.any_of:
        options = [compile_condition(sub) for sub in when.any_of]

        def any_of(ctx: _Ctx) -> str | None:
            reasons = []
            for option in options:
                why = option(ctx)
                if why is None:
                    return None
                reasons.append(why)
            return "none of any: " + "; ".join(reasons)

        checks.append(any_of)
    for sub in when.none_of:
        checks.append(_negation(compile_condition(sub), _describe(sub)))
    return checks


def _negation(excluded: Check, label: str) -> Check:
    def check(ctx: _Ctx) -> str | None:
        return None if excluded(ctx) is not None else f"not: {label} holds"

    return check


def _describe(when: Condition) -> str:
    """A short name for a condition in the trace: the fields it sets."""
    names = {
        "categories": "category", "languages": "language", "platforms": "platform", "kinds": "kind",
        "pages": "page", "min_confidence": "min_confidence", "max_confidence": "max_confidence",
        "parent_is_ad": "parent_is_ad", "crisis": "crisis", "campaigns": "campaign", "min_followers": "min_followers", "vip": "vip",
        "min_age": "min_age", "max_age": "max_age", "hours": "hours", "keywords": "keywords",
        "regex": "regex", "all_of": "all", "any_of": "any", "none_of": "not",
    }
    empty = Condition()
    parts = [label for attr, label in names.items() if getattr(when, attr) != getattr(empty, attr)]
    return "(" + ", ".join(parts) + ")" if parts else "(everything)"


def compile_condition(when: Condition) -> Check:
    """``when`` as one function: None when it holds, else the first reason it does not.

    The simple conditions become lines of one generated function (as dataclasses and
    namedtuple generate theirs), so a rule costs one call however many it sets. Sets and
    callables are passed as names; only the confidence bounds, floats checked by the
    loader, are written into the source (as their repr)."""
    lines = ["def check(ctx):", "    f = ctx.facts"]
    names: dict[str, object] = {}
    for n, step in enumerate(_leaves(when)):
        name = f"v{n}"
        if isinstance(step, tuple):
            line, names[name] = step
            lines.append("    " + line.format(v=name))
        else:
            names[name] = step
            lines += [f"    why = {name}(ctx)", "    if why is not None: return why"]
    lines.append("    return None")
    exec("\n".join(lines), names)  # noqa: S102 - our own source, built above from constant snippets
    return names["check"]  # type: ignore[return-value]


def _keywords(when: Condition) -> set[str]:
    found = set(when.keywords)
    for sub in (*when.all_of, *when.any_of, *when.none_of):
        found |= _keywords(sub)
    return found


_Plan = tuple[tuple[tuple[Rule, Check | None, str, str], ...], tuple[str, ...]]


def _plan(rules: RuleSet) -> _Plan:
    """Per rule: its compiled check (None for the default) and trace prefixes; and every
    keyword of the file. Built on first use and kept on the RuleSet."""
    plan = rules.cache.get("plan")
    if plan is None:
        steps = tuple(
            (rule, None if rule.is_default else compile_condition(rule.when), f"{rule.name}: no (", f"{rule.name}: matched")
            for rule in rules.rules
        )
        keywords: set[str] = set()
        for rule in rules.rules:
            keywords |= _keywords(rule.when)
        plan = rules.cache["plan"] = (steps, tuple(sorted(keywords)))
    return plan  # type: ignore[no-any-return]


_COMPILED: dict[int, tuple[Condition, Check, tuple[str, ...]]] = {}


def _mismatch(when: Condition, facts: RoutingFacts, folded_text: str) -> str | None:
    """Why ``when`` does not hold for ``facts``, or None when it does (compiled once per condition)."""
    entry = _COMPILED.get(id(when))
    if entry is None or entry[0] is not when:
        if len(_COMPILED) > 10_000:
            _COMPILED.clear()
        entry = _COMPILED[id(when)] = (when, compile_condition(when), tuple(_keywords(when)))
    return entry[1](_Ctx(facts, entry[2], folded_text))


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
    """First matching rule wins; an item that needs review goes to triage.

    A rule that assigns a team gives ``expert_email=None``: the stage
    (:func:`route_item`) picks the member, see :mod:`bot.pipeline.teams`."""
    default = rules.rules[-1]
    if facts.needs_review:
        return _decision(default, rules, [f"needs review (confidence {facts.confidence:.2f}): triage queue"], triage=True)
    steps, keywords = _plan(rules)
    ctx = _Ctx(facts, keywords)
    trace: list[str] = []
    append = trace.append
    for rule, check, no, matched in steps:
        if check is None:
            append(matched)
            return _decision(rule, rules, trace)
        why = check(ctx)
        if why is None:
            append(matched)
            return _decision(rule, rules, trace)
        append(f"{no}{why})")
    raise AssertionError("the last rule is the default and always matches")  # parse_rules ensures it


def facts_of(item: Item, category: str, confidence: float, *, needs_review: bool, is_reply_to_ad: bool, channel: str, now: datetime) -> RoutingFacts:
    """The routing facts of a stored item (the route stage and the replay use the same)."""
    return RoutingFacts(
        category=category,
        confidence=confidence,
        needs_review=needs_review,
        language=item.language or "other",
        platform=item.platform,
        kind=item.kind,
        parent_is_ad=is_reply_to_ad,
        text=item.text,
        author_id=item.author_id or "",
        author_handle=item.author_handle or "",
        author_followers=item.author_followers,
        channel=channel,
        parent_id=item.parent_external_id or "",
        thread_id=item.thread_external_id or "",
        created_time=item.created_time,
        now=now,
        in_crisis=bool(item.in_crisis),
    )


async def route_item(services: Services, item_id: int) -> None:
    await route_items(services, [item_id])


async def route_items(services: Services, ids: Sequence[int]) -> None:
    """Store the routing decision of each classified item and queue the experts' emails
    (one ``notify`` job for the batch). Idempotent: an item no longer ``classified`` or
    ``needs_review`` (a retried job, removed, answered) is skipped. The experts' loads and
    latest assignments are read once per batch and kept up to date as it assigns."""
    from bot.pipeline.rule_effects import apply_effects
    from bot.pipeline.teams import TeamState, choose, people_of

    routed: list[tuple[int, str, str]] = []
    async with services.sessions.begin() as session:
        items = [
            i for i in (await session.scalars(select(Item).where(Item.id.in_(ids)).order_by(Item.id).with_for_update())).all()
            if i.status in ("classified", "needs_review")
        ]
        if not items:
            return
        labels = await latest_classifications(session, [i.id for i in items])
        items = [i for i in items if i.id in labels]
        channel_ids = {i.channel_id for i in items if i.channel_id}
        channels = {c.id: c for c in (await session.scalars(select(Channel).where(Channel.id.in_(channel_ids)))).all()} if channel_ids else {}
        ads = await ad_parents(session, items)
        now = utcnow()
        rules = services.rules  # one version for the whole decision, even if a reload swaps it
        by_name = {r.name: r for r in rules.rules}
        decided = []
        for item in items:
            channel = channels.get(item.channel_id) if item.channel_id else None
            label = labels[item.id]
            facts = facts_of(
                item, label.label, label.confidence, needs_review=item.status == "needs_review",
                is_reply_to_ad=ads[item.id], channel=channel.external_id if channel else "", now=now,
            )
            decided.append((item, channel, facts, route(facts, rules)))
        state = await TeamState.load(session, {e for _, _, f, d in decided if not f.needs_review for e in people_of(rules, by_name[d.rule_name])})
        planned: list[tuple[Item, Channel | None, Assignment, Rule, Expert | None, bool]] = []
        for item, channel, facts, decision in decided:
            trace = list(decision.trace)
            rule = by_name[decision.rule_name]
            expert = None
            if not facts.needs_review:
                expert, why = choose(state, rules, rule, now, services.settings.timezone)
                trace += why
                if expert is not None:
                    state.assigned(expert)
            calendar = None
            if rule.business_hours:
                calendar = calendar_for(rules, expert.email if expert else None, rule.team, services.settings.timezone)
            assignment = Assignment(
                item_id=item.id,
                expert_id=expert.id if expert else None,
                rule_name=decision.rule_name,
                rules_version=decision.rules_version,
                reply_mode=decision.reply_mode.value,
                sla_due=due_time(item.created_time, decision.sla_seconds, calendar),
                sla_business_hours=calendar is not None,
                priority=rule.priority,
                template=rule.template,
                trace=trace,
                assigned_at=now,
            )
            planned.append((item, channel, assignment, rule, expert, facts.needs_review))
        session.add_all([p[2] for p in planned])
        await session.flush()
        lags = []
        to_notify = []
        for item, channel, assignment, rule, expert, review in planned:
            if not review and rule.has_effects:  # an item the model is unsure of is never hidden or answered by a rule
                assignment.trace = list(assignment.trace) + await apply_effects(
                    services, session, item, assignment, rule, channel.name if channel else item.platform
                )
            if expert is None:
                item.status = "triage"
            else:
                item.status = "routed"
                lags.append(events.row(events.TIME_TO_ASSIGNMENT, item.id, item.channel_id, events.elapsed(item.created_time, now), now, expert_id=expert.id))
                to_notify.append(assignment.id)
            routed.append((item.id, rule.name, expert.email if expert else "triage"))
        await events.record_many(session, lags)
        if to_notify:
            await queue.enqueue_chunks(session, "notify", "assignment_ids", to_notify, "notify-batch")
    services.wake()
    for item_id, rule_name, who in routed:
        services.announce("item.routed", {"item_id": item_id, "rule": rule_name, "expert": who})
