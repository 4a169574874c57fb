"""The Helm chart (deploy/helm/healer): renders, is secure and least-privilege, and a real
kube-apiserver accepts every object (server-side dry run, strict field validation).

Renders with helm (built by deploy/tools/install-helm.sh) the chart's ci/*-values.yaml: defaults
(cluster RBAC, a tokens file), namespaced RBAC + ServiceMonitor + tokens, and Kafka TLS/SASL +
topic Job + Kubernetes executors off + single-token shorthands; without tokens it must not render. RBAC rules must equal deploy/rbac/*.yaml and the executors' declared
API calls; the namespaced render is also applied for real and probed with SubjectAccessReviews.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from actions.kubernetes import EXECUTOR_CLASSES, declared_api_calls
from healer.loader import load_policy_set
from healer.settings import Settings
from tests.integration.deploy.conftest import CHART, ROOT, Render, run_helm

pytestmark = pytest.mark.integration

RBAC = ROOT / "deploy" / "rbac"
CI = CHART / "ci"
SERVICEMONITOR_CRD = Path(__file__).with_name("servicemonitor-crd.yaml")
RBAC_KINDS = {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
# Kafka security settings the chart renders; the worker must read them (see test below).
KAFKA_SECURITY_ENV = {
    "HEALER_KAFKA_SECURITY_PROTOCOL", "HEALER_KAFKA_SSL_CAFILE", "HEALER_KAFKA_SASL_MECHANISM",
    "HEALER_KAFKA_SASL_USERNAME", "HEALER_KAFKA_SASL_PASSWORD_FILE",
}

Triple = tuple[str, str, str]


def values(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((CI / f"{name}-values.yaml").read_text()))


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def triples(rules: list[dict[str, Any]]) -> set[Triple]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]}


def file_rules(name: str) -> list[dict[str, Any]]:
    doc = yaml.safe_load((RBAC / name).read_text())
    return list(doc["rules"])


def pod_spec(docs: list[dict[str, Any]], kind: str = "Deployment") -> dict[str, Any]:
    return dict(one(docs, kind)["spec"]["template"]["spec"])


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def settings_from_env(env: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch,
                      skip: frozenset[str] | set[str] = frozenset()) -> Settings:
    """Settings as the worker builds them from the container's literal env values."""
    import os

    for name in list(os.environ):
        if name.startswith("HEALER_") or name == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(name)
    for name, e in env.items():
        if "value" in e and name not in skip:
            monkeypatch.setenv(name, str(e["value"]))
    return Settings()


@pytest.fixture(scope="module")
def default(render: Render) -> list[dict[str, Any]]:
    return render(values("default"))


@pytest.fixture(scope="module")
def namespaced(render: Render) -> list[dict[str, Any]]:
    return render(values("namespaced"))


@pytest.fixture(scope="module")
def secure(render: Render) -> list[dict[str, Any]]:
    return render(values("secure"))


# ------------------------------------------------------------------ rendering and security


def test_helm_lint_strict(helm: str) -> None:
    for f in sorted(CI.glob("*-values.yaml")):
        proc = run_helm(helm, "lint", "--strict", str(CHART), "--values", str(f), check=False)
        assert proc.returncode == 0, f"helm lint {f.name}:\n{proc.stdout}\n{proc.stderr}"


