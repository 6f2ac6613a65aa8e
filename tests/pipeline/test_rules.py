"""The routing rules loader: the shipped file loads; every mistake is reported at its line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot import PROJECT_ROOT
from bot.domain import ReplyMode
from bot.errors import RulesError
from bot.pipeline.rules import fold, load_rules, parse_duration, parse_rules

SHIPPED = PROJECT_ROOT / "routing_rules.yaml"
PROBLEM = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<message>.+)$")

GOOD = """\
version: 1
defaults:
  sla: 4h
  reply_mode: public
experts:
  - name: Chloé Tremblay
    email: chloe@example.com
rules:
  - name: Plaintes
    when:
      category: complaint
    assign: chloe@example.com
    sla: 2h
  - name: Le reste
    default: true
    assign: triage
"""


def problems(exc: RulesError) -> list[tuple[str, int, int, str]]:
    """Every line of the error, parsed; fails if one is not ``file:line:column: message``."""
    found = []
    for line in str(exc).splitlines():
        m = PROBLEM.match(line)
        assert m, f"not a file:line:column: message line: {line!r}"
        found.append((m["file"], int(m["line"]), int(m["col"]), m["message"]))
    return found


def write(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_rules_load() -> None:
    rules = load_rules(SHIPPED)
    assert rules.rules, "the shipped file has rules"
    assert rules.rules[-1].is_default
    assert not any(r.is_default for r in rules.rules[:-1])
    assert rules.experts
    for rule in rules.rules:
        assert rule.expert_email is None or rule.expert_email in rules.experts
        assert rule.sla_seconds > 0
    assert re.fullmatch(r"[0-9a-f]{12}", rules.version)


def test_good_file_is_parsed(tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path, GOOD))
    first, default = rules.rules
    assert first.name == "Plaintes" and first.expert_email == "chloe@example.com"
    assert first.sla_seconds == 2 * 3600 and first.reply_mode is ReplyMode.PUBLIC
    assert first.when.categories == frozenset({"complaint"})
    assert default.is_default and default.expert_email is None and default.sla_seconds == 4 * 3600
    assert rules.experts["chloe@example.com"].name == "Chloé Tremblay"


BROKEN = """\
version: 1
colour: blue
defaults:
  sla: 4h
experts:
  - name: Chloé
    email: chloe@example.com
rules:
  - name: A
    when:
      category: complaint
      min_confidence: high
      mood: angry
    assign: chloe@example.com
    urgency: 1
  - name: B
    when:
      category: complaints
      platform: tiktok
    assign: nobody@example.com
    sla: soon
  - name: A
    default: true
  - name: C
    assign: triage
