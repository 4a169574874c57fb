"""deploy/examples/ agree with the policy library and with healer's own metrics.

- alertmanager.yaml routes exactly the alerts healer acts on to its webhook, with a bearer token;
- every alert of prometheusrule.yaml's ``healer-remediation`` group triggers a policy in
  policies/ and carries the labels that policy's target templates need; the ``healer-paging``
  alerts mirror metric-triggered policies and are not routed to healer;
- the rules use only metric names of the exporters they name;
- grafana-dashboard.json only queries metric families the worker exports (streams/metrics.py);
- the relabel filters of docs/remote-write.md keep exactly the library's metric policies' names.

Syntax and semantics of the rules and of the Alertmanager config are checked by the real tools
(``promtool check rules``, ``promtool test rules``, ``amtool check-config``) in
tests/integration/prometheus/test_prometheus_examples.py; this file checks what they cannot know.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from healer.index import PolicySet
from healer.loader import load_policy_set
from healer.matchers import Matcher, match_all
from healer.policy import AlertTrigger, CompiledPolicy, MetricTrigger
from healer.templating import Template

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "deploy" / "examples"
# Alerts the policies expect that do not come from Prometheus metrics (documented in
# prometheusrule.yaml's header): Triton's "CUDA out of memory" log line.
EXTERNAL_ALERTS = {"TritonModelOOM"}
# Metric names the rules may use: Triton, DCGM exporter, kube-state-metrics, blackbox exporter.
KNOWN_METRICS = {
    "nv_inference_request_success", "nv_inference_request_failure", "nv_inference_request_summary_us",
    "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_XID_ERRORS",
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "DCGM_FI_DEV_GPU_UTIL",
    "kube_pod_container_status_waiting_reason", "kube_pod_labels", "kube_node_status_capacity",
    "probe_success",
}
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "by", "on", "without", "ignoring", "group_left",
    "group_right", "rate", "increase", "offset", "unless", "and", "or", "label_replace",
    "max_over_time", "abs", "clamp_min", "histogram_quantile", "le",
}


@pytest.fixture(scope="module")
def policies() -> PolicySet:
    # the library the chart ships: the top-level files (the demo's are in deploy/demo/policies/)
    return load_policy_set(sorted((ROOT / "policies").glob("*.yaml")))


@pytest.fixture(scope="module")
def rules() -> dict[str, list[dict[str, Any]]]:
    doc = yaml.safe_load((EXAMPLES / "prometheusrule.yaml").read_text())
    assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["kind"] == "PrometheusRule"
    return {g["name"]: g["rules"] for g in doc["spec"]["groups"]}


@pytest.fixture(scope="module")
def alertmanager() -> dict[str, Any]:
    return dict(yaml.safe_load((EXAMPLES / "alertmanager.yaml").read_text()))


def healer_route(am: dict[str, Any]) -> dict[str, Any]:
    routes = [r for r in am["route"]["routes"] if r["receiver"] == "healer"]
    assert len(routes) == 1
    return dict(routes[0])


def routed_alertnames(am: dict[str, Any]) -> set[str]:
    matchers = [Matcher.parse(m) for m in healer_route(am)["matchers"]]
    (alertname,) = [m for m in matchers if m.name == "alertname"]
    assert alertname.op == "=~"
    names = set(alertname.value.split("|"))
    assert all(re.fullmatch(r"[A-Za-z0-9_]+", n) for n in names), "keep the regex a plain list"
    return names


def alert_policies(ps: PolicySet) -> list[CompiledPolicy]:
    return [p for p in ps.policies.values() if isinstance(p.trigger, AlertTrigger)]


def label_refs(p: CompiledPolicy) -> set[str]:
    out: set[str] = set()
    for _field, tpl in p.target:
        for t in tpl if isinstance(tpl, tuple) else (tpl,):
            assert isinstance(t, Template)
            out |= {r.key for r in t.refs if r.source == "labels"}
    return out


def triggered(rule: dict[str, Any], ps: PolicySet) -> list[CompiledPolicy]:
    labels = {"alertname": rule["alert"], **rule.get("labels", {})}
    for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", rule["expr"]):
        labels.setdefault(word, "x")  # a label the expression keeps: some value at run time
    labels["alertname"] = rule["alert"]
    out = []
    for p in alert_policies(ps):
        assert isinstance(p.trigger, AlertTrigger)
        # track="canary" style matchers select a subset of deliveries: test with their value
        fixed = {m.name: m.value for m in p.trigger.matchers if m.op == "=" and m.name != "alertname"}
        if match_all(p.trigger.matchers, {**labels, **fixed}) or match_all(p.trigger.matchers, labels):
            out.append(p)
    return out


def test_examples_parse() -> None:
    for f in sorted(EXAMPLES.glob("*.yaml")):
        assert list(yaml.safe_load_all(f.read_text())), f.name
    for f in sorted(EXAMPLES.glob("*.json")):
        json.loads(f.read_text())


def test_alertmanager_receiver(alertmanager: dict[str, Any]) -> None:
    route = healer_route(alertmanager)
    assert route.get("continue") is True
    (receiver,) = [r for r in alertmanager["receivers"] if r["name"] == "healer"]
    (hook,) = receiver["webhook_configs"]
    assert hook["url"].endswith("/api/v1/alerts")
    assert hook["send_resolved"] is True
    auth = hook["http_config"]["authorization"]
    assert auth["type"] == "Bearer" and auth["credentials_file"].endswith("webhook-token")
    assert "credentials" not in auth, "never inline the token"


def test_remediation_alerts_trigger_policies_with_their_labels(
    rules: dict[str, list[dict[str, Any]]], policies: PolicySet,
) -> None:
    for rule in rules["healer-remediation"]:
        hits = triggered(rule, policies)
        assert hits, f"{rule['alert']} triggers no policy in policies/"
        for p in hits:
            missing = {
                label for label in label_refs(p)
                if label not in rule.get("labels", {}) and not re.search(rf"\b{label}\b", rule["expr"])
            }
            assert not missing, f"{rule['alert']} -> {p.name}: the alert lacks labels {missing}"
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["annotations"]["summary"]


def test_alertmanager_routes_exactly_the_remediation_alerts(
    rules: dict[str, list[dict[str, Any]]], alertmanager: dict[str, Any], policies: PolicySet,
) -> None:
    remediation = {r["alert"] for r in rules["healer-remediation"]}
    assert routed_alertnames(alertmanager) == remediation | EXTERNAL_ALERTS
    # and every alert-triggered policy is reachable through the route
    for p in alert_policies(policies):
        assert isinstance(p.trigger, AlertTrigger)
        by_name = [m for m in p.trigger.matchers if m.name == "alertname"]
        reachable = [n for n in remediation | EXTERNAL_ALERTS
                     if all(m.matches({"alertname": n}) for m in by_name)]
        assert reachable, f"policy {p.name}: none of its alerts is routed to healer"


def test_paging_alerts_mirror_metric_policies(rules: dict[str, list[dict[str, Any]]],
                                              alertmanager: dict[str, Any], policies: PolicySet) -> None:
    routed = routed_alertnames(alertmanager)
    metric_names = {p.trigger.name for p in policies.policies.values() if isinstance(p.trigger, MetricTrigger)}
    mirrored = set()
    for rule in rules["healer-paging"]:
        assert rule["alert"] not in routed, f"{rule['alert']} would double-act with a metric policy"
        mirrored |= {m for m in metric_names if m in rule["expr"]}
    assert {"nv_inference_request_summary_us", "DCGM_FI_DEV_XID_ERRORS"} <= mirrored


def test_rule_expressions_use_known_metrics(rules: dict[str, list[dict[str, Any]]]) -> None:
    """promtool parses the expressions; it cannot know that a metric name is misspelt."""
    for group in rules.values():
        for rule in group:
            expr = rule["expr"]
            bare = re.sub(r'"[^"]*"', '""', expr)
            bare = re.sub(r"\{[^}]*\}", "{}", bare)
            bare = re.sub(r"\b(by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)", "", bare)
            words = set(re.findall(r"\b[A-Za-z_][A-Za-z0-9_]*\b", bare)) - PROMQL_WORDS
            words = {w for w in words if not re.fullmatch(r"\d+[smhdwy]|e\d+", w)}
            unknown = words - KNOWN_METRICS
            assert not unknown, f"{rule['alert']}: unknown metric or function {unknown}"


def _exported_families() -> set[str]:
    from prometheus_client.parser import text_string_to_metric_families

    from streams.metrics import Metrics

    m = Metrics()
    m.action_done("healer.noop", "verified", 1.0)
    m.decision("p", "execute", None)
    m.event("alerts", "received")
    m.consumer_lag.labels(topic="t", partition="0").set(0)
    m.alert_to_action.observe(1.0)
    m.http_requests.labels(route="/api/v1/alerts", code="200").inc()
    text = m.exposition()[0].decode()
    names = set()
    for fam in text_string_to_metric_families(text):
        names |= {s.name for s in fam.samples}
    return names


def test_dashboard_queries_exported_metrics() -> None:
    dash = json.loads((EXAMPLES / "grafana-dashboard.json").read_text())
    exported = _exported_families()
    used: set[str] = set()
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        assert p["targets"], p["title"]
        assert p["datasource"]["uid"] == "${datasource}"
        for t in p["targets"]:
            names = set(re.findall(r"\bhealer_[a-z_]+\b", t["expr"]))
            assert names, t["expr"]
            assert names <= exported, f"{p['title']}: not exported: {names - exported}"
            used |= names
    families = {"healer_events_total", "healer_decisions_total", "healer_actions_total",
                "healer_action_duration_seconds_bucket", "healer_alert_to_action_seconds_bucket",
                "healer_consumer_lag", "healer_pending_approvals", "healer_ready"}
    assert families <= used, f"not on the dashboard: {families - used}"
    cells = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps another panel"
                cells.add((x, y))


def test_metric_bridge_record_shape_is_accepted() -> None:
    """docs/production.md: a producer other than healer's remote-write receiver writing one JSON
    sample per record (name, value as a string, RFC 3339 timestamp, labels with __name__) feeds
    {app_id}.metrics as is."""
    from healer.ingest import parse_samples

    record = {"timestamp": "2026-11-21T10:00:00Z", "value": "7100000", "name": "nv_inference_request_summary_us",
              "labels": {"__name__": "nv_inference_request_summary_us", "quantile": "0.99",
                         "namespace": "llm-prod", "deployment": "vllm"}}
    (sample,) = parse_samples(record)  # type: ignore[misc]
    assert sample.value == 7_100_000.0 and sample.labels["deployment"] == "vllm"


def test_chart_and_ci_values_parse() -> None:
    chart = ROOT / "deploy" / "helm" / "healer"
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2" and meta["name"] == "healer"
    values = yaml.safe_load((chart / "values.yaml").read_text())
    assert values["config"]["dryRun"] is True and values["kafka"]["topics"]["createJob"]["enabled"] is False
    for f in (chart / "ci").glob("*.yaml"):
        assert isinstance(yaml.safe_load(f.read_text()), dict), f.name


def test_remote_write_docs_forward_exactly_the_library_metric_names(policies: PolicySet) -> None:
    doc = (ROOT / "docs" / "remote-write.md").read_text()
    names = {p.trigger.name for p in policies.policies.values() if isinstance(p.trigger, MetricTrigger)}
    regexes = re.findall(r'regex(?::|\s*=)\s*"?([A-Za-z0-9_|]+)"?', doc)
    assert len(regexes) >= 4, "Prometheus, prometheus-operator, Alloy and vmagent examples"
    for rx in regexes:
        assert set(rx.split("|")) == names, f"docs/remote-write.md forwards {rx}; the policies use {names}"
