"""Start and stop a real Triton Inference Server for integration tests and benches.

The ``tritonserver`` binary comes from the ``nvidia-pytriton`` wheel
(``make install`` installs it and its dependencies from requirements/dev.txt;
the binary, its Python backend and bundled libraries are all we use).
Layout of the installed wheel::

    site-packages/pytriton/tritonserver/bin/tritonserver       (RPATH -> nvidia_pytriton.libs)
    site-packages/pytriton/tritonserver/backends/python/       (libtriton_python.so, utils)
    site-packages/pytriton/tritonserver/python_backend_stubs/3.X/triton_python_backend_stub
    site-packages/nvidia_pytriton.libs/                        (libtritonserver, libcudart, ...)

The Python backend needs ``triton_python_backend_stub`` next to
``libtriton_python.so``; the wheel ships one stub per Python version, so we
build a backend directory in ``~/.cache/healer/tritonserver/<key>/`` with the
stub of this interpreter's version. The stub embeds the system
``libpython3.X.so`` and ignores PYTHONPATH, and it mis-handles numpy 2 arrays
(inputs arrive garbled, outputs empty), so the test models put a numpy 1.26
``--target`` install from ``~/.cache/healer/triton-py/`` on ``sys.path``
themselves.

Used by ``tests/integration/triton/conftest.py`` and ``bench/bench_triton.py``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PYTRITON_VERSION = "0.7.0"
NUMPY_FOR_STUB = "1.26.4"
INSTALL_HINT = f"make install (requirements/dev.txt pins nvidia-pytriton=={PYTRITON_VERSION})"


class TritonUnavailable(RuntimeError):
    """The binary cannot be found or cannot start here; the message says why."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "healer"


@dataclass(frozen=True)
class TritonDist:
    """Where the wheel put the server and what it needs to run."""

    binary: Path
    backends: Path
    libs: Path
    wheel_version: str


def find_dist() -> TritonDist:
    """Locate ``tritonserver`` inside the installed nvidia-pytriton wheel (no import of it)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonUnavailable(f"nvidia-pytriton is not installed; run: {INSTALL_HINT}")
    pkg = Path(next(iter(spec.submodule_search_locations)))
    dist_dir = pkg / "tritonserver"
    binary = dist_dir / "bin" / "tritonserver"
    libs = pkg.parent / "nvidia_pytriton.libs"
    if not binary.is_file():
        raise TritonUnavailable(f"no tritonserver binary at {binary}; run: {INSTALL_HINT}")
    version = importlib.metadata.version("nvidia-pytriton")
    pyver = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = dist_dir / "python_backend_stubs" / pyver / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonUnavailable(f"nvidia-pytriton {version} ships no Python backend stub for {pyver}")
    backends = cache_root() / "tritonserver" / f"pytriton-{version}-py{pyver}" / "backends"
    pydir = backends / "python"
    if not (pydir / "triton_python_backend_stub").is_file():
        tmp = Path(tempfile.mkdtemp(prefix=".backends-", dir=cache_root()))
        shutil.copytree(dist_dir / "backends" / "python", tmp / "python",
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(stub, tmp / "python" / "triton_python_backend_stub")
        backends.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp.rename(backends)
        except OSError:  # another process prepared it first
            shutil.rmtree(tmp, ignore_errors=True)
    return TritonDist(binary=binary, backends=backends, libs=libs, wheel_version=version)


def ensure_stub_site() -> Path:
    """A numpy the Python backend stub can use (installed once with pip --target)."""
    pyver = f"{sys.version_info.major}.{sys.version_info.minor}"
    target = cache_root() / "triton-py" / f"py{pyver}-numpy-{NUMPY_FOR_STUB}"
    if (target / "numpy").is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".numpy-", dir=target.parent))
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--target", str(tmp), f"numpy=={NUMPY_FOR_STUB}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise TritonUnavailable(f"cannot install numpy for the stub: {proc.stderr[-2000:]}")
    try:
        tmp.rename(target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# --------------------------------------------------------------------------- models

_CONFIG = """\
backend: "python"
max_batch_size: 0
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] }} ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
{extra}
"""

# OUTPUT0 = INPUT0 + version, so a response says which version served it.
_MODEL_PY = '''\
"""Test model for healer's Triton harness (generated)."""
import json
import os
import sys
import time

for _p in {site_dirs!r}:
    if _p not in sys.path:
        sys.path.insert(0, _p)

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

