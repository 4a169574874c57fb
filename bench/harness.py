"""Shared plumbing for the worker benchmarks and the fault-injection suite.

A broker (the embedded one in a throw-away state dir, or ``--bootstrap`` /
``KAFKA_BOOTSTRAP_SERVERS``), real ``healer run`` worker processes (via
``tests.workers.WorkerFactory``), fast producers, topic scans, consumer-group
lag, worker RSS and CPU, input and policy generators, and the output every
bench shares: tables, "target ... met/SHORT" lines (:func:`check`,
:func:`print_checks`) and JSON in ``bench/results/``. Used by every
``bench/bench_*.py`` that runs a worker and by ``bench/chaos/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient  # noqa: E402

from bench.report import check, fmt, print_checks, print_table  # noqa: E402,F401 (re-exported)
from healer.ingest import partition_key  # noqa: E402
from streams.broker import EmbeddedKafka  # noqa: E402
from streams.client import ensure_topics  # noqa: E402
from tests.workers import Worker, WorkerFactory  # noqa: E402

RESULTS = ROOT / "bench" / "results"
# event time of generated inputs: recent, or the broker's time-based retention (7 days)
# deletes the input segments while the bench still needs them
T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
MAX_RECORD = 1_048_576 + 4096  # producer cap: a 1 MB record plus its envelope


# --------------------------------------------------------------------------- machine / output


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so ``with`` blocks stop the workers and brokers we started."""
    import signal

    def _raise(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _raise)


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_avg_1_5_15": load_avg(),
    }


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_result(name: str, data: dict[str, Any], out: str | None = None) -> Path:
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path


