"""The JSON Schema for editors: ``docs/policy.schema.json`` is what
``healer policy schema`` prints (fails when stale), it is valid draft-07 (what
yaml-language-server uses), accepts the library and rejects what the loader
rejects at the same place."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from healer.catalog import default_catalog
from healer.schema import policy_schema

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "policy.schema.json"
REGEN = "healer policy schema > docs/policy.schema.json"


def test_committed_schema_is_fresh() -> None:
    assert json.loads(COMMITTED.read_text(encoding="utf-8")) == policy_schema(), (
        f"docs/policy.schema.json is stale: run `{REGEN}` and commit it"
    )


def test_cli_prints_the_schema() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "healer.cli.main", "policy", "schema"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == policy_schema()


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = policy_schema()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _docs() -> list[tuple[str, dict[str, Any]]]:
    files = sorted(ROOT.glob("policies/**/*.yaml")) + sorted(ROOT.glob("tests/scenarios/*/*.yaml"))
    return [
        (f"{f.relative_to(ROOT)}#{i}", d)
        for f in files
        for i, d in enumerate(yaml.safe_load_all(f.read_text(encoding="utf-8")))
        if d
    ]


@pytest.mark.parametrize(("where", "doc"), _docs(), ids=[w for w, _ in _docs()])
def test_library_validates(
    validator: jsonschema.Draft7Validator, where: str, doc: dict[str, Any]
) -> None:
    assert [e.message for e in validator.iter_errors(doc)] == []


BASE: dict[str, Any] = {
    "apiVersion": "healer/v1",
    "kind": "Policy",
    "metadata": {"name": "p"},
    "spec": {
        "trigger": {"alert": {"matchers": ['alertname="X"']}},
        "target": {"kind": "Deployment", "namespace": "a", "name": "b"},
        "actions": [{"use": "kubernetes.scale", "with": {"replicas": "+1", "max": 10}}],
        "guards": {"cooldown": "5m"},
    },
}


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        (("spec", "guards", "coldown"), "5m", ["spec", "guards"]),
        (("spec", "guards", "cooldown"), "5 minutes", ["spec", "guards", "cooldown"]),
        (("spec", "actions", 0, "use"), "kubernetes.scal", ["spec", "actions", 0, "use"]),
        (("spec", "actions", 0, "with", "replica"), "+1", ["spec", "actions", 0, "with"]),
        (
            ("spec", "trigger", "alert", "matchers"),
            ["nope"],
            ["spec", "trigger", "alert", "matchers", 0],
        ),
        (("spec", "guards", "approval"), "sometimes", ["spec", "guards", "approval"]),
        (("spec", "target", "kind"), "Job", ["spec", "target", "kind"]),
    ],
)
def test_schema_rejects_at_the_right_place(
    validator: jsonschema.Draft7Validator, path: tuple[Any, ...], value: Any, where: list[Any]
) -> None:
    doc = json.loads(json.dumps(BASE))
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    errors = list(validator.iter_errors(doc))
    assert errors, "schema accepted an invalid document"
    assert any(list(e.absolute_path) == where for e in errors), [
        (list(e.absolute_path), e.message) for e in errors
    ]


def test_every_action_has_a_with_schema() -> None:
    schema = policy_schema()
    step = schema["definitions"]["StepSpec"]
    assert step["properties"]["use"]["enum"] == default_catalog().names()
    used = {r["if"]["properties"]["use"]["const"] for r in step["allOf"]}
    assert used == set(default_catalog().names())


def test_silence_documents_use_the_silence_schema(validator: jsonschema.Draft7Validator) -> None:
    doc = {
        "apiVersion": "healer/v1",
        "kind": "Silence",
        "metadata": {"name": "s"},
        "spec": {"matchers": ['a="b"'], "startsAt": "2026-01-01T00:00:00Z"},
    }
    assert [e.message for e in validator.iter_errors(doc)] == ["'endsAt' is a required property"]
