"""route() as a plain function: first match wins, every condition, the trace, the default."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

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


# --- combinations and the newer conditions ------------------------------------------------

COMBOS = """\
version: 1
experts:
  - {name: Chloé, email: chloe@example.com}
  - {name: Hugo, email: hugo@example.com}
rules:
  - name: urgent
    when:
      any:
        - keywords: [intoxication]
        - regex: '\\b(rembours\\w*|avocat)\\b'
        - all:
            - category: complaint
            - min_followers: 10000
    assign: chloe@example.com
  - name: vip or page
    when:
      any:
        - vip: ["@MarieT", "123456"]
        - page: 104857
      not:
        category: [other, ad_reaction]
    assign: hugo@example.com
  - name: fresh complaints in office hours
    when:
      category: complaint
      max_age: 1h
      hours: {days: [mon, tue, wed, thu, fri], from: "09:00", to: "17:00", timezone: America/Montreal}
    assign: chloe@example.com
  - name: old ones
    when:
      min_age: 2d
    assign: hugo@example.com
  - name: night shift
    when:
      hours: {days: [fri], from: "22:00", to: "06:00", timezone: Europe/Paris}
    assign: hugo@example.com
  - {name: rest, default: true}
"""

# Thursday 3 December 2026, 10:00 in Montréal (15:00 UTC)
THURSDAY_10H = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def combos() -> RuleSet:
    return parse_rules(COMBOS, "combos.yaml")


def at(moment: datetime, age: timedelta = timedelta(minutes=5), **changes: object) -> RoutingFacts:
    return facts(now=moment, created_time=moment - age, **changes)


@pytest.mark.parametrize(
    "text",
    ["Intoxication après le brunch", "Je veux être REMBOURSÉ", "remboursement svp", "mon avocat vous écrira"],
)
def test_any_of_keywords_or_regex(combos: RuleSet, text: str) -> None:
    assert route(at(THURSDAY_10H, text=text, category="other"), combos).rule_name == "urgent"


def test_regex_is_case_and_accent_insensitive_and_respects_word_boundaries(combos: RuleSet) -> None:
    assert route(at(THURSDAY_10H, text="Déjà REMBOURSÉE", category="other"), combos).rule_name == "urgent"
    # "avocats" is not the word "avocat"; no other branch holds
    decision = route(at(THURSDAY_10H, text="des avocats frais", category="other"), combos)
    assert decision.rule_name == "rest"
    assert decision.trace[0].startswith("urgent: no (none of any: no keyword found; no regex match; ")


def test_nested_all_inside_any_with_followers(combos: RuleSet) -> None:
    big = at(THURSDAY_10H, category="complaint", author_followers=25_000)
    assert route(big, combos).rule_name == "urgent"
    small = route(at(THURSDAY_10H, category="complaint", author_followers=50), combos)
    assert small.rule_name != "urgent"
    assert "50 followers < 10000" in small.trace[0]
    unknown = route(at(THURSDAY_10H, category="complaint", author_followers=None), combos)
    assert "followers unknown" in unknown.trace[0]


@pytest.mark.parametrize(("author_id", "handle"), [("999", "mariet"), ("999", "@marieT"), ("123456", "")])
def test_vip_by_handle_or_id(combos: RuleSet, author_id: str, handle: str) -> None:
    decision = route(at(THURSDAY_10H, category="product_feedback", author_id=author_id, author_handle=handle), combos)
    assert decision.rule_name == "vip or page"


def test_page_by_channel_external_id(combos: RuleSet) -> None:
    assert route(at(THURSDAY_10H, category="product_feedback", channel="104857"), combos).rule_name == "vip or page"
    other_page = route(at(THURSDAY_10H, category="product_feedback", channel="555"), combos)
    assert other_page.rule_name == "rest"
    assert "vip or page: no (none of any: author is not a VIP; page is 555)" in other_page.trace


def test_not_excludes_and_says_why(combos: RuleSet) -> None:
    decision = route(at(THURSDAY_10H, category="other", author_handle="mariet"), combos)
    assert decision.rule_name == "rest"
    assert "vip or page: no (not: (category) holds)" in decision.trace


def test_business_hours_in_the_rule_time_zone(combos: RuleSet) -> None:
    assert route(at(THURSDAY_10H, category="complaint"), combos).rule_name == "fresh complaints in office hours"
    evening = THURSDAY_10H + timedelta(hours=8)  # 18:00 in Montréal
    decision = route(at(evening, category="complaint"), combos)
    assert decision.rule_name == "rest"
    assert "fresh complaints in office hours: no (outside hours (fri 00:00 Europe/Paris)" not in decision.trace
    assert "fresh complaints in office hours: no (outside hours (thu 18:00 America/Montreal))" in decision.trace
    saturday = THURSDAY_10H + timedelta(days=2)
    assert route(at(saturday, category="complaint"), combos).rule_name == "rest"


def test_hours_past_midnight(combos: RuleSet) -> None:
    friday_23h_paris = datetime(2026, 12, 4, 22, 0, tzinfo=UTC)
    saturday_3h_paris = datetime(2026, 12, 5, 2, 0, tzinfo=UTC)
    saturday_23h_paris = datetime(2026, 12, 5, 22, 0, tzinfo=UTC)
    assert route(at(friday_23h_paris), combos).rule_name == "night shift"
    assert route(at(saturday_3h_paris), combos).rule_name == "night shift"
    assert route(at(saturday_23h_paris), combos).rule_name == "rest"


def test_item_age(combos: RuleSet) -> None:
    stale = route(at(THURSDAY_10H, age=timedelta(hours=3), category="complaint"), combos)
    assert "fresh complaints in office hours: no (age 10800s > 3600s)" in stale.trace
    assert route(at(THURSDAY_10H, age=timedelta(days=3)), combos).rule_name == "old ones"
    unknown = route(facts(now=THURSDAY_10H, created_time=None, category="complaint"), combos)
    assert "fresh complaints in office hours: no (age unknown)" in unknown.trace


def test_hours_without_now_use_the_clock(combos: RuleSet) -> None:
    """route() stays usable without ``now``: time conditions then read the clock."""
    decision = route(facts(category="complaint", created_time=datetime.now(UTC)), combos)
    assert decision.rule_name in {"fresh complaints in office hours", "rest", "night shift"}


def test_campaign_matches_replies_to_a_given_post_or_in_its_thread() -> None:
    rules = parse_rules(
        """\
experts: [{name: Sarah, email: sarah@example.com}]
rules:
  - name: galette
    when: {campaign: ["104857_2001", 9988]}
    assign: sarah@example.com
  - {name: rest, default: true}
""",
        "c.yaml",
    )
    assert route(facts(parent_id="104857_2001", thread_id="104857_2001"), rules).rule_name == "galette"
    # a reply to a comment under the ad: its parent is the comment, its thread the ad
    assert route(facts(parent_id="104857_2001_77", thread_id="104857_2001"), rules).rule_name == "galette"
    assert route(facts(parent_id="9988", thread_id="9988"), rules).rule_name == "galette"  # a number in the file
    other = route(facts(parent_id="104857_3003", thread_id="104857_3003"), rules)
    assert other.rule_name == "rest" and other.trace[0] == "galette: no (not under a listed campaign)"
