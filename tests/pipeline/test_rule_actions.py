"""The rule actions (priority, template, notify, hide, auto_ack), the crisis condition,
business-hours SLA clocks and the escalation at 100 %: parsed, validated, and carried
out by the real worker on the database (SQLite and PostgreSQL) against the fake Graph API."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select, update

from bot import PROJECT_ROOT
from bot.channels.simulated.graph_api import FakeGraphAPI
from bot.errors import RulesError
from bot.kpi import events
from bot.kpi.calendar import BusinessCalendar
from bot.pipeline import queue
from bot.pipeline.flow import handlers
from bot.pipeline.route import RoutingFacts, route
from bot.pipeline.rules import load_rules, parse_rules
from bot.pipeline.worker import Worker
from bot.services import Services, open_services
from bot.store import db
from bot.pipeline.sla_clock import calendar_for, step_time
from bot.store.models import Assignment, Channel, Classification, Email, Expert, Item, Job, KpiEvent, Response, utcnow
from tests.conftest import make_settings

TEMPLATES = PROJECT_ROOT / "templates"
CM, CHLOE, NADIA, LEA = "cm@example.org", "chloe@example.org", "nadia@example.org", "lea@example.org"

RULES = f"""\
community_manager: {CM}
defaults: {{sla: 4h, priority: normal}}
experts:
  - {{name: Camille CM, email: {CM}}}
  - {{name: Chloé, email: {CHLOE}, timezone: America/Toronto, backup: {NADIA},
     working_hours: {{days: [mon, tue, wed, thu, fri], from: "09:00", to: "17:00"}}}}
  - {{name: Nadia, email: {NADIA}, timezone: America/Toronto}}
  - {{name: Léa, email: {LEA}, language: en}}
teams:
  - {{name: Qualité, members: [{CHLOE}, {NADIA}], lead: {NADIA}, timezone: America/Toronto}}
rules:
  - name: Urgences
    when: {{keywords: [allergie]}}
    assign: {CHLOE}
    priority: urgent
    template: allergie
    notify: [{LEA}, {CM}]
    auto_ack: true
    sla: 1h
  - name: Spam
    when: {{keywords: [bitcoin]}}
    assign: triage
    hide: true
  - name: Crise
    when: {{crisis: true}}
    assign: {{team: Qualité}}
    priority: high
  - name: Heures ouvrées
    when: {{keywords: [horaires]}}
    assign: {CHLOE}
    sla: {{target: 4h, business_hours: true}}
  - name: Retards
    when: {{keywords: [retard]}}
    assign: {CHLOE}
  - {{name: Le reste, default: true}}
"""


def test_actions_are_parsed() -> None:
    rules = parse_rules(RULES, "r.yaml", templates_dir=TEMPLATES)
    urgent, spam, crisis, business, late, rest = rules.rules
    assert (urgent.priority, urgent.template, urgent.notify, urgent.auto_ack) == ("urgent", "allergie", (LEA, CM), "auto_ack")
    assert urgent.sla_seconds == 3600 and not urgent.business_hours and not urgent.hide
    assert spam.hide and spam.auto_ack is None and spam.priority == "normal"
    assert crisis.when.crisis is True and crisis.team == "Qualité" and crisis.priority == "high"
    assert business.business_hours and business.sla_seconds == 4 * 3600
    assert late.sla_seconds == 4 * 3600 and not late.business_hours
    assert rest.priority == "normal" and rest.template is None
    hours = rules.experts[CHLOE].working_hours
    assert hours is not None and hours.days == frozenset(range(5)) and (hours.start.hour, hours.end.hour) == (9, 17)
    assert rules.teams["Qualité"].timezone == "America/Toronto"


def test_bare_duration_keeps_the_defaults_business_hours() -> None:
    text = RULES.replace("defaults: {sla: 4h, priority: normal}", "defaults: {sla: {target: 6h, business_hours: true}}")
    rules = parse_rules(text, "r.yaml")
    assert rules.rules[0].sla_seconds == 3600 and rules.rules[0].business_hours  # sla: 1h, counted in working hours
    assert rules.rules[-1].sla_seconds == 6 * 3600 and rules.rules[-1].business_hours


BROKEN_ACTIONS = f"""\
experts:
  - {{name: Chloé, email: {CHLOE}, working_hours: {{days: [lun], from: "9h", to: "17:00"}}}}
  - {{name: Nadia, email: {NADIA}, working_hours: {{from: "18:00", to: "09:00", tz: UTC}}}}