"""


def test_every_mistake_is_listed_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, BROKEN)
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    found = problems(caught.value)
    assert all(file == str(path) for file, *_ in found)
    expected = [
        (2, 1, "colour"),  # unknown top-level field
        (9, 3, "missing default"),  # the rules list starts here; its last rule is not the default
        (12, 23, "min_confidence"),  # bad type
        (13, 7, "mood"),  # unknown field in when
        (15, 5, "urgency"),  # unknown field in a rule
        (18, 17, "complaints"),  # unknown category
        (19, 17, "tiktok"),  # unknown platform
        (20, 13, "nobody@example.com"),  # unknown expert in assign
        (21, 10, "sla"),  # invalid sla
        (22, 11, "used twice"),  # duplicate rule name
        (22, 1, "only the last rule may be the default"),  # default not last
    ]
    for line, col, words in expected:
        assert any(
            l == line and c == col and words in message for _, l, c, message in found
        ), f"no problem at {line}:{col} mentioning {words!r} in:\n{caught.value}"
    assert len(found) == len(expected), str(caught.value)


def test_problems_are_sorted_by_position(tmp_path: Path) -> None:
    with pytest.raises(RulesError) as caught:
        load_rules(write(tmp_path, BROKEN))
    positions = [(line, col) for _, line, col, _ in problems(caught.value)]
    assert positions == sorted(positions)


def test_unknown_field_in_an_expert(tmp_path: Path) -> None:
    text = GOOD.replace("    email: chloe@example.com\n", "    email: chloe@example.com\n    phone: 123\n")
    with pytest.raises(RulesError) as caught:
        load_rules(write(tmp_path, text))
    [(_, line, col, message)] = problems(caught.value)
    assert (line, col) == (8, 5) and "phone" in message


def test_unknown_field_in_defaults(tmp_path: Path) -> None:
    """A typo under defaults (replymode) must not be silently ignored, like everywhere else."""
    text = GOOD.replace("  reply_mode: public\n", "  replymode: private\n")
    with pytest.raises(RulesError) as caught:
        load_rules(write(tmp_path, text))
    [(_, line, _, message)] = problems(caught.value)
    assert line == 4 and "replymode" in message


@pytest.mark.parametrize(
    ("old", "new", "line", "words"),
    [
        ("      category: complaint\n", "      category: complaint\n      max_confidence: 1.5\n", 12, "max_confidence"),
        ("      category: complaint\n", "      category: complaint\n      min_confidence: true\n", 12, "min_confidence"),
        ("      category: complaint\n", "      category: complaint\n      kind: story\n", 12, "story"),
        ("      category: complaint\n", "      category: complaint\n      parent_is_ad: maybe\n", 12, "parent_is_ad"),
        ("      category: complaint\n", "      category: []\n", 11, "category"),
        ("    sla: 2h\n", "    sla: -5\n", 13, "sla"),
        ("    sla: 2h\n", "    sla: 2 weeks\n", 13, "sla"),
        ("    sla: 2h\n", "    reply_mode: shout\n", 13, "reply_mode"),
        ("    default: true\n", "    default: yes please\n", 15, "default"),
        ("  sla: 4h\n", "  sla: whenever\n", 3, "defaults.sla"),
    ],
)
def test_single_mistake_is_reported_at_its_line(
    tmp_path: Path, old: str, new: str, line: int, words: str
) -> None:
    assert old in GOOD
    with pytest.raises(RulesError) as caught:
        load_rules(write(tmp_path, GOOD.replace(old, new, 1)))
    found = problems(caught.value)
    assert any(l == line and words in message for _, l, _, message in found), str(caught.value)


def test_invalid_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "rules:\n  - name: A\n    when: {category: complaint\n  - name: B\n")
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    [(file, line, _, message)] = problems(caught.value)
    assert file == str(path) and line >= 3 and "YAML" in message


def test_tab_indentation_is_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(RulesError) as caught:
        load_rules(write(tmp_path, "rules:\n\t- name: A\n"))
    [(_, line, _, message)] = problems(caught.value)
    assert line == 2 and "YAML" in message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a sentence\n", "", "42\n"])
def test_document_that_is_not_a_mapping(tmp_path: Path, text: str) -> None:
    with pytest.raises(RulesError) as caught:
        load_rules(write(tmp_path, text))
    [(_, line, col, message)] = problems(caught.value)
    assert (line, col) == (1, 1) and "mapping" in message


def test_unhashable_key_is_reported_not_a_crash(tmp_path: Path) -> None:
    """``[a, b]: x`` is valid YAML but no field name: a RulesError, not a TypeError."""
    with pytest.raises(RulesError):
        load_rules(write(tmp_path, GOOD + "[a, b]: x\n"))


@pytest.mark.parametrize("rules_value", ["rules: []\n", "rules:\n", "rules: nothing\n"])
def test_empty_rules(tmp_path: Path, rules_value: str) -> None:
    text = GOOD.split("rules:\n")[0] + rules_value
    with pytest.raises(RulesError) as caught:
        load_rules(write(tmp_path, text))
    found = problems(caught.value)
    assert any(l == 8 and "non-empty list" in message for _, l, _, message in found), str(caught.value)


def test_missing_rules_key(tmp_path: Path) -> None:
    text = GOOD.split("rules:\n")[0]
    with pytest.raises(RulesError, match="non-empty list"):
        load_rules(write(tmp_path, text))


def test_missing_default_alone(tmp_path: Path) -> None:
    text = GOOD.replace("    default: true\n", "")
    with pytest.raises(RulesError) as caught:
        load_rules(write(tmp_path, text))
    [(_, line, _, message)] = problems(caught.value)
    assert line == 9 and "missing default" in message


def test_missing_file() -> None:
    with pytest.raises(RulesError, match="does not exist"):
        load_rules(Path("/nonexistent/rules.yaml"))


def test_version_changes_when_the_file_changes(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    first = load_rules(path).version
    assert load_rules(path).version == first  # same text, same version
    path.write_text(GOOD.replace("sla: 2h", "sla: 3h"), encoding="utf-8")
    second = load_rules(path)
    assert second.version != first
    assert second.rules[0].sla_seconds == 3 * 3600


def test_version_depends_on_content_not_path(tmp_path: Path) -> None:
    assert load_rules(write(tmp_path, GOOD, "a.yaml")).version == load_rules(write(tmp_path, GOOD, "b.yaml")).version


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("2h", 7200), ("30m", 1800), ("30min", 1800), ("1d", 86400), ("90s", 90), ("1.5h", 5400), (600, 600)],
)
def test_parse_duration(value: object, seconds: int) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "2 weeks", "-1h", 0, -5, True, None, ""])
def test_parse_duration_refuses(value: object) -> None:
    assert parse_duration(value) is None


def test_keywords_are_folded() -> None:
    text = GOOD.replace("      category: complaint\n", "      keywords: [Déçu, RASSIS]\n")
    rules = parse_rules(text, "mem.yaml")
    assert rules.rules[0].when.keywords == ("decu", "rassis")
    assert fold("DÉÇU Crème Brûlée") == "decu creme brulee"


def test_duplicate_key_in_a_mapping_is_reported(tmp_path: Path) -> None:
    """A second ``sla:`` in the same rule silently replacing the first is a mistake to report."""
    text = GOOD.replace("    sla: 2h\n", "    sla: 2h\n    sla: 1d\n")
    with pytest.raises(RulesError) as caught:
        load_rules(write(tmp_path, text))
    found = problems(caught.value)
    assert any(l == 14 and "sla" in message for _, l, _, message in found), str(caught.value)


# --- combinations, regex and the newer conditions -----------------------------------------

NEW_CONDITIONS = """\
version: 1
experts:
  - {name: Chloé, email: chloe@example.com}
