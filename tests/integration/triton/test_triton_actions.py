"""Integration tests: the Triton executors driven by the real Runner against a
real ``tritonserver`` (nvidia-pytriton wheel, explicit model control).

Models (tests/harness/triton_server.py): ``healthy`` (versions 1 and 2, both
served; OUTPUT0 = INPUT0 + version), ``broken`` (version 1 served, version 2
raises in initialize), ``slow`` (initialize sleeps 2 s), ``flaky`` (its reload
fails while a marker file exists).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from actions.base import Executor
from actions.runner import Outcome, RetryPolicy
from actions.triton import TritonControl, TritonReloadExecutor, triton_executors
from tests.harness.triton_runs import make_harness, request, smoke, start_server
from tests.harness.triton_server import TritonServer

pytestmark = pytest.mark.integration


def ready_versions(server: TritonServer, model: str, headers: dict[str, str] | None = None) -> list[str]:
    return sorted(e["version"] for e in server.index(headers)
                  if e["name"] == model and e.get("state") == "READY")


def control_of(executors: list[Executor]) -> TritonControl:
    ex = executors[0]
    assert isinstance(ex, TritonReloadExecutor)
    return ex.control


def test_reload_is_verified_with_smoke_inference(triton: TritonServer) -> None:
    triton.reset("healthy")  # repository config: versions 1 and 2
    h = make_harness(triton_executors())
    starts = len([e for e in triton.init_events("healthy") if e["event"] == "init_start"])
    req = request("triton.reload", "healthy", server=triton.url,
                  with_={"smoke": smoke([1.0, 2.0, 3.0], expect=[3.0, 4.0, 5.0], shape=[3])})

    out = asyncio.run(h.runner.run(req))

    assert out.status == "verified", out.reason
    assert h.kinds() == ["action.running", "action.succeeded", "action.verified"]
    assert out.before is not None and out.after is not None
    assert out.before["servers"][triton.url]["ready_versions"] == ["1", "2"]
    assert out.after["servers"][triton.url]["state"]["ready_versions"] == ["1", "2"]
    assert out.detail["servers"][triton.url]["smoke"]["outputs"] == {"OUTPUT0": {"shape": [3]}}
    # it really reloaded: both versions ran initialize again
    again = [e for e in triton.init_events("healthy") if e["event"] == "init_start"]
    assert len(again) == starts + 2
    verified = h.entries(req.action_id)[-1]
    assert verified.before is not None and verified.before["servers"][triton.url]["config"] is not None
    loaded = out.after["servers"][triton.url]["state"]["config"]
    assert loaded["parameters"]["healer_reload"] == {"string_value": req.action_id}


def test_unforced_reload_of_unchanged_model_is_a_noop_in_triton(triton: TritonServer) -> None:
    """Why ``force`` exists: Triton skips a load whose config and files are unchanged."""
    triton.reset("healthy")
    h = make_harness(triton_executors())
    first = request("triton.reload", "healthy", server=triton.url)
    assert asyncio.run(h.runner.run(first)).status == "verified"
    count = len(triton.init_events("healthy"))
    again = request("triton.reload", "healthy", server=triton.url, with_={"force": False})
    out = asyncio.run(h.runner.run(again))
    assert out.status == "verified", out.reason
    assert len(triton.init_events("healthy")) == count  # nothing was re-initialised
    forced = request("triton.reload", "healthy", server=triton.url)
    assert asyncio.run(h.runner.run(forced)).status == "verified"
    assert len(triton.init_events("healthy")) == count + 4  # 2 versions x (start, end)


def test_load_broken_version_fails_and_previous_version_serves(triton: TritonServer) -> None:
    triton.reset("broken")  # repository config: version 1 only
    assert triton.infer("broken", [1.0]) == [2.0]
    h = make_harness(triton_executors())
    req = request("triton.load", "broken", server=triton.url,
                  with_={"version": 2, "smoke": smoke([1.0], shape=[1])})

    out = asyncio.run(h.runner.run(req))

    assert out.status == "rolled_back", out.reason
    assert h.kinds() == ["action.running", "action.failed", "action.rolled_back"]
    failed = h.entries(req.action_id)[1]
    assert failed.reason is not None and "broken on purpose" in failed.reason  # Triton's message
    assert failed.detail is not None and failed.detail["phase"] == "execute"
    assert failed.detail["load_error"]["server"] == triton.url
    # Triton kept version 1 serving, so the rollback had nothing to change but verified it
    rolled = h.entries(req.action_id)[2]
    assert rolled.after is not None
    assert rolled.after["servers"][triton.url]["action"].startswith("none")
    assert rolled.after["servers"][triton.url]["ready"] == ["1"]
    assert ready_versions(triton, "broken") == ["1"]
    assert triton.infer("broken", [1.0]) == [2.0]  # version 1 (x + 1) answers


def test_failed_reload_is_caught_although_model_stays_ready(triton: TritonServer) -> None:
    triton.reset("flaky")
    marker = triton.fail_marker("flaky")
    marker.write_text("fail")
    try:
        h = make_harness(triton_executors())
        req = request("triton.reload", "flaky", server=triton.url,
                      with_={"smoke": smoke([5.0], expect=[6.0])})
        out = asyncio.run(h.runner.run(req))
    finally:
        marker.unlink()

    assert out.status == "rolled_back", out.reason
    assert h.kinds() == ["action.running", "action.failed", "action.rolled_back"]
    assert out.after is not None
    # the hazard: after the failed reload Triton still reports the model READY
    assert out.after["servers"][triton.url]["state"]["ready_versions"] == ["1"]
    assert "broken on purpose" in out.after["load_error"]["message"]
    assert out.reason is not None and out.reason.startswith("load failed")
    assert triton.infer("flaky", [5.0]) == [6.0]  # the previous instance still serves


def test_load_version_with_failing_smoke_rolls_back_version_policy(triton: TritonServer) -> None:
    triton.reset("healthy")
    h = make_harness(triton_executors())
    # version 1 answers x + 1; the smoke test wants x + 2 (what the served version 2 answers)
    req = request("triton.load", "healthy", server=triton.url,
                  with_={"version": 1, "smoke": smoke([1.0], expect=[3.0])})

    out = asyncio.run(h.runner.run(req))

    assert out.status == "rolled_back", out.reason
    assert h.kinds() == ["action.running", "action.succeeded", "action.failed", "action.rolled_back"]
    assert out.after is not None
    assert out.after["servers"][triton.url]["state"]["ready_versions"] == ["1"]  # it did load v1 only
    failed = h.entries(req.action_id)[2]
    assert failed.reason is not None and "unexpected values" in failed.reason
    rolled = h.entries(req.action_id)[3]
    assert rolled.after is not None
    assert rolled.after["servers"][triton.url]["action"] == "re-loaded previous config"
    assert ready_versions(triton, "healthy") == ["1", "2"]
    assert triton.infer("healthy", [1.0]) == [3.0]


def test_load_specific_version_is_verified(triton: TritonServer) -> None:
    triton.reset("healthy")
    h = make_harness(triton_executors())
    req = request("triton.load", "healthy", server=triton.url, version="1",
                  with_={"smoke": smoke([1.0], expect=[2.0])})
    out = asyncio.run(h.runner.run(req))
    assert out.status == "verified", out.reason
    assert ready_versions(triton, "healthy") == ["1"]
    assert out.detail["servers"][triton.url]["smoke"]["version"] == "1"


def test_unload_then_rollback_restores_model(triton: TritonServer) -> None:
    triton.reset("healthy")
    h = make_harness(triton_executors())
    req = request("triton.unload", "healthy", server=triton.url)

    out = asyncio.run(h.runner.run(req))
    assert out.status == "verified", out.reason
    assert ready_versions(triton, "healthy") == []
    with pytest.raises(RuntimeError, match="HTTP 404"):
        triton.infer("healthy", [1.0])

    assert out.before is not None
    rb = asyncio.run(h.runner.rollback(req, out.before, actor="user:test", reason="drill"))
    assert rb.status == "rolled_back", rb.reason
    assert h.kinds() == ["action.running", "action.succeeded", "action.verified", "action.rolled_back"]
    assert h.audit[-1].actor == "user:test"
    assert ready_versions(triton, "healthy") == ["1", "2"]
    assert triton.infer("healthy", [1.0]) == [3.0]
    assert triton.infer("healthy", [1.0], version="1") == [2.0]


def test_load_unloaded_model_and_rollback_unloads(triton: TritonServer) -> None:
    triton.unload("broken", wait=30)
    h = make_harness(triton_executors())
    req = request("triton.load", "broken", server=triton.url)
    out = asyncio.run(h.runner.run(req))
    assert out.status == "verified", out.reason
    assert ready_versions(triton, "broken") == ["1"]
    assert out.before is not None and out.before["servers"][triton.url]["loaded"] is False
    rb = asyncio.run(h.runner.rollback(req, out.before))
    assert rb.status == "rolled_back", rb.reason
    assert rb.after is not None
    assert rb.after["servers"][triton.url]["action"] == "unloaded (was not loaded before)"
    assert ready_versions(triton, "broken") == []


def test_concurrent_reloads_of_one_model_do_not_overlap(triton: TritonServer) -> None:
    triton.reset("slow")
    executors = triton_executors()
    control = control_of(executors)
    h = make_harness(executors)
    a = request("triton.reload", "slow", server=triton.url)
    b = request("triton.reload", "slow", server=triton.url)
    t0 = time.time()

    async def both() -> list[Outcome]:
        return list(await asyncio.gather(h.runner.run(a), h.runner.run(b)))

    outs = asyncio.run(both())
    assert [o.status for o in outs] == ["verified", "verified"], [o.reason for o in outs]

    sections = sorted((s for s in control.timeline if s.key == (triton.url, "slow")),
                      key=lambda s: s.started)
    assert {s.action_id for s in sections} == {a.action_id, b.action_id}
    for prev, nxt in itertools.pairwise(sections):
        assert nxt.started >= prev.ended, f"{prev} overlaps {nxt}"
    executes = [s for s in sections if s.step == "execute"]
    assert len(executes) == 2 and executes[0].action_id != executes[1].action_id
    # the server saw two full loads (2 s each), one after the other
    inits = [e for e in triton.init_events("slow") if float(str(e["time"])) >= t0]
    assert [e["event"] for e in inits] == ["init_start", "init_end", "init_start", "init_end"]
    assert executes[1].started >= executes[0].ended


def test_unknown_model_fails_at_once(triton: TritonServer) -> None:
    h = make_harness(triton_executors())
    req = request("triton.reload", "no-such-model", server=triton.url)
    out = asyncio.run(h.runner.run(req))
    assert out.status == "failed"
    assert h.kinds() == ["action.running", "action.failed"]
    assert out.reason is not None and "not in the model repository" in out.reason
    assert "attempts" not in out.detail  # permanent: not retried


def test_server_down_is_retried_then_fails(own_triton: TritonServer) -> None:
    url = own_triton.url
    own_triton.kill()
    h = make_harness(triton_executors(timeout=2.0),
                     retry=RetryPolicy(attempts=3, max_seconds=10, initial_wait=0.05, max_wait=0.2))
    req = request("triton.reload", "healthy", server=url)
    started = time.monotonic()
    out = asyncio.run(h.runner.run(req))
    assert time.monotonic() - started < 10
    assert out.status == "failed"
    assert h.kinds() == ["action.running", "action.failed"]
    failed = h.audit[-1]
    assert failed.reason is not None
    assert "snapshot failed after 3 attempts" in failed.reason
    assert "cannot reach server" in failed.reason
    assert failed.detail is not None and failed.detail["attempts"] == 3


@dataclass
class Restricted:
    server: TritonServer
    header: str
    secret: str

    @property
    def auth(self) -> dict[str, str]:
        return {self.header: self.secret}


@pytest.fixture(scope="module")
def restricted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Restricted]:
    """A second server whose model-repository API needs a header (--http-restricted-api)."""
    secret = "s3cret-" + secrets.token_hex(8)
    header = "x-healer-admin"
    server = start_server(tmp_path_factory.mktemp("restricted"),
                          (f"--http-restricted-api=model-repository:{header}={secret}",))
    try:
        yield Restricted(server, header, secret)
    finally:
        server.stop()


def test_restricted_api_auth_header_and_secret_stays_out(
    restricted: Restricted, triton: TritonServer, caplog: pytest.LogCaptureFixture
) -> None:
    server, header, secret = restricted.server, restricted.header, restricted.secret
    caplog.set_level(logging.DEBUG)
    server.reset("healthy", headers=restricted.auth)
    triton.reset("healthy")

    # without the header: 403, permanent, not retried
    h0 = make_harness(triton_executors())
    out0 = asyncio.run(h0.runner.run(request("triton.reload", "healthy", server=server.url)))
    assert out0.status == "failed"
    assert out0.reason is not None and "This API is restricted" in out0.reason
    assert "attempts" not in out0.detail

    # with it: a fleet reload across the restricted server and an open one
    executors = triton_executors(auth_header=header, auth_value=secret)
    h = make_harness(executors)
    req = request("triton.reload", "healthy", servers=[server.url, triton.url],
                  with_={"smoke": smoke([1.0], expect=[3.0])})
    out = asyncio.run(h.runner.run(req))
    assert out.status == "verified", out.reason
    assert h.kinds() == ["action.running", "action.succeeded", "action.verified"]
    assert set(out.detail["servers"]) == {server.url, triton.url}

    # and its rollback (an operator's) goes through the restricted API too
    assert out.before is not None
    rb = asyncio.run(h.runner.rollback(req, out.before))
    assert rb.status == "rolled_back", rb.reason

    records = [e.model_dump_json(by_alias=True) for e in h0.audit + h.audit]
    assert len(records) == 6 and not any(secret in r for r in records)
    logged = "\n".join(
        f"{r.getMessage()} {r.args!r} {getattr(r, '__dict__', {})!r}" for r in caplog.records)
    assert secret not in logged
    assert secret not in repr(control_of(executors))
    assert secret not in json.dumps(out.detail) + json.dumps(out.after)


def test_fleet_stops_at_first_failed_server_and_rolls_back_the_others(
    restricted: Restricted, triton: TritonServer
) -> None:
    server = restricted.server
    server.reset("flaky", headers=restricted.auth)
    triton.reset("flaky")
    h = make_harness(triton_executors(auth_header=restricted.header, auth_value=restricted.secret))
    marker = server.fail_marker("flaky")
    marker.write_text("fail")
    try:
        req = request("triton.reload", "flaky", servers=[triton.url, server.url],
                      with_={"smoke": smoke([1.0], expect=[2.0])})
        out = asyncio.run(h.runner.run(req))
    finally:
        marker.unlink()

    assert out.status == "rolled_back", out.reason
    assert h.kinds() == ["action.running", "action.failed", "action.rolled_back"]
    assert out.after is not None and out.after["load_error"]["server"] == server.url
    rolled = h.audit[-1].after
    assert rolled is not None
    # the first server had reloaded (with healer_reload): restored to its previous config
    assert rolled["servers"][triton.url]["action"] == "re-loaded previous config"
    # the failing one kept its previous instance: nothing to restore
    assert rolled["servers"][server.url]["action"].startswith("none")
    assert triton.infer("flaky", [1.0]) == [2.0]
    assert server.infer("flaky", [1.0]) == [2.0]
