"""Binaries from Debian packages for tests, unpacked (never installed) on first use.

``debian_binary("prometheus-alertmanager", "amtool")`` runs ``apt-get download``
and ``dpkg -x`` into ``~/.cache/healer/debian/<package>/`` (``HEALER_CACHE`` replaces
``~/.cache/healer``; ``apt-get update``
first when the package lists are missing or stale), so no service is installed
or started and nothing outside the cache changes. A lock file serialises
concurrent test processes. Used by tests/integration/test_matchers_amtool.py.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CACHE = Path(os.environ.get("HEALER_CACHE", Path.home() / ".cache" / "healer")) / "debian"


class DebianPackageUnavailable(RuntimeError):
    """apt-get could not fetch the package (no apt, no network to the mirror)."""


def _download(package: str, into: Path) -> Path:
    for attempt in ("cached lists", "after apt-get update"):
        if attempt != "cached lists":
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600, check=False)
        proc = subprocess.run(
            ["apt-get", "download", "-qq", package],
            cwd=into,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        debs = sorted(into.glob(f"{package}_*.deb"))
        if proc.returncode == 0 and debs:
            return debs[-1]
    raise DebianPackageUnavailable(
        f"apt-get download {package} failed: {proc.stderr.strip()[-500:]}"
    )


def debian_binary(package: str, binary: str) -> Path:
    """Path of ``usr/bin/<binary>`` from ``package``, unpacked into the cache if missing."""
    root = CACHE / package
    path = root / "usr" / "bin" / binary
    if path.exists():
        return path
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise DebianPackageUnavailable("apt-get and dpkg are needed to unpack " + package)
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{package}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():  # another process unpacked it while this one waited
            return path
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            deb = _download(package, Path(tmp))
            staging = Path(tmp) / "root"
            subprocess.run(["dpkg", "-x", str(deb), str(staging)], check=True, timeout=300)
            shutil.rmtree(root, ignore_errors=True)
            staging.rename(root)  # whole or not at all: a crash leaves no half tree
    if not path.exists():
        raise DebianPackageUnavailable(f"{package} has no usr/bin/{binary}")
    return path


def amtool_or_skip() -> Path:
    """Debian's amtool 0.25 (the matcher grammar healer follows); skips, with the reason, only
    outside CI when apt cannot fetch it, and fails under CI."""
    import pytest

    try:
        path = debian_binary("prometheus-alertmanager", "amtool")
    except DebianPackageUnavailable as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"amtool unavailable: {exc}")
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=True)
    assert "version 0.25." in version.stdout + version.stderr, version
    return path
