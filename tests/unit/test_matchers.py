"""Alertmanager matchers: parsing, anchoring, absent labels, errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from healer.matchers import Matcher, MatcherError, match_all


@pytest.mark.parametrize(
    ("text", "name", "op", "value"),
    [
        ('alertname="X"', "alertname", "=", "X"),
        ('  alertname = "X"  ', "alertname", "=", "X"),
        ("alertname=X", "alertname", "=", "X"),
        ('severity!="info"', "severity", "!=", "info"),
        ('severity=~"critical|warning"', "severity", "=~", "critical|warning"),
        ('pod!~"canary-.*"', "pod", "!~", "canary-.*"),
        ('a="say \\"hi\\""', "a", "=", 'say "hi"'),
        ("a='single'", "a", "=", "single"),
        ('a=""', "a", "=", ""),
        ("a=", "a", "=", ""),
        ('__name__="up"', "__name__", "=", "up"),
        ('a="ünïcødé"', "a", "=", "ünïcødé"),
    ],
)
def test_parse(text: str, name: str, op: str, value: str) -> None:
    m = Matcher.parse(text)
    assert (m.name, m.op, m.value) == (name, op, value)
    assert Matcher.parse(str(m)) == m  # str() round-trips


@pytest.mark.parametrize(
    "text",
    [
        "alertname",
        '="X"',
        '1a="X"',
        'a=="X"',
        'a=~"("',
        'a!~"[z-a]"',
        'a="x" b="y"',
        'a=b"c',
        "a-b=c",
        'a=~"x',
        "",
    ],
)
def test_parse_errors(text: str) -> None:
    with pytest.raises(MatcherError):
        Matcher.parse(text)


def test_regex_error_says_which_matcher() -> None:
    with pytest.raises(MatcherError, match=r"bad regex in matcher 'a=~\"\(\"'"):
        Matcher.parse('a=~"("')


@pytest.mark.parametrize(
    ("text", "labels", "hit"),
    [
        ('a="x"', {"a": "x"}, True),
        ('a="x"', {"a": "xy"}, False),
        ('a="x"', {}, False),
        ('a=""', {}, True),  # absent == ""
        ('a=""', {"a": ""}, True),
        ('a!=""', {}, False),
        ('a!="x"', {}, True),
        ('a=~".*"', {}, True),
        ('a=~".+"', {}, False),
        ('a=~"b"', {"a": "ab"}, False),  # fully anchored
        ('a=~"b"', {"a": "ba"}, False),
        ('a=~"b"', {"a": "b\n"}, False),  # $ does not match before a final newline
        ('a=~".*"', {"a": "x\ny"}, False),  # . does not match a newline (Go RE2)
        ('a=~"foo|bar"', {"a": "foobar"}, False),  # the alternation is anchored as a group
        ('a=~"foo|bar"', {"a": "bar"}, True),
        ('a!~"canary-.*"', {"a": "canary-1"}, False),
        ('a!~"canary-.*"', {}, True),
        ('a=~"llm-.*"', {"a": "llm-ü"}, True),
    ],
)
def test_matches(text: str, labels: dict[str, str], hit: bool) -> None:
    assert Matcher.parse(text).matches(labels) is hit


def test_regex_is_compiled_once() -> None:
    m = Matcher.parse('a=~"x.*"')
    assert m._regex is not None
    assert Matcher.parse('a="x"')._regex is None


def test_match_all() -> None:
    ms = (Matcher.parse('a="1"'), Matcher.parse('b=~"2|3"'))
    assert match_all(ms, {"a": "1", "b": "3"})
    assert not match_all(ms, {"a": "1", "b": "4"})
    assert match_all((), {})


@given(st.text(max_size=200))
def test_equality_is_literal_for_any_value(value: str) -> None:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    m = Matcher.parse(f'lbl="{escaped}"')
    assert m.value == value
    assert m.matches({"lbl": value})
    assert not m.matches({"lbl": value + "x"})


@given(st.text(max_size=300))
def test_regex_matchers_never_raise_on_label_values(value: str) -> None:
    for text in ('a=~"llm-.*"', 'a!~"[a-z0-9-]+"', 'a=~".*\\\\{\\\\{.*"'):
        Matcher.parse(text).matches({"a": value})
