"""The offline CLI as a new user meets it, through the real ``python -m healer.cli.main``
(no broker needed): ``policy test --show-all`` and its unchanged default output, the docs'
``$ healer ...`` examples against what the commands print, the policy library without the demo's
noop policies, the dry-run mark of ``audit tail`` and the runner's warning on ``action.failed``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from actions.noop import NoopExecutor
from actions.registry import ExecutorRegistry
from actions.runner import RetryPolicy, Runner
from healer.audit import AuditEntry
from healer.cli.audit_cmd import readable
from healer.loader import load_policy_set
from healer.models import ActionRequest, EventRef, Target

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "tests" / "scenarios" / "pod-crashloop-delete"
DEMO_POLICIES = ROOT / "deploy" / "demo" / "policies"

POLICIES = """
apiVersion: healer/v1
kind: Policy
metadata: {name: restart-on-alert}
spec:
  trigger: {alert: {matchers: ['alertname="Broken"']}}
  target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
  actions: [{use: healer.noop}]
---
apiVersion: healer/v1
kind: Policy
metadata: {name: on-resolve}
spec:
  trigger: {alert: {matchers: ['alertname="Recovered"'], status: resolved}}
  target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
  actions: [{use: healer.noop}]
---
apiVersion: healer/v1
kind: Policy
metadata: {name: hot-gpu}
spec:
  trigger:
    metric: {name: gpu_util, group_by: [namespace, deployment], aggregate: max, window: 5m, op: ">", threshold: 90}
  target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
  actions: [{use: healer.noop}]
