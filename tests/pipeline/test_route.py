"""route() as a plain function: first match wins, every condition, the trace, the default."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot import PROJECT_ROOT
from bot.domain import ReplyMode
from bot.pipeline.route import RoutingFacts, route
from bot.pipeline.rules import RuleSet, load_rules, parse_rules

RULES = """\
version: 1
defaults:
  sla: 4h
  reply_mode: public
experts:
  - {name: Chloé, email: chloe@example.com}
  - {name: Hugo, email: hugo@example.com}
  - {name: Sarah, email: sarah@example.com, language: en}
  - {name: Xavier, email: xavier@example.com}
rules:
  - name: keywords
    when:
      keywords: [decu, "Intoxication alimentaire"]
    assign: chloe@example.com
    reply_mode: private
    sla: 30m
  - name: sure complaints
    when:
      category: complaint
      min_confidence: 0.8
    assign: chloe@example.com
    reply_mode: private_with_public_ack
    sla: 2h
  - name: unsure complaints
    when:
      category: complaint
      max_confidence: 0.6
    assign: hugo@example.com
    sla: 3h
  - name: ads
    when:
      category: [ad_reaction, other]
      parent_is_ad: true
    assign: sarah@example.com
    sla: 8h
  - name: english feedback
    when:
      category: product_feedback
      language: en
    assign: sarah@example.com
    sla: 1d
  - name: x mentions
    when:
      platform: x
      kind: mention
    assign: xavier@example.com
    sla: 90m
  - name: the rest
    default: true
    assign: triage
    reply_mode: private
    sla: 1d
