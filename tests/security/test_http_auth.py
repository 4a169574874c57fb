"""Issue 13, findings 3 (over HTTP) and 7 (auth): who may call a worker, and as whom it is audited.

Tried against a local worker: it started with no token and accepted alerts from anyone (a
warning only), bound 0.0.0.0, the webhook token fell back to the API token, the approvals API
audited whatever ``actor`` the body named, and a typo in the config file printed the secret
value in the error. Here, against real ``healer run`` workers on the real broker: a worker with
no tokens exits 1 with a message saying how to configure them, unless ``--insecure-no-auth``
(then alerts are open and approvals are not); the default bind is loopback only; the
Alertmanager receiver's token (role ingest) cannot approve; an approval is audited as the
token's identity although the body says ``user:security-officer``; and bad settings, in the
config file, the environment or the tokens file, stop the worker without printing the value.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_http_worker import call, gpu_alert, policies
from tests.workers import Worker, WorkerFactory, read_until

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-0123456789abcdef-value"
EXIT_TIMEOUT_S = 120


def exits(w: Worker) -> tuple[int, str]:
    code = w.proc.wait(timeout=EXIT_TIMEOUT_S)
    return code, w.log_path.read_text(errors="replace")


def pending_action(w: Worker, bootstrap: str, node: str) -> str:
    assert call(w, "POST", "/api/v1/alerts", gpu_alert(node), token=w.tokens["ingest"])[0] == 200
    audit = read_until(bootstrap, f"{w.app_id}.audit",
                       lambda r: any(x["kind"] == "action.pending_approval" for x in r), timeout=90)
    return str(next(x["action_id"] for x in audit if x["kind"] == "action.pending_approval"))


def test_no_tokens_no_start(healer_worker: WorkerFactory, unique_app_id: str, tmp_path: Path) -> None:
    w = healer_worker.start(policies(tmp_path), unique_app_id, wait=False, tokens=False)
    code, out = exits(w)
    assert code == 1, out[-3000:]
    assert "healer: no API tokens configured" in out
    assert "HEALER_TOKENS_FILE" in out and "--insecure-no-auth" in out
    assert "http listening" not in out


def test_insecure_no_auth_opens_alerts_only(healer_worker: WorkerFactory, kafka_bootstrap: str,
                                            unique_app_id: str, tmp_path: Path) -> None:
    w = healer_worker.start(policies(tmp_path), unique_app_id, tokens=False, args=["--insecure-no-auth"])
    assert call(w, "POST", "/api/v1/alerts", gpu_alert("gpu-3"))[0] == 200
    audit = read_until(kafka_bootstrap, f"{unique_app_id}.audit",
                       lambda r: any(x["kind"] == "action.pending_approval" for x in r), timeout=90)
    aid = next(x["action_id"] for x in audit if x["kind"] == "action.pending_approval")
    code, body = call(w, "POST", f"/api/v1/approvals/{aid}/approve", {"reason": "anyone?"})
    assert code == 401 and "missing bearer token" in body["error"]
    assert "insecure_no_auth: POST /api/v1/alerts accepts requests without a token" in w.log_path.read_text()


def listening_addresses(port: int) -> set[str]:
    """Local addresses of LISTEN sockets on ``port``, from /proc/net/tcp and tcp6."""
    out = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, _, hexport = local.partition(":")
            if state == "0A" and int(hexport, 16) == port:
                if len(addr) == 8:
                    out.add(socket.inet_ntoa(bytes.fromhex(addr)[::-1]))
                else:
                    out.add(addr)
    return out


def other_address() -> str | None:
    """A non-loopback address of this machine, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            addr = str(s.getsockname()[0])
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


def test_default_bind_is_loopback(healer_worker: WorkerFactory, unique_app_id: str, tmp_path: Path) -> None:
    w = healer_worker.start(policies(tmp_path), unique_app_id)  # the factory leaves HEALER_HTTP_HOST unset
    assert listening_addresses(w.http_port) == {"127.0.0.1"}
    other = other_address()
    print(f"bind: listening on {listening_addresses(w.http_port)}; other local address: {other}")
    if other is not None:
        with pytest.raises(OSError), socket.create_connection((other, w.http_port), timeout=5):
            pass


