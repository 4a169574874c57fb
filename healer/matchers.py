"""Alertmanager label matchers: ``=``, ``!=``, ``=~``, ``!~``, read as Alertmanager reads them.

The grammar is Alertmanager 0.25's ``pkg/labels`` parser (``ParseMatcher``), which
0.27+ still applies by default (its "fallback" mode keeps the classic result
whenever the new UTF-8 parser disagrees): a label name ``[a-zA-Z_:][a-zA-Z0-9_:]*``,
an operator, and a value that may be double-quoted; inside the value, quoted or
not, ``\\"``, ``\\\\`` and ``\\n`` are escapes and a backslash before anything else
stays a backslash (so ``=~"\\d+"`` keeps ``\\d+``). Regexes run on RE2, the
engine Go's regexp shares, compiled as Alertmanager compiles them
(``^(?:re)$``): linear in the label's length whatever the pattern, ``.`` does not
match a newline unless ``(?s)``, ``$`` only at the end. An absent label equals
the empty string.

healer is stricter than Alertmanager in one way, on purpose: a policy lists
one matcher per item, so a comma outside quotes (``foo=bar,dings!=bums``), braces
and single-quoted values are load errors with a hint instead of being read the
way Alertmanager would (two matchers; braces dropped; quotes kept in the value).

Used by the policy loader (parse, canonical text for revisions) and the engine
and index (match).
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any, Literal

import re2

Op = Literal["=", "!=", "=~", "!~"]

# Go regexp's \s, which Alertmanager's matcher regexp trims around each token
_SPACE = " \t\n\f\r"
# the alternation order of Alertmanager's regexp: `=~` before `=`
_OPS: tuple[Op, ...] = ("=~", "=", "!=", "!~")
_NAME_START = frozenset(string.ascii_letters + "_:")
_NAME_REST = _NAME_START | frozenset(string.digits)
_FORMS = 'name="value", name!="value", name=~"regex" or name!~"regex"'


def _re2_options() -> Any:
    opts = re2.Options()
    opts.log_errors = False  # a bad regex is a load error, not a line on stderr
    opts.never_capture = True  # a yes/no answer: RE2 can use its DFA only
    return opts


_OPTIONS = _re2_options()


class MatcherError(ValueError):
    """A matcher string that does not parse or whose regex is invalid; ``hint`` says the fix."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class Matcher:
    name: str
    op: Op
    value: str
    _regex: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        _refuse_lists(text)
        s = text.strip(_SPACE)
        end = 0
        if s[:1] in _NAME_START:
            end = 1
            while end < len(s) and s[end] in _NAME_REST:
                end += 1
        name, rest = s[:end], s[end:].lstrip(_SPACE)
        op = next((o for o in _OPS if rest.startswith(o)), None)
        if not name or op is None:
            raise MatcherError(
                f"bad matcher {text!r}: use {_FORMS}",
                "a label name is letters, digits, '_' and ':', not starting with a digit",
            )
        raw = rest[len(op) :].lstrip(_SPACE)
        if raw[:1] in ("'", "`"):
            raise MatcherError(
                f"bad matcher {text!r}: Alertmanager keeps {raw[0]} quotes as part of the value",
                f'quote the value with double quotes: {name}{op}"{raw.strip(raw[0])}"',
            )
        value = _unescape(raw, text)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise MatcherError(f"bad matcher {text!r}: the value is not valid UTF-8") from exc
        regex = None
        if op in ("=~", "!~"):
            regex = _compile(value, text)
        return cls(name, op, value, regex)

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        try:
            # bytes: RE2 matches UTF-8 and the wrapper then maps no offsets back
            text = actual.encode("utf-8")
        except UnicodeEncodeError:
            # a lone surrogate ("\ud800" in JSON): Go's JSON decoder, and so
            # Alertmanager, reads it as U+FFFD
            text = actual.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode()
        hit = self._regex.search(text) is not None
        return hit if self.op == "=~" else not hit

    def equality_value(self) -> str | None:
        """The value this matcher pins its label to, for indexing."""
        return self.value if self.op == "=" else None

    def __str__(self) -> str:
        """The canonical text (Alertmanager's ``String()``): parses back to this matcher."""
        escaped = self.value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'


