"""Alertmanager matchers: the table of what Alertmanager does, and what healer does.

Every row of ``TABLE`` states Alertmanager's result (column ``am``) and where it comes
from (column ``source``); ``ours`` is set only where healer deliberately differs
(always towards a load error, never towards a different match). The sources:

- ``parse.go``: ``ParseMatcher``/``ParseMatchers`` in pkg/labels/parse.go of
  Alertmanager v0.25.0 (the version Debian ships): the name regexp
  ``[a-zA-Z_:][a-zA-Z0-9_:]*``, the unescaping (``\\"``, ``\\\\``, ``\\n``; any other
  backslash stays), the splitting of a string at commas outside quotes, braces trimmed.
- ``matcher.go``: ``NewMatcher`` in pkg/labels/matcher.go of v0.25.0: a regex is
  compiled by Go's regexp as ``"^(?:" + v + ")$"`` and searched (``MatchString``);
  an absent label is the empty string (``Matchers.Matches``).
- ``go-regexp``: Go's regexp/syntax (RE2 syntax): ``.`` without ``(?s)`` does not match
  ``\\n``, ``$`` without ``(?m)`` is the end of the text, no look-around or backreferences.
- ``parse_test.go``: the cases of pkg/labels/parse_test.go of v0.25.0, verbatim.
- ``matcher_test.go``: the cases of pkg/labels/matcher_test.go of v0.25.0.
- ``config.md``: docs/configuration.md of v0.25.0 (its ``<route>`` example and the
  examples of its ``<matcher>`` section, verbatim).
- ``simple.yml``: doc/examples/simple.yml of v0.25.0.
- ``kube-prometheus``: the default Alertmanager configuration of kube-prometheus
  (jsonnet/kube-prometheus/components/alertmanager.libsonnet).
- ``deploy``: this repository's deploy/examples/alertmanager.yaml.

tests/integration/test_matchers_amtool.py runs every row through Debian's
``amtool`` 0.25.0 (``amtool config routes test``) and checks the ``am`` column.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from healer.matchers import Matcher, MatcherError, canonical, match_all

ERROR = "error"  # Alertmanager refuses the configuration / healer refuses the policy
Result = bool | str


@dataclass(frozen=True)
class Row:
    text: str  # the matcher as the YAML list item holds it
    labels: dict[str, str]  # the alert's labels
    am: Result  # Alertmanager 0.25: True (the route matches), False, or ERROR
    source: str  # where the am column comes from (see the module docstring)
    ours: Result | None = None  # healer's result where it differs on purpose
    why: str = field(default="", compare=False)  # why healer differs

    @property
    def expected(self) -> Result:
        return self.am if self.ours is None else self.ours


A29B = "a" * 29 + "b"
A16K = "a" * 16 * 1024
LIST = "healer takes one matcher per list item: a load error with a hint, never one value"
BRACES = "braces are list syntax: a load error with a hint"
SINGLE = "single quotes are kept in the value by Alertmanager: surely a mistake, refused"

TABLE: list[Row] = [
    # ------------------------------------------------------------ escapes in values
    # unknown escapes keep their backslash (issue 13, finding 5: `\d` became `d`)
    Row(r'a=~"\d+"', {"a": "123"}, True, "parse.go"),
    Row(r'a=~"\d+"', {"a": "dd"}, False, "parse.go"),
    Row(r'a!~"\d+"', {"a": "d"}, True, "parse.go"),
    Row(r'instance=~"10\.0\..*"', {"instance": "10.0.3.4:9100"}, True, "parse.go"),
    Row(r'instance=~"10\.0\..*"', {"instance": "10x0y3"}, False, "parse.go"),
    Row(r'a=~"\\d"', {"a": "5"}, True, "parse.go"),  # \\ -> \ then d: the regex \d
    Row(r'a=~"\\\\d"', {"a": "\\d"}, True, "parse.go"),  # \\\\ -> \\: a literal backslash
    Row(r'a="x\\y"', {"a": "x\\y"}, True, "parse.go"),
    Row(r'a="say \"hi\""', {"a": 'say "hi"'}, True, "parse.go"),
    Row(r'a="line\nbreak"', {"a": "line\nbreak"}, True, "parse.go"),
    Row(r'a="tab\tx"', {"a": "tab\\tx"}, True, "parse.go"),  # \t is no value escape
    Row(r'a="tab\tx"', {"a": "tab\tx"}, False, "parse.go"),
    Row(r'a=~"a\tb"', {"a": "a\tb"}, True, "go-regexp"),  # ...but a regex escape
    Row(r'a="x\\"', {"a": "x\\"}, True, "parse.go"),
    Row(r'a="trail\"', {"a": "trail"}, ERROR, "parse.go"),  # \" escapes the closing quote
    Row(r'a="x\",y"', {"a": 'x",y'}, True, "parse.go"),  # that comma is inside quotes
    Row(r'a="x,y"', {"a": "x,y"}, True, "parse.go"),
    Row(r'a=~"x,y|z"', {"a": "z"}, True, "parse.go"),
    Row(r'a="ünïcødé"', {"a": "ünïcødé"}, True, "parse.go"),
    Row(r'a=" x "', {"a": " x "}, True, "parse.go"),  # quotes keep spaces
    Row(r'a=" x "', {"a": "x"}, False, "parse.go"),
    # ------------------------------------------------------------ unquoted values
    # unescaped exactly like quoted ones (finding 5: healer took them raw)
    Row("severity=critical", {"severity": "critical"}, True, "config.md"),
    Row("a = hello world ", {"a": "hello world"}, True, "parse.go"),  # outer spaces trimmed
    Row(r"a=~\d+", {"a": "42"}, True, "parse.go"),
    Row(r"a=x\\", {"a": "x\\"}, True, "parse.go"),  # \\ -> \
    Row(r"a=x\\", {"a": "x"}, False, "parse.go"),
    Row("a=x\\", {"a": "x\\"}, True, "parse.go"),  # a final lone backslash stays
    Row(r"a=say\"hi", {"a": 'say"hi'}, True, "parse.go"),
    Row(r"a=line\nbreak", {"a": "line\nbreak"}, True, "parse.go"),
    Row('a=say"hi', {"a": 'say"hi'}, ERROR, "parse.go"),  # unescaped quote inside
    Row('a="x"y', {"a": "x"}, ERROR, "parse.go"),
    Row('a="x" b="y"', {"a": "x"}, ERROR, "parse.go"),
    Row('a="x', {"a": "x"}, ERROR, "parse.go"),
    Row("a='x'", {"a": "'x'"}, True, "parse.go", ERROR, SINGLE),
    Row("a='x'", {"a": "x"}, False, "parse.go", ERROR, SINGLE),
    # ------------------------------------------------------------ real routes (docs/policies.md)
    Row('service=~"foo1|foo2|baz"', {"service": "foo2"}, True, "simple.yml"),
    Row('service=~"foo1|foo2|baz"', {"service": "foo"}, False, "simple.yml"),
    Row('owner="team-X"', {"owner": "team-X"}, True, "simple.yml"),
    Row('service=~"mysql|cassandra"', {"service": "cassandra"}, True, "config.md"),
    Row('team="frontend"', {"team": "frontend"}, True, "config.md"),
    Row('service="inhouse-service"', {"service": "inhouse-service"}, True, "config.md"),
    Row("alertname = Watchdog", {"alertname": "Watchdog"}, True, "config.md"),
    Row('severity =~ "warning|critical"', {"severity": "none"}, False, "config.md"),
    Row("foo = bar", {"foo": "bar"}, True, "config.md"),
    Row("dings != bums", {"dings": "bums"}, False, "config.md"),
    Row("alertname = InfoInhibitor", {"alertname": "InfoInhibitor"}, True, "kube-prometheus"),
    Row("severity = critical", {"severity": "critical"}, True, "kube-prometheus"),
    Row("severity =~ warning|info", {"severity": "info"}, True, "kube-prometheus"),
    Row("severity =~ warning|info", {"severity": "warning|info"}, False, "kube-prometheus"),
    Row(
        'alertname=~"InferenceSuccessRateLow|InferenceQPSSurge|KubePodCrashLooping'
        "|TritonGPUMemoryHigh|TritonModelOOM|TritonModelLoadFailed|GPUOffline"
        '|GPUFallenOffBus|GPUDoubleBitECCError"',
        {"alertname": "GPUOffline"},
        True,
        "deploy",
    ),
    Row('code=~"\\d+"', {"code": "503"}, True, "parse.go"),
    Row(r'a=~"foo\.bar"', {"a": "foo.bar"}, True, "matcher_test.go"),
    Row('a=~"foo.bar"', {"a": "foo\nbar"}, False, "matcher_test.go"),
    Row('a=~"(?s)foo.bar"', {"a": "foo\nbar"}, True, "matcher_test.go"),
    Row(r'a="~!=\""', {"a": '~!="'}, True, "matcher_test.go"),
    # Alertmanager's own parser tests
    Row('statuscode=~"5.."', {"statuscode": "503"}, True, "parse_test.go"),
    Row("tricky=~~~", {"tricky": "~~"}, True, "parse_test.go"),  # the regex '~~'
    Row(r'trickier==\\=\=\"', {"trickier": '=\\=\\="'}, True, "parse_test.go"),
    Row('contains_quote != "\\""', {"contains_quote": '"'}, False, "parse_test.go"),
    Row('job="value', {"job": "value"}, ERROR, "parse_test.go"),
    Row('job=value"', {"job": "value"}, ERROR, "parse_test.go"),
    Row(r'trickier==\\=\=\""', {"trickier": "x"}, ERROR, "parse_test.go"),
    Row('contains_unescaped_quote = foo"bar', {"x": "y"}, ERROR, "parse_test.go"),
    Row(r'"foo=\"bar\""', {"foo": "bar"}, ERROR, "parse_test.go"),  # double-escaped
    Row('{foo="bar,quux", job="job1"}', {"foo": "bar,quux", "job": "job1"}, True,
        "parse_test.go", ERROR, BRACES),
    # ------------------------------------------------------------ empty and absent
    Row('a=""', {}, True, "matcher.go"),  # absent == ""
    Row("a=", {}, True, "parse.go"),
    Row('a=""', {"a": "x"}, False, "matcher.go"),
    Row('a!=""', {}, False, "matcher.go"),
    Row('a!=""', {"a": "x"}, True, "matcher.go"),
    Row('a!="x"', {}, True, "matcher.go"),
    Row('a=~".*"', {}, True, "matcher.go"),
    Row('a=~".+"', {}, False, "matcher.go"),
    Row('a=~""', {}, True, "matcher.go"),
    Row('a=~""', {"a": "x"}, False, "matcher.go"),
    # ------------------------------------------------------------ names and operators
    Row('alertname="X"', {"alertname": "X"}, True, "parse.go"),
    Row('  alertname = "X"  ', {"alertname": "X"}, True, "parse.go"),
    Row('__name__="up"', {"__name__": "up"}, True, "parse.go"),
    Row('job:rate5m="x"', {"job:rate5m": "x"}, True, "parse.go"),  # ':' is a name char
    Row('1a="x"', {"a": "x"}, ERROR, "parse.go"),
    Row('a-b="x"', {"a": "x"}, ERROR, "parse.go"),
    Row('="x"', {"a": "x"}, ERROR, "parse.go"),
    Row("alertname", {"alertname": "x"}, ERROR, "parse.go"),
    Row('a=="x"', {"a": "x"}, ERROR, "parse.go"),  # value '="x"' has an unescaped quote
    Row('a=~="x"', {"a": "x"}, ERROR, "parse.go"),
    # ------------------------------------------------------------ lists in one string
    Row("foo=bar,dings!=bums", {"foo": "bar"}, True, "config.md", ERROR, LIST),
    Row("foo=bar,dings!=bums", {"foo": "bar", "dings": "bums"}, False, "config.md", ERROR, LIST),
    Row("foo = bar,baz", {"foo": "bar,baz"}, ERROR, "config.md"),  # 'baz' is no matcher
    Row('a="x\\"",b="y"', {"a": 'x"', "b": "y"}, True, "parse.go", ERROR, LIST),
    Row("foo=bar,", {"foo": "bar"}, True, "parse.go", ERROR, LIST),  # a trailing comma
    Row('{foo="bar",dings!="bums"}', {"foo": "bar"}, True, "config.md", ERROR, BRACES),
    Row('{foo="bar"}', {"foo": "bar"}, True, "parse.go", ERROR, BRACES),
    Row("a=b}", {"a": "b"}, True, "parse.go", ERROR, BRACES),  # '}' trimmed from the string
    Row(
        '{quote=~"She said: \\"Hi, all!( How\'re you…)?\\""}',
        {"quote": 'She said: "Hi, all! How\'re you…"'},
        True,
        "config.md",
        ERROR,
        BRACES,
    ),
    # the same example as a YAML block scalar, as config.md shows it: the final newline
    # keeps the '}' from being trimmed, and Alertmanager 0.25 refuses its own example
    Row(
        '{quote=~"She said: \\"Hi, all!( How\'re you…)?\\""}\n',
        {"quote": 'She said: "Hi, all!"'},
        ERROR,
        "config.md",
    ),
    # ------------------------------------------------------------ anchoring
    Row('a=~"b"', {"a": "ab"}, False, "matcher.go"),
    Row('a=~"b"', {"a": "ba"}, False, "matcher.go"),
    Row('a=~"b"', {"a": "b\n"}, False, "go-regexp"),  # $ is the end, not before a final \n
    Row('a=~"foo|bar"', {"a": "foobar"}, False, "matcher.go"),  # anchored as a group
    Row('a=~"foo|bar"', {"a": "bar"}, True, "matcher.go"),
    Row('a=~"^b$"', {"a": "b"}, True, "matcher.go"),
    Row('a=~"llm-.*"', {"a": "llm-ü"}, True, "matcher.go"),
    # the value is pasted into "^(?:" + v + ")$": a ')' can end the group early
    Row('a=~"a)|(b"', {"a": "axyz"}, True, "matcher.go"),
    Row('a=~"a)|(b"', {"a": "xa"}, False, "matcher.go"),
    # ------------------------------------------------------------ flags
    Row('a=~".*"', {"a": "x\ny"}, False, "go-regexp"),  # . does not match \n
    Row('a=~"(?s).*"', {"a": "x\ny"}, True, "go-regexp"),
    Row('a=~"(?s:.)"', {"a": "\n"}, True, "go-regexp"),
    Row('a=~"(?i)critical"', {"a": "CRITICAL"}, True, "go-regexp"),
    Row('a=~"(?i:ab)c"', {"a": "ABc"}, True, "go-regexp"),
    Row('a=~"(?i:ab)c"', {"a": "ABC"}, False, "go-regexp"),
    Row('a=~"(?m)^x$"', {"a": "x"}, True, "go-regexp"),
    Row('a=~"(?m)^x$"', {"a": "x\ny"}, False, "go-regexp"),  # the outer $ is not (?m)
    Row('a=~"(?U)x+"', {"a": "xxx"}, True, "go-regexp"),
    Row('a=~"(?smiU)x"', {"a": "X"}, True, "go-regexp"),
    Row('a=~"(?x)x y"', {"a": "xy"}, ERROR, "go-regexp"),  # no (?x) in RE2
    # ------------------------------------------------------------ RE2 syntax
    Row(r'a=~"\pL+"', {"a": "héllo"}, True, "go-regexp"),
    Row(r'a=~"\p{Greek}+"', {"a": "\u03bb\u03cc\u03b3\u03bf\u03c2"}, True, "go-regexp"),
    Row(r'a=~"[[:alpha:]]+"', {"a": "abc"}, True, "go-regexp"),
    Row(r'a=~"\x41\101"', {"a": "AA"}, True, "go-regexp"),
    Row(r'a=~"\Qa.b\E"', {"a": "a.b"}, True, "go-regexp"),
    Row(r'a=~"\Qa.b\E"', {"a": "axb"}, False, "go-regexp"),
    Row(r'a=~"x\z"', {"a": "x"}, True, "go-regexp"),
    Row(r'a=~"x{2"', {"a": "x{2"}, True, "go-regexp"),  # not a repetition: literal
    Row(r'a=~"(?P<n>x)"', {"a": "x"}, True, "go-regexp"),
    Row('a=~"("', {"a": "x"}, ERROR, "go-regexp"),
    Row('a!~"[z-a]"', {"a": "x"}, ERROR, "go-regexp"),
    Row('a=~"(?=x)x"', {"a": "x"}, ERROR, "go-regexp"),  # no look-ahead
    Row(r'a=~"(a)\1"', {"a": "aa"}, ERROR, "go-regexp"),  # no backreferences
    Row(r'a=~"\C"', {"a": "x"}, ERROR, "go-regexp"),  # C++ RE2 has \C; Go does not
    Row(r'a=~"x\Z"', {"a": "x"}, ERROR, "go-regexp"),
    Row(r'a=~"\e"', {"a": "\x1b"}, ERROR, "go-regexp"),
    Row('a=~"x**"', {"a": "x"}, ERROR, "go-regexp"),
    Row('a=~"a{1001}"', {"a": "a"}, ERROR, "go-regexp"),  # repeat counts stop at 1000
    Row('a=~"(a{100}){100}"', {"a": "a"}, ERROR, "go-regexp"),
    # ------------------------------------------------------------ negation
    Row('a!~"canary-.*"', {"a": "canary-1"}, False, "matcher.go"),
    Row('a!~"canary-.*"', {"a": "prod"}, True, "matcher.go"),
    Row('a!~"canary-.*"', {}, True, "matcher.go"),
    Row('a!~".*"', {}, False, "matcher.go"),
    Row('a!="x"', {"a": "x"}, False, "matcher.go"),
    # ------------------------------------------------------------ hostile input (finding 4)
    Row('pod=~"(a+)+$"', {"pod": A29B}, False, "go-regexp"),
    Row('pod=~"(a+)+$"', {"pod": A16K + "b"}, False, "go-regexp"),
    Row('pod=~"(a+)+$"', {"pod": A16K}, True, "go-regexp"),
    Row('pod=~"(a|aa)*c"', {"pod": "a" * 5000}, False, "go-regexp"),
]


def _ours(row: Row) -> Result:
    try:
        m = Matcher.parse(row.text)
    except MatcherError:
        return ERROR
    return m.matches(row.labels)


def _id(row: Row) -> str:
    text = row.text if len(row.text) < 40 else row.text[:37] + "..."
    return f"{text}|{','.join(f'{k}={v[:12]!r}' for k, v in row.labels.items())}"


@pytest.mark.parametrize("row", TABLE, ids=[_id(r) for r in TABLE])
def test_table(row: Row) -> None:
    assert _ours(row) == row.expected, row.why or f"Alertmanager: {row.am} ({row.source})"


def test_table_differs_from_alertmanager_only_towards_errors() -> None:
    differ = [r for r in TABLE if r.ours is not None]
    assert differ and all(r.ours == ERROR and r.am != ERROR and r.why for r in differ)


@pytest.mark.parametrize(
    ("text", "name", "op", "value"),
    [
        ('alertname="X"', "alertname", "=", "X"),
        ("alertname=X", "alertname", "=", "X"),
        ('severity=~"critical|warning"', "severity", "=~", "critical|warning"),
        (r'a=~"\d+"', "a", "=~", r"\d+"),
        (r'a=~"10\.0\..*"', "a", "=~", r"10\.0\..*"),
        (r"a=~\d+", "a", "=~", r"\d+"),
        (r'a="x\\y"', "a", "=", "x\\y"),
        (r'a="l\nb"', "a", "=", "l\nb"),
        (r'a="q\"q"', "a", "=", 'q"q'),
        ("a=", "a", "=", ""),
        ('a:b!~"x"', "a:b", "!~", "x"),
    ],
)
def test_parse(text: str, name: str, op: str, value: str) -> None:
    m = Matcher.parse(text)
    assert (m.name, m.op, m.value) == (name, op, value)
    assert Matcher.parse(str(m)) == m  # the canonical text parses back


@pytest.mark.parametrize(
    ("text", "message", "hint"),
    [
        ("foo=bar,dings!=bums", "a comma outside quotes", "one matcher per list item: 'foo=bar'"),
        ('{foo="bar"}', "braces", "one matcher per list item"),
        ("a='x'", "keeps ' quotes", 'a="x"'),
        ('a=~"("', "bad regex in matcher 'a=~\"(\"': missing )", "RE2 syntax"),
        ('a="x', "closing double quote is missing", ""),
        ("a-b=c", "bad matcher 'a-b=c'", "a label name is letters"),
    ],
)
def test_errors_say_what_and_how_to_fix(text: str, message: str, hint: str) -> None:
    with pytest.raises(MatcherError) as exc:
        Matcher.parse(text)
    assert message in exc.value.message and hint in exc.value.hint


@pytest.mark.parametrize(
    ("spellings", "canon"),
    [
        (["namespace=llm", 'namespace="llm"', ' namespace = "llm" '], 'namespace="llm"'),
        ([r"a=~\d+", r'a=~"\d+"', r'a=~"\\d+"'], r'a=~"\\d+"'),
        (['a="x\\ny"', "a=x\\ny"], 'a="x\\ny"'),
    ],
)
def test_canonical_text_is_one_per_meaning(spellings: list[str], canon: str) -> None:
    assert {canonical(s) for s in spellings} == {canon}


def test_regex_is_compiled_once() -> None:
    m = Matcher.parse('a=~"x.*"')
    assert m._regex is not None
    assert Matcher.parse('a="x"')._regex is None


def test_lone_surrogates_match_as_alertmanager_reads_them() -> None:
    # Go's encoding/json (Alertmanager's decoder) turns a lone "\ud800" into U+FFFD
    assert Matcher.parse('a=~"x.y"').matches({"a": "x\ud800y"})
    assert not Matcher.parse('a!~".*"').matches({"a": "\udc00"})
    with pytest.raises(MatcherError, match="not valid UTF-8"):
        Matcher.parse('a="\ud800"')


def test_match_all() -> None:
    ms = (Matcher.parse('a="1"'), Matcher.parse('b=~"2|3"'))
    assert match_all(ms, {"a": "1", "b": "3"})
    assert not match_all(ms, {"a": "1", "b": "4"})
    assert match_all((), {})


@given(st.text(max_size=200))
def test_equality_is_literal_for_any_value(value: str) -> None:
    escaped = value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    try:
        m = Matcher.parse(f'lbl="{escaped}"')
    except MatcherError:
        assert any(0xD800 <= ord(c) <= 0xDFFF for c in value)  # not UTF-8: refused
        return
    assert m.value == value
    assert m.matches({"lbl": value})
    assert not m.matches({"lbl": value + "x"})


@given(st.text(max_size=300))
def test_regex_matchers_never_raise_on_label_values(value: str) -> None:
    for text in ('a=~"llm-.*"', 'a!~"[a-z0-9-]+"', 'a=~".*\\\\{\\\\{.*"', 'a=~"(a+)+$"'):
        Matcher.parse(text).matches({"a": value})


@given(st.text(max_size=200))
def test_any_text_parses_or_is_a_matcher_error(text: str) -> None:
    try:
        m = Matcher.parse(text)
    except MatcherError as exc:
        assert exc.message.startswith(("bad matcher", "bad regex"))
        return
    assert Matcher.parse(str(m)) == m