rules:
  - name: every kind
    when:
      page: [104857, "x-42"]
      min_followers: 1000
      vip: ["@MarieT", 42]
      min_age: 10m
      max_age: 2d
      hours: {days: [mon, fri], from: "09:00", to: "17:30", timezone: America/Montreal}
      regex: ['rembours', '\\d{3}-\\d{4}']
      any:
        - category: complaint
        - all: [{keywords: [Déçu]}, {not: {language: en}}]
      not: [{platform: x}, {kind: message}]
    assign: chloe@example.com
  - {name: rest, default: true}
"""


def test_new_conditions_are_parsed() -> None:
    when = parse_rules(NEW_CONDITIONS, "n.yaml").rules[0].when
    assert when.pages == frozenset({"104857", "x-42"})
    assert when.min_followers == 1000
    assert when.vip == frozenset({"mariet", "42"})
    assert (when.min_age, when.max_age) == (600, 2 * 86400)
    assert when.hours is not None and when.hours.days == frozenset({0, 4})
    assert (when.hours.start.isoformat(), when.hours.end.isoformat()) == ("09:00:00", "17:30:00")
    assert [p.pattern for p in when.regex] == ["rembours", "\\d{3}-\\d{4}"]
    assert len(when.any_of) == 2 and when.any_of[1].all_of[0].keywords == ("decu",)
    assert when.any_of[1].all_of[1].none_of[0].languages == frozenset({"en"})
    assert [c.platforms or c.kinds for c in when.none_of] == [frozenset({"x"}), frozenset({"message"})]


def test_regex_keeps_upper_case_escapes_and_drops_accents() -> None:
    text = NEW_CONDITIONS.replace("regex: ['rembours', '\\d{3}-\\d{4}']", "regex: 'Crème\\S+'")
    [pattern] = parse_rules(text, "n.yaml").rules[0].when.regex
    assert pattern.pattern == "Creme\\S+"
    assert pattern.search("creme-brulee") and not pattern.search("creme brulee")


BAD_CONDITIONS = """\
version: 1
experts:
  - {name: Chloé, email: chloe@example.com}