def canonical(text: str) -> str:
    """One spelling per meaning: ``a=b``, ``a = "b"`` and ``a="b"`` all give ``a="b"``."""
    return str(Matcher.parse(text))


def _refuse_lists(text: str) -> None:
    """Refuse what Alertmanager's ParseMatchers would read as a list (braces, commas)."""
    if text.startswith("{") or text.endswith("}"):
        raise MatcherError(
            f"bad matcher {text!r}: braces hold a list of matchers in Alertmanager",
            "write one matcher per list item, without braces",
        )
    # the same scan as Alertmanager's ParseMatchers: a comma splits outside double
    # quotes; a backslash escapes a quote, also outside quotes
    inside = escaped = False
    parts: list[str] = []
    start = 0
    for i, c in enumerate(text):
        if c == ",":
            if not inside:
                parts.append(text[start:i].strip(_SPACE))
                start = i + 1
                continue
        elif c == '"':
            if not escaped:
                inside = not inside
            else:
                escaped = False
        elif c == "\\":
            escaped = not escaped
        else:
            escaped = False
    if parts:
        parts.append(text[start:].strip(_SPACE))
        items = ", ".join(repr(p) for p in parts if p)
        raise MatcherError(
            f"bad matcher {text!r}: a comma outside quotes separates matchers "
            "(Alertmanager would read it as several)",
            f"one matcher per list item: {items}; a comma inside a value needs double quotes",
        )


def _unescape(raw: str, text: str) -> str:
    """Alertmanager's unescaping of a matcher value (``raw`` with its quotes, if any)."""
    quoted = raw.startswith('"')
    if quoted:
        raw = raw[1:]
    out: list[str] = []
    escaped = False
    last = len(raw) - 1
    for i, c in enumerate(raw):
        if escaped:
            escaped = False
            if c == "n":
                out.append("\n")
            elif c in ('"', "\\"):
                out.append(c)
            else:
                out.append("\\" + c)  # not an escape: the backslash stays
            continue
        if c == "\\":
            if i < last:
                escaped = True
            else:
                out.append(c)
        elif c == '"':
            if not quoted or i < last:
                raise MatcherError(
                    f"bad matcher {text!r}: unescaped double quote in the value",
                    'write \\" for a quote inside a value, and quote the whole value',
                )
            quoted = False
        else:
            out.append(c)
    if quoted:
        raise MatcherError(
            f"bad matcher {text!r}: the value's closing double quote is missing",
            'end the value with "',
        )
    return "".join(out)


def _compile(value: str, text: str) -> Any:
    # C++ RE2 takes \C (any byte, which can split a UTF-8 character); Go's
    # regexp, and so Alertmanager, refuses it: refuse it too
    i = value.find("\\")
    while i >= 0:
        if value[i + 1 : i + 2] == "C":
            raise MatcherError(
                f"bad regex in matcher {text!r}: invalid escape sequence: \\C",
                "Alertmanager's regexes (Go) have no \\C; use . for any character",
            )
        i = value.find("\\", i + 2)
    try:
        return re2.compile(f"^(?:{value})$", _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args else "invalid"
        raise MatcherError(
            f"bad regex in matcher {text!r}: {reason}",
            "regexes use RE2 syntax, as Alertmanager: no look-around, no backreferences",
        ) from exc


def match_all(matchers: tuple[Matcher, ...], labels: dict[str, str]) -> bool:
    for m in matchers:  # noqa: SIM110 - a plain loop: the engine's hottest call
        if not m.matches(labels):
            return False
    return True
