"""Keyrings (healer.keys), signed commands (healer.commands) and the execution guards
(healer.execguard), table-driven, no broker."""

from __future__ import annotations

from typing import Any

import pytest

from healer.catalog import default_catalog
from healer.commands import acts_as, sign, verify
from healer.execguard import ExecutionRules, effective, refusal, url_allowed
from healer.index import PolicySet
from healer.keys import Key, KeyringError, generate, parse
from healer.models import ActionRequest, Target

W, A, OPS = "a" * 64, "b" * 64, "c" * 64
RING = parse(f"""
sign: w
seal: audit
keys:
  - {{id: w, secret: {W}, identity: healer, roles: [worker]}}
  - {{id: audit, secret: {A}, roles: [audit]}}
  - {{id: ann, secret: {OPS}, identity: ann, roles: [approve]}}
""", lambda p: b"")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("keys: 3", "a mapping with a list `keys`"),
        ("keys: [{id: x, secret: aa, roles: [worker]}]", "shorter than 16 bytes"),
        (f"keys: [{{id: x, secret: {W}, roles: [root]}}]", "roles must be"),
        (f"keys: [{{id: x, secret: {W}, secret_file: /f, roles: [worker]}}]", "exactly one of"),
        (f"keys: [{{id: x, secret: {W}, roles: [worker]}}, {{id: x, secret: {A}, roles: [worker]}}]", "appears twice"),
        (f"keys: [{{id: x, secret: {W}, roles: [worker]}}, {{id: y, secret: {W}, roles: [audit]}}]", "share a secret"),
        (f"sign: y\nkeys: [{{id: x, secret: {W}, roles: [worker]}}]", "names no key"),
        (f"seal: x\nkeys: [{{id: x, secret: {W}, roles: [worker]}}]", "needs the role 'audit'"),
        (f"keys: [{{id: 'a b', secret: {W}, roles: [worker]}}]", "id must be"),
        ("keys: [{id: x, secret: zz, roles: [worker]}]", "secret must be hex"),
        ("keys: [", "not YAML"),
    ],
)
def test_bad_keyrings_say_what_is_wrong_and_never_the_secret(text: str, error: str) -> None:
    with pytest.raises(KeyringError, match=error) as exc:
        parse(text, lambda p: b"")
    assert W not in str(exc.value) and A not in str(exc.value)


def test_generated_keyrings_parse_and_secret_files_are_read() -> None:
    ring = parse(generate("ops"), lambda p: b"")
    assert ring.signing_key() is not None and ring.sealing_key() is not None
    assert {k.identity for k in ring.with_role("approve")} == {"ops"}
    read: list[str] = []
    ring2 = parse("keys: [{id: f, secret_file: /run/k, roles: [audit]}]", lambda p: read.append(p) or b"x" * 20)
    assert read == ["/run/k"] and ring2.keys["f"].secret == b"x" * 20


VALUE = b'{"action_id": "a-1"}'


@pytest.mark.parametrize(
    ("kind", "signer", "value", "want"),
    [
        ("actions", "w", VALUE, "w"),
        ("approvals", "ann", VALUE, "ann"),
        ("actions", "ann", VALUE, "needs one of the roles"),  # an approver cannot run actions
        ("approval-requests", "ann", VALUE, "needs one of the roles"),  # only the worker asks
        ("actions", "audit", VALUE, "needs one of the roles"),
        ("actions", None, VALUE, "unsigned"),
    ],
)
def test_verify(kind: str, signer: str | None, value: bytes, want: str) -> None:
    headers = sign(RING.keys[signer], kind, value) if signer else []
    got = verify(RING, kind, value, headers)
    assert (got.id == want) if isinstance(got, Key) else (want in got)


def test_a_signature_covers_the_value_and_the_topic() -> None:
    headers = sign(RING.keys["w"], "actions", VALUE)
    assert "bad signature" in str(verify(RING, "actions", VALUE + b" ", headers))
    assert "bad signature" in str(verify(RING, "approvals", VALUE, headers))  # not movable between topics
    stranger = Key("x", b"k" * 32, "mallory", frozenset({"worker"}))
    assert "unknown key id 'x'" in str(verify(RING, "actions", VALUE, sign(stranger, "actions", VALUE)))
    forged = [(k, b"0" * 64 if k == "healer-mac" else v) for k, v in headers]
    assert "bad signature" in str(verify(RING, "actions", VALUE, forged))


