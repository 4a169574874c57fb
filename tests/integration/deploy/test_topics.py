"""``healer topics create`` (healer/cli/topics_cmd.py) against a real broker: it creates exactly
the worker's topic layout (compacted changelogs included), is idempotent, refuses inconsistent
partition counts, and a worker with HEALER_CREATE_TOPICS=false (the Helm chart's setting) runs
on the topics it created.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest

from healer.cli import topics_cmd
from tests.integration.deploy.conftest import ROOT
from tests.workers import WorkerFactory

pytestmark = pytest.mark.integration


def topics(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``healer topics ...`` in-process, as the CLI would (add_parser + func)."""
    p = argparse.ArgumentParser(prog="healer")
    sub = p.add_subparsers(dest="command", required=True)
    topics_cmd.add_parser(sub)
    args = p.parse_args(["topics", *argv])
    code = args.func(args)
    out = capsys.readouterr()
    return code, out.out, out.err


async def _describe(bootstrap: str, names: list[str]) -> dict[str, tuple[int, str | None]]:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        meta = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
        cfgs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
        policy: dict[str, str | None] = {}
        for resp in cfgs:
            for _code, _msg, _type, name, entries in resp.resources:
                policy[name] = next((e[1] for e in entries if e[0] == "cleanup.policy"), None)
        return {n: (meta[n], policy.get(n)) for n in names}
    finally:
        await admin.close()


def test_create_is_the_worker_layout_and_idempotent(kafka_bootstrap: str, unique_app_id: str,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HEALER_DATA_DIR", str(tmp_path))
    base = ["--bootstrap-servers", kafka_bootstrap, "--app-id", unique_app_id, "--partitions", "3"]
    code, listed, _ = topics(["list", *base], capsys)
    assert code == 0
    names = [line.split("\t")[0] for line in listed.splitlines()]
    assert f"{unique_app_id}.alerts" in names and f"{unique_app_id}-ledger-changelog" in names
    assert len(names) == 12

    code, out, err = topics(["create", *base], capsys)
    assert code == 0, err
    assert sorted(line.split("\t")[1] for line in out.splitlines() if line.startswith("created")) == sorted(names)
    found = asyncio.run(_describe(kafka_bootstrap, names))
    for name, (parts, cleanup) in found.items():
        assert parts == 3, name
        assert cleanup == ("compact" if name.endswith("-changelog") else "delete"), (name, cleanup)

    code, out, err = topics(["create", *base[:-1], "5"], capsys)  # again, asking for 5
    assert code == 0, err
    assert all(line.startswith("exists") and "partitions=3" in line for line in out.splitlines()), out
    assert "never changed" in err


def test_inconsistent_partitions_fail(kafka_bootstrap: str, unique_app_id: str,
                                      capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from streams.client import ensure_topics

    monkeypatch.setenv("HEALER_DATA_DIR", str(tmp_path))
    asyncio.run(ensure_topics(kafka_bootstrap, {f"{unique_app_id}.signals": 2}))
    code, _, err = topics(["create", "--bootstrap-servers", kafka_bootstrap, "--app-id", unique_app_id,
                           "--partitions", "4"], capsys)
    assert code == 1
    assert "same partition count" in err and f"{unique_app_id}.signals=2" in err


def test_unreachable_broker_exits_1(unique_app_id: str, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tests.workers import free_port

    monkeypatch.setenv("HEALER_DATA_DIR", str(tmp_path))
    code, _, err = topics(["create", "--bootstrap-servers", f"127.0.0.1:{free_port()}",
                           "--app-id", unique_app_id, "--timeout", "3"], capsys)
    assert code == 1 and "cannot reach Kafka" in err


def test_worker_runs_on_precreated_topics(kafka_bootstrap: str, unique_app_id: str,
                                          healer_worker: WorkerFactory,
                                          capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HEALER_DATA_DIR", str(tmp_path))
    code, _, err = topics(["create", "--bootstrap-servers", kafka_bootstrap, "--app-id", unique_app_id,
                           "--partitions", "3"], capsys)
    assert code == 0, err
    worker = healer_worker.start(ROOT / "deploy" / "demo" / "policies", unique_app_id, partitions=3,
                                 HEALER_CREATE_TOPICS="false")
    assert "created topics" not in worker.log_tail()
    status, body = worker.get("/readyz")
    assert status == 200 and body["ready"] is True
