"""Chaos: the broker stops for 30 s mid-run and comes back.

A broker of its own (``EmbeddedKafka`` in this scenario's state dir, never the
shared one) and one worker. The first half of 20,000 inputs (``--short``: 3,000
and 10 s) is produced and, while the worker is still busy with it, the broker
is stopped (SIGTERM, controlled shutdown) for 30 s, then started again on the
same port and data; the second half follows. The worker is expected to ride it
out (its stages retry broker trouble); if it exits, it is restarted and that is
reported. Invariants: every acknowledged input received once, executed actions ==
offline plan, none twice, chains verify.
"""

from __future__ import annotations

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
from streams.broker import EmbeddedKafka


def run(ctx: Ctx) -> Result:
    n, outage = (3_000, 10.0) if ctx.short else (20_000, 30.0)
    res = Result("broker_restart")
    d = ctx.dir("broker_restart")
    pol = d / "policies"
    pol.mkdir(exist_ok=True)
    (pol / "p.yaml").write_text(MIXED_POLICIES)
    lines = mixed_lines(n, seed=21)
    expected = plan(pol, lines)
    app = h.unique_app("cb")
    recs = records(app, lines)
    kafka = EmbeddedKafka(state_dir=d / "kafka", partitions=1, die_with_parent=True)
    bs = kafka.start()
    restarts = 0
    try:
        with h.workers(bs, d) as wf:
            w = wf.start(pol, app, partitions=3)
            half = len(recs) // 2
            sent = h.produce(bs, recs[:half])
            time.sleep(1.0)  # the worker is mid-way through the first half
            t0 = time.monotonic()
            kafka.stop()
            time.sleep(outage)
            kafka.start()
            res.detail["outage_seconds"] = round(time.monotonic() - t0, 1)
            res.detail["worker_alive_after_outage"] = w.proc.poll() is None
            sent += h.produce(bs, recs[half:])
            deadline = time.monotonic() + 600
            settled = False
            while time.monotonic() < deadline and not settled:
                if w.proc.poll() is not None:
                    restarts += 1
                    res.detail.setdefault("worker_exit_codes", []).append(w.proc.returncode)
                    w = wf.start(pol, app, partitions=3)
                try:
                    settled = wait_settled(bs, app, expected, n, timeout=deadline - time.monotonic(),
                                           workers=[w])
                except RuntimeError:  # the worker exited while we waited: restart it above
                    continue
            res.checks["settled within 600 s"] = settled
            view = audit_view(bs, app)
            w.stop()
    finally:
        kafka.stop()
    fill(res, view, (s.event_id for s in sent), expected)
    res.detail["worker_restarts"] = restarts
    return res