def test_webhook_token_cannot_approve(healer_worker: WorkerFactory, kafka_bootstrap: str,
                                      unique_app_id: str, tmp_path: Path) -> None:
    w = healer_worker.start(policies(tmp_path), unique_app_id)
    aid = pending_action(w, kafka_bootstrap, "gpu-5")
    code, body = call(w, "POST", f"/api/v1/approvals/{aid}/approve", {"reason": "looks fine"},
                      token=w.tokens["ingest"])
    assert code == 403 and "identity test-alertmanager may not approve" in body["error"], body
    audit = read_until(kafka_bootstrap, f"{unique_app_id}.audit",
                       lambda r: any(x["kind"] == "event.rejected" for x in r), timeout=60)
    rejected = [x for x in audit if x["kind"] == "event.rejected"]
    assert [(x["reason"], x["actor"], x["action_id"]) for x in rejected] == [
        ("approve attempt by test-alertmanager refused: needs role approve", "user:test-alertmanager", aid)]
    code, body = call(w, "GET", "/api/v1/approvals")
    assert [(a["action_id"], a["state"]) for a in body["approvals"]] == [(aid, "pending")]
    assert not any(x["kind"] == "action.approved" for x in audit)


def test_audited_actor_is_the_tokens_identity(healer_worker: WorkerFactory, kafka_bootstrap: str,
                                              unique_app_id: str, tmp_path: Path) -> None:
    w = healer_worker.start(policies(tmp_path), unique_app_id)
    aid = pending_action(w, kafka_bootstrap, "gpu-6")
    code, body = call(w, "POST", f"/api/v1/approvals/{aid}/approve",
                      {"actor": "user:security-officer", "reason": "approved by security"},
                      token=w.tokens["approve"])
    assert code == 202 and body["actor"] == "user:test-approver", body
    audit = read_until(kafka_bootstrap, f"{unique_app_id}.audit",
                       lambda r: any(x["kind"] == "action.verified" for x in r), timeout=90)
    approved = [x for x in audit if x["kind"] == "action.approved"]
    assert [(x["action_id"], x["actor"], x["reason"]) for x in approved] == [
        (aid, "user:test-approver", "approved by security")]
    assert "security-officer" not in json.dumps(audit)


def config_cases(tmp: Path) -> list[tuple[str, dict[str, str], list[str]]]:
    typo = tmp / "typo.yaml"
    typo.write_text(f'webhook_tokn: "{SECRET}"\n')
    bad_value = tmp / "bad-value.yaml"
    bad_value.write_text(f'http_max_connections: "{SECRET}"\n')
    broken = tmp / "broken.yaml"
    broken.write_text(f'api_token: "{SECRET}\nhttp_port: [\n')
    dup = tmp / "tokens-dup.yaml"
    dup.write_text(f"tokens:\n  - {{identity: a, roles: [ingest], token: {SECRET}}}\n"
                   f"  - {{identity: b, roles: [approve], token: {SECRET}}}\n")
    return [
        ("typo in the config file", {"HEALER_CONFIG": str(typo)},
         [str(typo), "webhook_tokn: unknown setting; did you mean webhook_token?"]),
        ("bad value in the config file", {"HEALER_CONFIG": str(bad_value)},
         [str(bad_value), "http_max_connections: Input should be a valid integer"]),
        ("broken YAML in the config file", {"HEALER_CONFIG": str(broken)},
         [str(broken), "is not valid YAML at line"]),
        ("bad value in env", {"HEALER_HTTP_BODY_TIMEOUT": SECRET},
         ["HEALER_HTTP_BODY_TIMEOUT: Value error, not a duration"]),
        ("one token for two identities", {"HEALER_TOKENS_FILE": str(dup)},
         [f"tokens file {dup} entry 2 has the same token as tokens file {dup} entry 1"]),
    ]


@pytest.mark.parametrize("case", range(5))
def test_bad_settings_never_print_the_secret(case: int, healer_worker: WorkerFactory, unique_app_id: str,
                                             tmp_path: Path) -> None:
    name, env, expect = config_cases(tmp_path)[case]
    w = healer_worker.start(policies(tmp_path), unique_app_id, wait=False, tokens=name != "one token for two "
                            "identities", **env)
    code, out = exits(w)
    print(f"{name}: exit {code}: {out.strip()[-400:]}")
    assert code == 1, out[-3000:]
    for text in expect:
        assert text in out, out[-3000:]
    assert "s3cr3t" not in out
    assert "Traceback" not in out


def test_case_names_are_unique(tmp_path: Path) -> None:
    names: list[Any] = [c[0] for c in config_cases(tmp_path)]
    assert len(set(names)) == len(names) == 5
