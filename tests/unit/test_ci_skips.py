"""Under CI a skipped real-component test fails (tests/ci_skips.py); locally it skips and says
why. Each case runs a small pytest session of its own (pytester) with and without ``CI``."""

from __future__ import annotations

import pytest

SKIPPING = """
import pytest

@pytest.fixture
def component():
    pytest.skip("no frobnicator here: install it")

def test_in_body():
    pytest.skip("needs a frobnicator: install it")

def test_in_fixture(component):
    pass

@pytest.mark.xfail(reason="a known bug, not a skip")
def test_expected_failure():
    assert False
"""

RESTARTABLE = """
import pytest
from tests.kafka_fixture import KafkaBackend

@pytest.fixture(scope="session")
def kafka_backend():
    return KafkaBackend(bootstrap="127.0.0.1:9", kind="external")

def test_restarts_the_broker(restartable_kafka):
    raise AssertionError("must not run without the embedded broker")
"""


def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, source: str, ci: bool,
        *plugins: str) -> pytest.RunResult:
    if ci:
        monkeypatch.setenv("CI", "1")
    else:
        monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(test_inner=source)
    args = [a for p in ("tests.ci_skips", *plugins) for a in ("-p", p)]
    return pytester.runpytest_inprocess(*args, "-rs", "-p", "no:cacheprovider")


def test_locally_a_skip_is_a_skip_with_its_reason(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(pytester, monkeypatch, SKIPPING, ci=False)
    result.assert_outcomes(skipped=2, xfailed=1)
    result.stdout.fnmatch_lines(["*needs a frobnicator: install it*", "*no frobnicator here: install it*"])


def test_under_ci_a_skip_fails_with_its_reason(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(pytester, monkeypatch, SKIPPING, ci=True)
    result.assert_outcomes(failed=1, errors=1, xfailed=1)  # the fixture's skip fails the setup
    for reason in ("needs a frobnicator: install it", "no frobnicator here: install it"):
        result.stdout.fnmatch_lines([f"*skipped under CI, which counts as a failure: {reason}*"])


def test_under_ci_a_skip_at_collection_fails(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(pytester, monkeypatch, 'import pytest\npytest.importorskip("no_such_module_here")\n'
                 "def test_x():\n    pass\n", ci=True)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*skipped under CI*no_such_module_here*"])


@pytest.mark.parametrize("ci", [False, True])
def test_restartable_kafka_without_the_embedded_broker(
    ci: bool, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(pytester, monkeypatch, RESTARTABLE, ci, "tests.kafka_fixture")
    if ci:
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(["*skipped under CI*needs the embedded broker to restart it*external*"])
    else:
        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines(["*needs the embedded broker to restart it*external*"])
