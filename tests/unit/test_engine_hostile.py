"""Hostile label values through route + decide: template syntax in labels is
inert, path tricks and oversize or unicode names are refused as
``invalid_target``, protected namespaces as ``namespace_denied``, and no input
makes the engine raise."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healer.ingest import Rejected, parse_alerts
from healer.models import MAX_LABEL_VALUE
from tests.unit.policy_kit import LABELS, Run, alert, alert_policy, load, metric_policy, sample

TRITON = alert_policy("triton", actions=[{"use": "triton.reload"}])
TRITON["spec"]["target"] = {
    "kind": "TritonModel",
    "server": "http://{{ labels.service }}.{{ labels.namespace }}.svc:8000",
    "model": "{{ labels.model }}",
}
TLABELS = {"alertname": "X", "namespace": "llm-prod", "service": "triton", "model": "llama"}


@pytest.mark.parametrize(
    ("labels", "want"),
    [
        ({"deployment": "{{ labels.namespace }}"}, "invalid_target"),
        ({"deployment": "{{ value }}"}, "invalid_target"),
        ({"deployment": "../../etc/passwd"}, "invalid_target"),
        ({"deployment": ".."}, "invalid_target"),
        ({"deployment": "vllm/../other"}, "invalid_target"),
        ({"deployment": "a" * 10_240}, "invalid_target"),
        ({"deployment": "vllm-ü"}, "invalid_target"),
        ({"deployment": "vllm\u202e"}, "invalid_target"),
        ({"deployment": "vllm\n"}, "invalid_target"),
        ({"deployment": "vllm\x00"}, "invalid_target"),
        ({"deployment": "VLLM"}, "invalid_target"),
        ({"namespace": "kube-system"}, "namespace_denied"),
        ({"namespace": "kube-public"}, "namespace_denied"),
        ({"namespace": "kube-node-lease"}, "namespace_denied"),
        ({"namespace": "../kube-system"}, "invalid_target"),
        ({"namespace": "kube-system\n"}, "invalid_target"),
        (
            {"summary": "{{ labels.secret }}", "secret": "x" * 10_000, "note": "ünïcødé ✓"},
            "execute",
        ),
    ],
)
def test_hostile_labels(labels: dict[str, str], want: str) -> None:
    [d] = Run(load(alert_policy())).feed(alert(0, {**LABELS, **labels}))
    assert (d.reason or d.decision) == want
    if want == "invalid_target":
        assert d.target is None and d.action_id is None


@pytest.mark.parametrize(
    ("labels", "want"),
    [
        ({"service": "evil.example.net/x#"}, "invalid_target"),
        ({"service": "user@evil"}, "invalid_target"),
        ({"service": "evil:1"}, "invalid_target"),
        ({"namespace": "evil.example.net?"}, "invalid_target"),
        ({"model": "../other"}, "invalid_target"),
        ({"model": "a/b"}, "invalid_target"),
        ({"model": "{{ labels.service }}"}, "invalid_target"),
        ({}, "execute"),
    ],
)
def test_hostile_labels_in_triton_targets(labels: dict[str, str], want: str) -> None:
    [d] = Run(load(TRITON)).feed(alert(0, {**TLABELS, **labels}))
    assert (d.reason or d.decision) == want
    if want == "execute":
        assert d.target is not None and d.target.server == "http://triton.llm-prod.svc:8000"


def test_annotations_are_data_not_templates() -> None:
    doc = alert_policy(target={"name": "{{ annotations.workload }}"})
    [d] = Run(load(doc)).feed(alert(0, annotations={"workload": "{{ labels.deployment }}"}))
    assert d.reason == "invalid_target"
    [ok] = Run(load(doc)).feed(alert(0, annotations={"workload": "vllm-canary"}))
    assert ok.target is not None and ok.target.name == "vllm-canary"


def test_oversize_label_values_are_rejected_at_ingest() -> None:
    out = parse_alerts({"labels": {"deployment": "a" * (MAX_LABEL_VALUE + 1)}})
    assert isinstance(out, Rejected) and f"length <= {MAX_LABEL_VALUE}" in out.reason


ANY_ALERT = load(
    alert_policy("k8s", trigger={"alert": {"matchers": ['alertname=~".*"'], "status": "any"}}),
    TRITON
    | {
        "spec": {
            **TRITON["spec"],
            "trigger": {"alert": {"matchers": ['alertname=~".*"'], "status": "any"}},
        }
    },
)
METRIC = load(metric_policy(aggregate="last", window="1s"))
LABEL_VALUE = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        [
            "{{ labels.namespace }}",
            "../..",
            "kube-system",
            "llm-prod",
            "vllm",
            "a" * 10_240,
            "ünïcødé",
            "",
            " ",
            "\n",
            "a.b",
            "x" * 254,
        ]
    ),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(
            ["alertname", "namespace", "deployment", "pod", "service", "model", "extra"]
        ),
        LABEL_VALUE,
        max_size=7,
    ),
    st.sampled_from(["firing", "resolved"]),
)
def test_engine_never_raises_and_only_acts_on_valid_targets(
    labels: dict[str, str], status: str
) -> None:
    run = Run(ANY_ALERT)
    ds = run.feed(alert(0, labels, status=status))
    for d in ds:
        assert d.decision in ("execute", "suppressed")
        if d.decision == "execute":
            t = d.target
            assert t is not None
            fields: dict[str, Any] = t.brief()
            for v in fields.values():
                assert isinstance(v, str) and "{" not in v and ".." not in v and v.isascii()
            assert t.namespace not in ("kube-system", "kube-public", "kube-node-lease")
        else:
            assert d.reason in ("invalid_target", "target_unresolved", "namespace_denied")


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["namespace", "deployment", "pod"]), LABEL_VALUE, max_size=3),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)
def test_metric_path_never_raises(labels: dict[str, str], value: float) -> None:
    for d in Run(METRIC).feed(sample(0, value, labels)):
        assert d.reason in (None, "invalid_target", "target_unresolved", "namespace_denied")
