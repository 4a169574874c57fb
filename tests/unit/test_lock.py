"""The dependency locks hold: this venv runs exactly requirements/dev.txt, ``pip check`` is
clean, the locks satisfy pyproject.toml's ranges, the image's lock (runtime.txt) is a part of
dev.txt, and ``make install`` reinstalls when a lock changes.

A failure here says which command brings things back: ``make install`` (the venv left the
lock) or ``make lock`` (pyproject.toml changed since the lock was written). The upgrade path
itself (``make lock`` against PyPI) is tests/integration/deploy/test_lock_upgrade.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.lockfile import (
    LOCK_DEV,
    LOCK_RUNTIME,
    ROOT,
    applicable,
    differences,
    installed_versions,
    pip_check,
    read_lock,
)

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
LOCKED_EXTRAS = ("dev", "triton")  # the Makefile's `make lock` resolves these into dev.txt


def _requirements(*extras: str) -> list[Requirement]:
    texts = list(PYPROJECT["dependencies"])
    for extra in extras:
        texts += PYPROJECT["optional-dependencies"][extra]
    return [Requirement(t) for t in texts]


def test_venv_is_the_dev_lock() -> None:
    diffs = differences(applicable(read_lock(LOCK_DEV)), installed_versions())
    assert not diffs, ("this venv differs from requirements/dev.txt; run `make install`:\n  "
                       + "\n  ".join(diffs))


def test_pip_check_is_clean() -> None:
    done = pip_check()
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(("lock", "extras"), [(LOCK_DEV, LOCKED_EXTRAS), (LOCK_RUNTIME, ())],
                         ids=["dev", "runtime"])
def test_lock_satisfies_pyproject(lock: Path, extras: tuple[str, ...]) -> None:
    locked = {p.name: p.version for p in read_lock(lock)}
    stale = []
    for req in _requirements(*extras):
        name = canonicalize_name(req.name)
        if name not in locked:
            stale.append(f"{req} is not in {lock.name}")
        elif not req.specifier.contains(locked[name], prereleases=True):
            stale.append(f"{req}: {lock.name} has {locked[name]}")
    assert not stale, "pyproject.toml changed since the lock was written; run `make lock`:\n  " + \
        "\n  ".join(stale)


def test_runtime_lock_is_part_of_the_dev_lock() -> None:
    """The image installs the versions the tests ran, and none of the dev tools."""
    dev = {p.name: p.version for p in read_lock(LOCK_DEV)}
    runtime = {p.name: p.version for p in read_lock(LOCK_RUNTIME)}
    assert {n: (v, dev.get(n)) for n, v in runtime.items() if dev.get(n) != v} == {}
    dev_only = {canonicalize_name(Requirement(t).name) for t in PYPROJECT["optional-dependencies"]["dev"]}
    needed_at_runtime = {canonicalize_name(r.name) for r in _requirements()}
    assert not (dev_only - needed_at_runtime) & set(runtime), "dev tools leaked into runtime.txt"


@pytest.mark.parametrize("lock", [LOCK_DEV, LOCK_RUNTIME], ids=["dev", "runtime"])
def test_every_pin_has_hashes(lock: Path) -> None:
    pins = read_lock(lock)
    assert pins and all(p.hashes for p in pins), [p.name for p in pins if not p.hashes]


def _make_install_plan(venv: Path, lock: Path) -> str:
    """What `make install` would run (make -n) for this venv and lock."""
    done = subprocess.run(["make", "--no-print-directory", "-n", "install", f"VENV={venv}",
                           f"LOCK_DEV={lock}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_install_stamp_follows_the_lock(tmp_path: Path) -> None:
    venv, lock = tmp_path / "venv", tmp_path / "dev.txt"
    shutil.copy(LOCK_DEV, lock)
    plan = _make_install_plan(venv, lock)
    assert f"-r {lock}" in plan
    stamp = re.search(r"touch (\S+\.installed-[0-9a-f]+)", plan)
    assert stamp, plan
    venv.mkdir()
    Path(stamp.group(1)).touch()  # as if installed from this lock
    assert "pip install" not in _make_install_plan(venv, lock)
    before = lock.stat().st_mtime
    with lock.open("a", encoding="utf-8") as fh:
        fh.write("# a re-lock changed this file\n")
    # an older mtime, as after a checkout: the content, not the clock, must trigger it
    os.utime(lock, (before - 3600, before - 3600))
    assert f"-r {lock}" in _make_install_plan(venv, lock), "a changed lock did not reinstall"