"""


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return parse_rules(RULES, "test_rules.yaml")


def facts(**changes: object) -> RoutingFacts:
    base = RoutingFacts(
        category="other",
        confidence=0.9,
        needs_review=False,
        language="fr",
        platform="facebook",
        kind="comment",
        parent_is_ad=False,
        text="Bonjour",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_first_match_wins(rules: RuleSet) -> None:
    # a confident complaint containing a keyword matches both "keywords" and "sure complaints"
    decision = route(facts(category="complaint", confidence=0.95, text="Très déçu"), rules)
    assert decision.rule_name == "keywords"
    assert decision.trace == ("keywords: matched",)


def test_category_and_min_confidence(rules: RuleSet) -> None:
    decision = route(facts(category="complaint", confidence=0.85), rules)
    assert decision.rule_name == "sure complaints"
    assert decision.expert_email == "chloe@example.com"


def test_min_confidence_is_inclusive(rules: RuleSet) -> None:
    assert route(facts(category="complaint", confidence=0.8), rules).rule_name == "sure complaints"


def test_max_confidence(rules: RuleSet) -> None:
    decision = route(facts(category="complaint", confidence=0.55), rules)
    assert decision.rule_name == "unsure complaints"
    assert decision.expert_email == "hugo@example.com"


def test_confidence_between_the_two_bounds_falls_to_the_default(rules: RuleSet) -> None:
    decision = route(facts(category="complaint", confidence=0.7), rules)
    assert decision.rule_name == "the rest"
    assert "sure complaints: no (confidence 0.70 < 0.8)" in decision.trace
    assert "unsure complaints: no (confidence 0.70 > 0.6)" in decision.trace


def test_parent_is_ad(rules: RuleSet) -> None:
    assert route(facts(category="ad_reaction", parent_is_ad=True), rules).rule_name == "ads"
    assert route(facts(category="other", parent_is_ad=True), rules).rule_name == "ads"
    not_ad = route(facts(category="ad_reaction", parent_is_ad=False), rules)
    assert not_ad.rule_name == "the rest"
    assert "ads: no (parent is not an ad)" in not_ad.trace


def test_language(rules: RuleSet) -> None:
    assert route(facts(category="product_feedback", language="en"), rules).rule_name == "english feedback"
    french = route(facts(category="product_feedback", language="fr"), rules)
    assert french.rule_name == "the rest"
    assert "english feedback: no (language is fr)" in french.trace


def test_platform_and_kind(rules: RuleSet) -> None:
    assert route(facts(platform="x", kind="mention"), rules).rule_name == "x mentions"
    on_facebook = route(facts(platform="facebook", kind="mention"), rules)
    assert on_facebook.rule_name == "the rest"
    assert "x mentions: no (platform is facebook)" in on_facebook.trace
    a_reply = route(facts(platform="x", kind="comment"), rules)
    assert a_reply.rule_name == "the rest"
    assert "x mentions: no (kind is comment)" in a_reply.trace


@pytest.mark.parametrize(
    "text",
    ["Déçu", "DÉÇU!!", "très déçue par la baguette", "decu", "Une INTOXICATION alimentaire ?", "intoxication  alimentaire".replace("  ", " ")],
)
def test_keywords_ignore_accents_and_case(rules: RuleSet, text: str) -> None:
    assert route(facts(text=text), rules).rule_name == "keywords"


def test_keyword_with_accents_in_the_rule_matches_plain_text() -> None:
    rules = parse_rules(RULES.replace("keywords: [decu,", "keywords: [Rassis, Crème brûlée,"), "r.yaml")
    assert route(facts(text="la creme brulee etait bonne"), rules).rule_name == "keywords"
    assert route(facts(text="Pain RASSIS"), rules).rule_name == "keywords"


def test_no_keyword_is_explained(rules: RuleSet) -> None:
    decision = route(facts(text="Très content"), rules)
    assert decision.trace[0] == "keywords: no (no keyword found)"


def test_needs_review_goes_to_triage_whatever_matches(rules: RuleSet) -> None:
    # without review this would match "keywords" (and "sure complaints")
    decision = route(facts(category="complaint", confidence=0.95, needs_review=True, text="déçu"), rules)
    assert decision.expert_email is None
    assert len(decision.trace) == 1
    assert "needs review" in decision.trace[0]
    assert "0.95" in decision.trace[0]


def test_trace_lists_every_rule_tried_with_its_reason(rules: RuleSet) -> None:
    decision = route(facts(category="other", confidence=0.9, text="Bonjour"), rules)
    assert decision.trace == (
        "keywords: no (no keyword found)",
        "sure complaints: no (category is other)",
        "unsure complaints: no (category is other)",
        "ads: no (parent is not an ad)",
        "english feedback: no (category is other)",
        "x mentions: no (platform is facebook)",
        "the rest: matched",
    )


def test_default_catches_the_rest(rules: RuleSet) -> None:
    decision = route(facts(category="other", platform="instagram", kind="message"), rules)
    assert decision.rule_name == "the rest"
    assert decision.expert_email is None  # assign: triage
    assert decision.reply_mode is ReplyMode.PRIVATE
    assert decision.sla_seconds == 86400


@pytest.mark.parametrize(
    ("changes", "rule", "mode", "sla"),
    [
        ({"text": "déçu"}, "keywords", ReplyMode.PRIVATE, 1800),
        ({"category": "complaint", "confidence": 0.9}, "sure complaints", ReplyMode.PRIVATE_WITH_PUBLIC_ACK, 7200),
        ({"category": "complaint", "confidence": 0.5}, "unsure complaints", ReplyMode.PUBLIC, 3 * 3600),  # defaults.reply_mode
        ({"category": "ad_reaction", "parent_is_ad": True}, "ads", ReplyMode.PUBLIC, 8 * 3600),
        ({"platform": "x", "kind": "mention"}, "x mentions", ReplyMode.PUBLIC, 90 * 60),
    ],
)
def test_sla_and_reply_mode_come_from_the_rule(
    rules: RuleSet, changes: dict[str, object], rule: str, mode: ReplyMode, sla: int
) -> None:
    decision = route(facts(**changes), rules)
    assert decision.rule_name == rule
    assert decision.reply_mode is mode
    assert decision.sla_seconds == sla
    assert decision.rules_version == rules.version


def test_rule_without_sla_uses_the_file_default() -> None:
    rules = parse_rules(RULES.replace("    sla: 3h\n", ""), "r.yaml")
    decision = route(facts(category="complaint", confidence=0.5), rules)
    assert decision.rule_name == "unsure complaints" and decision.sla_seconds == 4 * 3600


def test_shipped_rules_route_the_demo_categories() -> None:
    shipped = load_rules(PROJECT_ROOT / "routing_rules.yaml")
    for category in ("complaint", "product_feedback", "ad_reaction", "other"):
        decision = route(facts(category=category, confidence=0.9), shipped)
        assert decision.rule_name in {r.name for r in shipped.rules}
        assert decision.expert_email is None or decision.expert_email in shipped.experts
    assert route(facts(category="other"), shipped).rule_name == shipped.rules[-1].name
