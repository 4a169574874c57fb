"""Read the dependency locks (requirements/*.txt, written by ``make lock``) and compare them with
an installed environment.

Used by tests/unit/test_lock.py (this venv against requirements/dev.txt) and
tests/integration/deploy/test_wheel.py (the image's recipe against requirements/runtime.txt).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK_DEV = ROOT / "requirements" / "dev.txt"
LOCK_RUNTIME = ROOT / "requirements" / "runtime.txt"

_INSTALLED = ("import importlib.metadata as m, json; "
              "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")
_ENVIRONMENT = ("import json; from packaging.markers import default_environment; "
                "print(json.dumps(default_environment()))")


@dataclass(frozen=True)
class Pin:
    """One ``name==version ; marker`` entry of a lock, with its hashes."""

    name: str  # canonical (PEP 503)
    version: str
    marker: Marker | None
    hashes: tuple[str, ...]

    def applies(self, environment: dict[str, str] | None = None) -> bool:
        return self.marker is None or self.marker.evaluate(environment)


def read_lock(path: Path) -> list[Pin]:
    """Every pin of a pip requirements file as uv/pip-compile writes it."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    pins = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        hashes = tuple(re.findall(r"--hash=(\S+)", line))
        req = Requirement(re.sub(r"\s--hash=\S+", "", line).strip())
        (spec,) = req.specifier  # a lock pins each entry with exactly one ==
        assert spec.operator == "==", f"{path.name}: {line!r} is not pinned with =="
        pins.append(Pin(canonicalize_name(req.name), spec.version, req.marker, hashes))
    return pins


def applicable(pins: list[Pin], environment: dict[str, str] | None = None) -> dict[str, str]:
    """name -> locked version, for the pins whose markers hold in ``environment``."""
    return {p.name: p.version for p in pins if p.applies(environment)}


def installed_versions(python: Path | str = sys.executable) -> dict[str, str]:
    """name -> version of every distribution installed for the interpreter ``python``."""
    out = subprocess.run([str(python), "-c", _INSTALLED], capture_output=True, text=True,
                         timeout=120, check=True)
    return {canonicalize_name(k): v for k, v in json.loads(out.stdout).items()}


def marker_environment(python: Path | str = sys.executable) -> dict[str, str]:
    """The PEP 508 marker values of another interpreter (it must have packaging)."""
    out = subprocess.run([str(python), "-c", _ENVIRONMENT], capture_output=True, text=True,
                         timeout=120, check=False)
    if out.returncode != 0:  # no packaging there: the same machine, so the same values
        from packaging.markers import default_environment

        return dict(default_environment())
    return dict(json.loads(out.stdout))


def differences(locked: dict[str, str], installed: dict[str, str]) -> list[str]:
    """One line per locked distribution that is missing or at another version."""
    out = []
    for name, version in sorted(locked.items()):
        have = installed.get(name)
        if have is None:
            out.append(f"{name}: locked {version}, not installed")
        elif have != version:
            out.append(f"{name}: locked {version}, installed {have}")
    return out


def pip_check(python: Path | str = sys.executable) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True,
                          timeout=300, check=False)
