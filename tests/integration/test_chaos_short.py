"""The fault-injection suite in its short mode (bench/chaos, ``python -m bench.chaos.run --short``).

Runs every scenario against real workers on the session's broker (the broker-restart
scenario starts a broker of its own): SIGKILLed workers, a broker outage, a flaky
Kubernetes API behind the fault proxy, Triton killed mid-reload, an alert storm against
budgets and the global rate limit, and hostile input. Each must keep the invariants:
0 lost valid events, 0 duplicate executions, every audit chain verifies, plus the
scenario's own checks (printed on failure). A scenario that cannot run here (no Go
toolchain for the kube harness, no Triton binary) is skipped with its reason; under
``CI`` that is a failure, like the component tests themselves.
"""

from __future__ import annotations

import os
import time

import pytest

from bench.chaos import run as chaos

pytestmark = pytest.mark.integration


# The SIGKILL scenario runs as its own test (below) so that a failure names it. It once
# showed planned actions missing after kills; the causes were partitions a new owner started
# at the log end and records Faust skipped around rebalances (docs/architecture.md).
GATING = [s for s in chaos.SCENARIOS if s != "sigkill"]


@pytest.mark.timeout(900)
def test_chaos_short_mode_keeps_the_invariants(kafka_bootstrap: str) -> None:
    _run_and_check(GATING, kafka_bootstrap)


@pytest.mark.timeout(900)
def test_chaos_short_sigkill(kafka_bootstrap: str) -> None:
    _run_and_check(["sigkill"], kafka_bootstrap)


def _run_and_check(scenarios: list[str], kafka_bootstrap: str) -> None:
    t0 = time.monotonic()
    results = chaos.run(short=True, only=scenarios, bootstrap=kafka_bootstrap)
    took = time.monotonic() - t0
    chaos.report(results)
    print(f"chaos short mode took {took:.0f}s")
    assert [r.scenario for r in results] == scenarios
    problems = []
    for r in results:
        if r.skipped is not None:
            if os.environ.get("CI"):
                problems.append(f"{r.scenario}: skipped in CI: {r.skipped}")
            continue
        if r.error:
            problems.append(f"{r.scenario}: {r.error}\n{r.detail.get('traceback', '')}")
        if r.losses:
            problems.append(f"{r.scenario}: {r.losses} valid events lost")
        if r.duplicates:
            problems.append(f"{r.scenario}: {r.duplicates} duplicates ({r.detail})")
        if not r.chain_ok:
            problems.append(f"{r.scenario}: audit chain does not verify: {r.detail.get('chain_problems')}")
        problems += [f"{r.scenario}: check failed: {c}" for c in r.failed_checks()]
        if r.events_in == 0:
            problems.append(f"{r.scenario}: no valid events went in: the scenario tested nothing")
    assert not problems, "\n".join(problems)
    # the run time is reported above, never asserted: a shared 2-core machine makes any bound flaky
