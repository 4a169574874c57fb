"""Issue 13, finding 6: hostile policy files through the real CLI.

A YAML alias bomb of a few hundred bytes expanded to 420 MB (x10 per level), and a
self-referencing anchor crashed the loader with a RecursionError traceback. Now
``healer policy validate`` and ``healer run`` (against the real broker) both exit 1
with a load error naming the file and line, and no traceback. Each CLI process runs
under a 2 GiB address-space limit, so a loader that expands the bomb dies of
MemoryError (a traceback, a failure here) instead of exhausting the machine; its
peak RSS is printed, from the kernel's accounting of that one child (``os.wait4``).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_loader import alias_bomb

pytestmark = pytest.mark.integration

ADDRESS_SPACE = 2 * 1024**3
SELF_REFERENCE = """\
apiVersion: healer/v1
kind: Policy
metadata: {name: loop}
spec: &spec
  priority: 1
  again: *spec
"""
DEEP = "apiVersion: healer/v1\nkind: Policy\nspec: " + "[" * 900 + "]" * 900 + "\n"
CASES = {
    # file name: (text, line of the error, message part)
    "bomb.yaml": (alias_bomb(8), 8, "YAML aliases expand to more than 10000 values"),
    "loop.yaml": (SELF_REFERENCE, 6, "a YAML alias refers to a node that contains it"),
    "deep.yaml": (DEEP, 3, "the document nests deeper than 64 levels"),
}


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def run_cli(args: list[str], tmp: Path, env: dict[str, str]) -> tuple[int, str, int]:
    """Run ``healer ARGS``; returns (exit code, stdout + stderr, peak RSS in KiB)."""
    out = tmp / "out.txt"
    with open(out, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "healer.cli.main", *args],
            stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **env}, preexec_fn=_limit,
        )
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, out.read_text(errors="replace"), usage.ru_maxrss


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_policy_files_are_load_errors_in_validate_and_run(
    name: str, kafka_bootstrap: str, unique_app_id: str, tmp_path: Path
) -> None:
    text, line, message = CASES[name]
    path = tmp_path / name
    path.write_text(text)
    print(f"\n{name}: {len(text.encode())} bytes")
    env = {"HEALER_BOOTSTRAP_SERVERS": kafka_bootstrap, "HEALER_APP_ID": unique_app_id,
           "HEALER_HTTP_PORT": "0", "HEALER_DATA_DIR": str(tmp_path / "data")}
    for args in (["policy", "validate", str(path)], ["run", "--policies", str(path)]):
        code, output, rss_kib = run_cli(args, tmp_path, env)
        print(f"healer {' '.join(args[:-1])}: exit {code}, peak RSS {rss_kib / 1024:.0f} MiB")
        assert code == 1, output
        assert "Traceback" not in output and "RecursionError" not in output, output
        assert f"{path}:{line}: {message}" in output, output
