"""CLI manners found by following the README and docs/quickstart.md as a new user, through the
real CLI (``python -m healer.cli.main``) against the session broker and real workers:

- ``healer action run`` and ``healer rollback`` fail fast, queue nothing and name the app id and
  the broker when no worker of the app id runs; the target kind is inferred when the action
  takes one kind; an ``action.failed`` is also a warning in the worker's log;
- ``healer audit tail`` / ``verify`` say which topic on which broker was empty or missing,
  ``verify`` fails on zero records unless ``--allow-empty``, and neither creates the topic;
- a dry run is visible in the worker's start-up line and in ``healer audit tail``;
- a closed pipe (``healer audit tail --json | head``) ends the command quietly;
- ``healer kafka up`` says when it reuses a broker it did not start.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from streams.broker import EmbeddedKafka
from streams.client import read_topic, topic_exists
from tests.workers import WorkerFactory, emit, free_port, healer_cli, read_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEMO_POLICIES = ROOT / "deploy" / "demo" / "policies"
INCIDENT = ROOT / "deploy" / "demo" / "incident.jsonl"


def _count(bootstrap: str, topic: str) -> int:
    async def go() -> int:
        if not await topic_exists(bootstrap, topic):
            return 0
        return len([m async for m in read_topic(bootstrap, topic)])

    return asyncio.run(go())


def _no_worker(done: subprocess.CompletedProcess[str], app: str, bootstrap: str) -> None:
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"no worker of app id {app!r} is running on {bootstrap}" in done.stderr, done.stderr
    assert "nothing was queued" in done.stderr


def test_operator_commands_need_a_worker(
    healer_worker: WorkerFactory, kafka_bootstrap: str, unique_app_id: str
) -> None:
    app = unique_app_id
    # no worker has ever run: the command says so at once instead of waiting 600 s for nobody
    lonely = healer_cli(kafka_bootstrap, app, "action", "run", "healer.noop", "--target",
                        "kind=Deployment", "--target", "namespace=llm-prod", "--target", "name=vllm",
                        "--wait-timeout", "600")
    _no_worker(lonely, app, kafka_bootstrap)
    assert "queued" not in lonely.stdout
    assert _count(kafka_bootstrap, f"{app}.actions") == 0
    assert _count(kafka_bootstrap, f"{app}.audit-log") == 0

    port = free_port()  # a Triton server nobody runs, on the worker's allow-list (below)
    w = healer_worker.start(DEMO_POLICIES, app, HEALER_TRITON_SERVERS=f"http://127.0.0.1:{port}")
    ok = healer_cli(kafka_bootstrap, app, "action", "run", "healer.noop", "--target", "kind=Deployment",
                    "--target", "namespace=llm-prod", "--target", "name=vllm", "--with", "message=by hand")
    assert ok.returncode == 0 and "action.verified" in ok.stdout, ok.stderr + w.log_tail()
    assert re.search(r"^queued m-\w+: healer.noop on Deployment/llm-prod/vllm$", ok.stdout, re.M), ok.stdout
    done_id = ok.stdout.split()[1].rstrip(":")

    # triton.reload takes only TritonModel: no kind= needed. Nothing listens on the port, so the
    # snapshot fails: audited action.failed, and a warning in the worker's log
    reload = healer_cli(kafka_bootstrap, app, "action", "run", "triton.reload", "--target",
                        f"server=http://127.0.0.1:{port}", "--target", "model=llm-ranker")
    assert reload.returncode == 1, reload.stdout + reload.stderr
    assert re.search(rf"^queued (m-\w+): triton.reload on TritonModel/http://127.0.0.1:{port}/llm-ranker$",
                     reload.stdout, re.M), reload.stdout
    failed_id = reload.stdout.split()[1].rstrip(":")
    assert "action.failed" in reload.stdout
    warnings = [json.loads(line) for line in w.log_path.read_text().splitlines()
                if line.startswith("{") and '"WARNING"' in line and failed_id in line]
    assert [r["logger"] for r in warnings] == ["healer.runner"], w.log_tail()
    assert warnings[0]["message"].startswith(f"action.failed {failed_id}: triton.reload on ")
    assert "snapshot failed" in warnings[0]["message"]

    # the worker leaves the group: a rollback now queues nothing and says why
    assert w.stop() == 0
    before = _count(kafka_bootstrap, f"{app}.actions")
    rb = healer_cli(kafka_bootstrap, app, "rollback", done_id, "--wait-timeout", "600")
    _no_worker(rb, app, kafka_bootstrap)
    assert _count(kafka_bootstrap, f"{app}.actions") == before


def test_action_kind_must_be_given_when_the_action_takes_several(
    kafka_bootstrap: str, unique_app_id: str
) -> None:
    done = healer_cli(kafka_bootstrap, unique_app_id, "action", "run", "kubernetes.scale",
                      "--target", "namespace=llm-prod", "--target", "name=vllm", "--with", "replicas=2")
    assert done.returncode == 1
    assert "kubernetes.scale acts on Deployment, StatefulSet: say which with --target kind=..." in done.stderr


def test_audit_commands_name_the_empty_or_missing_topic(kafka_bootstrap: str, unique_app_id: str) -> None:
    app, topic = unique_app_id, f"{unique_app_id}.audit"
    tail = healer_cli(kafka_bootstrap, app, "audit", "tail")
    assert tail.returncode == 1 and tail.stdout == ""
    assert f"topic {topic} does not exist on {kafka_bootstrap}" in tail.stderr, tail.stderr
    verify = healer_cli(kafka_bootstrap, app, "audit", "verify")
    assert verify.returncode == 1 and verify.stdout.strip() == "FAILED: 0 records, chains -"
    assert f"topic {topic} does not exist on {kafka_bootstrap}" in verify.stderr
    assert "--allow-empty" in verify.stderr
    allowed = healer_cli(kafka_bootstrap, app, "audit", "verify", "--allow-empty")
    assert allowed.returncode == 0 and allowed.stdout.startswith("ok: 0 records, chains -;")
    # looking did not create it (a broker with auto-creation would, with the wrong partitions)
    assert not asyncio.run(topic_exists(kafka_bootstrap, topic))

    created = healer_cli(kafka_bootstrap, app, "topics", "create", "--partitions", "2")
    assert created.returncode == 0, created.stderr
    tail = healer_cli(kafka_bootstrap, app, "audit", "tail")
    assert tail.returncode == 0 and tail.stdout == ""
    assert f"topic {topic} on {kafka_bootstrap} is empty (app id {app!r})" in tail.stderr, tail.stderr
    verify = healer_cli(kafka_bootstrap, app, "audit", "verify")
    assert verify.returncode == 1 and f"topic {topic} on {kafka_bootstrap} is empty" in verify.stderr


def test_dry_run_is_visible(healer_worker: WorkerFactory, kafka_bootstrap: str, unique_app_id: str) -> None:
    app = unique_app_id
    w = healer_worker.start(DEMO_POLICIES, app, HEALER_DRY_RUN="true")
    start = [line for line in w.log_path.read_text().splitlines() if "healer worker app_id=" in line]
    assert len(start) == 1 and f"app_id={app} " in start[0]
    assert "dry_run=true paused=false policies=2 dry_run_policies=0" in start[0], start[0]
    sent = healer_cli(kafka_bootstrap, app, "emit", str(INCIDENT))
    assert sent.returncode == 0, sent.stderr
    read_until(kafka_bootstrap, f"{app}.audit",
               lambda rs: sum(r.get("kind") == "action.succeeded" for r in rs) >= 2, timeout=120)
    tail = healer_cli(kafka_bootstrap, app, "audit", "tail")
    assert tail.returncode == 0, tail.stderr
    acted = [line for line in tail.stdout.splitlines() if " action." in line]
    assert acted and all(re.search(r"\saction\.\w+  dry-run  ", line) for line in acted), tail.stdout
    assert not any("dry-run" in line for line in tail.stdout.splitlines() if "event.received" in line)


def test_closed_pipe_ends_quietly(kafka_bootstrap: str, unique_app_id: str, tmp_path: Path) -> None:
    """More output than a pipe holds, read by `head -1`: exit 141 (SIGPIPE's), no traceback."""
    app = unique_app_id
    record = {"schema": "healer.audit/v1", "kind": "event.received", "chain": "0",
              "time": "2026-11-21T10:00:00.000Z", "event": {"id": "x" * 200}}
    emit(kafka_bootstrap, f"{app}.audit", [json.dumps({**record, "seq": i}).encode() for i in range(3000)])
    events = tmp_path / "events.jsonl"
    events.write_text("".join(
        json.dumps({"time": "2026-11-21T10:00:00Z", "alert": {"labels": {"alertname": f"A{i}"}}}) + "\n"
        for i in range(3000)))
    env = {**os.environ, "HEALER_BOOTSTRAP_SERVERS": kafka_bootstrap, "HEALER_APP_ID": app}
    cli = f"{sys.executable} -m healer.cli.main"
    for command in ("audit tail --json", "audit tail", "audit export",
                    f"policy test {DEMO_POLICIES} --events {events} --show-all"):
        done = subprocess.run(["bash", "-o", "pipefail", "-c", f"{cli} {command} | head -1"], env=env,
                              capture_output=True, text=True, timeout=180, check=False)
        assert done.stdout.count("\n") == 1, (command, done.stdout[:500])
        assert done.stderr == "", (command, done.stderr[-2000:])
        assert done.returncode == 141, (command, done.returncode)


def test_kafka_up_says_it_reuses_a_running_broker(embedded_kafka: EmbeddedKafka | None) -> None:
    if embedded_kafka is None:
        pytest.skip("the session broker is not the embedded one: nothing to reuse")
    state = str(embedded_kafka.state_dir)
    info = embedded_kafka.status()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALER_")}
    up = subprocess.run([sys.executable, "-m", "healer.cli.main", "kafka", "up", "--state-dir", state],
                        env=env, capture_output=True, text=True, timeout=180, check=False)
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip() == f"bootstrap: {info['bootstrap']}"
    assert re.search(rf"reusing the broker already running from {re.escape(state)} "
                     rf"\(pid {info['pid']}, up (\d+d\d\dh|\d+h\d\dm|\d+m\d\ds)\); it was not started now",
                     up.stderr), up.stderr
    status = subprocess.run([sys.executable, "-m", "healer.cli.main", "kafka", "status", "--state-dir",
                             state], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert status.returncode == 0 and re.search(r"^uptime: \S+$", status.stdout, re.M), status.stdout
    assert embedded_kafka.status()["pid"] == info["pid"], "the running broker was replaced"