def test_a_persons_key_acts_as_that_person() -> None:
    assert acts_as(RING.keys["w"], "user:api") == "user:api"
    assert acts_as(RING.keys["ann"], "user:security-officer") == "user:ann"


# ---------------------------------------------------------------- execution guards

RULES = ExecutionRules(protected_namespaces=("kube-system", "kube-public"), triton_servers=("http://triton-*.llm.svc:8000",),
                       webhook_urls=("https://hooks.example.com/oncall",))
CAT = default_catalog()


def req(use: str, target: dict[str, Any], with_: dict[str, Any] | None = None, **kw: Any) -> ActionRequest:
    return ActionRequest(action_id="a-1", use=use, target=Target(**target), with_=with_ or {}, **kw)


@pytest.mark.parametrize(
    ("request_", "want"),
    [
        (req("healer.noop", {"kind": "Deployment", "namespace": "llm", "name": "vllm"}), None),
        (req("healer.noop", {"kind": "Deployment", "namespace": "kube-public", "name": "x"}), "protected"),
        (req("kubernetes.scale", {"kind": "Deployment", "namespace": "../../Kube System\n", "name": "x"},
             {"replicas": "+1"}), "not a DNS-1123 label"),
        (req("kubernetes.scale", {"kind": "Node", "name": "n"}, {"replicas": "+1"}), "cannot act on a Node"),
        (req("kubernetes.scale", {"kind": "Deployment", "namespace": "llm", "name": "x"}, {"replicas": "lots"}),
         "bad params"),
        (req("no.such", {"kind": "Node", "name": "n"}), "unknown action"),
        (req("triton.reload", {"kind": "TritonModel", "server": "http://triton-0.llm.svc:8000", "model": "m"}), None),
        (req("triton.reload", {"kind": "TritonModel", "server": "http://evil.example:8000", "model": "m"}),
         "not in this worker's triton_servers"),
        (req("triton.reload", {"kind": "TritonModel", "servers": ("http://triton-0.llm.svc:8000",
                                                                  "http://triton-0.llm.svc:9000"), "model": "m"}),
         "not in this worker's triton_servers"),  # every server of a fleet, the port too
        (req("webhook.notify", {"kind": "Node", "name": "n"}, {"url": "https://hooks.example.com/oncall/x"}), None),
        (req("webhook.notify", {"kind": "Node", "name": "n"}, {"url": "https://hooks.example.com/oncallx"}),
         "webhook_urls"),
        (req("webhook.notify", {"kind": "Node", "name": "n"}, {"url": "http://hooks.example.com/oncall"}),
         "webhook_urls"),  # the scheme counts
    ],
)
def test_execution_refusals(request_: ActionRequest, want: str | None) -> None:
    got = refusal(request_, CAT, PolicySet([]), RULES)
    assert got is None if want is None else (got is not None and want in got), got


def test_a_worker_in_dry_run_runs_everything_dry() -> None:
    r = req("healer.noop", {"kind": "Node", "name": "n"})
    assert effective(r, ExecutionRules(dry_run=True)).dry_run is True
    assert effective(r, ExecutionRules()).dry_run is False


@pytest.mark.parametrize(
    ("url", "allowed", "ok"),
    [
        ("http://a:80/x", ("http://a",), True),
        ("http://a/x", ("http://a:81",), False),
        ("http://user:pw@a/x", ("http://a",), False),
        ("http://a.b/x", ("http://*.b",), True),
        ("http://a.b/x", (), False),
        ("https://h/p/q", ("https://h/p",), True),
        ("https://h/pq", ("https://h/p",), False),
    ],
)
def test_url_allow_lists(url: str, allowed: tuple[str, ...], ok: bool) -> None:
    assert url_allowed(url, allowed) is ok
