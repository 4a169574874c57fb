"""Unit tests of the Triton executors' pure logic: endpoints, error classes,
state comparison, what each action would load. No server (the real one is in
tests/integration/triton/)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from actions.base import ActionContext, PermanentError, TransientError
from actions.registry import ExecutorRegistry
from actions.triton import (
    RELOAD_PARAMETER,
    TritonControl,
    TritonLoadExecutor,
    TritonReloadExecutor,
    _classify,
    _data_matches,
    _policy_versions,
    parse_server,
    same_state,
    triton_executors,
)
from healer.catalog import default_catalog
from healer.models import ActionRequest, Target

CONFIG = {"name": "m", "backend": "python", "version_policy": {"all": {}}, "parameters": {}}


def ctx(use: str, with_: dict[str, Any] | None = None, version: str | None = None) -> ActionContext:
    req = ActionRequest.model_validate({
        "action_id": "a1", "use": use, "with": with_ or {},
        "target": Target(kind="TritonModel", server="http://127.0.0.1:8000", model="m", version=version),
    })
    spec = default_catalog().get(use)
    assert spec is not None
    return ActionContext(request=req, params=spec.parse(req.with_))


def before(loaded: bool = True) -> dict[str, Any]:
    state = {"loaded": loaded, "ready_versions": ["1", "2"] if loaded else [],
             "config": dict(CONFIG) if loaded else None}
    return {"model": "m", "servers": {"http://127.0.0.1:8000": state}}


@pytest.mark.parametrize(("url", "hostport", "ssl"), [
    ("http://127.0.0.1:8000", "127.0.0.1:8000", False),
    ("https://triton.example:443/", "triton.example:443", True),
    ("10.0.0.1:8000", "10.0.0.1:8000", False),
])
def test_parse_server(url: str, hostport: str, ssl: bool) -> None:
    ep = parse_server(url)
    assert (ep.hostport, ep.ssl, ep.url) == (hostport, ssl, url)


@pytest.mark.parametrize("url", ["grpc://127.0.0.1:8001", "http://h:1/v2", "http://"])
def test_parse_server_rejects(url: str) -> None:
    with pytest.raises(PermanentError):
        parse_server(url)


@pytest.mark.parametrize(("status", "msg", "kind"), [
    ("400", "load failed for model 'm'", PermanentError),
    ("403", "This API is restricted, expecting header 'x'", PermanentError),
    ("404", "Request for unknown model", PermanentError),
    ("429", "slow down", TransientError),
    ("503", "unavailable", TransientError),
    ("500", "failed to load 'nope', failed to poll from model repository", PermanentError),
])
def test_classify(status: str, msg: str, kind: type[Exception]) -> None:
    err = _classify(InferenceServerException(msg=msg, status=status), "http://s", "load")
    assert type(err) is kind
    assert isinstance(err, PermanentError | TransientError)
    assert err.detail["triton_error"] == msg and err.detail["status"] == status


def test_same_state() -> None:
    a = before()["servers"]["http://127.0.0.1:8000"]
    assert same_state(a, dict(a))
    assert not same_state(a, {**a, "ready_versions": ["1"]})
    assert not same_state(a, {**a, "config": {**CONFIG, "version_policy": {"specific": {"versions": [1]}}}})
    assert same_state({"loaded": False, "ready_versions": []}, {"loaded": False, "ready_versions": []})


def test_policy_versions() -> None:
    assert _policy_versions({"version_policy": {"specific": {"versions": [2, 1]}}}) == ["1", "2"]
    assert _policy_versions({"version_policy": {"all": {}}}) is None
    assert _policy_versions(None) is None


def test_data_matches() -> None:
    assert _data_matches(np.array([[1.0, 2.0]], dtype=np.float32), [1.0, 2.0000001])
    assert not _data_matches(np.array([1.0, 2.0]), [1.0, 3.0])
    assert not _data_matches(np.array([1.0]), [1.0, 2.0])
    assert _data_matches(np.array([b"ok"], dtype=np.object_), ["ok"])


def test_reload_forces_a_real_reload_with_the_loaded_config() -> None:
    ex = TritonReloadExecutor(TritonControl())
    want = ex._desired(ctx("triton.reload"), before())["http://127.0.0.1:8000"]
    assert want["config"]["parameters"][RELOAD_PARAMETER] == {"string_value": "a1"}
    assert want["config"]["version_policy"] == {"all": {}}
    assert want["expect_ready"] == ["1", "2"] and want["exact"]
    plain = ex._desired(ctx("triton.reload", {"force": False}), before())["http://127.0.0.1:8000"]
    assert plain["config"] == CONFIG


def test_reload_refuses_unloaded_model() -> None:
    ex = TritonReloadExecutor(TritonControl())
    with pytest.raises(PermanentError, match="not loaded"):
        ex._desired(ctx("triton.reload"), before(loaded=False))


def test_load_version_overrides_the_version_policy() -> None:
    ex = TritonLoadExecutor(TritonControl())
    want = ex._desired(ctx("triton.load", {"version": 2}), before())["http://127.0.0.1:8000"]
    assert want["config"]["version_policy"] == {"specific": {"versions": [2]}}
    assert want["expect_ready"] == ["2"] and want["exact"]
    by_target = ex._desired(ctx("triton.load", version="1"), before())["http://127.0.0.1:8000"]
    assert by_target["config"]["version_policy"] == {"specific": {"versions": [1]}}
    plain = ex._desired(ctx("triton.load"), before(loaded=False))["http://127.0.0.1:8000"]
    assert plain["config"] is None and plain["expect_ready"] is None


def test_load_version_of_unloaded_model_needs_config() -> None:
    ex = TritonLoadExecutor(TritonControl())
    with pytest.raises(PermanentError, match="give `config`"):
        ex._desired(ctx("triton.load", {"version": 2}), before(loaded=False))
    want = ex._desired(ctx("triton.load", {"version": 2, "config": CONFIG}), before(loaded=False))
    assert want["http://127.0.0.1:8000"]["config"]["version_policy"] == {"specific": {"versions": [2]}}


def test_control_hides_auth_value_and_needs_both_parts() -> None:
    control = TritonControl("x-admin", "hunter2")
    assert "hunter2" not in repr(control)
    assert control.headers == {"x-admin": "hunter2"}
    with pytest.raises(ValueError):
        TritonControl("x-admin", None)


def test_factory_registers_against_the_catalog() -> None:
    reg = ExecutorRegistry()
    reg.register_all(triton_executors())
    assert reg.names() == ["triton.load", "triton.reload", "triton.unload"]
