"""Fixtures for the Triton integration tests: a real ``tritonserver`` from the
nvidia-pytriton wheel (see ``tests/harness/triton_server.py``), a Runner with a
list-collecting audit sink (helpers in ``tests/harness/triton_runs.py``).

Without the wheel the tests skip with the install command, except under CI
(``CI`` set), where a missing server is a failure, never a silent skip.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[3]
if str(_ROOT) not in sys.path:  # tests/ is not a package; the harness lives in tests/harness
    sys.path.insert(0, str(_ROOT))

from tests.harness.triton_server import TritonServer, TritonUnavailable, find_dist  # noqa: E402


def _require_triton() -> None:
    try:
        find_dist()
    except TritonUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Triton server unavailable in CI: {exc}")
        pytest.skip(f"Triton server unavailable: {exc}")


def start_server(root: Path, extra_args: tuple[str, ...] = ()) -> TritonServer:
    _require_triton()
    return TritonServer(root=root, extra_args=extra_args).start()


@pytest.fixture(scope="session")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """One server for the session; each test puts the models it uses into the state it needs."""
    server = start_server(tmp_path_factory.mktemp("triton"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_triton(tmp_path: Path) -> Iterator[TritonServer]:
    """A server of the test's own (it may be killed)."""
    server = start_server(tmp_path / "triton")
    try:
        yield server
    finally:
        server.stop()