BEHAVIOUR = {behaviour!r}
INIT_SECONDS = {init_seconds!r}


class TritonPythonModel:
    def initialize(self, args):
        self.version = int(args["model_version"])
        name = args["model_name"]
        events = os.path.join(args["model_repository"], "..", "..", "init-events.jsonl")
        start = time.time()
        self._event(events, name, "init_start", start)
        if INIT_SECONDS:
            time.sleep(INIT_SECONDS)
        marker = os.path.join(args["model_repository"], "..", "..", f"fail.{{name}}")
        if BEHAVIOUR == "fail_init" or os.path.exists(marker):
            self._event(events, name, "init_failed", time.time())
            raise RuntimeError(f"{{name}} version {{self.version}} is broken on purpose")
        self._event(events, name, "init_end", time.time())

    def _event(self, path, name, what, t):
        line = json.dumps({{"model": name, "version": self.version, "event": what,
                           "time": t, "pid": os.getpid()}})
        with open(path, "a") as f:
            f.write(line + "\\n")

    def execute(self, requests):
        out = []
        for req in requests:
            x = pb_utils.get_input_tensor_by_name(req, "INPUT0").as_numpy()
            y = (x + np.float32(self.version)).astype(np.float32)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", y)]))
        return out
'''


@dataclass(frozen=True)
class ModelSpec:
    name: str
    versions: dict[int, str]  # version -> behaviour ("ok" | "fail_init")
    version_policy: str = ""  # config.pbtxt snippet
    init_seconds: float = 0.0
    served: tuple[str, ...] = ("1",)  # versions READY after a load from the repository


DEFAULT_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("healthy", {1: "ok", 2: "ok"}, "version_policy: { all { } }", served=("1", "2")),
    ModelSpec("broken", {1: "ok", 2: "fail_init"}, "version_policy: { specific { versions: [ 1 ] } }"),
    ModelSpec("slow", {1: "ok"}, "", init_seconds=2.0),
    ModelSpec("flaky", {1: "ok"}),  # fails to (re)load while ``root/fail.flaky`` exists
    ModelSpec("simple", {1: "ok"}),  # for benches
)


def write_repository(root: Path, models: Sequence[ModelSpec], site_dirs: Sequence[str]) -> Path:
    """Write a model repository under ``root/models``; init events go to ``root/init-events.jsonl``."""
    repo = root / "models"
    for m in models:
        mdir = repo / m.name
        mdir.mkdir(parents=True, exist_ok=True)
        (mdir / "config.pbtxt").write_text(_CONFIG.format(extra=m.version_policy))
        for version, behaviour in m.versions.items():
            vdir = mdir / str(version)
            vdir.mkdir(exist_ok=True)
            (vdir / "model.py").write_text(_MODEL_PY.format(
                site_dirs=list(site_dirs), behaviour=behaviour, init_seconds=m.init_seconds))
    return repo


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class TritonServer:
    """One tritonserver process on loopback, explicit model control."""

    root: Path
    extra_args: Sequence[str] = ()
    models: Sequence[ModelSpec] = DEFAULT_MODELS
    start_timeout: float = 90.0
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)
    repo: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_path = self.root / "tritonserver.log"
        self.repo = self.root / "models"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def init_events_path(self) -> Path:
        return self.root / "init-events.jsonl"

    def init_events(self, model: str | None = None) -> list[dict[str, object]]:
        """What the test models recorded in ``initialize`` (one JSON object per line)."""
        if not self.init_events_path.exists():
            return []
        rows = [json.loads(line) for line in self.init_events_path.read_text().splitlines() if line]
        return [r for r in rows if model is None or r.get("model") == model]

    def fail_marker(self, model: str) -> Path:
        """While this file exists, every (re)load of ``model`` fails in ``initialize``."""
        return self.root / f"fail.{model}"

    def start(self) -> TritonServer:
        dist = find_dist()
        site = ensure_stub_site()
        write_repository(self.root, self.models, [str(site), str(dist.backends / "python")])
        for attempt in range(3):  # a free port can be taken between probe and bind
            self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
            self._spawn(dist)
            try:
                self._wait_live()
                return self
            except TritonUnavailable:
                log = self.log_tail()
                self.stop()
                if "address already in use" in log.lower() and attempt < 2:
                    continue
                raise
        raise AssertionError("unreachable")

    def _spawn(self, dist: TritonDist) -> None:
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = ":".join(
            p for p in (str(dist.libs), env.get("LD_LIBRARY_PATH", "")) if p)
        cmd = [
            str(dist.binary),
            f"--model-repository={self.repo}",
            "--model-control-mode=explicit",
            f"--backend-directory={dist.backends}",
            "--http-address=127.0.0.1", f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}",
            "--metrics-address=127.0.0.1", f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            "--exit-timeout-secs=5",
            *self.extra_args,
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def _wait_live(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise TritonUnavailable(
                    f"tritonserver exited with {code} during start; log tail:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/health/live", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise TritonUnavailable(f"tritonserver not live after {self.start_timeout:g}s:\n{self.log_tail()}")

    def stop(self, grace: float = 10.0) -> None:
        """Terminate, then kill; only our own process group."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def kill(self) -> None:
        """Crash it (SIGKILL to the process group): the server-down case."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- small synchronous helpers for test setup (the executors under test are async)

    def _post(self, path: str, body: dict[str, object] | None = None,
              headers: dict[str, str] | None = None, timeout: float = 60.0) -> tuple[int, str]:
        data = json.dumps(body or {}).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def load(self, model: str, config: dict[str, object] | None = None,
             headers: dict[str, str] | None = None) -> None:
        body: dict[str, object] = {}
        if config is not None:
            body = {"parameters": {"config": json.dumps(config)}}
        code, text = self._post(f"/v2/repository/models/{model}/load", body, headers)
        if code != 200:
            raise RuntimeError(f"load {model}: HTTP {code}: {text}")

    def unload(self, model: str, headers: dict[str, str] | None = None, wait: float = 0.0) -> None:
        """Unload; with ``wait`` > 0, until no version is READY/LOADING/UNLOADING."""
        code, text = self._post(f"/v2/repository/models/{model}/unload", {}, headers)
        if code != 200:
            raise RuntimeError(f"unload {model}: HTTP {code}: {text}")
        deadline = time.monotonic() + wait
        while wait and time.monotonic() < deadline:
            states = {e.get("state") for e in self.index(headers) if e["name"] == model}
            if not states & {"READY", "LOADING", "UNLOADING"}:
                return
            time.sleep(0.1)
        if wait:
            raise RuntimeError(f"unload {model}: still not unloaded after {wait:g}s")

    def reset(self, model: str, headers: dict[str, str] | None = None) -> None:
        """Serve ``model`` exactly as its repository config says.

        A plain load does not get there after a load with a config override:
        Triton skips a load of unchanged files and keeps the override. So
        unload (and wait) first unless the served state already matches.
        """
        spec = next(m for m in self.models if m.name == model)
        ready = sorted(e["version"] for e in self.index(headers)
                       if e["name"] == model and e.get("state") == "READY")
        if ready == sorted(spec.served) and not self._overridden(model):
            return
        self.unload(model, headers, wait=60.0)
        self.load(model, headers=headers)

    def _overridden(self, model: str) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/v2/models/{model}/config", timeout=10) as r:
                config = json.loads(r.read())
        except (urllib.error.URLError, OSError):
            return True
        return bool(config.get("parameters"))

    def metadata(self) -> dict[str, object]:
        with urllib.request.urlopen(f"{self.url}/v2", timeout=10) as r:
            out: dict[str, object] = json.loads(r.read())
        return out

    def index(self, headers: dict[str, str] | None = None) -> list[dict[str, str]]:
        code, text = self._post("/v2/repository/index", {}, headers)
        if code != 200:
            raise RuntimeError(f"index: HTTP {code}: {text}")
        out: list[dict[str, str]] = json.loads(text)
        return out

    def infer(self, model: str, data: list[float], version: str = "") -> list[float]:
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
        body: dict[str, object] = {
            "inputs": [{"name": "INPUT0", "shape": [len(data)], "datatype": "FP32", "data": data}]}
        code, text = self._post(path, body)
        if code != 200:
            raise RuntimeError(f"infer {model}: HTTP {code}: {text}")
        result: list[float] = json.loads(text)["outputs"][0]["data"]
        return result


@contextlib.contextmanager
def running_server(root: Path, extra_args: Sequence[str] = (),
                   models: Sequence[ModelSpec] = DEFAULT_MODELS) -> Iterator[TritonServer]:
    server = TritonServer(root=root, extra_args=extra_args, models=models)
    try:
        yield server.start()
    finally:
        server.stop()