teams:
  - {{name: Q, members: [{CHLOE}], timezone: Mars/Olympus, working_hours: 9-17}}
defaults: {{priority: asap}}
rules:
  - name: A
    priority: critical
    template: Excuses!
    notify: [{NADIA}, bob@example.org]
    hide: sometimes
    auto_ack: 3
  - name: B
    template: inexistant
    auto_ack: nulle_part
    sla: {{target: soon, business_hours: maybe, clock: wall}}
    when: {{crisis: often}}
  - name: C
    hide: true
    auto_ack: true
    notify: 42
  - {{name: rest, default: true}}
"""


def test_every_action_mistake_is_listed_at_its_position(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(BROKEN_ACTIONS, encoding="utf-8")
    with pytest.raises(RulesError) as caught:
        load_rules(path, TEMPLATES)
    found = [
        (int(m[1]), int(m[2]), m[3])
        for m in (re.match(r"^.*?:(\d+):(\d+): (.*)$", line) for line in str(caught.value).splitlines())
        if m
    ]
    assert all(line.startswith(str(path)) for line in str(caught.value).splitlines())
    expected = [
        (2, 67, "working_hours.days must be a list of"),
        (2, 80, "working_hours.from must be a time"),
        (3, 89, "unknown field 'tz' in working_hours"),
        (3, 80, "working_hours.to must be after working_hours.from"),
        (5, 55, "unknown time zone 'Mars/Olympus'"),
        (5, 84, "working_hours must be a mapping"),
        (6, 22, "defaults.priority must be one of: low, normal, high, urgent"),
        (9, 15, "priority must be one of"),
        (10, 15, "template must be a template name"),
        (11, 33, "unknown expert 'bob@example.org' in notify"),
        (12, 11, "hide must be true or false"),
        (13, 15, "auto_ack must be true, false or a template name"),
        (15, 15, "unknown template 'inexistant': write replies/inexistant.fr.txt.j2, replies/inexistant.en.txt.j2"),
        (16, 15, "unknown template 'nulle_part'"),
        (17, 19, "sla.target must be a duration"),
        (17, 41, "sla.business_hours must be true or false"),
        (17, 48, "unknown field 'clock' in sla"),
        (18, 20, "crisis must be true or false"),
        (21, 5, "hide and auto_ack cannot go together"),
        (22, 13, "notify must be an expert's email or a list of them"),
    ]
    for line, col, words in expected:
        assert any(l == line and c == col and words in message for l, c, message in found), (
            f"no problem at {line}:{col} mentioning {words!r} in:\n{caught.value}"
        )
    assert len(found) == len(expected), str(caught.value)


def _facts(**overrides: object) -> RoutingFacts:
    values: dict[str, object] = dict(
        category="other", confidence=0.9, needs_review=False, language="fr", platform="facebook",
        kind="comment", parent_is_ad=False, text="Bonjour", now=datetime(2026, 12, 2, 15, tzinfo=UTC),
    )
    values.update(overrides)
    return RoutingFacts(**values)  # type: ignore[arg-type]


def test_crisis_condition_reads_the_flag_and_says_why_not() -> None:
    rules = parse_rules(RULES, "r.yaml")
    assert route(_facts(in_crisis=True), rules).rule_name == "Crise"
    calm = route(_facts(in_crisis=False), rules)
    assert calm.rule_name == "Le reste" and "Crise: no (not in a crisis)" in calm.trace
    negated = parse_rules(RULES.replace("when: {crisis: true}", "when: {not: {crisis: true}, keywords: [pain]}"), "r.yaml")
    assert route(_facts(in_crisis=False, text="du pain"), negated).rule_name == "Crise"
    assert route(_facts(in_crisis=True, text="du pain"), negated).rule_name == "Le reste"


def test_shipped_file_uses_every_action() -> None:
    shipped = load_rules(PROJECT_ROOT / "routing_rules.yaml", TEMPLATES)
    assert {r.priority for r in shipped.rules} >= {"urgent", "high", "low", "normal"}
    assert any(r.template for r in shipped.rules) and any(r.notify for r in shipped.rules)
    assert any(r.hide for r in shipped.rules) and any(r.auto_ack for r in shipped.rules)
    assert any(r.business_hours for r in shipped.rules)
    assert shipped.warnings == ()


# --- the pipeline ----------------------------------------------------------------------------


@dataclass
class Stack:
    services: Services
    worker: Worker
    graph: FakeGraphAPI
    post: str
    channel_id: int


@pytest.fixture
async def stack(tmp_path: Path, database_url: str, models_dir: Path) -> AsyncIterator[Stack]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    graph = FakeGraphAPI()
    graph.add_page("777", "Boulangerie Dorée", "page-token")
    post = graph.publish_post("777", "Notre galette est de retour")
    server = TestServer(graph.app)
    await server.start_server()
    settings = make_settings(tmp_path, database_url, models_dir, rules_file=rules)
    if not db.is_sqlite(database_url):
        db.upgrade(database_url)
    try:
        async with open_services(settings) as services:
            async with services.sessions.begin() as session:
                channel = Channel(platform="facebook", external_id="777", name="Boulangerie Dorée",
                                  credentials={"page_token": "page-token"}, api_url=str(server.make_url("")).rstrip("/"))
                session.add(channel)
                await session.flush()
                channel_id = channel.id
            yield Stack(services, Worker(services.sessions, handlers(services), concurrency=1), graph, post, channel_id)
    finally:
        await server.close()


async def _classified(stack: Stack, text: str, *, created: datetime | None = None, in_crisis: bool = False) -> int:
    """A comment on the fake Page, labelled, with its route job (no classifier involved)."""
    comment = stack.graph.user_comment(stack.post, {"id": "51", "name": "Julie"}, text)
    async with stack.services.sessions.begin() as session:
        item = Item(channel_id=stack.channel_id, platform="facebook", external_id=comment, kind="comment",
                    parent_external_id=stack.post, thread_external_id=stack.post, author_id="51", author_name="Julie",
                    text=text, language="fr", created_time=created or utcnow(), status="classified", in_crisis=in_crisis)
        session.add(item)
        await session.flush()
        session.add(Classification(item_id=item.id, label="complaint", confidence=0.9, model_version="test"))
        await queue.enqueue(session, "route", {"item_id": item.id}, dedupe_key=f"route:{item.id}:1")
        return item.id


async def _emails(services: Services, item_id: int) -> list[Email]:
    async with services.sessions() as session:
        return list((await session.scalars(select(Email).where(Email.item_id == item_id).order_by(Email.id))).all())


async def test_urgent_rule_sets_priority_template_fyi_and_acknowledges_once(stack: Stack) -> None:
    services = stack.services
    item_id = await _classified(stack, "Mon fils a fait une allergie après votre brioche")
    await stack.worker.drain()
    async with services.sessions() as session:
        [assignment] = (await session.scalars(select(Assignment).where(Assignment.item_id == item_id))).all()
        item = await session.get(Item, item_id)
        [ack] = (await session.scalars(select(Response).where(Response.item_id == item_id))).all()
        kpis = {k.name for k in (await session.scalars(select(KpiEvent).where(KpiEvent.item_id == item_id))).all()}
    assert (assignment.priority, assignment.template) == ("urgent", "allergie")
    assert "auto_ack: queued (auto_ack)" in assignment.trace and f"notify: {LEA}, {CM}" in assignment.trace
    # the acknowledgement is on the Page, recorded as sent, counted as public_ack_s; the item stays with Chloé
    assert ack.mode == "ack" and ack.status == "sent" and ack.idempotency_key == f"auto_ack:{item_id}"
    on_page = [c for c in stack.graph.comments.values() if c["message"].startswith("Bonjour Julie, merci pour votre message")]
    assert len(on_page) == 1
    assert item is not None and item.status == "notified"
    assert events.PUBLIC_ACK in kpis and events.FIRST_RESPONSE not in kpis
    mails = await _emails(services, item_id)
    assert sorted((m.kind, m.to_address) for m in mails) == [("fyi", CM), ("fyi", LEA), ("notification", CHLOE)]
    notification = next(m for m in mails if m.kind == "notification")
    assert "Priorité : urgente" in notification.body_text.replace("\u00a0", " ")
    assert "photo de l’étiquette" in notification.body_text  # the rule's template is the suggested reply
    fyi = next(m for m in mails if m.to_address == LEA)
    assert fyi.subject.startswith("[Relais] FYI") and f"/ui/items/{item_id}" in fyi.body_text

    # routed again (a relabel): no second acknowledgement, no second FYI copy
    async with services.sessions.begin() as session:
        await session.execute(update(Item).where(Item.id == item_id).values(status="classified"))
        await queue.enqueue(session, "route", {"item_id": item_id}, dedupe_key=f"route:{item_id}:2")
    await stack.worker.drain()
    async with services.sessions() as session:
        assert len((await session.scalars(select(Response).where(Response.item_id == item_id))).all()) == 1
        second = (await session.scalars(select(Assignment).where(Assignment.item_id == item_id).order_by(Assignment.id))).all()[-1]
    assert "auto_ack: already done" in second.trace
    assert len([c for c in stack.graph.comments.values() if c["message"].startswith("Bonjour Julie, merci")]) == 1
    assert sorted(m.kind for m in await _emails(services, item_id)).count("fyi") == 2


async def test_spam_rule_hides_the_comment_through_the_adapter(stack: Stack) -> None:
    item_id = await _classified(stack, "Gagnez des BITCOIN ici !!!")
    await stack.worker.drain()
    async with stack.services.sessions() as session:
        item = await session.get(Item, item_id)
        assignment = await session.scalar(select(Assignment).where(Assignment.item_id == item_id))
    assert item is not None and item.is_hidden and item.status == "triage"
    assert stack.graph.comments[item.external_id]["is_hidden"] is True
    assert assignment is not None and "hide: queued" in assignment.trace


async def test_crisis_flag_on_the_item_routes_to_the_team(stack: Stack) -> None:
    item_id = await _classified(stack, "Encore un problème", in_crisis=True)
    await stack.worker.drain()
    async with stack.services.sessions() as session:
        assignment = await session.scalar(select(Assignment).where(Assignment.item_id == item_id))
    assert assignment is not None and assignment.rule_name == "Crise" and assignment.priority == "high"


async def test_business_hours_sla_counts_the_experts_working_hours(stack: Stack) -> None:
    toronto = BusinessCalendar(timezone="America/Toronto", hours={d: ((540, 1020),) for d in range(5)}).zone
    saturday = datetime(2026, 11, 28, 10, 0, tzinfo=toronto)  # the clock starts on Monday at 09:00
    item_id = await _classified(stack, "Quels sont vos horaires ?", created=saturday)
    await stack.worker.drain()
    async with stack.services.sessions() as session:
        assignment = await session.scalar(select(Assignment).where(Assignment.item_id == item_id).order_by(Assignment.id))
    assert assignment is not None and assignment.sla_business_hours
    assert assignment.sla_due == datetime(2026, 11, 30, 13, 0, tzinfo=toronto)  # Monday 13:00, not Saturday 14:00
    # the reminders fall in working time too: 50 % of the 4 working hours is Monday 11:00
    calendar = calendar_for(stack.services.rules, CHLOE, None, "Europe/Paris")
    assert step_time(saturday, assignment.sla_due, 0.5, calendar) == datetime(2026, 11, 30, 11, 0, tzinfo=toronto)
    assert step_time(saturday, assignment.sla_due, 0.5, None) == saturday + (assignment.sla_due - saturday) / 2


async def test_escalation_hands_over_to_the_backup_once(stack: Stack) -> None:
    services = stack.services
    item_id = await _classified(stack, "Livraison en retard, personne ne répond", created=utcnow() - timedelta(hours=5))
    await stack.worker.drain()
    async with services.sessions.begin() as session:
        await session.execute(update(Job).where(Job.kind == "sla_check").values(run_at=utcnow()))
    await stack.worker.drain()
    async with services.sessions() as session:
        assignments = (await session.scalars(select(Assignment).where(Assignment.item_id == item_id).order_by(Assignment.id))).all()
        emails = {e.id: e.email for e in (await session.scalars(select(Expert))).all()}
        checks = (await session.scalars(select(Job).where(Job.kind == "sla_check"))).all()
    first, handed = assignments
    assert (emails[first.expert_id], emails[handed.expert_id]) == (CHLOE, NADIA)
    assert handed.assigned_by == "relais:escalation" and handed.sla_due == first.sla_due
    assert handed.trace[-1] == f"escalated at 100 %: {CHLOE} -> {NADIA} (backup)"
    assert all(j.payload["assignment_id"] == first.id for j in checks)  # the new assignment is not escalated again
    mails = [(m.kind, m.to_address) for m in await _emails(services, item_id)]
    assert mails == [("notification", CHLOE), ("escalated", NADIA), ("handover", CHLOE), ("escalation", CM)]

    # the escalation step again (a retried job) changes nothing
    async with services.sessions.begin() as session:
        await queue.enqueue(session, "sla_check", {"assignment_id": first.id, "step": 2}, dedupe_key="again")
    await stack.worker.drain()
    assert len(await _emails(services, item_id)) == 4


def _doc_example(heading: str) -> str:
    doc = (PROJECT_ROOT / "docs" / "routing-rules.md").read_text(encoding="utf-8")
    return doc.split(heading, 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]


def test_the_docs_show_the_shipped_file_and_a_valid_crisis_example() -> None:
    shipped = _doc_example("## Example: the bakery (shipped `routing_rules.yaml`)")
    assert shipped == (PROJECT_ROOT / "routing_rules.yaml").read_text(encoding="utf-8")
    bigger = parse_rules(_doc_example("## Example: the bakery with teams, hours and combinations"), "doc.yaml",
                         templates_dir=TEMPLATES)
    assert bigger.warnings == ()
    assert route(_facts(category="complaint", in_crisis=True, text="Encore rassis"), bigger).rule_name == "Crise en cours"
    ideas = next(r for r in bigger.rules if r.name == "Idées produit")
    assert ideas.business_hours and ideas.sla_seconds == 9 * 3600 and ideas.priority == "low"
    assert bigger.teams["Qualité"].working_hours is not None


async def test_reply_page_drafts_from_the_rules_template_and_ignores_the_acknowledgement(
    tmp_path: Path, database_url: str, models_dir: Path
) -> None:
    """The expert's reply page offers the rule's template, and an automatic acknowledgement
    already on the platform does not stop the expert from answering."""
    import aiohttp

    from bot.app import SERVICES, create_app
    from bot.notify import links

    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    settings = make_settings(tmp_path, database_url, models_dir, rules_file=rules)
    if not db.is_sqlite(database_url):
        db.upgrade(database_url)
    server = TestServer(create_app(settings, run_worker=False, run_scheduler=False), host="127.0.0.1")
    await server.start_server()
    try:
        services: Services = server.app[SERVICES]
        async with services.sessions.begin() as session:
            chloe = await session.scalar(select(Expert).where(Expert.email == CHLOE))
            assert chloe is not None
            item = Item(platform="facebook", external_id="1_2", kind="comment", author_name="Julie",
                        text="allergie !", language="fr", created_time=utcnow(), status="notified")
            session.add(item)
            await session.flush()
            session.add(Assignment(item_id=item.id, expert_id=chloe.id, rule_name="Urgences", rules_version="v",
                                   reply_mode="public", sla_due=utcnow() + timedelta(hours=1), template="allergie"))
            session.add(Response(item_id=item.id, mode="ack", text="Bien reçu", idempotency_key=f"auto_ack:{item.id}",
                                 status="sent"))
            token = await links.create_link(session, settings.secret_key.reveal(), item.id, chloe.id, 3600)
        async with aiohttp.ClientSession() as http:
            async with http.get(server.make_url(f"/reply/{token}")) as resp:
                page = await resp.text()
                assert resp.status == 200
            assert "photo de l’étiquette" in page  # templates/replies/allergie.fr.txt.j2
            form_key = re.search(r'name="form_key" value="([^"]+)"', page)
            assert form_key is not None
            async with http.post(server.make_url(f"/reply/{token}"), allow_redirects=False,
                                 data={"text": "Nous vous appelons.", "mode": "public", "form_key": form_key[1]}) as resp:
                assert resp.status in (302, 303), await resp.text()
        async with services.sessions() as session:
            replies = (await session.scalars(select(Response).where(Response.item_id == item.id).order_by(Response.id))).all()
        assert [r.mode for r in replies] == ["ack", "public"]
    finally:
        await server.close()