rules:
  - name: broken
    when:
      regex: ['ok', '(unclosed', '[z-a]']
      min_followers: many
      vip: []
      page: {id: 1}
      min_age: soon
      max_age: 1h
      hours: {days: [lun], from: "9h", to: "17:00", timezone: Mars/Olympus}
      any: []
      all: [{category: complaints}, {mood: bad}]
      not: 3
    assign: chloe@example.com
  - name: ages
    when: {min_age: 2d, max_age: 1h}
  - {name: rest, default: true}
"""


def test_every_condition_mistake_is_listed_at_its_position(tmp_path: Path) -> None:
    path = write(tmp_path, BAD_CONDITIONS)
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    found = problems(caught.value)
    expected = [
        (7, 21, "invalid regex '(unclosed': missing ), unterminated subpattern at position 0"),
        (7, 34, "invalid regex '[z-a]': bad character range z-a"),
        (8, 22, "min_followers must be a whole number"),
        (9, 12, "vip must be a name or a list of names"),
        (10, 13, "page must be a name or a list of names"),
        (11, 16, "min_age must be a duration"),
        (13, 21, "hours.days"),
        (13, 34, "hours.from"),
        (13, 63, "hours.timezone"),
        (14, 12, "any must be a mapping of conditions or a non-empty list"),
        (15, 24, "unknown category 'complaints'"),
        (15, 38, "unknown field 'mood' in when"),
        (16, 12, "not must be a mapping of conditions or a non-empty list"),
        (19, 34, "max_age is below min_age"),
    ]
    for line, col, words in expected:
        assert any(
            l == line and c == col and words in message for _, l, c, message in found
        ), f"no problem at {line}:{col} mentioning {words!r} in:\n{caught.value}"
    assert len(found) == len(expected), str(caught.value)


# --- shadowing warnings -----------------------------------------------------------------------

SHADOWED = """\
version: 1
experts:
  - {name: Chloé, email: chloe@example.com}
rules:
  - name: complaints
    when: {category: [complaint, other]}
    assign: chloe@example.com
  - name: sure complaints
    when: {category: complaint, min_confidence: 0.8}
    assign: chloe@example.com
  - name: refunds
    when: {keywords: [rembours]}
  - name: refund complaints
    when: {category: product_feedback, keywords: [remboursement, "rembourser svp"]}
  - name: anything
    when: {}
  - name: english
    when: {language: en}
  - {name: rest, default: true}
"""


def test_shadowed_rules_are_warned_at_their_line() -> None:
    rules = parse_rules(SHADOWED, "s.yaml")  # warnings, not errors: it loads
    assert rules.warnings == (
        "s.yaml:8:5: warning: rule 'sure complaints' can never match: the earlier rule 'complaints' (line 5) catches every item it would",
        "s.yaml:13:5: warning: rule 'refund complaints' can never match: the earlier rule 'refunds' (line 11) catches every item it would",
        "s.yaml:17:5: warning: rule 'english' can never match: the earlier rule 'anything' (line 15) catches every item it would",
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("{category: complaint}", "{category: [complaint, other]}"),  # wider than the first
        ("{category: complaint, min_confidence: 0.8}", "{category: complaint, min_confidence: 0.5}"),
        ("{keywords: [remboursement]}", "{keywords: [rembours]}"),  # "rembours" alone is not caught
        ("{any: [{category: complaint}, {language: en}]}", "{category: complaint}"),  # not analysed: no warning
        ("{hours: {days: [mon], from: '09:00', to: '17:00', timezone: UTC}}", "{category: complaint}"),
        ("{not: {category: other}}", "{category: complaint}"),
        ("{regex: 'a'}", "{regex: 'a+'}"),
        ("{platform: x}", "{parent_is_ad: true}"),
    ],
)
def test_no_warning_unless_certain(first: str, second: str) -> None:
    text = f"""\