def percentile(sorted_xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_xs:
        return float("nan")
    k = max(0, min(len(sorted_xs) - 1, int(-(-q * len(sorted_xs) // 100)) - 1))
    return sorted_xs[k]


# --------------------------------------------------------------------------- broker + workers


@contextlib.contextmanager
def broker(bootstrap: str | None = None, name: str = "bench") -> Iterator[str]:
    """An existing broker (argument, then ``KAFKA_BOOTSTRAP_SERVERS``) or a fresh embedded one."""
    given = bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    with tempfile.TemporaryDirectory(prefix=f"healer-{name}-kafka-") as d:
        kafka = EmbeddedKafka(state_dir=Path(d), partitions=1, die_with_parent=True,
                              progress=lambda m: print(f"[kafka] {m}", file=sys.stderr))
        t0 = time.monotonic()
        bs = kafka.start()
        print(f"[kafka] embedded broker {bs} up in {time.monotonic() - t0:.1f}s", file=sys.stderr)
        try:
            yield bs
        finally:
            kafka.stop()


@contextlib.contextmanager
def workers(bootstrap: str, tmp: Path) -> Iterator[WorkerFactory]:
    """Real ``healer run`` processes; every one is killed on exit."""
    f = WorkerFactory(bootstrap, tmp)
    try:
        yield f
    finally:
        f.stop_all()


def worker_env(pairs: Sequence[str] | None) -> dict[str, str]:
    """``--worker-env KEY=VALUE`` options as a dict (extra environment for the workers)."""
    out = {}
    for p in pairs or ():
        k, sep, v = p.partition("=")
        if not sep or not k:
            raise SystemExit(f"--worker-env wants KEY=VALUE, got {p!r}")
        out[k] = v
    return out


def rss_kb(pid: int) -> int:
    """VmRSS of a process in KiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (seconds)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def startup_cpu(bs: str, tmp: Path, policies: Path, partitions: int, **env: str) -> float:
    """CPU seconds a worker spends starting up and idling to readiness (no input), measured
    on a worker of its own: benches whose worker starts with the input already waiting
    subtract it from the worker's CPU."""
    with workers(bs, tmp) as wf:
        w = wf.start(policies, unique_app("idle"), partitions=partitions, **env)
        time.sleep(3)
        cpu = cpu_seconds(w.proc.pid)
        w.stop()
    return cpu


def unique_app(prefix: str) -> str:
    return f"{prefix}{random.getrandbits(40):010x}"


# --------------------------------------------------------------------------- Kafka helpers


@dataclass(frozen=True)
class Rec:
    topic: str
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class Sent:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int

    @property
    def event_id(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


def _producer(bootstrap: str, **kw: Any) -> AIOKafkaProducer:
    opts: dict[str, Any] = {"acks": "all", "enable_idempotence": True, "linger_ms": 10,
                            "max_batch_size": 512 * 1024, "max_request_size": MAX_RECORD,
                            "request_timeout_ms": 60_000}
    opts.update(kw)
    return AIOKafkaProducer(bootstrap_servers=bootstrap, **opts)


async def produce_all(bootstrap: str, recs: Iterable[Rec]) -> list[Sent]:
    """Produce in order (idempotent, acks=all); the coordinates of every record, in order."""
    p = _producer(bootstrap)
    await p.start()
    try:
        futs = [await p.send(r.topic, r.value, key=r.key, timestamp_ms=r.timestamp_ms) for r in recs]
        metas = await asyncio.gather(*futs)
        return [Sent(m.topic, m.partition, m.offset, m.timestamp) for m in metas]
    finally:
        await p.stop()


def produce(bootstrap: str, recs: Iterable[Rec]) -> list[Sent]:
    return asyncio.run(produce_all(bootstrap, recs))


async def _consumer(bootstrap: str, **kw: Any) -> AIOKafkaConsumer:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest", fetch_max_bytes=16 * 1024 * 1024,
                         max_partition_fetch_bytes=4 * 1024 * 1024, **kw)
    await c.start()
    return c


async def _tps(c: AIOKafkaConsumer, topics: Sequence[str]) -> list[TopicPartition]:
    tps = [TopicPartition(t, p) for t in topics for p in sorted(c.partitions_for_topic(t) or ())]
    if len(tps) < len(topics):
        await c._client.force_metadata_update()
        tps = [TopicPartition(t, p) for t in topics for p in sorted(c.partitions_for_topic(t) or ())]
    return tps


async def end_offsets_async(bootstrap: str, topics: Sequence[str]) -> dict[tuple[str, int], int]:
    c = await _consumer(bootstrap)
    try:
        tps = await _tps(c, topics)
        ends = await c.end_offsets(tps) if tps else {}
        return {(tp.topic, tp.partition): off for tp, off in ends.items()}
    finally:
        await c.stop()


def end_offsets(bootstrap: str, topics: Sequence[str]) -> dict[tuple[str, int], int]:
    return asyncio.run(end_offsets_async(bootstrap, topics))


async def committed_async(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        offs = await admin.list_consumer_group_offsets(group)
        return {(tp.topic, tp.partition): m.offset for tp, m in offs.items() if m.offset >= 0}
    finally:
        await admin.close()


async def lag_async(bootstrap: str, group: str, topics: Sequence[str]) -> dict[str, int]:
    """Per topic: end offset minus the group's committed offset (summed over partitions)."""
    ends = await end_offsets_async(bootstrap, topics)
    com = await committed_async(bootstrap, group)
    out: dict[str, int] = {t: 0 for t in topics}
    for (t, p), end in ends.items():
        out[t] += max(0, end - com.get((t, p), 0))
    return out


def lag(bootstrap: str, group: str, topics: Sequence[str]) -> dict[str, int]:
    return asyncio.run(lag_async(bootstrap, group, topics))


def input_lag(bootstrap: str, app: str) -> dict[str, int]:
    """Committed lag of the input topics (ingest's group, ``{app}-ingest``) and of the
    actions topic (the stages' group, the app id)."""
    out = lag(bootstrap, f"{app}-ingest", [f"{app}.alerts", f"{app}.metrics"])
    out.update(lag(bootstrap, app, [f"{app}.actions"]))
    return out


def pipeline_topics(app: str) -> list[str]:
    """Every topic the worker consumes, in pipeline order (their lag 0 = nothing left to do)."""
    return [f"{app}.{t}" for t in ("alerts", "metrics", "signals", "actions", "audit-log")]


def wait_drained(bootstrap: str, app: str, timeout: float, stable: float = 3.0,
                 progress: float = 0.0, workers: Sequence[Worker] = (),
                 signals_committed: bool = False) -> tuple[bool, dict[str, int]]:
    """Wait until the worker is done: the groups' lag on the input and actions topics is 0 and
    no topic the worker writes (the table changelogs included) has grown for ``stable``
    seconds. Returns (done, input/actions lag).

    ``signals_committed``: also wait until the stages' group has committed every ``signals``
    record. Decide can work through a backlog of signal batches for many seconds after ingest
    is done while writing nothing but table rows; a bench whose input is metric samples (which
    make no decisions to audit) needs this to know that every sample is in its target's row.
    Off by default: before streams.faust_fixes, Faust could leave a committed offset behind
    records it had processed, so the chaos scenarios judge internal topics by quiescence here
    and by :func:`backlog` (from the worker's own state) afterwards.
    """
    grow_topics = [f"{app}.{t}" for t in ("signals", "actions", "audit-log", "audit", "deadletter")]
    grow_topics += [f"{app}-{t}-changelog" for t in ("targets", "ledger", "pending")]
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    last: dict[str, int] = {}
    prev_ends: dict[tuple[str, int], int] = {}
    last_print = time.monotonic()
    while time.monotonic() < deadline:
        for w in workers:
            if w.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {w.proc.returncode}:\n{w.log_tail()}")
        try:
            last = input_lag(bootstrap, app)
            if signals_committed:
                last.update(lag(bootstrap, app, [f"{app}.signals"]))
            ends = end_offsets(bootstrap, grow_topics)
        except Exception as exc:  # broker busy or restarting: try again
            print(f"  (lag check failed: {type(exc).__name__}: {exc})", file=sys.stderr)
            time.sleep(1.0)
            continue
        if progress and time.monotonic() - last_print > progress:
            print(f"  lag {last}, audit {sum(v for (t, _), v in ends.items() if t.endswith('.audit'))}",
                  file=sys.stderr)
            last_print = time.monotonic()
        if sum(last.values()) == 0 and ends == prev_ends:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= stable:
                return True, last
        else:
            quiet_since = None
        prev_ends = ends
        time.sleep(0.5)
    return False, last


def backlog(bootstrap: str, app: str) -> dict[str, int]:
    """Records not yet processed, per topic, from the worker's own bookkeeping.

    inputs and actions: the group's committed lag; ``audit-log``: end offset minus the last
    sealed source offset found on ``audit`` (no consumer group reads the audit-log: the sealer
    reads it by offset). Also the committed lag Faust reports for signals
    (``faust_committed_lag_signals``: its committed offset can trail records it has processed).
    """
    out = input_lag(bootstrap, app)
    ends = end_offsets(bootstrap, [f"{app}.audit-log"])
    sealed: dict[int, int] = {}
    for r in read_topic(bootstrap, f"{app}.audit"):
        src = r.value.get("source") if isinstance(r.value, dict) else None
        if isinstance(src, dict) and isinstance(src.get("offset"), int):
            sealed[r.partition] = max(sealed.get(r.partition, -1), src["offset"])
    out[f"{app}.audit-log"] = sum(max(0, end - sealed.get(p, -1) - 1)
                                  for (t, p), end in ends.items() if t.endswith(".audit-log"))
    out["faust_committed_lag_signals"] = lag(bootstrap, app, [f"{app}.signals"])[f"{app}.signals"]
    return out


@dataclass
class Out:
    partition: int
    offset: int
    timestamp_ms: int
    value: Any


async def read_topic_async(bootstrap: str, topic: str, decode: bool = True) -> list[Out]:
    """Every record of ``topic`` up to its current end (JSON-decoded unless ``decode`` is False)."""
    c = await _consumer(bootstrap)
    try:
        tps = await _tps(c, [topic])
        if not tps:
            return []
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        ends = await c.end_offsets(tps)
        out: list[Out] = []
        while any([await c.position(tp) < ends[tp] for tp in tps]):
            batch = await c.getmany(timeout_ms=1000, max_records=20_000)
            for tp, msgs in batch.items():
                for m in msgs:
                    if m.offset >= ends[tp]:
                        continue
                    v: Any = m.value
                    if decode:
                        try:
                            v = json.loads(m.value)
                        except (ValueError, TypeError):
                            v = {"__raw__": m.value}
                    out.append(Out(m.partition, m.offset, m.timestamp, v))
        return out
    finally:
        await c.stop()


def read_topic(bootstrap: str, topic: str, decode: bool = True) -> list[Out]:
    return asyncio.run(read_topic_async(bootstrap, topic, decode))


async def latest_by_key_async(bootstrap: str, topic: str) -> dict[bytes, bytes]:
    """The newest value of every key of ``topic`` up to its current end (a compacted
    topic's live content, whatever compaction has or has not removed yet); keys whose
    newest record is a tombstone are left out."""
    c = await _consumer(bootstrap)
    try:
        tps = await _tps(c, [topic])
        if not tps:
            return {}
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        ends = await c.end_offsets(tps)
        out: dict[bytes, bytes | None] = {}
        while any([await c.position(tp) < ends[tp] for tp in tps]):
            batch = await c.getmany(timeout_ms=1000, max_records=20_000)
            for tp, msgs in batch.items():
                for m in msgs:
                    if m.offset < ends[tp] and m.key is not None:
                        out[m.key] = m.value
        return {k: v for k, v in out.items() if v is not None}
    finally:
        await c.stop()


def latest_by_key(bootstrap: str, topic: str) -> dict[bytes, bytes]:
    return asyncio.run(latest_by_key_async(bootstrap, topic))


def audit_log_entries(bootstrap: str, app: str) -> list[tuple[dict[str, Any], int]]:
    """Every entry of ``{app}.audit-log`` (its records are batches of entries,
    ``healer.wire.AuditBatch``) with the producer timestamp of its record, in ms."""
    from healer.wire import WireError, decode_audit

    out: list[tuple[dict[str, Any], int]] = []
    for r in read_topic(bootstrap, f"{app}.audit-log", decode=False):
        try:
            batch = decode_audit(r.value)
        except WireError:
            continue  # not a batch (a test wrote it by hand): nothing to time
        out += [(e, r.timestamp_ms) for e in batch.entries]
    return out


async def edge_timestamps_async(bootstrap: str, topics: Sequence[str]) -> tuple[int, int]:
    """(min first-record timestamp, max last-record timestamp) over every partition of ``topics``."""
    c = await _consumer(bootstrap)
    try:
        tps = await _tps(c, topics)
        c.assign(tps)
        begins = await c.beginning_offsets(tps)
        ends = await c.end_offsets(tps)
        first, last = 2**62, 0
        for tp in tps:
            if ends[tp] <= begins[tp]:
                continue
            for off in (begins[tp], ends[tp] - 1):
                c.seek(tp, off)
                got = (await c.getmany(tp, timeout_ms=5000, max_records=1)).get(tp, [])
                if got:
                    first = min(first, got[0].timestamp)
                    last = max(last, got[0].timestamp)
        return first, last
    finally:
        await c.stop()


def edge_timestamps(bootstrap: str, topics: Sequence[str]) -> tuple[int, int]:
    return asyncio.run(edge_timestamps_async(bootstrap, topics))


def worker_window(bootstrap: str, app: str) -> tuple[int, int]:
    """(first audit-log record, last sealed audit record) producer timestamps, in ms: the span
    in which the worker processed a pre-produced input (its first output to its last)."""
    first, _ = edge_timestamps(bootstrap, [f"{app}.audit-log"])
    _, last = edge_timestamps(bootstrap, [f"{app}.audit"])
    return first, last


def create_input_topics(bootstrap: str, app: str, partitions: int) -> None:
    asyncio.run(ensure_topics(bootstrap, {f"{app}.alerts": partitions, f"{app}.metrics": partitions}))


# --------------------------------------------------------------------------- policies


def generated_policy_docs(n: int, start: int = 0) -> list[dict[str, Any]]:
    """``n`` policies on signals the bench streams never carry (a few regex alertnames)."""
    docs = []
    for i in range(start, start + n):
        trig: dict[str, Any]
        if i % 50 == 49:
            trig = {"alert": {"matchers": [f'alertname=~"Team{i}.*Down"']}}
        elif i % 3 == 0:
            trig = {"metric": {"name": f"team{i}_queue_depth", "group_by": ["namespace", "deployment"],
                               "aggregate": "avg", "window": "5m", "threshold": 100, "for": "2m"}}
        else:
            trig = {"alert": {"matchers": [f'alertname="Team{i}ServiceDown"', 'severity="critical"']}}
        docs.append({
            "apiVersion": "healer/v1", "kind": "Policy", "metadata": {"name": f"gen-{i}"},
            "spec": {
                "priority": 50 + i % 7, "trigger": trig,
                "target": {"kind": "Deployment", "namespace": "{{ labels.namespace }}",
                           "name": "{{ labels.deployment }}"},
                "actions": [{"use": "kubernetes.restart"},
                            {"use": "webhook.notify", "with": {"url": "https://hooks.example.com/x"}}],
                "guards": {"cooldown": "10m", "budget": {"max": 3, "per": "1h"}},
            },
        })
    return docs


def noop_alert_policy(name: str, alertname: str, guards: dict[str, Any] | None = None) -> str:
    """A policy (YAML text): alerts ``alertname`` -> ``healer.noop`` on the Deployment their
    ``namespace`` / ``deployment`` labels name (the action benches' policy)."""
    doc = {"apiVersion": "healer/v1", "kind": "Policy", "metadata": {"name": name},
           "spec": {"trigger": {"alert": {"matchers": [f'alertname="{alertname}"']}},
                    "target": {"kind": "Deployment", "namespace": "{{ labels.namespace }}",
                               "name": "{{ labels.deployment }}"},
                    "actions": [{"use": "healer.noop", "with": {"message": "bench"}}],
                    **({"guards": guards} if guards else {})}}
    return json.dumps(doc, indent=2) + "\n"  # JSON is YAML


def library_files() -> list[Path]:
    return sorted((ROOT / "policies").glob("*.yaml"))


def library_count() -> int:
    from healer.loader import load_paths

    return len(load_paths(library_files()).policies)


def hundred_policies(dest: Path, total: int = 100) -> int:
    """The library in ``policies/`` plus generated policies, ``total`` in all; returns the count."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in library_files():
        (dest / f.name).write_text(f.read_text())
    n_lib = library_count()
    docs = generated_policy_docs(max(0, total - n_lib))
    if docs:
        (dest / "generated.yaml").write_text("\n---\n".join(json.dumps(d) for d in docs) + "\n")
    from healer.loader import load_paths

    res = load_paths(sorted(dest.glob("*.yaml")))
    if res.errors:
        raise SystemExit("\n".join(map(str, res.errors[:5])))
    return len(res.policies)


# --------------------------------------------------------------------------- inputs


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def fleet_inputs(app: str, n: int, seed: int = 7, step_s: float = 0.01) -> list[Rec]:
    """A fleet's mixed input: library alerts and metrics over ~60 deployments and 40 GPU nodes,
    with noise no policy matches (about 45 % alerts, 55 % metric samples); keyed like
    ``healer emit`` (namespace + workload), record time = event time."""
    rnd = random.Random(seed)
    deps = [(f"llm-{['prod', 'staging', 'dev'][i % 3]}", f"triton-m{i}") for i in range(60)]
    nodes = [f"gpu-node-{i:02d}" for i in range(40)]
    alerts_t, metrics_t = f"{app}.alerts", f"{app}.metrics"
    out: list[Rec] = []
    for k in range(n):
        t = T0 + timedelta(seconds=k * step_s)
        ms = int(t.timestamp() * 1000)
        ns, dep = rnd.choice(deps)
        r = rnd.random()
        if r < 0.55:
            if r < 0.25:
                labels = {"namespace": ns, "deployment": dep, "pod": f"{dep}-{rnd.randrange(4)}",
                          "model": "llama", "quantile": rnd.choice(["0.5", "0.99"])}
                name, v = "nv_inference_request_summary_us", rnd.choice([1e6, 2e6, 7e6])
            elif r < 0.40:
                labels = {"namespace": ns, "deployment": dep, "pod": f"{dep}-{rnd.randrange(4)}",
                          "gpu": "0"}
                name, v = "DCGM_FI_DEV_GPU_UTIL", rnd.uniform(0, 100)
            elif r < 0.45:
                labels = {"Hostname": rnd.choice(nodes), "gpu": str(rnd.randrange(8))}
                name, v = "DCGM_FI_DEV_XID_ERRORS", 79.0 if rnd.random() < 0.01 else 0.0
            else:
                labels = {"namespace": ns, "pod": f"{dep}-0"}
                name, v = rnd.choice(["node_load1", "process_cpu_seconds_total"]), rnd.random()
            sample = {"name": name, "value": v, "labels": labels, "timestamp": _ts(t)}
            out.append(Rec(metrics_t, partition_key(labels), _dumps(sample), ms))
        else:
            if r < 0.85:
                name = rnd.choice(["InferenceSuccessRateLow", "KubePodCrashLooping", "InferenceQPSSurge",
                                   "TritonModelLoadFailed", "TritonGPUMemoryHigh", "GPUOffline"])
                labels = {"alertname": name, "severity": "critical", "namespace": ns, "deployment": dep,
                          "pod": f"{dep}-{rnd.randrange(4)}", "service": dep, "model": "llama",
                          "node": rnd.choice(nodes), "track": rnd.choice(["stable", "canary"]),
                          "httproute": f"{dep}-route"}
                status = rnd.choice(["firing", "firing", "resolved"])
            else:
                labels = {"alertname": rnd.choice(["Watchdog", "NodeDiskFull", "KubeJobFailed"]),
                          "namespace": ns, "severity": "warning"}
                status = "firing"
            alert = {"status": status, "labels": labels,
                     "startsAt": _ts(T0 + timedelta(seconds=(k // 50) * 50 * step_s))}
            out.append(Rec(alerts_t, partition_key(labels), _dumps(alert), ms))
    return out


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def count_kinds(audit: Iterable[Out]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for r in audit:
        k = r.value.get("kind") if isinstance(r.value, dict) else None
        kinds[str(k)] = kinds.get(str(k), 0) + 1
    return kinds
