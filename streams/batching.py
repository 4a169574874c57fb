"""Batches of whatever a Faust stream has already delivered: no waiting for a batch to fill.

Faust's ``take_events(n, within)`` waits up to ``within`` for ``n`` events
before it hands a batch over, so every hop of an idle pipeline costs that
wait. :func:`ready_batches` hands over a batch as soon as the events that are
already in the worker's memory have been delivered: after the first event it
lets the event loop run a few more turns (no timer: microseconds when the
input is idle) and stops once a few turns in a row delivered nothing new, or
``max_`` events or ``max_bytes`` of record values are buffered. Faust delivers fetched records one at a time,
each over several loop turns, so "the queue is empty right now" would cut a
batch after every record; a handful of quiet turns is what "the fetched
records are all delivered" looks like. An idle stage answers the first event
at once, a busy stage gets large batches.
While a batch is being worked on, the stream keeps delivering into the next
buffer (up to those bounds), so consuming overlaps with waiting for acks.

Acks: by default each batch's events are acknowledged once the consumer of
the iterator asks for the next batch (they are processed then); with
``ack=False`` the caller acknowledges each event itself with ``stream.ack``
(the execute stage does, when an action ends). Offsets are committed only up
to the oldest unacknowledged record (streams.faust_fixes).

Used by every stage in ``streams/stages``. It relies on Faust's stream
processor hook and passive drain (``add_processor``, ``_enable_passive``), the
same mechanism ``take_events`` uses (faust-streaming 0.15.x).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

IDLE_CHECK = 1.0  # seconds between checks that the stream is still running
QUIET_TURNS = 4  # event-loop turns without a new event that end a batch
MAX_BYTES = 4 * 1024 * 1024  # record values a batch holds at most: one batch's decoded state stays bounded


async def ready_batches(
    stream: Any, max_: int, ack: bool = True, max_bytes: int = MAX_BYTES,
) -> AsyncIterator[list[Any]]:
    """Yield lists of delivered events (see the module docstring)."""
    buffered: list[Any] = []
    size = 0  # bytes of the buffered events' values
    ready = asyncio.Event()  # the agent may take the buffer
    room = asyncio.Event()  # the buffer has space
    room.set()

    async def collect(value: Any) -> Any:
        # runs in the stream's drain task once per delivered event
        nonlocal size
        while not room.is_set():
            await room.wait()
        event = stream.current_event
        if event is None:
            raise RuntimeError("a delivered value without its event: cannot batch it")
        buffered.append(event)
        size += len(event.value) if isinstance(event.value, bytes | bytearray) else 0
        if len(buffered) >= max_ or size >= max_bytes:
            room.clear()
        ready.set()
        return value

    saved_acks = stream.enable_acks
    stream.enable_acks = False  # acknowledged below, once processed
    stream.add_processor(collect)
    stream._enable_passive(aiter(stream.channel))
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(ready, timeout=IDLE_CHECK)
            if not buffered:
                ready.clear()
                continue
            quiet = 0
            while quiet < QUIET_TURNS and room.is_set():
                n = len(buffered)
                await asyncio.sleep(0)  # one loop turn: the fetcher may deliver what it holds
                quiet = quiet + 1 if len(buffered) == n else 0
            batch = buffered[:]
            buffered.clear()
            size = 0
            ready.clear()
            room.set()
            yield batch
            # reached only when the caller asks for the next batch: a batch whose
            # processing raised (or whose worker stops) is never acknowledged
            if ack:
                for event in batch:
                    await stream.ack(event)
    finally:
        stream.enable_acks = saved_acks
        stream._processors.remove(collect)
