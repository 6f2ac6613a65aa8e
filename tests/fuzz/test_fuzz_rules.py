"""Hostile routing rules text through the public loader (bot.pipeline.rules.parse_rules):
a RuleSet or a RulesError with a position, never another exception."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot import PROJECT_ROOT
from bot.errors import RulesError
from bot.pipeline.rules import parse_rules
from tests.fuzz.conftest import profile

SAMPLE = (PROJECT_ROOT / "routing_rules.yaml").read_text(encoding="utf-8")
LINES = SAMPLE.splitlines()
ODD = st.sampled_from([
    "", "~", "null", "[]", "{}", "- -", "!!python/object:os.system [ls]", "&a [*a]", "*undefined",
    "sla: 99999999999999999999999h", "sla: -1h", "sla: .inf", "confidence_below: NaN",
    "confidence_below: 1e999", "regex: '(a+)+$'", "regex: '['", "email: 12", "language: [fr]",
    "when: 7", "timezone: Mars/Olympus", "hours: 25:00-26:00", "priority: {a: b}", "\t- x",
    "version: 2", "é: \udcff".encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
    "  " * 200 + "x: 1", "[" * 300, "{" * 300,
])


@st.composite
def mutated_rules(draw: st.DrawFn) -> str:
    lines = list(LINES)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["replace", "insert", "delete", "value"]))
        if action == "delete":
            del lines[at]
        elif action == "insert":
            lines.insert(at, draw(ODD | st.text(max_size=30)))
        elif action == "replace":
            lines[at] = draw(ODD | st.text(max_size=30))
        elif ":" in lines[at]:
            key = lines[at].split(":", 1)[0]
            lines[at] = f"{key}: {draw(ODD | st.text(max_size=20))}"
    return "\n".join(lines)


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
) + "rules:\n  - name: r\n    when: {keywords: *i}\n    assign: x\n"


@settings(profile())
@given(text=mutated_rules() | st.text(max_size=300))
@example(text=BOMB)
@example(text="rules: " + "[" * 300 + "]" * 300)
def test_any_rules_text_loads_or_raises_a_rules_error(text: str) -> None:
    try:
        rules = parse_rules(text, "fuzz.yaml")
    except RulesError as exc:
        assert str(exc).strip()
        return
    assert rules.rules, "a file that loads has at least its default rule"
