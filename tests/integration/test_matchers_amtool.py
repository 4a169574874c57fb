"""The matcher table against the real Alertmanager: Debian's amtool 0.25.0.

Each row of tests/unit/test_matchers.py's ``TABLE`` becomes a one-route
Alertmanager configuration (the row's matcher in a route's ``matchers`` list)
and ``amtool config routes test`` with the row's labels says whether the alert
reaches that route; a row whose ``am`` column is ``ERROR`` must make
``amtool check-config`` refuse the file. amtool is unpacked from Debian's
``prometheus-alertmanager`` package into ~/.cache/healer (tests/harness/debian.py),
never installed as a service.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.harness.debian import amtool_or_skip
from tests.unit.test_matchers import ERROR, TABLE, Row, _id

pytestmark = pytest.mark.integration

CONFIG = """\
route:
  receiver: default
  routes:
    - receiver: hit
      matchers: [{matcher}]
receivers:
  - name: default
  - name: hit
"""


@pytest.fixture(scope="module")
def amtool() -> Path:
    return amtool_or_skip()


def _escape(value: str) -> str:
    # Alertmanager's openMetricsEscape: amtool parses label arguments as matchers
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _alertmanager(amtool: Path, row: Row, tmp_path: Path) -> bool | str:
    config = tmp_path / "alertmanager.yml"
    # JSON strings are YAML double-quoted strings: the matcher arrives byte for byte
    config.write_text(CONFIG.format(matcher=json.dumps(row.text)), encoding="utf-8")
    labels = [f'{k}="{_escape(v)}"' for k, v in row.labels.items()]
    proc = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={config}", *labels],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode == 0:
        return {"hit": True, "default": False}[proc.stdout.strip()]
    check = subprocess.run(
        [amtool, "check-config", str(config)], capture_output=True, text=True, timeout=60, check=False
    )
    assert check.returncode != 0, f"routes test failed on a valid config: {proc.stderr}"
    return ERROR


@pytest.mark.parametrize("row", TABLE, ids=[_id(r) for r in TABLE])
def test_alertmanager_agrees_with_the_table(amtool: Path, row: Row, tmp_path: Path) -> None:
    assert _alertmanager(amtool, row, tmp_path) == row.am, f"{row.text!r} ({row.source})"
