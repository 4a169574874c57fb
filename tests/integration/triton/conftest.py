"""Fixtures for the Triton integration tests: a real ``tritonserver`` from the
nvidia-pytriton wheel (see ``tests/harness/triton_server.py``): one server per
session and one per test that needs its own. Runner helpers are in
``tests/harness/triton_runs.py``.

Without the wheel the tests skip with the install command, except under CI
(``CI`` set), where a missing server is a failure, never a silent skip
(``start_server`` in tests/harness/triton_runs.py).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[3]
if str(_ROOT) not in sys.path:  # tests/ is not a package; the harness lives in tests/harness
    sys.path.insert(0, str(_ROOT))

from tests.harness.triton_runs import start_server  # noqa: E402
from tests.harness.triton_server import TritonServer  # noqa: E402


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
