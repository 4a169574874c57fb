"""Every "target ... met/SHORT" line of the benches' latest results, in one place.

Reads the ``checks`` of each ``bench/results/*.json`` (written by the
``bench/bench_*.py`` scripts through ``bench.report.check``) and prints them
per bench, with the time each was measured. ``make bench`` runs it last, with
``--since`` set to the time it started, so that only this run's figures show.

    .venv/bin/python -m bench.summary [--since EPOCH_SECONDS]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.report import print_checks  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def checks_of(data: Any) -> list[dict[str, Any]]:
    """The well-formed checks of one result file (others, e.g. chaos's, are not this format)."""
    got = data.get("checks") if isinstance(data, dict) else None
    if not isinstance(got, list):
        return []
    return [c for c in got if isinstance(c, dict) and {"what", "got", "unit", "ok"} <= c.keys()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--since", type=float, default=0.0, help="only result files written after this (epoch s)")
    args = ap.parse_args(argv)
    short = 0
    print("== targets (bench/results/*.json)")
    for path in sorted(RESULTS.glob("*.json")):
        if path.stat().st_mtime < args.since:
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            print(f"{path.name}: unreadable ({exc}); re-run its bench")
            continue
        checks = checks_of(data)
        if not checks:
            continue
        print(f"-- {path.stem} ({data.get('time', 'time unknown')})")
        print_checks(checks)
        short += sum(1 for c in checks if c["ok"] is False)
    print(f"== {short} figure(s) short of target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
