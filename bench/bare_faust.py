"""The bare Faust agent the pipeline bench compares healer with.

One agent on one topic, ``take_events(1000, within=0.005)``, raw serializer,
each value JSON-parsed (orjson, as healer's hot path uses a C parser too);
nothing else. Run as a process of its own:

    python -m bench.bare_faust --bootstrap HOST:PORT --topic T --n N

It reads ``T`` from the start under a fresh group and prints one JSON line:
``{"records": N, "samples": S, "seconds": first event -> Nth event, "cpu_seconds": ...}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
import uuid
from typing import Any

import faust
import orjson


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--n", type=int, required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    app = faust.App(f"bare-{uuid.uuid4().hex[:10]}", broker=f"kafka://{args.bootstrap}", store="memory://",
                    key_serializer="raw", value_serializer="raw", web_enabled=False,
                    consumer_auto_offset_reset="earliest", datadir=tempfile.mkdtemp(prefix="bare-faust-"),
                    topic_allow_declare=False, autodiscover=False)
    topic = app.topic(args.topic, value_type=bytes)
    state: dict[str, Any] = {"n": 0, "samples": 0, "t0": None, "c0": None}

    @app.agent(topic)
    async def count(stream: Any) -> None:
        async for events in stream.take_events(1000, within=0.005):
            if state["t0"] is None:
                state["t0"], state["c0"] = time.perf_counter(), time.process_time()
            for ev in events:
                v = orjson.loads(ev.value)
                state["samples"] += len(v) if isinstance(v, list) else 1
            state["n"] += len(events)
            if state["n"] >= args.n:
                print(json.dumps({"records": state["n"], "samples": state["samples"],
                                  "seconds": time.perf_counter() - state["t0"],
                                  "cpu_seconds": time.process_time() - state["c0"]}), flush=True)
                sys.stdout.flush()
                import os

                os._exit(0)

    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    worker.spinner = None
    worker.execute_from_commandline()
    return 1


if __name__ == "__main__":
    sys.exit(main())
