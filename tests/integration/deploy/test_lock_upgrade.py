"""The upgrade path of the dependency locks, for real: ``make lock`` (uv against PyPI) in a copy of
pyproject.toml, the Makefile and requirements/.

- the committed locks are exactly what ``make lock`` writes (nobody edited them by hand, and
  pyproject.toml has not moved since);
- a dependency added to pyproject.toml lands in both locks, hashed, and no other pin moves;
- a pin held back stays where it is on ``make lock`` and moves on ``make lock UPGRADE=NAME``
  (and nothing else does);
- a lock left with merge conflict markers does not stop ``make lock``.

Needs PyPI (uv caches what it fetched, so reruns take seconds).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lockfile import LOCK_DEV, LOCK_RUNTIME, ROOT, read_lock

pytestmark = pytest.mark.integration

LOCK_TIMEOUT_S = 600
ADDED = "tomli-w"  # small, pure Python, not a dependency of anything healer locks


def _copy(dst: Path) -> Path:
    (dst / "requirements").mkdir(parents=True)
    for name in ("pyproject.toml", "Makefile"):
        shutil.copy2(ROOT / name, dst / name)
    for lock in (LOCK_DEV, LOCK_RUNTIME):
        shutil.copy2(lock, dst / "requirements" / lock.name)
    return dst


def _lock(tree: Path, *make_args: str) -> subprocess.CompletedProcess[str]:
    venv = Path(sys.executable).parents[1]  # uv comes from this venv (make install put it there)
    done = subprocess.run(["make", "--no-print-directory", "-C", str(tree), "lock", f"VENV={venv}",
                           *make_args], capture_output=True, text=True, timeout=LOCK_TIMEOUT_S,
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _pins(tree: Path, lock: Path) -> dict[str, str]:
    return {p.name: p.version for p in read_lock(tree / "requirements" / lock.name)}


def _edit_pyproject(tree: Path, old: str, new: str) -> None:
    path = tree / "pyproject.toml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    return _copy(tmp_path / "repo")


def test_committed_locks_are_what_make_lock_writes(tree: Path) -> None:
    _lock(tree)
    for lock in (LOCK_DEV, LOCK_RUNTIME):
        assert (tree / "requirements" / lock.name).read_text() == lock.read_text(), (
            f"{lock.relative_to(ROOT)} is not what `make lock` writes: run `make lock` and commit it")


def test_added_dependency_lands_in_both_locks(tree: Path) -> None:
    before = {lock.name: _pins(tree, lock) for lock in (LOCK_DEV, LOCK_RUNTIME)}
    assert ADDED not in before["dev.txt"]
    _edit_pyproject(tree, 'dependencies = [\n', f'dependencies = [\n  "{ADDED}>=1.0",\n')
    _lock(tree)
    for lock in (LOCK_DEV, LOCK_RUNTIME):
        after = _pins(tree, lock)
        assert ADDED in after, f"{lock.name} lacks the new dependency"
        assert {n: v for n, v in after.items() if n != ADDED} == before[lock.name], \
            f"adding {ADDED} moved other pins in {lock.name}"
        added = next(p for p in read_lock(tree / "requirements" / lock.name) if p.name == ADDED)
        assert added.hashes


def test_held_back_pin_moves_only_on_upgrade(tree: Path) -> None:
    newest = _pins(tree, LOCK_DEV)["idna"]
    _edit_pyproject(tree, 'dependencies = [\n', 'dependencies = [\n  "idna<3.7",\n')
    _lock(tree)  # a real older pin, hashes and all
    held = _pins(tree, LOCK_DEV)
    assert held["idna"] != newest and held["idna"].startswith("3.")
    _edit_pyproject(tree, '  "idna<3.7",\n', "")
    _lock(tree)
    assert _pins(tree, LOCK_DEV) == held, "plain `make lock` moved a pin that still satisfies"
    _lock(tree, "UPGRADE=idna")
    dev, runtime = _pins(tree, LOCK_DEV), _pins(tree, LOCK_RUNTIME)
    assert dev["idna"] == newest and runtime["idna"] == newest
    assert {n: v for n, v in dev.items() if n != "idna"} == \
        {n: v for n, v in held.items() if n != "idna"}, "UPGRADE=idna moved other pins"


def test_lock_with_merge_conflict_markers_is_resolved_afresh(tree: Path) -> None:
    dev = tree / "requirements" / "dev.txt"
    text = dev.read_text()
    dev.write_text(f"<<<<<<< HEAD\n{text}=======\n{text}>>>>>>> other\n")
    done = _lock(tree)
    assert "merge conflict markers" in done.stdout
    assert not re.search(r"^(<<<<<<<|=======|>>>>>>>)", dev.read_text(), re.M)
    assert "faust-streaming" in _pins(tree, LOCK_DEV)