rules:
  - name: first
    when: {first}
  - name: second
    when: {second}
  - {{name: rest, default: true}}
"""
    assert parse_rules(text, "s.yaml").warnings == ()


def test_identical_combinations_are_shadowed() -> None:
    text = """\
rules:
  - name: first
    when: {any: [{category: complaint}, {language: en}]}
  - name: second
    when: {any: [{category: complaint}, {language: en}]}
  - {name: rest, default: true}
"""
    [warning] = parse_rules(text, "s.yaml").warnings
    assert warning.startswith("s.yaml:4:5: warning: rule 'second' can never match")


def test_shipped_file_has_no_warning() -> None:
    assert load_rules(SHIPPED).warnings == ()


def test_rules_check_prints_warnings_and_exits_zero(tmp_path: Path, models_dir: Path) -> None:
    from tests.cli.relais_runner import make_relais

    relais = make_relais(tmp_path / "cli", f"sqlite:///{tmp_path / 'r.db'}", models_dir)
    path = write(tmp_path, SHADOWED)
    done = relais("rules", "check", str(path))
    assert done.stdout.startswith(f"{path}: OK, 7 rules")
    warnings = done.stderr.strip().splitlines()
    assert len(warnings) == 3 and all(f"{path}:" in w and ": warning: " in w for w in warnings)
    assert warnings[0].startswith(f"{path}:8:5: warning: rule 'sure complaints' can never match")
    broken = write(tmp_path, SHADOWED.replace("{language: en}", "{language: english}"), "broken.yaml")
    failed = relais("rules", "check", str(broken), check=False)
    assert failed.returncode == 2 and f"{broken}:18:" in failed.stderr


# --- teams and availability ---------------------------------------------------------------

TEAMS = """\
experts:
  - {name: Ana, email: ana@example.com, skills: [vegan], cap: 3, backup: bob@example.com}
  - {name: Bob, email: bob@example.com, away: true}
  - {name: Cy, email: cy@example.com, out_of_office: {from: 2026-12-20, to: 2027-01-03}}
teams:
  - name: Qualité
    members: [ana@example.com, cy@example.com]
    strategy: skills
    lead: ana@example.com
    backup: bob@example.com
rules:
  - name: to the team
    when: {category: complaint}
    assign: {team: Qualité}
    skills: [vegan, gluten]
  - {name: rest, default: true}
"""


def test_teams_and_availability_are_parsed() -> None:
    rules = parse_rules(TEAMS, "t.yaml")
    team = rules.teams["Qualité"]
    assert team.members == ("ana@example.com", "cy@example.com")
    assert (team.strategy, team.lead, team.backup) == ("skills", "ana@example.com", "bob@example.com")
    ana, bob, cy = rules.experts.values()
    assert (ana.cap, ana.backup, bob.away) == (3, "bob@example.com", True)
    assert cy.out_of_office is not None and [d.isoformat() for d in cy.out_of_office] == ["2026-12-20", "2027-01-03"]
    rule = rules.rules[0]
    assert (rule.team, rule.expert_email, rule.skills) == ("Qualité", None, ("vegan", "gluten"))


BAD_TEAMS = """\
experts:
  - {name: Ana, email: ana@example.com, cap: -1, away: maybe, backup: zoe@example.com}
  - {name: Cy, email: cy@example.com, out_of_office: {from: 2027-01-03, to: 2026-12-20}}
  - {name: Di, email: di@example.com, out_of_office: next week}
teams:
  - name: Qualité
    members: [ana@example.com, nobody@example.com]
    strategy: random
    lead: boss@example.com
    colour: red
  - name: Vide
    members: []
rules:
  - name: team
    assign: {team: Marketing}
  - name: shape
    assign: {expert: ana@example.com}
  - name: skills
    assign: triage
    skills: vegan
  - {name: rest, default: true}
