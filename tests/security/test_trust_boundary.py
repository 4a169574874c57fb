"""Issue 13, findings 1-3: whoever can write the worker's topics cannot make it act or forge
its audit. Each test writes forged records straight to the topics of a real worker on the real
broker (the attacker has topic access but no key of the worker's keyring) and checks that
nothing happens, that every refusal is audited with the record's coordinates, and that
``healer audit verify`` names the forgery.

- finding 1: a forged audit record with a valid SHA-256 link (and a huge ``source.offset``) is
  named by verify; the sealer resumes from the last genuine record, seals every entry after
  it and notes the forgery in the chain;
- finding 2: unsigned action requests (a Triton reload naming an arbitrary server, a webhook
  with ``dry_run: false``) reach no server; signed requests are re-checked at execution
  (namespaces for every executor, allow-listed Triton servers and webhook URLs) and a worker
  in dry-run runs them dry, also an approval created before it was restarted in dry-run;
- finding 3: an unsigned approval does nothing; a signed one acts as its key's identity
  whatever it claims; a forged ``action.pending_approval`` is neither listed nor approvable.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from healer.chain import record_hash
from healer.commands import sign
from healer.keys import Key
from healer.settings import Settings
from tests.security.common import alert_record, settled_records
from tests.workers import WorkerFactory, healer_cli, keyring_for, read_until

pytestmark = pytest.mark.integration

POLICIES = """
apiVersion: healer/v1
kind: Policy
metadata: {name: noop-on-alert}
spec:
  trigger: {alert: {matchers: ['alertname="TrustNoop"']}}
  target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
  actions: [{use: healer.noop}]
---
apiVersion: healer/v1
kind: Policy
metadata: {name: needs-approval}
spec:
  trigger: {alert: {matchers: ['alertname="TrustApproval"']}}
  target: {kind: Node, name: "{{ labels.node }}"}
  actions: [{use: healer.noop, with: {message: drain}}]
  guards: {approval: manual, approval_timeout: 30m}