def test_packaged_chart_renders_the_same(helm: str, tmp_path: Path, render: Render) -> None:
    """`helm package` resolves the files/rbac and files/policies links into the archive."""
    run_helm(helm, "package", str(CHART), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("healer-*.tgz")
    vfile = CI / "default-values.yaml"
    proc = run_helm(helm, "template", "healer", str(archive), "--namespace", "healer", "--values", str(vfile))
    packaged = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert packaged == render(values("default"))


def test_every_manifest_is_well_formed(default: list[dict[str, Any]], namespaced: list[dict[str, Any]],
                                       secure: list[dict[str, Any]]) -> None:
    for docs in (default, namespaced, secure):
        names = set()
        for d in docs:
            assert {"apiVersion", "kind", "metadata"} <= d.keys(), d
            key = (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"])
            assert key not in names, f"duplicate object {key}"
            names.add(key)
            labels = d["metadata"].get("labels", {})
            assert labels.get("app.kubernetes.io/name") == "healer", key
    kinds = {d["kind"] for d in default}
    assert kinds == {"ServiceAccount", "ConfigMap", "ClusterRole", "ClusterRoleBinding", "Service",
                     "Deployment", "PodDisruptionBudget"}
    assert {"ServiceMonitor", "NetworkPolicy"} <= {d["kind"] for d in namespaced}
    assert "Job" in {d["kind"] for d in secure}


@pytest.mark.parametrize("variant", ["default", "namespaced", "secure"])
def test_pods_are_locked_down(variant: str, render: Render) -> None:
    docs = render(values(variant))
    kinds = ["Deployment"] + (["Job"] if variant == "secure" else [])
    for kind in kinds:
        spec = pod_spec(docs, kind)
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec.get("hostNetwork") is not True and spec.get("hostPID") is not True
        assert spec["enableServiceLinks"] is False
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["privileged"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            volumes = {v["name"]: v for v in spec["volumes"]}
            # the only writable paths are emptyDirs
            for path in ("/var/lib/healer", "/tmp"):
                assert "emptyDir" in volumes[mounts[path]], f"{kind}: {path} must be an emptyDir"
            assert c["env"][0]["name"] == "HEALER_APP_ID"
            assert "resources" in c
        automount = spec.get("automountServiceAccountToken")
        if kind == "Job" or variant == "secure":
            assert automount is False, f"{kind} needs no Kubernetes credentials"
        else:
            assert automount is True


def test_worker_settings(default: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    dep = one(default, "Deployment")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    env = env_of(c)
    assert env["HEALER_CREATE_TOPICS"]["value"] == "false"
    assert env["HEALER_DRY_RUN"]["value"] == "true"  # observe first
    assert env["HEALER_POLICIES"]["value"] == "/etc/healer/policies"
    assert env["HEALER_BOOTSTRAP_SERVERS"]["value"] == "kafka-0.kafka:9092,kafka-1.kafka:9092"
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["args"] == ["run"]
    # every value the chart sets is read by the worker (Settings rejects nothing silently)
    fields = {f"HEALER_{name.upper()}" for name in Settings.model_fields}
    unknown = {n for n in env if n.startswith("HEALER_")} - fields
    assert unknown == set(), f"the chart sets variables the worker ignores: {unknown}"
    s = settings_from_env(env, monkeypatch)
    assert s.create_topics is False and s.dry_run is True and s.topic_partitions == 6
    # the image's default bind is loopback: the chart listens on every address itself
    assert s.http_host == "0.0.0.0" and s.insecure_no_auth is False
    assert (s.http_header_timeout, s.http_body_timeout, s.http_max_connections) == ("10s", "30s", 256)
    # the tokens file comes from the Secret, mounted read-only
    assert s.tokens_file == "/etc/healer/tokens/tokens.yaml"
    assert "HEALER_API_TOKEN_FILE" not in env and "HEALER_WEBHOOK_TOKEN_FILE" not in env
    spec = dep["spec"]["template"]["spec"]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["tokens"]["mountPath"] == "/etc/healer/tokens" and mounts["tokens"]["readOnly"] is True
    tokens = next(v for v in spec["volumes"] if v["name"] == "tokens")
    assert tokens["secret"] == {"secretName": "healer-tokens", "defaultMode": 0o440}
    # the keyring every replica shares: signed commands and the audit MAC key
    assert env["HEALER_KEYRING_FILE"]["value"] == "/etc/healer/keyring/keyring.yaml"
    assert mounts["keyring"]["mountPath"] == "/etc/healer/keyring" and mounts["keyring"]["readOnly"] is True
    keyring = next(v for v in spec["volumes"] if v["name"] == "keyring")
    assert keyring["secret"] == {"secretName": "healer-keyring", "defaultMode": 0o440}


def test_insecure_no_auth_renders_without_tokens(render: Render) -> None:
    """Without a Secret the chart renders only with auth.insecureNoAuth (test_bad_values_fail_with_a_reason)."""
    docs = render({"kafka": {"bootstrapServers": "kafka:9092"}, "auth": {"insecureNoAuth": True},
                   "keyring": {"existingSecret": "healer-keyring"}})
    c = pod_spec(docs)["containers"][0]
    env = env_of(c)
    assert env["HEALER_INSECURE_NO_AUTH"]["value"] == "true"
    assert not {"HEALER_TOKENS_FILE", "HEALER_API_TOKEN_FILE", "HEALER_WEBHOOK_TOKEN_FILE"} & set(env)
    assert "tokens" not in {m["name"] for m in c["volumeMounts"]}


def test_secure_settings_parse(secure: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    c = pod_spec(secure)["containers"][0]
    env = env_of(c)
    fields = {f"HEALER_{name.upper()}" for name in Settings.model_fields}
    unknown = {n for n in env if n.startswith("HEALER_")} - fields - KAFKA_SECURITY_ENV
    assert unknown == set(), unknown
    # the single-token shorthands: identity api (approve, operate) and webhook (ingest only)
    assert env["HEALER_API_TOKEN_FILE"]["value"] == "/etc/healer/tokens/api-token"
    assert env["HEALER_WEBHOOK_TOKEN_FILE"]["value"] == "/etc/healer/tokens/webhook-token"
    assert "HEALER_TOKENS_FILE" not in env
    assert env["HEALER_TRITON_AUTH_VALUE"]["valueFrom"]["secretKeyRef"] == {"name": "triton-auth", "key": "triton-auth"}
    assert env["HEALER_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
    assert env["HEALER_KAFKA_SSL_CAFILE"]["value"] == "/etc/healer/kafka-ca/ca.crt"
    assert c["image"] == "registry.example.com/healer@sha256:" + "0" * 64
    s = settings_from_env(env, monkeypatch, skip=KAFKA_SECURITY_ENV)
    assert s.rate_limit is not None and s.rate_limit.max == 10
    assert s.allowed_namespaces == ["llm-*"] and s.dry_run is False
    job = one(secure, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    jc = job["spec"]["template"]["spec"]["containers"][0]
    assert jc["args"] == ["topics", "create"]
    assert env_of(jc)["HEALER_TOPIC_PARTITIONS"]["value"] == "12"


def test_kafka_security_env_is_read_by_the_worker(secure: list[dict[str, Any]]) -> None:
    env = env_of(pod_spec(secure)["containers"][0])
    fields = {f"HEALER_{name.upper()}" for name in Settings.model_fields}
    assert set(env) >= KAFKA_SECURITY_ENV
    assert KAFKA_SECURITY_ENV - fields == set()


def test_policy_change_rolls_the_workers(render: Render) -> None:
    base = values("namespaced")
    a = one(render(base), "Deployment")["spec"]["template"]["metadata"]["annotations"]
    changed = json.loads(json.dumps(base))
    changed["policies"]["files"]["team.yaml"] = base["policies"]["files"]["team.yaml"].replace("max: 6", "max: 7")
    b = one(render(changed), "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert a["checksum/policies"] != b["checksum/policies"]
    assert a["checksum/settings"] == b["checksum/settings"]
    setting = json.loads(json.dumps(base))
    setting["config"] = {"paused": True}
    c = one(render(setting), "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert c["checksum/settings"] != a["checksum/settings"]
    assert c["checksum/policies"] == a["checksum/policies"]


def test_policies_configmap_loads(default: list[dict[str, Any]], namespaced: list[dict[str, Any]],
                                  tmp_path: Path) -> None:
    library = sorted(p.name for p in (ROOT / "policies").glob("*.yaml"))
    cm = one(default, "ConfigMap")
    assert sorted(cm["data"]) == library
    for name, text in cm["data"].items():
        assert text.strip() == (ROOT / "policies" / name).read_text().strip(), name
    for docs, expected in ((default, None), (namespaced, ["team-latency-scale-out"])):
        d = tmp_path / f"p{len(list(tmp_path.iterdir()))}"
        d.mkdir()
        for name, text in one(docs, "ConfigMap")["data"].items():
            (d / name).write_text(text)
        ps = load_policy_set([d])
        if expected is not None:
            assert sorted(ps.policies) == expected


def test_bad_values_fail_with_a_reason(helm: str, tmp_path: Path) -> None:
    ok = {"kafka": {"bootstrapServers": "k:9092"}, "auth": {"existingSecret": "healer-tokens"},
          "keyring": {"existingSecret": "healer-keyring"}}
    cases = [
        ({}, "kafka.bootstrapServers is required"),
        ({"kafka": {"bootstrapServers": "k:9092"}, "keyring": ok["keyring"]}, "auth.existingSecret is required"),
        ({**ok, "keyring": {}}, "keyring.existingSecret is required"),
        ({**ok, "auth": {"existingSecret": "s", "tokensFileKey": ""}}, "are all empty"),
        ({**ok, "kubernetes": {"rbac": {"mode": "bogus"}}}, "must be cluster or namespaced"),
        ({**ok, "kubernetes": {"rbac": {"mode": "namespaced"}}}, "needs kubernetes.rbac.namespaces"),
        ({**ok, "kubernetes": {"rbac": {"mode": "namespaced", "namespaces": ["llm-*"]}}}, "no globs"),
        ({**ok, "policies": {"library": False}}, "no policies"),
        ({**ok, "policies": {"files": {"../x.yaml": "a: 1"}}}, "must be a file name"),
    ]
    for i, (vals, message) in enumerate(cases):
        f = tmp_path / f"bad-{i}.yaml"
        f.write_text(yaml.safe_dump(vals))
        proc = run_helm(helm, "template", "healer", str(CHART), "--values", str(f), check=False)
        assert proc.returncode != 0, f"{vals} rendered"
        assert message in proc.stderr, proc.stderr


# ------------------------------------------------------------------ RBAC


def no_wildcards(docs: list[dict[str, Any]]) -> None:
    for d in docs:
        if d["kind"] in ("Role", "ClusterRole"):
            for rule in d["rules"]:
                for f in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule.get(f, []), f"{d['metadata']['name']}: wildcard in {f}"
                assert not rule.get("nonResourceURLs"), rule
                assert "escalate" not in rule["verbs"] and "bind" not in rule["verbs"]
                assert "impersonate" not in rule["verbs"]
                assert "secrets" not in rule["resources"]


def test_cluster_mode_rbac_is_deploy_rbac(default: list[dict[str, Any]]) -> None:
    no_wildcards(default)
    role = one(default, "ClusterRole")
    assert role["rules"] == file_rules("clusterrole.yaml")
    assert triples(role["rules"]) == set(declared_api_calls(cluster_scoped=True))
    binding = one(default, "ClusterRoleBinding")
    sa = one(default, "ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": "healer"}]
    assert pod_spec(default)["serviceAccountName"] == sa["metadata"]["name"]


def test_namespaced_mode_rbac(namespaced: list[dict[str, Any]]) -> None:
    no_wildcards(namespaced)
    roles = by_kind(namespaced, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["inference-batch", "llm-prod"]
    for r in roles:
        assert r["rules"] == file_rules("role.yaml")
    bindings = by_kind(namespaced, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["inference-batch", "llm-prod"]
    node_role = one(namespaced, "ClusterRole")
    node_calls = {c for cls in EXECUTOR_CLASSES if cls.cluster_scoped for c in cls.api_calls}
    assert triples(node_role["rules"]) == node_calls
    # together they cover every executor, and nothing more
    assert triples(file_rules("role.yaml")) | node_calls == set(declared_api_calls(cluster_scoped=True))
    env = env_of(pod_spec(namespaced)["containers"][0])
    assert env["HEALER_ALLOWED_NAMESPACES"]["value"] == "llm-prod,inference-batch"


def test_executors_off_means_no_rbac(secure: list[dict[str, Any]], render: Render) -> None:
    assert not {d["kind"] for d in secure} & RBAC_KINDS
    vals = values("namespaced")
    vals["kubernetes"]["rbac"]["nodeActions"] = False
    docs = render(vals)
    assert by_kind(docs, "ClusterRole") == [] and len(by_kind(docs, "Role")) == 2


# ------------------------------------------------------------------ real apiserver


def _dynamic(cluster: Any) -> Any:
    from kubernetes import client, config
    from kubernetes.dynamic import DynamicClient

    api = config.new_client_from_config(config_file=str(cluster.kubeconfig("admin")))
    return DynamicClient(api), client.CoreV1Api(api), client.AuthorizationV1Api(api), api


def _resource(dyn: Any, doc: dict[str, Any]) -> Any:
    return dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])


def _create(dyn: Any, doc: dict[str, Any], dry_run: bool) -> Any:
    res = _resource(dyn, doc)
    params = [("fieldValidation", "Strict")] + ([("dryRun", "All")] if dry_run else [])
    ns = doc["metadata"].get("namespace") if res.namespaced else None
    return dyn.create(res, body=doc, namespace=ns, query_params=params)


@pytest.fixture(scope="module")
def kube(apiserver: Any) -> Iterator[tuple[Any, Any, Any]]:
    dyn, core, authz, api = _dynamic(apiserver)
    crd = yaml.safe_load(SERVICEMONITOR_CRD.read_text())
    with contextlib.suppress(Exception):  # already there when the cluster is shared
        _create(dyn, crd, dry_run=False)
    _wait_established(dyn, crd["metadata"]["name"])
    try:
        yield dyn, core, authz
    finally:
        api.close()


def _wait_established(dyn: Any, name: str, timeout: float = 30.0) -> None:
    import time

    res = dyn.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conds = (res.get(name=name).to_dict().get("status") or {}).get("conditions") or []
        if any(c["type"] == "Established" and c["status"] == "True" for c in conds):
            dyn.resources.invalidate_cache()
            return
        time.sleep(0.2)
    raise AssertionError(f"CRD {name} not established after {timeout}s")


@contextlib.contextmanager
def namespaces(core: Any, *names: str) -> Iterator[None]:
    for n in names:
        core.create_namespace({"metadata": {"name": n}})
    try:
        yield
    finally:
        for n in names:
            with contextlib.suppress(Exception):
                core.delete_namespace(n)


@pytest.mark.parametrize("variant", ["default", "namespaced", "secure"])
def test_server_side_dry_run(variant: str, render: Render, kube: tuple[Any, Any, Any]) -> None:
    dyn, core, _ = kube
    suffix = uuid.uuid4().hex[:6]
    ns = f"healer-{suffix}"
    vals = values(variant)
    extra_ns: list[str] = []
    if variant == "namespaced":
        extra_ns = [f"llm-prod-{suffix}", f"inference-batch-{suffix}"]
        vals["kubernetes"]["rbac"]["namespaces"] = extra_ns
    docs = render(vals, release=f"h{suffix}", namespace=ns)
    with namespaces(core, ns, *extra_ns):
        for doc in docs:
            out = _create(dyn, doc, dry_run=True)
            assert out.metadata.name == doc["metadata"]["name"]
            if doc["kind"] == "Deployment":
                # defaults applied by the server, nothing persisted
                assert out.spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem
        for doc in docs:
            res = _resource(dyn, doc)
            ns_arg = doc["metadata"].get("namespace") if res.namespaced else None
            with pytest.raises(Exception, match=r"NotFound|Not Found"):
                res.get(name=doc["metadata"]["name"], namespace=ns_arg)


def test_strict_validation_catches_a_typo(render: Render, kube: tuple[Any, Any, Any]) -> None:
    """The dry run is not a rubber stamp: a misspelt field is refused."""
    dyn, core, _ = kube
    ns = f"healer-{uuid.uuid4().hex[:6]}"
    dep = one(render(values("default"), namespace=ns), "Deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    with namespaces(core, ns), pytest.raises(Exception, match="readOnlyRootFileSystem"):
        _create(dyn, dep, dry_run=True)


def _can(authz: Any, sa: str, ns: str, verb: str, resource: str, group: str = "",
         namespace: str | None = None, sub: str = "") -> bool:
    review = {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{ns}:{sa}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"],
            "resourceAttributes": {"verb": verb, "resource": resource, "group": group,
                                   "namespace": namespace or "", "subresource": sub},
        },
    }
    return bool(authz.create_subject_access_review(review).status.allowed)


def test_namespaced_rbac_grants_exactly_what_executors_need(render: Render,
                                                          kube: tuple[Any, Any, Any]) -> None:
    """Apply the namespaced RBAC for real and ask the apiserver who may do what."""
    dyn, core, authz = kube
    suffix = uuid.uuid4().hex[:6]
    ns, allowed, other = f"healer-{suffix}", f"llm-prod-{suffix}", f"other-{suffix}"
    vals = values("namespaced")
    vals["kubernetes"]["rbac"]["namespaces"] = [allowed]
    docs = [d for d in render(vals, release=f"h{suffix}", namespace=ns)
            if d["kind"] in RBAC_KINDS | {"ServiceAccount"}]
    sa = one(docs, "ServiceAccount")["metadata"]["name"]
    created: list[dict[str, Any]] = []
    with namespaces(core, ns, allowed, other):
        try:
            for doc in docs:
                _create(dyn, doc, dry_run=False)
                created.append(doc)
            import time

            deadline = time.monotonic() + 30
            while not _can(authz, sa, ns, "patch", "deployments", "apps", allowed):
                assert time.monotonic() < deadline, "RBAC never took effect"
                time.sleep(0.2)
            # drain lists pods cluster-wide (node ClusterRole); everything else stays namespaced
            node_calls = {c for cls in EXECUTOR_CLASSES if cls.cluster_scoped for c in cls.api_calls}
            for group, resource, verb in sorted(declared_api_calls(cluster_scoped=False)):
                res, _, sub = resource.partition("/")
                assert _can(authz, sa, ns, verb, res, group, allowed, sub), (group, resource, verb)
                elsewhere = _can(authz, sa, ns, verb, res, group, other, sub)
                assert elsewhere == ((group, resource, verb) in node_calls), (group, resource, verb)
            assert _can(authz, sa, ns, "patch", "nodes")  # cordon
            assert _can(authz, sa, ns, "create", "pods", "", other, "eviction")  # drain, any ns
            assert not _can(authz, sa, ns, "delete", "pods", "", other)
            for verb, res, group in [("get", "secrets", ""), ("list", "secrets", ""),
                                     ("delete", "deployments", "apps"), ("create", "pods", ""),
                                     ("delete", "nodes", ""), ("create", "rolebindings",
                                                                "rbac.authorization.k8s.io")]:
                assert not _can(authz, sa, ns, verb, res, group, allowed), (verb, res)
        finally:
            for doc in reversed(created):
                res = _resource(dyn, doc)
                with contextlib.suppress(Exception):
                    res.delete(name=doc["metadata"]["name"],
                               namespace=doc["metadata"].get("namespace") if res.namespaced else None)


def test_rendered_names_are_valid(default: list[dict[str, Any]]) -> None:
    for d in default:
        name = d["metadata"]["name"]
        assert len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name), name
