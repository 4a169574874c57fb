"""`make demo`: the whole path on this machine, start to finish, then clean up.

1. starts the embedded Kafka broker (Apache Kafka jars fetched once, cached),
   and a real Triton Inference Server (the binary in the nvidia-pytriton wheel,
   CPU, explicit model control) serving one small Python model,
2. starts a real `healer run` worker with deploy/demo/policies,
3. emits a sample incident (deploy/demo/incident.jsonl), one garbage record
   and a GPU-memory alert for the Triton model,
4. waits until the actions are verified (the Triton model really reloads),
5. prints the audit trail and verifies its hash chains,
6. stops the worker and the broker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from healer.keys import generate  # noqa: E402
from streams.broker import EmbeddedKafka  # noqa: E402
from streams.client import OutRecord, produce, read_topic  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shown(path: str) -> str:
    """A path as the reader typed it: relative to the repository when inside it."""
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def say(msg: str) -> None:
    print(f"\n==> {msg}", flush=True)


def healer(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "healer.cli.main", *args], env=env, text=True,
                          capture_output=True, check=False)


async def audit_records(bootstrap: str, topic: str) -> list[dict]:
    return [json.loads(m.value) async for m in read_topic(bootstrap, topic)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--policies", default=str(ROOT / "deploy" / "demo" / "policies"))
    ap.add_argument("--events", default=str(ROOT / "deploy" / "demo" / "incident.jsonl"))
    ap.add_argument("--expect-verified", type=int, default=3)
    ap.add_argument("--no-triton", action="store_true", help="skip the Triton part")
    ap.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="healer-demo-"))
    app_id = f"demo{int(time.time())}"
    say("starting the embedded Kafka broker")
    kafka = EmbeddedKafka(state_dir=work / "kafka", partitions=3, progress=lambda m: print(f"    {m}"))
    bootstrap = kafka.start()
    print(f"    bootstrap: {bootstrap}")
    triton = None
    if not args.no_triton:
        from tests.harness.triton_server import ModelSpec, TritonServer

        say("starting Triton Inference Server (CPU, explicit model control) with model 'llm-ranker'")
        triton = TritonServer(root=work / "triton", models=(ModelSpec("llm-ranker", {1: "ok"}),)).start()
        triton.load("llm-ranker")
        print(f"    {triton.url}: llm-ranker v1 READY; infer([1, 2]) = {triton.infer('llm-ranker', [1.0, 2.0])}")
    else:
        args.expect_verified -= 1
    port = free_port()
    env = {**os.environ, "HEALER_BOOTSTRAP_SERVERS": bootstrap, "HEALER_APP_ID": app_id,
           "HEALER_DATA_DIR": str(work / "data"), "HEALER_HTTP_HOST": "127.0.0.1"}
    # the keyring signs every command and MACs the audit (docs/security.md); the demo's own
    keyring = work / "keyring.yaml"
    keyring.write_text(generate("demo-operator"))
    keyring.chmod(0o600)
    env["HEALER_KEYRING_FILE"] = str(keyring)
    if triton is not None:  # the only Triton server the worker may reach (and send credentials to)
        env["HEALER_TRITON_SERVERS"] = triton.url
    # a worker refuses to start without API tokens: one for the webhook, one for approvals
    env.update(HEALER_WEBHOOK_TOKEN=secrets.token_hex(32), HEALER_API_TOKEN=secrets.token_hex(32))
    worker = None
    try:
        say(f"starting a healer worker (app id {app_id}, policies {shown(args.policies)}, http :{port})")
        with open(work / "worker.log", "wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "healer.cli.main", "run", "--policies", args.policies,
                 "--http-port", str(port)],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + args.timeout
        while True:
            if worker.poll() is not None:
                print((work / "worker.log").read_text()[-4000:])
                raise SystemExit("the worker exited early")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the worker did not become ready")
            time.sleep(0.5)
        print("    /readyz: ready")

        say(f"emitting the sample incident ({shown(args.events)}) and one garbage record")
        out = healer("emit", args.events, env=env)
        print("    " + (out.stderr.strip() or out.stdout.strip()))
        if out.returncode:
            raise SystemExit(out.stderr)
        asyncio.run(produce(bootstrap, f"{app_id}.alerts", [OutRecord(b"junk", b"{this is not json")]))
        if triton is not None:
            before = len(triton.init_events("llm-ranker"))
            alert = {"status": "firing", "labels": {
                "alertname": "TritonGPUMemoryHigh", "severity": "warning", "model": "llm-ranker",
                "host": "127.0.0.1", "http_port": str(triton.http_port)},
                "annotations": {"summary": "GPU memory 97% on the llm-ranker instance"}}
            asyncio.run(produce(bootstrap, f"{app_id}.alerts", [OutRecord(b"triton", json.dumps(alert).encode())]))

        say("waiting for the remediation to be verified")
        topic = f"{app_id}.audit"
        while True:
            recs = asyncio.run(audit_records(bootstrap, topic))
            verified = [r for r in recs if r["kind"] == "action.verified"]
            rejected = [r for r in recs if r["kind"] == "event.rejected"]
            if len(verified) >= args.expect_verified and rejected:
                break
            if time.monotonic() > deadline:
                print(healer("audit", "tail", env=env).stdout)
                raise SystemExit(f"timed out: {len(verified)} verified actions so far; worker log: {work}/worker.log")
            time.sleep(1)

        if triton is not None:
            reloads = (len(triton.init_events("llm-ranker")) - before) // 2
            print(f"    Triton: llm-ranker was re-initialised {reloads} time(s) by healer; "
                  f"infer([1, 2]) = {triton.infer('llm-ranker', [1.0, 2.0])}")
        say("the audit trail (healer audit tail)")
        print(healer("audit", "tail", env=env).stdout)
        say("verifying the audit hash chains (healer audit verify)")
        v = healer("audit", "verify", env=env)
        print(v.stdout.strip())
        if v.returncode:
            return 1
        say("demo complete")
        return 0
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
        if triton is not None:
            triton.stop()
        kafka.stop()
        print("    worker, Triton and broker stopped")


if __name__ == "__main__":
    sys.exit(main())
