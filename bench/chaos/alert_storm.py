"""Chaos: an alert storm against budgets and the global rate limit.

50,000 alerts in 10 s for 500 targets (``--short``: 3,000 in 2 s for 100), with
repeats (Alertmanager re-sends) and distinct incidents, on one worker whose
policy has a cooldown and a budget and whose config (``HEALER_CONFIG`` YAML)
sets a global ``rate_limit`` of 100 actions per minute (``--short``: 20). The
storm spans less than a minute of event time, so at most ``rate_limit.max``
actions may run. Also watched: the worker's RSS (sampled every 0.5 s from start
to drained) and the backlog once the storm is over (consumer lag on the inputs
and actions, the worker's own applied offsets on signals and audit-log).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

from bench import harness as h
from bench.chaos.common import Ctx, Result, audit_view, fill
from healer.ingest import partition_key

POLICY = """
apiVersion: healer/v1
kind: Policy
metadata: {name: storm}
spec:
  trigger:
    alert:
      matchers: ['alertname="InferenceStorm"']
  target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
  actions:
    - {use: healer.noop, with: {message: scale}}
  guards:
    cooldown: 5m
    budget: {max: 3, per: 1h}
"""
RSS_LIMIT_MIB = 1024


async def storm(bootstrap: str, app: str, n: int, seconds: float, targets: int) -> list[h.Sent]:
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                         linger_ms=5, max_batch_size=256 * 1024)
    await p.start()
    futs = []
    try:
        t0 = time.time()
        for i in range(n):
            due = t0 + seconds * i / n
            if i % 100 == 0 and due > time.time():
                await asyncio.sleep(due - time.time())
            tgt = i % targets
            labels = {"alertname": "InferenceStorm", "severity": "critical", "namespace": "llm-prod",
                      "deployment": f"svc-{tgt}", "replica": str((i // targets) % 20)}
            body = {"status": "firing", "labels": labels,
                    "startsAt": f"2026-01-01T00:{(i // (targets * 10)) % 60:02d}:00Z"}
            futs.append(await p.send(f"{app}.alerts", json.dumps(body).encode(), key=partition_key(labels),
                                     timestamp_ms=int(time.time() * 1000)))
        metas = await asyncio.gather(*futs)
        return [h.Sent(m.topic, m.partition, m.offset, m.timestamp) for m in metas]
    finally:
        await p.stop()


def run(ctx: Ctx) -> Result:
    n, seconds, targets, limit = (3_000, 2.0, 100, 20) if ctx.short else (50_000, 10.0, 500, 100)
    res = Result("alert_storm")
    d = ctx.dir("alert_storm")
    pol = d / "policies"
    pol.mkdir(exist_ok=True)
    (pol / "p.yaml").write_text(POLICY)
    cfg = d / "healer.yaml"
    cfg.write_text(f"rate_limit: {{max: {limit}, per: 1m}}\n")
    app = h.unique_app("cs")
    rss: list[tuple[float, int]] = []
    with h.workers(ctx.bootstrap, d) as wf:
        w = wf.start(pol, app, partitions=6, HEALER_CONFIG=str(cfg))
        stop = threading.Event()
        t0 = time.monotonic()

        def sample() -> None:
            while not stop.is_set():
                rss.append((time.monotonic() - t0, h.rss_kb(w.proc.pid)))
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        ts = time.monotonic()
        sent = asyncio.run(storm(ctx.bootstrap, app, n, seconds, targets))
        storm_s = time.monotonic() - ts
        drained, _lag = h.wait_drained(ctx.bootstrap, app, timeout=900, workers=[w])
        drain_s = time.monotonic() - ts - storm_s
        stop.set()
        sampler.join()
        res.checks["drained within 900 s"] = drained
        res.checks["worker never exited"] = w.proc.poll() is None
        view = audit_view(ctx.bootstrap, app)
        backlog = h.backlog(ctx.bootstrap, app)
        w.stop()
    fill(res, view, (s.event_id for s in sent))
    decisions: dict[str, int] = {}
    for r in view.records:
        if r.get("kind") in ("decision.suppressed", "action.queued"):
            key = r.get("reason") or "execute"
            decisions[key] = decisions.get(key, 0) + 1
    dup_inputs = sum(1 for r in view.records if r.get("kind") == "event.duplicate")
    peak = max(k for _, k in rss) / 1024 if rss else 0.0
    start = rss[0][1] / 1024 if rss else 0.0
    end = rss[-1][1] / 1024 if rss else 0.0
    app_backlog = {k: v for k, v in backlog.items() if not k.startswith("faust_")}
    res.checks[f"actions <= rate limit ({limit})"] = res.actions_executed <= limit
    res.checks["actions == rate limit (storm saturates it)"] = res.actions_executed == limit
    res.checks[f"peak RSS < {RSS_LIMIT_MIB} MiB"] = peak < RSS_LIMIT_MIB
    res.checks["no backlog after the storm"] = drained and sum(app_backlog.values()) == 0
    res.detail.update({
        "alerts": n, "storm_seconds": round(storm_s, 2), "targets": targets, "rate_limit": limit,
        "drain_seconds_after_storm": round(drain_s, 1), "decisions": decisions,
        "event_duplicate_records": dup_inputs, "rss_mib": {"start": round(start), "peak": round(peak),
                                                           "end": round(end)},
        "backlog": backlog,
    })
    return res
