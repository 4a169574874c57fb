"""A real, throw-away Kubernetes control plane on loopback for integration tests and benches.

``KubeCluster`` builds (once, cached by version; see ``tests/harness/kube/build.sh``) and starts:
etcd, kube-apiserver (RBAC on, static tokens), kube-controller-manager (Deployments ->
ReplicaSets -> Pods, EndpointSlices, ...), kube-scheduler and kwok (fake kubelets: nodes become
Ready, bound pods become Running+Ready with pod IPs, deletions complete). It generates a CA,
the apiserver's serving certificate and the service-account signing key with ``cryptography``,
creates fake nodes (some with ``nvidia.com/gpu`` capacity), installs a minimal HTTPRoute CRD,
writes kubeconfigs per user and stops every process it started (terminate, then kill).

Users (static token file): ``admin`` (system:masters, used by the harness and test setup),
``healer`` (no rights until a test binds deploy/rbac/clusterrole.yaml to it) and ``nobody``
(never bound: requests are forbidden).

Used by ``tests/integration/kubernetes/conftest.py`` and ``bench/bench_kube_scale.py``.
Run ``python -m tests.harness.kubecluster`` to start one by hand (prints kubeconfig, Ctrl-C stops).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "kube" / "build.sh"
KWOK_STAGES = HERE / "kube" / "kwok-stages.yaml"
HTTPROUTE_CRD = HERE / "kube" / "httproute-crd.yaml"
DEFAULT_VERSION = "v1.35.4"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
NEVER_READY_ANNOTATION = "healer.io/test-never-ready"
GPU_RESOURCE = "nvidia.com/gpu"
USERS = ("admin", "healer", "nobody")


class ClusterError(RuntimeError):
    """The test cluster could not be built or started; the message carries log tails."""


class GoToolchainMissing(ClusterError):
    """No ``go`` on PATH: the binaries cannot be built here."""


def cache_dir(version: str = DEFAULT_VERSION) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "healer" / "kube" / version


def ensure_binaries(version: str = DEFAULT_VERSION, timeout: float = 3600) -> Path:
    """The bin dir with every binary, building what is missing (slow the first time)."""
    bin_dir = cache_dir(version) / "bin"
    if all((bin_dir / b).is_file() for b in BINARIES):
        return bin_dir
    if shutil.which("go") is None:
        raise GoToolchainMissing("the Go toolchain (go) is not installed; cannot build kube binaries")
    env = {**os.environ, "HEALER_KUBE_VERSION": version}
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise ClusterError(f"build.sh failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- certificates --------------------------------------------------------------------------

def _write_key(path: Path, key: Any) -> None:
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    path.chmod(0o600)


def _cert(
    subject: str, public_key: Any, issuer: x509.Name | None, signing_key: Any, *, ca: bool,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def generate_pki(d: Path) -> dict[str, Path]:
    """CA, apiserver serving cert (127.0.0.1, localhost, kubernetes.default...), SA key pair."""
    d.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("healer-test-ca", ca_key.public_key(), None, ca_key, ca=True)
    srv_key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("10.96.0.1")),
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default"),
        x509.DNSName("kubernetes.default.svc"),
        x509.DNSName("kubernetes.default.svc.cluster.local"),
    ]
    srv = _cert("kube-apiserver", srv_key.public_key(), ca.subject, ca_key, ca=False, sans=sans)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    paths = {
        "ca_crt": d / "ca.crt", "ca_key": d / "ca.key",
        "server_crt": d / "apiserver.crt", "server_key": d / "apiserver.key",
        "sa_key": d / "sa.key", "sa_pub": d / "sa.pub",
    }
    paths["ca_crt"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_key(paths["ca_key"], ca_key)
    paths["server_crt"].write_bytes(srv.public_bytes(serialization.Encoding.PEM))
    _write_key(paths["server_key"], srv_key)
    _write_key(paths["sa_key"], sa_key)
    paths["sa_pub"].write_bytes(sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ))
    return paths


def _decode(raw: bytes) -> Any:
    """JSON when the body is JSON (API objects), else text (/readyz says "ok")."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


# ---- processes -----------------------------------------------------------------------------

@dataclass
class Component:
    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        try:
            # Own process group: stopping it never touches anything we did not start.
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, grace: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@dataclass
class FakeNode:
    name: str
    gpus: int = 0
    labels: dict[str, str] = field(default_factory=dict)


DEFAULT_NODES = (
    FakeNode("cpu-1"),
    FakeNode("cpu-2"),
    FakeNode("cpu-3"),
    FakeNode("gpu-1", gpus=8),
    FakeNode("gpu-2", gpus=8),
    FakeNode("gpu-3", gpus=8),
)


