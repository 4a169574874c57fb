"""Alertmanager label matchers: ``=``, ``!=``, ``=~``, ``!~``.

Regexes are fully anchored (the whole value must match, as Alertmanager's
``^(?:re)$`` in Go, where ``$`` does not match before a trailing newline and
``.`` does not match a newline) and compiled once at load; an absent label
equals the empty string. Used by the policy loader (compile) and the engine (match).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Op = Literal["=", "!=", "=~", "!~"]

_MATCHER = re.compile(
    r"""^\s*(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*(?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^"'\s=~!][^\s"']*)?\s*$"""
)


class MatcherError(ValueError):
    """A matcher string that does not parse or whose regex is invalid."""


@dataclass(frozen=True)
class Matcher:
    name: str
    op: Op
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        m = _MATCHER.match(text)
        if not m:
            raise MatcherError(
                f'bad matcher {text!r}: use name="value", name!="value", '
                f'name=~"regex" or name!~"regex"'
            )
        raw = m.group("value") or ""
        value = _unquote(raw[1:-1]) if raw[:1] in ('"', "'") else raw
        op: Op = m.group("op")  # type: ignore[assignment]
        regex = None
        if op in ("=~", "!~"):
            try:
                regex = re.compile(f"(?:{value})")
            except re.error as exc:
                raise MatcherError(f"bad regex in matcher {text!r}: {exc}") from exc
        return cls(m.group("name"), op, value, regex)

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self._regex is not None
        hit = self._regex.fullmatch(actual) is not None
        return hit if self.op == "=~" else not hit

    def equality_value(self) -> str | None:
        """The value this matcher pins its label to, for indexing."""
        return self.value if self.op == "=" else None

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'


def _unquote(s: str) -> str:
    out = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            nxt = s[i + 1]
            out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def match_all(matchers: tuple[Matcher, ...], labels: dict[str, str]) -> bool:
    for m in matchers:  # noqa: SIM110 - a plain loop: the engine's hottest call
        if not m.matches(labels):
            return False
    return True