"""


# ---------------------------------------------------------------- helpers


class Capture(ThreadingHTTPServer):
    """An HTTP server that counts every request it gets (none must arrive)."""

    def __init__(self) -> None:
        self.hits: list[tuple[str, str, dict[str, str]]] = []
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                capture.hits.append((self.command, self.path, dict(self.headers)))
                self.send_response(200)
                self.end_headers()

            do_GET = do_POST = do_PUT = _any

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def capture() -> Iterator[Capture]:
    srv = Capture()
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield srv
    srv.shutdown()


def write(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes, list[tuple[str, bytes]] | None]],
          partition: int | None = None) -> None:
    async def go() -> None:
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await p.start()
        try:
            for key, value, headers in records:
                await p.send_and_wait(topic, value, key=key, headers=headers, partition=partition)
        finally:
            await p.stop()

    asyncio.run(go())


def request(action_id: str, use: str, target: dict[str, Any], with_: dict[str, Any] | None = None,
            dry_run: bool = False) -> bytes:
    return json.dumps({"action_id": action_id, "use": use, "target": target, "with": with_ or {},
                       "dry_run": dry_run, "actor": "user:mallory"}).encode()


def people_key(app: str, identity: str) -> Key:
    ring = Settings(app_id=app, keyring_file=str(keyring_for(app))).keyring()
    [key] = [k for k in ring.keys.values() if k.identity == identity]
    return key


def rejected_reasons(audit: list[dict[str, Any]]) -> dict[str, str]:
    return {str((r.get("event") or {}).get("id")): str(r.get("reason")) for r in audit
            if r.get("kind") == "event.rejected"}


def start(factory: WorkerFactory, tmp: Path, app: str, **env: str) -> Any:
    pol = tmp / "policies"
    pol.mkdir(exist_ok=True)
    (pol / "p.yaml").write_text(POLICIES)
    return factory.start(pol, app, **env)


def fire(bootstrap: str, app: str, alertname: str, labels: dict[str, str]) -> None:
    fp = hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]
    write(bootstrap, f"{app}.alerts", [(None, alert_record({"alertname": alertname, **labels}, fp), None)])


# ---------------------------------------------------------------- finding 1


def test_a_forged_audit_record_is_named_and_never_resumed_from(
    healer_worker: WorkerFactory, kafka_bootstrap: str, unique_app_id: str, tmp_path: Path,
) -> None:
    app = unique_app_id
    w = start(healer_worker, tmp_path, app, HEALER_TOPIC_PARTITIONS="1")
    for i in range(3):
        fire(kafka_bootstrap, app, "TrustNoop", {"namespace": "llm", "deployment": f"before-{i}"})
    audit = read_until(kafka_bootstrap, f"{app}.audit",
                       lambda rs: sum(r.get("kind") == "action.verified" for r in rs) == 3)
    last = max((r for r in audit if r.get("chain") == "0"), key=lambda r: r["seq"])
    # the attacker appends a well-linked record (plain SHA-256, no key) claiming an audit-log offset
    # far beyond the end, so that a resuming sealer would skip everything up to it
    forged = {"schema": "healer.audit/v1", "chain": "0", "seq": last["seq"] + 1, "id": "e-forged",
              "time": "2026-11-21T10:00:00Z", "kind": "action.verified", "action_id": "a-forged",
              "actor": "healer", "source": {"partition": 0, "offset": 10**9}, "prev_hash": last["hash"]}
    forged["hash"] = record_hash(forged)
    write(kafka_bootstrap, f"{app}.audit", [(None, json.dumps(forged).encode(), None)], partition=0)

    # the sealer resumes (a restart) and the worker goes on: nothing after the forgery is lost
    w.kill()
    w = start(healer_worker, tmp_path, app, HEALER_TOPIC_PARTITIONS="1")
    for i in range(3):
        fire(kafka_bootstrap, app, "TrustNoop", {"namespace": "llm", "deployment": f"after-{i}"})
    audit = settled_records(kafka_bootstrap, f"{app}.audit",
                            lambda rs: sum(r.get("kind") == "action.verified" for r in rs) >= 7)
    verified = {r["action_id"] for r in audit if r.get("kind") == "action.verified"}
    assert len(verified - {"a-forged"}) == 6, w.log_tail()
    notes = [r for r in audit if r.get("kind") == "event.rejected" and "not written by a sealer" in (r.get("reason") or "")]
    assert len(notes) == 1 and notes[0]["detail"]["foreign"][0]["hash"] == forged["hash"]
    assert notes[0]["prev_hash"] == last["hash"]  # the next genuine link follows the last genuine record

    out = healer_cli(kafka_bootstrap, app, "audit", "verify")
    assert out.returncode == 1, out.stdout + out.stderr
    fails = [line for line in out.stdout.splitlines() if line.startswith("FAIL ")]
    assert len(fails) == 1 and "foreign record" in fails[0] and f"{app}.audit[0]@" in fails[0], out.stdout
    assert "MACs checked" in out.stdout


# ---------------------------------------------------------------- finding 2


def test_unsigned_commands_reach_nothing_and_signed_ones_are_rechecked(
    healer_worker: WorkerFactory, kafka_bootstrap: str, unique_app_id: str, tmp_path: Path, capture: Capture,
) -> None:
    app = unique_app_id
    start(healer_worker, tmp_path, app, HEALER_DRY_RUN="true", HEALER_WEBHOOK_URLS=capture.url,
          HEALER_TRITON_AUTH_HEADER="Authorization", HEALER_TRITON_AUTH_VALUE="Bearer triton-secret")
    alice = people_key(app, "alice")
    deploy = {"kind": "Deployment", "namespace": "llm", "name": "vllm"}
    unsigned = [
        request("a-reload", "triton.reload", {"kind": "TritonModel", "server": capture.url, "model": "m"}),
        request("a-hook", "webhook.notify", deploy, {"url": capture.url + "/hook"}, dry_run=False),
    ]
    write(kafka_bootstrap, f"{app}.actions", [(b"k", v, None) for v in unsigned])
    stranger = Key("stranger", b"s" * 32, "mallory", frozenset({"operate"}))
    write(kafka_bootstrap, f"{app}.actions", [(b"k", unsigned[1], sign(stranger, "actions", unsigned[1]))])
    # signed by an operator, but against the rules of this worker
    namespaced = {
        "healer.noop": "Deployment", "kubernetes.scale": "Deployment", "kubernetes.restart": "StatefulSet",
        "kubernetes.delete_pod": "Pod", "kubernetes.reroute": "Service", "webhook.notify": "Deployment",
    }
    params = {"kubernetes.scale": {"replicas": "+1"}, "kubernetes.reroute": {"selector": {"track": "stable"}},
              "webhook.notify": {"url": capture.url + "/hook"}}
    bad: list[bytes] = []
    for use, kind in namespaced.items():
        for ns in ("kube-public", "../../Kube System\n"):
            bad.append(request(f"a-{use}-{len(bad)}", use, {"kind": kind, "namespace": ns, "name": "x"},
                               params.get(use)))
    bad.append(request("a-unlisted", "triton.reload", {"kind": "TritonModel", "server": "http://10.9.9.9:8000",
                                                       "model": "m"}))
    # and one that passes every check: the worker is in dry-run, so it runs dry (no POST)
    good = request("a-dry", "webhook.notify", deploy, {"url": capture.url + "/hook"}, dry_run=False)
    write(kafka_bootstrap, f"{app}.actions", [(b"k", v, sign(alice, "actions", v)) for v in [*bad, good]])

    audit = settled_records(kafka_bootstrap, f"{app}.audit",
                            lambda rs: any(r.get("action_id") == "a-dry" and r.get("kind") == "action.succeeded"
                                           for r in rs))
    reasons = rejected_reasons(audit)
    assert sum("unsigned" in r for r in reasons.values()) == 2
    assert sum("unknown key id 'stranger'" in r for r in reasons.values()) == 1
    refused = [r for r in audit if r.get("kind") == "event.rejected" and "refused at execution" in (r.get("reason") or "")]
    assert len(refused) == len(bad), [r.get("reason") for r in refused]
    assert all("namespace" in r["reason"] or "not in this worker's triton_servers" in r["reason"] for r in refused)
    ran = {r["action_id"] for r in audit if r.get("kind") == "action.running"}
    assert ran == {"a-dry"}  # nothing else got as far as an executor (no snapshot either)
    dry = [r for r in audit if r.get("action_id") == "a-dry" and r.get("kind") == "action.succeeded"]
    assert dry[0]["detail"]["dry_run"] is True and dry[0]["actor"] == "user:alice"
    assert capture.hits == []  # no request reached the "arbitrary" server: no POST, no credentials


def test_an_approval_from_before_a_dry_run_restart_runs_dry_and_approvals_are_bound_to_keys(
    healer_worker: WorkerFactory, kafka_bootstrap: str, unique_app_id: str, tmp_path: Path,
) -> None:
    app = unique_app_id
    w = start(healer_worker, tmp_path, app)
    fire(kafka_bootstrap, app, "TrustApproval", {"node": "gpu-a"})
    audit = read_until(kafka_bootstrap, f"{app}.audit",
                       lambda rs: any(r.get("kind") == "action.pending_approval" for r in rs))
    [aid] = [r["action_id"] for r in audit if r.get("kind") == "action.pending_approval"]
    assert w.stop() == 0
    w = start(healer_worker, tmp_path, app, HEALER_DRY_RUN="true")

    # an unsigned approval does nothing; a forged pending approval in the audit is not listed
    msg = json.dumps({"action_id": aid, "decision": "approve", "actor": "security-officer"}).encode()
    write(kafka_bootstrap, f"{app}.approvals", [(aid.encode(), msg, None)])
    forged = {"schema": "healer.audit/v1", "chain": "0", "seq": 0, "id": "e-x", "time": "2026-11-21T10:00:00Z",
              "kind": "action.pending_approval", "action_id": "a-forged-pending", "actor": "healer",
              "use": "healer.noop", "target": {"kind": "Node", "name": "gpu-z"}, "prev_hash": "0" * 64}
    forged["hash"] = record_hash(forged)
    write(kafka_bootstrap, f"{app}.audit", [(None, json.dumps(forged).encode(), None)], partition=0)
    listed = healer_cli(kafka_bootstrap, app, "approvals", "list", "--json")
    ids = [json.loads(line)["action_id"] for line in listed.stdout.splitlines() if line.strip()]
    assert ids == [aid], listed.stdout + listed.stderr
    code, body = w.get("/api/v1/approvals")
    assert code == 200 and [a["action_id"] for a in body["approvals"]] == [aid], body
    forged_approve = healer_cli(kafka_bootstrap, app, "approvals", "approve", "a-forged-pending")
    assert forged_approve.returncode == 1 and "no pending approval" in forged_approve.stderr

    # bob's key approves, whatever actor the message claims; the action runs, dry
    bob = people_key(app, "bob")
    write(kafka_bootstrap, f"{app}.approvals", [(aid.encode(), msg, sign(bob, "approvals", msg))])
    audit = settled_records(kafka_bootstrap, f"{app}.audit",
                            lambda rs: any(r.get("action_id") == aid and r.get("kind") == "action.succeeded"
                                           for r in rs))
    approved = [r for r in audit if r.get("action_id") == aid and r.get("kind") == "action.approved"]
    assert len(approved) == 1 and approved[0]["actor"] == "user:bob"
    done = [r for r in audit if r.get("action_id") == aid and r.get("kind") == "action.succeeded"]
    assert done[0]["detail"]["dry_run"] is True, done
    assert any("unsigned" in r for r in rejected_reasons(audit).values())
    assert sum(r.get("kind") == "action.running" and r.get("action_id") == aid for r in audit) == 1
