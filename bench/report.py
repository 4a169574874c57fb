"""What every bench prints: tables, and each measured figure against its target.

A figure is printed as ``what: got (target <= X: met)`` or ``... SHORT``, or
``(no target: reported)``; never asserted, so a bench that falls short of a
target still prints every figure and writes its JSON. Used by every
``bench/bench_*.py`` (``bench.harness`` re-exports these for the benches that
run a worker).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def fmt(v: Any) -> str:
    """A table cell: floats with 3 decimals below 100, else with thousands separators."""
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def print_table(rows: Sequence[dict[str, Any]], cols: Sequence[tuple[str, str]]) -> None:
    """``cols``: (key, header); numbers right-aligned, floats with 3 significant decimals."""
    cells = [[fmt(r.get(k, "")) for k, _ in cols] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
              for i, (_, h) in enumerate(cols)]
    print("  ".join(h.rjust(w) for (_, h), w in zip(cols, widths, strict=True)))
    for c in cells:
        print("  ".join(v.rjust(w) for v, w in zip(c, widths, strict=True)))


def check(what: str, got: float, op: str | None, bound: float = 0.0, unit: str = "") -> dict[str, Any]:
    """A measured figure against its target (``op`` is ``"<="`` or ``">="``; None: a figure
    reported without a target). Never an assertion: a bench prints it and carries on."""
    if op is None:
        return {"what": what, "got": got, "unit": unit, "target": None, "ok": None}
    if op not in ("<=", ">="):
        raise ValueError(f"check {what!r}: op must be '<=' or '>=', got {op!r}")
    ok = bool(got <= bound) if op == "<=" else bool(got >= bound)  # NaN (nothing measured): SHORT
    return {"what": what, "got": got, "unit": unit, "target": f"{op} {bound:,g}{unit}", "ok": ok}


def print_checks(checks: Iterable[dict[str, Any]]) -> None:
    """One line per figure: ``what: got (target <= X: met|SHORT)``."""
    for c in checks:
        got = f"{fmt(float(c['got']))}{c['unit']}"
        if c["ok"] is None:
            print(f"{c['what']}: {got} (no target: reported)")
        else:
            print(f"{c['what']}: {got} (target {c['target']}: {'met' if c['ok'] else 'SHORT'})")
