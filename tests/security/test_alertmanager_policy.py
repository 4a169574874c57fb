"""Issue 13, finding 5: a policy copied from an Alertmanager route fires.

Before, inside a quoted value every unknown escape lost its backslash (``=~"\\d+"``
became ``d+``, ``=~"10\\.0\\..*"`` matched ``10x0y3``), ``(?s)`` failed to load and
unquoted values were taken raw: a policy copied from a route could silently never
fire, or fire where Alertmanager would not. Here one Alertmanager configuration
holds a route in the forms real routes use (unquoted, spaced, escaped regexes,
``(?s)``); Debian's amtool 0.25 says which alerts the route takes; the route's
``matchers`` list, copied verbatim into a policy, must take exactly those alerts
on a real worker and broker.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.debian import amtool_or_skip
from tests.security.common import alert_record, worker_with_policy
from tests.workers import WorkerFactory, emit, read_until

pytestmark = pytest.mark.integration

# the route: kube-prometheus' unquoted `severity =~ warning|info` form, an escaped-dot
# instance regex, \d in a status code, and a (?s) regex on a multi-line label
ALERTMANAGER = r"""
route:
  receiver: default
  routes:
    - receiver: healer
      matchers:
        - alertname = KubePodCrashLooping
        - severity =~ warning|critical
        - instance=~"10\.0\..*"
        - code=~"5\d\d"
        - reason=~"(?s).*OOMKilled.*"
receivers:
  - name: default
  - name: healer
"""
ROUTE: list[str] = yaml.safe_load(ALERTMANAGER)["route"]["routes"][0]["matchers"]


def policy() -> str:
    return yaml.safe_dump({
        "apiVersion": "healer/v1", "kind": "Policy", "metadata": {"name": "copied-route"},
        "spec": {
            "trigger": {"alert": {"matchers": ROUTE}},
            "target": {"kind": "Pod", "namespace": "{{ labels.namespace }}",
                       "name": "{{ labels.pod }}"},
            "actions": [{"use": "healer.noop", "with": {"message": "from the route"}}],
        },
    })


BASE = {"alertname": "KubePodCrashLooping", "namespace": "llm-prod", "severity": "warning",
        "instance": "10.0.3.7:9100", "code": "503", "reason": "OOMKilled\nexit code 137"}
ALERTS: dict[str, dict[str, str]] = {
    "fires": {**BASE, "pod": "vllm-0"},
    # the old reading matched these: `10.0..*` took 10x0y3, `5dd` took 5dd
    "unescaped-dot": {**BASE, "pod": "vllm-1", "instance": "10x0y3:9100"},
    "letters-for-digits": {**BASE, "pod": "vllm-2", "code": "5dd"},
    # "fires" has a newline in its reason: it matches only thanks to (?s); this one has
    # a newline too but no OOMKilled
    "other-reason": {**BASE, "pod": "vllm-3", "reason": "Error\nexit code 1"},
}


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@pytest.fixture(scope="module")
def amtool() -> Path:
    return amtool_or_skip()


def routed_by_alertmanager(amtool: Path, config: Path, labels: dict[str, str]) -> bool:
    proc = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={config}",
         *(f'{k}="{_escape(v)}"' for k, v in labels.items())],
        capture_output=True, text=True, timeout=60, check=True,
    )
    return proc.stdout.strip() == "healer"


def test_a_policy_copied_from_an_alertmanager_route_fires_where_the_route_does(
    amtool: Path,
    healer_worker: WorkerFactory, kafka_bootstrap: str, unique_app_id: str, tmp_path: Path,
) -> None:
    config = tmp_path / "alertmanager.yml"
    config.write_text(ALERTMANAGER)
    check = subprocess.run([amtool, "check-config", str(config)], capture_output=True, text=True,
                           timeout=60, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    routed = {name: routed_by_alertmanager(amtool, config, labels)
              for name, labels in ALERTS.items()}
    assert routed == {"fires": True, "unescaped-dot": False, "letters-for-digits": False,
                      "other-reason": False}

    w = worker_with_policy(healer_worker, unique_app_id, policy(), tmp_path)
    app = unique_app_id
    names = list(ALERTS)
    # the alert that fires goes last on one partition: once it is acted on, the others
    # were ingested before it
    order = [n for n in names if n != "fires"] + ["fires"]
    emit(kafka_bootstrap, f"{app}.alerts", [alert_record(ALERTS[n], f"fp-{n}") for n in order],
         keys=[b"k"] * len(order))

    def done(recs: list[dict[str, Any]]) -> bool:
        return any(r.get("kind") == "action.succeeded" for r in recs)

    audit = read_until(kafka_bootstrap, f"{app}.audit", done, timeout=120)
    assert done(audit), f"{[r.get('kind') for r in audit]}\n{w.log_tail()}"
    assert sorted(r["event"]["fingerprint"] for r in audit if r["kind"] == "event.received") == \
        sorted(f"fp-{n}" for n in names)
    acted = {r["target"]["name"] for r in audit if r["kind"].startswith(("action.", "decision."))}
    fired_by_healer = {n: ALERTS[n]["pod"] in acted for n in names}
    assert fired_by_healer == routed