"""

LABELS = {"namespace": "llm-prod", "deployment": "vllm"}


def _alert(t: str, name: str, status: str = "firing") -> dict[str, object]:
    return {"time": t, "alert": {"status": status, "labels": {"alertname": name, **LABELS},
                                 "startsAt": "2026-11-21T09:59:00Z"}}


def _sample(t: str, value: float) -> dict[str, object]:
    return {"time": t, "metric": {"name": "gpu_util", "value": value, "labels": LABELS, "timestamp": t}}


EVENTS = [
    _alert("2026-11-21T10:00:00Z", "Broken"),                 # 1 execute
    _alert("2026-11-21T10:00:10Z", "Broken"),                 # 2 duplicate
    _alert("2026-11-21T10:00:20Z", "Unknown"),                # 3 no policy matched
    _alert("2026-11-21T10:00:30Z", "Broken", "resolved"),     # 4 resolved
    _alert("2026-11-21T10:00:40Z", "Recovered"),              # 5 firing, policy wants resolved
    _sample("2026-11-21T10:10:00Z", 50.0),                    # 6 below the threshold
    _sample("2026-11-21T10:00:00Z", 99.0),                    # 7 older than the 5m window
    {"time": "2026-11-21T10:11:00Z", "alert": {"status": "exploded", "labels": {}}},  # 8 rejected
]
REASONS = [
    (2, "duplicate"), (3, "no policy matched"), (4, "resolved"), (5, "trigger status not matched"),
    (6, "metric condition not met"), (7, "late sample"), (8, "rejected input: "),
]


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "healer.cli.main", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def replay(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "p.yaml").write_text(POLICIES)
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    return tmp_path / "p.yaml", events


def test_show_all_says_why_each_input_got_no_decision(replay: tuple[Path, Path]) -> None:
    policy, events = replay
    done = cli("policy", "test", policy, "--events", events, "--show-all")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(x) for x in done.stdout.splitlines()]
    assert [x["decision"] for x in lines] == ["execute"] + ["none"] * len(REASONS)
    none = [x for x in lines if x["decision"] == "none"]
    for got, (line, reason) in zip(none, REASONS, strict=True):
        assert got["line"] == line and got["reason"].startswith(reason), got
    assert none[0]["event"] == "alert Broken" and none[4]["event"] == "metric gpu_util"
    assert none[-1]["event"] == "input"

    table = cli("policy", "test", policy, "--events", events, "--show-all", "--format", "table")
    assert table.returncode == 0, table.stderr
    assert re.search(r"^2026-11-21T10:00:10Z +- +- +- +none +duplicate \(alert Broken, line 2\)$",
                     table.stdout, re.M), table.stdout
    assert "no policy matched (alert Unknown, line 3)" in table.stdout


def test_default_output_is_the_plan_alone(replay: tuple[Path, Path], tmp_path: Path) -> None:
    policy, events = replay
    plain = cli("policy", "test", policy, "--events", events)
    assert plain.returncode == 0
    assert [json.loads(x)["decision"] for x in plain.stdout.splitlines()] == ["execute"]
    # the plan format is what the scenarios' expected plans hold, byte for byte
    scenario = cli("policy", "test", ROOT / "policies" / "pod-crashloop-delete.yaml",
                   "--events", SCENARIO / "events.jsonl")
    assert scenario.stdout == (SCENARIO / "expected.jsonl").read_text()
    # --expect compares the plan only, with or without --show-all
    expect = tmp_path / "expect.jsonl"
    expect.write_text(plain.stdout)
    assert cli("policy", "test", policy, "--events", events, "--show-all", "--expect", expect).returncode == 0


def _doc_examples(path: Path) -> list[tuple[str, list[str]]]:
    """(command, shown output lines up to a '...') of every ``$ healer`` block in ``path``."""
    out = []
    for body in re.findall(r"```\n(\$ healer .*?)```", path.read_text(), re.S):
        command, *shown = body.rstrip("\n").split("\n")
        if "..." in shown:
            shown = shown[: shown.index("...")]
        shown = [line for line in shown if line.strip() != "..."]
        out.append((command[2:], shown))
    return out


def test_docs_examples_are_what_the_commands_print() -> None:
    checked = 0
    for command, shown in _doc_examples(ROOT / "docs" / "policies.md"):
        args = command.split()[1:]
        if not all((ROOT / a).exists() for a in args if "/" in a or a.endswith(".yaml")):
            continue  # an example about a file the reader writes (bad.yaml)
        done = cli(*args)
        printed = (done.stdout + done.stderr).splitlines()
        assert [line.rstrip() for line in printed[: len(shown)]] == shown, f"docs/policies.md: {command}"
        checked += 1
    assert checked >= 4


def test_the_library_has_no_demo_policies() -> None:
    """`healer run --policies policies/` loads the library only; the demo's noop policies moved."""
    done = cli("policy", "validate", "policies/")
    assert done.returncode == 0, done.stderr
    assert "demo" not in done.stdout
    library = load_policy_set([ROOT / "policies"])
    assert not [p.name for p in library.policies.values() if any(s.use == "healer.noop" for s in p.steps)]
    demo = cli("policy", "validate", DEMO_POLICIES)
    assert demo.returncode == 0 and "demo-latency-scale-out" in demo.stdout, demo.stderr


def test_audit_tail_marks_dry_runs() -> None:
    rec = {"time": "2026-11-21T10:00:00.000Z", "chain": "1", "seq": 4, "kind": "action.succeeded",
           "use": "healer.noop", "action_id": "a-1", "detail": {"dry_run": True, "would": {}}}
    assert "  action.succeeded  dry-run  use=healer.noop" in readable(rec)
    assert "dry-run" not in readable({**rec, "detail": {}})


def test_runner_logs_action_failed_as_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    registry = ExecutorRegistry()
    registry.register(NoopExecutor())
    audit: list[AuditEntry] = []

    async def sink(entry: AuditEntry) -> None:
        audit.append(entry)

    req = ActionRequest(action_id="a-fails", use="healer.noop", with_={"fail": "execute"},
                        target=Target(kind="Deployment", namespace="llm-prod", name="vllm"),
                        event=EventRef(id="e-1"))
    runner = Runner(registry, sink, retry=RetryPolicy(attempts=1, initial_wait=0, max_wait=0))
    with caplog.at_level(logging.WARNING, logger="healer.runner"):
        asyncio.run(runner.run(req))
    assert "action.failed" in [e.kind for e in audit]
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "healer.runner"]
    assert len(warned) == 1 and warned[0].getMessage().startswith(
        "action.failed a-fails: healer.noop on Deployment/llm-prod/vllm")
    assert getattr(warned[0], "action_id", None) == "a-fails"
