"""Chaos: the Triton server is killed in the middle of a model reload, then restarted.

A real tritonserver (tests/harness/triton_server.py; explicit model control) serves
the ``slow`` model (2 s to initialise). An alert makes the worker run
``triton.reload`` on it; as soon as the server starts initialising the new
instance, the server is killed (SIGKILL to its process group) and, 2 s later,
restarted on the same ports (explicit mode: it comes back with nothing loaded).
A second alert after the restart must reload normally.

Checks: each action runs once and ends in a final state (the reload's transient
connection errors are retried by the runner), the audit says what happened, and
when the first action ends ``verified`` the model is really READY on the
restarted server. Skipped when the Triton binary is unavailable.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from bench import harness as h
from bench.chaos.common import Ctx, Result, Skip, audit_view, fill

POLICY = """
apiVersion: healer/v1
kind: Policy
metadata: {{name: triton-chaos-reload}}
spec:
  trigger:
    alert:
      matchers: ['alertname="ChaosTritonMemory"']
  target: {{kind: TritonModel, server: "{url}", model: "{{{{ labels.model }}}}"}}
  actions:
    - {{use: triton.reload, with: {{timeout_seconds: 120}}}}
  verify: {{timeout: 120s, rollback: true}}
"""


def _restart_same_ports(server: object) -> None:
    from tests.harness.triton_server import find_dist

    srv = server  # TritonServer; ports are kept, start() would pick new ones
    srv._spawn(find_dist())  # type: ignore[attr-defined]
    srv._wait_live()  # type: ignore[attr-defined]


def _alert(app: str, n: int) -> h.Rec:
    labels = {"alertname": "ChaosTritonMemory", "namespace": "llm-prod", "model": "slow", "n": str(n)}
    body = {"status": "firing", "labels": labels, "startsAt": f"2026-01-01T00:0{n}:00Z"}
    return h.Rec(f"{app}.alerts", b"llm-prod/model=slow", json.dumps(body).encode(), None)


def _wait(what: str, check: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def run(ctx: Ctx) -> Result:
    res = Result("triton_kill")
    try:
        from tests.harness.triton_server import TritonServer, TritonUnavailable, find_dist

        find_dist()
    except (ImportError, RuntimeError) as exc:
        raise Skip(f"Triton server unavailable: {exc}") from exc
    d = ctx.dir("triton_kill")
    server = TritonServer(root=Path(d / "triton"))
    try:
        try:
            server.start()
        except TritonUnavailable as exc:
            raise Skip(f"Triton server cannot start: {str(exc)[:300]}") from exc
        server.load("slow")
        pol = d / "policies"
        pol.mkdir(exist_ok=True)
        (pol / "p.yaml").write_text(POLICY.format(url=server.url))
        app = h.unique_app("ctri")
        with h.workers(ctx.bootstrap, d) as wf:
            w = wf.start(pol, app, partitions=3, HEALER_TRITON_SERVERS=server.url)
            before = len([e for e in server.init_events("slow") if e["event"] == "init_start"])
            sent = h.produce(ctx.bootstrap, [_alert(app, 1)])
            started = _wait("reload starts", lambda: len([
                e for e in server.init_events("slow") if e["event"] == "init_start"]) > before, 120)
            res.checks["reload reached Triton before the kill"] = started
            t_kill = time.monotonic()
            server.kill()
            time.sleep(2.0)
            _restart_same_ports(server)
            res.detail["server_down_seconds"] = round(time.monotonic() - t_kill, 1)
            first_done = _wait("first action ends", lambda: len(audit_view(ctx.bootstrap, app).terminal) >= 1,
                               240)
            res.checks["first action ended within 240 s"] = first_done
            sent += h.produce(ctx.bootstrap, [_alert(app, 2)])
            _wait("second action ends", lambda: len(audit_view(ctx.bootstrap, app).terminal) >= 2, 240)
            view = audit_view(ctx.bootstrap, app)
            w.stop()
        fill(res, view, (s.event_id for s in sent))
        order = [r["action_id"] for r in view.records if r.get("kind") == "action.running"]
        states = [view.terminal.get(a) for a in order]
        res.detail["action_states"] = states
        ready = [e for e in server.index() if e["name"] == "slow" and e.get("state") == "READY"]
        res.detail["model_ready_at_end"] = bool(ready)
        res.checks["two actions ran"] = len(order) == 2
        res.checks["second reload (after the restart) verified"] = len(states) == 2 and \
            states[1] == "action.verified"
        res.checks["a verified reload left the model READY"] = bool(ready) or \
            "action.verified" not in states
        res.detail["first_action_audit"] = [
            (r["kind"], (r.get("reason") or "")[:120]) for r in view.records
            if order and r.get("action_id") == order[0]]
    finally:
        server.stop()
    return res
