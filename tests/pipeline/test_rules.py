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
    priority: 1
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
        (15, 5, "priority"),  # unknown field in a rule
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
