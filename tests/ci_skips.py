"""pytest plugin: under CI a skipped test is a failed one.

Every skip in this suite means a real component could not run here (the
embedded or a restartable Kafka broker, Triton, kube-apiserver, helm,
hadolint). Locally that is a skip that says why (``-rs`` lists the reasons);
with ``CI`` set (``make test`` sets ``CI=1`` unless told otherwise) the skip
becomes a failure with the same reason, so a real-component test never
vanishes from a CI run unnoticed. Skips raised in a test, in a fixture and at
collection (``pytest.importorskip``, a module-level skip) are all covered; an
expected failure (xfail) is not a skip.

Loaded from tests/conftest.py; a test asks for nothing, it just calls
``pytest.skip(reason)``.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest


def under_ci() -> bool:
    return bool(os.environ.get("CI"))


def _reason(longrepr: Any) -> str:
    # a skip's longrepr is (path, line, "Skipped: reason")
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _fail_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not (report.skipped and under_ci()) or hasattr(report, "wasxfail"):
        return
    report.outcome = "failed"
    report.longrepr = (
        f"skipped under CI, which counts as a failure: {_reason(report.longrepr)}\n"
        "A real-component test must run in CI: make the component available (the reason says "
        "which), or run without CI set to skip it locally."
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    _fail_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    outcome = yield
    _fail_skip(outcome.get_result())