"""


def test_every_team_mistake_is_listed(tmp_path: Path) -> None:
    with pytest.raises(RulesError) as caught:
        load_rules(write(tmp_path, BAD_TEAMS))
    found = problems(caught.value)
    expected = [
        (2, 71, "unknown expert 'zoe@example.com' as backup of 'ana@example.com'"),
        (2, 46, "cap must be a whole number"),
        (2, 56, "away must be true or false"),
        (3, 77, "out_of_office ends before it starts"),
        (4, 54, "out_of_office must be {from: YYYY-MM-DD, to: YYYY-MM-DD}"),
        (7, 32, "unknown expert 'nobody@example.com' in team 'Qualité'"),
        (8, 15, "strategy must be one of: round_robin, least_loaded, skills"),
        (9, 11, "unknown expert 'boss@example.com' as lead"),
        (10, 5, "unknown field 'colour' in a team"),
        (12, 14, "members must be a non-empty list"),
        (15, 20, "unknown team 'Marketing'"),
        (17, 13, "assign must be an expert's email, 'triage' or {team: NAME}"),
        (20, 13, "skills must be a list of words"),
    ]
    for line, col, words in expected:
        assert any(
            l == line and c == col and words in message for _, l, c, message in found
        ), f"no problem at {line}:{col} mentioning {words!r} in:\n{caught.value}"
    assert len(found) == len(expected), str(caught.value)


def _doc_example(heading: str) -> str:
    doc = (PROJECT_ROOT / "docs" / "routing-rules.md").read_text(encoding="utf-8")
    section = doc.split(heading, 1)[1]
    return section.split("```yaml\n", 1)[1].split("```", 1)[0]


def test_the_bakery_example_in_the_docs_is_valid_and_does_what_it_says() -> None:
    from datetime import UTC, datetime, timedelta

    from bot.pipeline.route import RoutingFacts, route

    rules = parse_rules(_doc_example("## Example: the bakery with teams, hours and combinations"), "doc.yaml")
    assert rules.warnings == ()
    assert rules.teams["Produits"].strategy == "skills"
    tuesday_10h = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)  # 10:00 in Montréal
    sunday_10h = tuesday_10h + timedelta(days=5)

    def rule_for(text: str = "Bonjour", now: datetime = tuesday_10h, age: timedelta = timedelta(minutes=30), **kw: object) -> str:
        base: dict[str, object] = {
            "category": "complaint", "confidence": 0.9, "needs_review": False, "language": "fr",
            "platform": "facebook", "kind": "comment", "parent_is_ad": False, "text": text,
            "created_time": now - age, "now": now,
        }
        base.update(kw)
        return route(RoutingFacts(**base), rules).rule_name  # type: ignore[arg-type]

    assert rule_for("Un corps ÉTRANGER dans mon pain") == "Urgences sanitaires"
    assert rule_for("Mon fils est MALADE", category="other") == "Urgences sanitaires"
    assert rule_for("Le vendeur était maladroit") == "Plaintes qualité"
    assert rule_for(author_followers=25_000) == "Médias et grands comptes"
    assert rule_for(author_handle="LaPresse") == "Médias et grands comptes"
    assert rule_for(now=sunday_10h) == "Plaintes hors des heures d'ouverture"
    assert rule_for(category="ad_reaction") == "Réactions aux publicités"
    assert rule_for(category="ad_reaction", age=timedelta(minutes=5)) == "Tout le reste"
    assert rule_for(category="other", age=timedelta(days=4)) == "Vieux messages"


def test_ids_with_underscores_and_unquoted_times_stay_text() -> None:
    """YAML 1.1 would read 104857_2001 as 1048572001 and 09:00 as 540 (base 60)."""
    text = """\
rules:
  - name: ad
    when:
      campaign: [104857_2001, 1234]
      page: 104857
      hours: {days: [mon], from: 09:00, to: 17:30, timezone: Europe/Paris}
  - {name: rest, default: true}
"""
    when = parse_rules(text, "ids.yaml").rules[0].when
    assert when.campaigns == frozenset({"104857_2001", "1234"})
    assert when.pages == frozenset({"104857"})
    assert when.hours is not None and (when.hours.start.hour, when.hours.end.minute) == (9, 30)