class KubeCluster:
    """One control plane in a temp dir. ``start()`` / ``stop()``, or use as a context manager."""

    def __init__(
        self,
        version: str = DEFAULT_VERSION,
        nodes: tuple[FakeNode, ...] = DEFAULT_NODES,
        workdir: Path | None = None,
    ) -> None:
        self.version = version
        self.nodes = nodes
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="healer-kube-"))
        self.components: list[Component] = []
        self.tokens = {u: secrets.token_hex(16) for u in USERS}
        self.api_port = 0
        self.pki: dict[str, Path] = {}
        self.timings: dict[str, float] = {}
        self.bin_dir: Path | None = None

    # -- public --------------------------------------------------------------------------
    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def ca_file(self) -> Path:
        return self.pki["ca_crt"]

    def kubeconfig(self, user: str = "admin") -> Path:
        return self.workdir / f"{user}.kubeconfig"

    def write_kubeconfig(self, path: Path, user: str, server: str | None = None, context: str = "test") -> Path:
        """A kubeconfig for ``user`` (token auth) against ``server`` (default: the apiserver)."""
        server = server or self.server
        cluster: dict[str, Any] = {"server": server}
        if server.startswith("https://"):
            cluster["certificate-authority"] = str(self.ca_file)
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": cluster}],
            "users": [{"name": user, "user": {"token": self.tokens[user]}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": user}}],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(doc))
        path.chmod(0o600)
        return path

    def request(
        self, method: str, path: str, body: Any = None, user: str = "admin", timeout: float = 10.0,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        """One raw API call (harness setup; tests use the kubernetes client)."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.tokens[user]}")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:
                return resp.status, _decode(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _decode(exc.read())

    def apply_yaml(self, text: str) -> None:
        """Create every object of a YAML stream (admin); 409 AlreadyExists is fine."""
        for doc in yaml.safe_load_all(text):
            if doc:
                self.create(doc)

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        status, out = self.request("POST", self._collection_path(obj), obj)
        if status not in (200, 201, 409):
            raise ClusterError(f"create {obj['kind']} {obj['metadata'].get('name')}: {status} {out}")
        return out if isinstance(out, dict) else {}

    @staticmethod
    def _collection_path(obj: dict[str, Any]) -> str:
        api_version, kind = obj["apiVersion"], obj["kind"]
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        plural = {
            "CustomResourceDefinition": "customresourcedefinitions",
            "ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings",
            "Role": "roles", "RoleBinding": "rolebindings",
            "Node": "nodes", "Namespace": "namespaces",
        }.get(kind, kind.lower() + "s")
        cluster_scoped = kind in ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "Node", "Namespace")
        if cluster_scoped:
            return f"{base}/{plural}"
        ns = obj["metadata"].get("namespace", "default")
        return f"{base}/namespaces/{ns}/{plural}"

    def start(self, timeout: float = 180.0) -> KubeCluster:
        t0 = time.monotonic()
        self.bin_dir = ensure_binaries(self.version)
        self.timings["binaries_seconds"] = round(time.monotonic() - t0, 2)
        t1 = time.monotonic()
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        self.timings["start_seconds"] = round(time.monotonic() - t1, 2)
        return self

    def stop(self) -> None:
        for comp in reversed(self.components):
            comp.stop()
        self.components.clear()
        if self._own_workdir and not os.environ.get("HEALER_KEEP_KUBE_DIR"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> KubeCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def check_alive(self) -> None:
        for comp in self.components:
            if not comp.alive():
                raise ClusterError(f"{comp.name} exited:\n{comp.log_tail()}")

    # -- startup -------------------------------------------------------------------------
    def _bin(self, name: str) -> str:
        assert self.bin_dir is not None
        return str(self.bin_dir / name)

    def _component(self, name: str, argv: list[str]) -> Component:
        comp = Component(name, argv, self.workdir / f"{name}.log")
        self.components.append(comp)
        comp.start()
        return comp

    def _wait(self, what: str, check: Any, timeout: float, comps: list[Component] | None = None) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            for comp in comps or []:
                if not comp.alive():
                    raise ClusterError(f"{comp.name} exited while waiting for {what}:\n{comp.log_tail()}")
            try:
                result = check()
                if result:
                    return result
            except (OSError, urllib.error.URLError, ValueError) as exc:
                last = exc
            time.sleep(0.2)
        tails = "\n".join(f"--- {c.name}\n{c.log_tail(1500)}" for c in (comps or self.components))
        raise ClusterError(f"timed out after {timeout:g}s waiting for {what} (last: {last})\n{tails}")

    def _start(self, timeout: float) -> None:
        wd = self.workdir
        self.pki = generate_pki(wd / "pki")
        token_file = wd / "tokens.csv"
        token_file.write_text(
            f'{self.tokens["admin"]},admin,admin-uid,"system:masters"\n'
            f'{self.tokens["healer"]},healer,healer-uid\n'
            f'{self.tokens["nobody"]},nobody,nobody-uid\n'
        )
        token_file.chmod(0o600)

        # etcd
        etcd_client, etcd_peer = free_port(), free_port()
        etcd = self._component("etcd", [
            self._bin("etcd"), "--name", "healer", "--data-dir", str(wd / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{etcd_client}",
            "--advertise-client-urls", f"http://127.0.0.1:{etcd_client}",
            "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
            "--initial-cluster", f"healer=http://127.0.0.1:{etcd_peer}",
            "--unsafe-no-fsync", "--log-level", "warn", "--quota-backend-bytes", str(2 * 1024**3),
        ])

        def etcd_ok() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{etcd_client}/health", timeout=2) as r:
                return bool(json.loads(r.read()).get("health") == "true")

        self._wait("etcd health", etcd_ok, 30, [etcd])

        # kube-apiserver
        self.api_port = free_port()
        apiserver = self._component("kube-apiserver", [
            self._bin("kube-apiserver"),
            "--etcd-servers", f"http://127.0.0.1:{etcd_client}",
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
            "--secure-port", str(self.api_port),
            "--tls-cert-file", str(self.pki["server_crt"]),
            "--tls-private-key-file", str(self.pki["server_key"]),
            "--client-ca-file", str(self.pki["ca_crt"]),
            "--token-auth-file", str(token_file),
            "--authorization-mode", "RBAC",
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(self.pki["sa_pub"]),
            "--service-account-signing-key-file", str(self.pki["sa_key"]),
            "--service-cluster-ip-range", "10.96.0.0/16",
            "--endpoint-reconciler-type", "none",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--v", "1",
        ])
        self._wait("kube-apiserver /readyz", lambda: self.request("GET", "/readyz", timeout=3)[0] == 200,
                   90, [etcd, apiserver])
        for user in USERS:
            self.write_kubeconfig(self.kubeconfig(user), user)
        admin_kc = str(self.kubeconfig("admin"))

        # Create nodes before kwok starts so it finds them at once.
        for node in self.nodes:
            self.create(self._node_object(node))
        self.create(yaml.safe_load(HTTPROUTE_CRD.read_text()))

        self._component("kube-controller-manager", [
            self._bin("kube-controller-manager"),
            "--kubeconfig", admin_kc,
            "--leader-elect=false",
            "--controllers", "*",
            "--use-service-account-credentials=false",
            "--service-account-private-key-file", str(self.pki["sa_key"]),
            "--root-ca-file", str(self.pki["ca_crt"]),
            "--bind-address", "127.0.0.1", "--secure-port", "0",
            "--concurrent-deployment-syncs", "10", "--concurrent-replicaset-syncs", "10",
            "--profiling=false", "--v", "1",
        ])
        self._component("kube-scheduler", [
            self._bin("kube-scheduler"),
            "--kubeconfig", admin_kc,
            "--leader-elect=false",
            "--bind-address", "127.0.0.1", "--secure-port", "0",
            "--profiling=false", "--v", "1",
        ])
        self._component("kwok", [
            self._bin("kwok"),
            "--kubeconfig", admin_kc,
            "--config", str(KWOK_STAGES),
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector", f"{KWOK_NODE_ANNOTATION}=fake",
            "--node-lease-duration-seconds", "40",
            "--cidr", "10.244.0.1/16",
            "--node-ip", "10.0.0.1",
            "--server-address", f"127.0.0.1:{free_port()}",
        ])
        self._wait("nodes Ready", self._nodes_ready, timeout, self.components)
        self._wait("HTTPRoute CRD established", self._crd_established, 30, self.components)
        self._wait("default service account", lambda: self.request(
            "GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200, 60, self.components)

    def _node_object(self, node: FakeNode) -> dict[str, Any]:
        capacity = {"cpu": "32", "memory": "256Gi", "pods": "110"}
        labels = {"kubernetes.io/hostname": node.name, "kubernetes.io/os": "linux", "type": "kwok", **node.labels}
        if node.gpus:
            capacity[GPU_RESOURCE] = str(node.gpus)
            labels["nvidia.com/gpu.present"] = "true"
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": node.name, "labels": labels, "annotations": {KWOK_NODE_ANNOTATION: "fake"}},
            "status": {"capacity": capacity, "allocatable": capacity},
        }

    def _nodes_ready(self) -> bool:
        status, out = self.request("GET", "/api/v1/nodes")
        if status != 200:
            return False
        ready = 0
        for n in out.get("items", []):
            for c in n.get("status", {}).get("conditions") or []:
                if c.get("type") == "Ready" and c.get("status") == "True":
                    ready += 1
        return ready >= len(self.nodes)

    def _crd_established(self) -> bool:
        status, out = self.request(
            "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/httproutes.gateway.networking.k8s.io"
        )
        if status != 200:
            return False
        conds = out.get("status", {}).get("conditions") or []
        return any(c.get("type") == "Established" and c.get("status") == "True" for c in conds)


@contextlib.contextmanager
def running_cluster(**kw: Any) -> Iterator[KubeCluster]:
    cluster = KubeCluster(**kw)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def main() -> None:
    with running_cluster() as c:
        print(f"server: {c.server}\nkubeconfig: {c.kubeconfig('admin')}\ntimings: {c.timings}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(1)
                c.check_alive()


if __name__ == "__main__":
    main()
