"""deploy/rbac/*.yaml grant exactly the API calls the Kubernetes executors declare."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from actions.kubernetes import EXECUTOR_CLASSES, declared_api_calls

RBAC = Path(__file__).resolve().parents[2] / "deploy" / "rbac"


def _granted(path: Path, kind: str) -> set[tuple[str, str, str]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    roles = [d for d in docs if d.get("kind") == kind]
    assert len(roles) == 1, f"{path.name}: expected one {kind}"
    out: set[tuple[str, str, str]] = set()
    for rule in roles[0]["rules"]:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"{path.name}: wildcard in {field}: {rule}"
        assert not rule.get("resourceNames"), "resourceNames would break the executors"
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                for verb in rule["verbs"]:
                    out.add((group, res, verb))
    return out


def test_every_executor_declares_its_calls() -> None:
    for cls in EXECUTOR_CLASSES:
        assert cls.api_calls, f"{cls.__name__} declares no API calls"
        for group, resource, verb in cls.api_calls:
            assert verb in {"get", "list", "watch", "create", "update", "patch", "delete"}
            assert resource and "*" not in resource and "*" not in group


@pytest.mark.parametrize(
    ("file", "kind", "cluster_scoped"),
    [("clusterrole.yaml", "ClusterRole", True), ("role.yaml", "Role", False)],
)
def test_rbac_matches_declared_calls(file: str, kind: str, cluster_scoped: bool) -> None:
    granted = _granted(RBAC / file, kind)
    declared = set(declared_api_calls(cluster_scoped=cluster_scoped))
    assert granted - declared == set(), f"{file} grants calls no executor makes"
    assert declared - granted == set(), f"{file} misses calls the executors make"


def test_namespaced_role_has_no_cluster_scoped_resources() -> None:
    granted = _granted(RBAC / "role.yaml", "Role")
    assert not {r for _, r, _ in granted} & {"nodes", "pods/eviction"}
