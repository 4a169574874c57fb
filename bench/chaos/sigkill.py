"""Chaos: SIGKILL the worker at random moments while it works, restart it each time.

20,000 alerts and metric samples for 50 targets (``--short``: 2,000, 3 kills)
are produced in chunks; after chunks the worker is killed with SIGKILL after a
random 0.2-2.5 s and a new one is started, 10 times. Afterwards every valid input
must be ``event.received`` exactly once, the set of executed actions
(``action.running``) must equal the offline plan of ``healer policy test`` with no
id run twice, and every audit chain must verify.
"""

from __future__ import annotations

import random
import time

from bench import harness as h
from bench.chaos.common import (
    MIXED_POLICIES,
    Ctx,
    Result,
    audit_view,
    fill,
    mixed_lines,
    plan,
    records,
    wait_settled,
)

SHORT = (2_000, 3)  # events, kills
FULL = (20_000, 10)


def run(ctx: Ctx) -> Result:
    n, kills_wanted = SHORT if ctx.short else FULL
    res = Result("sigkill")
    d = ctx.dir("sigkill")
    pol = d / "policies"
    pol.mkdir(exist_ok=True)
    (pol / "p.yaml").write_text(MIXED_POLICIES)
    lines = mixed_lines(n)
    expected = plan(pol, lines)
    app = h.unique_app("ck")
    recs = records(app, lines)
    chunks = kills_wanted + 2
    size = -(-len(recs) // chunks)
    rng = random.Random(5)
    sent = []
    kills = 0
    with h.workers(ctx.bootstrap, d) as wf:
        w = wf.start(pol, app, partitions=3)
        for i in range(chunks):
            sent += h.produce(ctx.bootstrap, recs[i * size:(i + 1) * size])
            if kills < kills_wanted and i >= 1:
                time.sleep(rng.uniform(0.2, 2.5))
                w.kill()
                kills += 1
                w = wf.start(pol, app, partitions=3)
        ok = wait_settled(ctx.bootstrap, app, expected, n, timeout=600, workers=[w])
        res.checks["settled within 600 s"] = ok
        view = audit_view(ctx.bootstrap, app)
        w.stop()
    fill(res, view, (s.event_id for s in sent), expected)
    interrupted = sum(1 for r in view.records if r.get("kind") == "action.failed"
                      and (r.get("detail") or {}).get("interrupted"))
    res.detail.update({"kills": kills, "interrupted_actions": interrupted})
    res.checks[f"{kills_wanted} kills done"] = kills == kills_wanted
    return res
