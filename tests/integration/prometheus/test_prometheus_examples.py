"""The shipped Prometheus and Alertmanager examples, checked by the real tools (Debian's
promtool 2.42 and amtool 0.25; tests/harness/prometheus.py installs them):

- ``promtool check rules`` on deploy/examples/prometheusrule.yaml's ``spec.groups``;
- ``promtool test rules``: the series the e2e test's fake inference server produces (10 % of
  requests failing) trip ``InferenceSuccessRateLow`` with the shipped ``for: 2m``, and a healthy
  server does not;
- ``amtool check-config`` on deploy/examples/alertmanager.yaml;
- ``promtool check config`` on the Prometheus configuration in docs/remote-write.md.

What the tools cannot know (alerts vs policies, labels, metric names) is checked by
tests/unit/test_deploy_examples.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.prometheus import rule_groups, tool

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "deploy" / "examples"


@pytest.fixture
def rules_file(prometheus_binaries: dict[str, Path], tmp_path: Path) -> Path:
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rule_groups(EXAMPLES / "prometheusrule.yaml"), sort_keys=False))
    return path


def test_promtool_checks_the_shipped_rules(rules_file: Path) -> None:
    out = tool("promtool", "check", "rules", str(rules_file))
    assert out.returncode == 0 and "SUCCESS: 10 rules found" in out.stdout, out.stdout + out.stderr


def test_the_success_rate_rule_fires_for_a_server_failing_10_percent(rules_file: Path, tmp_path: Path) -> None:
    labels = 'namespace="llm-prod", deployment="vllm", model="m"'
    healthy = 'namespace="llm-prod", deployment="ok", model="m"'
    test: dict[str, Any] = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                # 20 requests a minute, every tenth fails (as tests/integration/prometheus/exporter.py)
                {"series": f"nv_inference_request_success{{{labels}}}", "values": "0+18x15"},
                {"series": f"nv_inference_request_failure{{{labels}}}", "values": "0+2x15"},
                {"series": f"nv_inference_request_success{{{healthy}}}", "values": "0+20x15"},
                {"series": f"nv_inference_request_failure{{{healthy}}}", "values": "0+0x15"},
            ],
            "alert_rule_test": [
                {"eval_time": "2m", "alertname": "InferenceSuccessRateLow", "exp_alerts": []},  # pending
                {"eval_time": "8m", "alertname": "InferenceSuccessRateLow", "exp_alerts": [{
                    "exp_labels": {"severity": "critical", "namespace": "llm-prod", "deployment": "vllm"},
                    "exp_annotations": {"summary": "llm-prod/vllm: success rate 90% < 99 %"},
                }]},
            ],
        }],
    }
    path = tmp_path / "test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    out = tool("promtool", "test", "rules", str(path))
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr


def test_amtool_checks_the_shipped_alertmanager_config(prometheus_binaries: dict[str, Path]) -> None:
    out = tool("amtool", "check-config", str(EXAMPLES / "alertmanager.yaml"))
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr
    assert "2 receivers" in out.stdout


def test_promtool_checks_the_documented_prometheus_config(prometheus_binaries: dict[str, Path], tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "remote-write.md").read_text()
    blocks = re.findall(r"```yaml\n# prometheus\.yml\n(.*?)```", doc, re.S)
    assert len(blocks) == 1, "docs/remote-write.md: one ```yaml block starting with '# prometheus.yml'"
    config = yaml.safe_load(blocks[0])
    # the token file the doc names exists in a cluster, not here: promtool checks that it exists
    token = tmp_path / "webhook-token"
    token.write_text("t\n")
    for rw in config["remote_write"]:
        rw["authorization"]["credentials_file"] = str(token)
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    out = tool("promtool", "check", "config", str(path))
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr
