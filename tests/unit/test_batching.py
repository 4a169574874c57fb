"""The batching rule of streams.batching.ready_batches: a batch ends at ``max_`` events, at
``max_bytes`` of record values, or after a few quiet loop turns; its events are acknowledged only
when the next batch is asked for. The stream here is a stand-in with the part of Faust's Stream
interface ready_batches uses (a drainer task that delivers events to the processors); the real
Faust stream is exercised by every pipeline test under tests/integration."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from streams.batching import ready_batches


@dataclass
class Event:
    value: bytes


class Channel:
    def __aiter__(self) -> Channel:
        return self

    async def __anext__(self) -> Any:
        raise StopAsyncIteration  # the stand-in's events come from Stream.feed


@dataclass
class Stream:
    feed: asyncio.Queue[Event]
    enable_acks: bool = True
    should_stop: bool = False
    current_event: Event | None = None
    acked: list[Event] = field(default_factory=list)
    _processors: list[Callable[[Any], Awaitable[Any]]] = field(default_factory=list)
    channel: Channel = field(default_factory=Channel)

    def add_processor(self, fn: Callable[[Any], Awaitable[Any]]) -> None:
        self._processors.append(fn)

    def _enable_passive(self, _it: Any) -> None:
        self._drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while True:
            event = await self.feed.get()
            self.current_event = event
            for fn in self._processors:
                await fn(event.value)
            self.current_event = None
            await asyncio.sleep(0)  # Faust delivers each record over loop turns of its own

    async def wait_for_stopped(self, ready: asyncio.Event, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), timeout)

    async def ack(self, event: Event) -> None:
        self.acked.append(event)


def run(values: list[bytes], n_batches: int, **kw: Any) -> tuple[list[list[int]], list[int], Stream]:
    """Deliver ``values`` and take ``n_batches`` batches; sizes of each batch, and how many
    events were acknowledged when each batch was handed over."""
    async def go() -> tuple[list[list[int]], list[int], Stream]:
        feed: asyncio.Queue[Event] = asyncio.Queue()
        for v in values:
            feed.put_nowait(Event(v))
        stream = Stream(feed)
        got: list[list[int]] = []
        acked_at: list[int] = []
        gen = ready_batches(stream, **kw)
        for _ in range(n_batches):
            batch = await asyncio.wait_for(gen.__anext__(), 5)
            got.append([len(e.value) for e in batch])
            acked_at.append(len(stream.acked))
        await gen.aclose()
        stream._drainer.cancel()
        return got, acked_at, stream

    return asyncio.run(go())


def test_a_batch_ends_at_max_events() -> None:
    got, _, _ = run([b"x"] * 10, 3, max_=4)
    assert got == [[1] * 4, [1] * 4, [1] * 2]


def test_a_batch_ends_at_max_bytes_of_values() -> None:
    # 100-byte values, 350 bytes allowed: the event that crosses the bound is the batch's last
    got, _, _ = run([b"x" * 100] * 10, 3, max_=1000, max_bytes=350)
    assert got == [[100] * 4, [100] * 4, [100] * 2]


def test_one_value_larger_than_the_bound_is_a_batch_of_its_own() -> None:
    got, _, _ = run([b"x" * 1000, b"y"], 2, max_=1000, max_bytes=10)
    assert got == [[1000], [1]]


def test_an_idle_input_hands_over_what_it_has() -> None:
    got, _, _ = run([b"a", b"b"], 1, max_=1000)
    assert got == [[1, 1]]


def test_events_are_acknowledged_when_the_next_batch_is_asked_for() -> None:
    got, acked_at, stream = run([b"x"] * 6, 3, max_=2)
    assert got == [[1, 1]] * 3
    assert acked_at == [0, 2, 4]  # the third batch's events: not yet (its processing is not over)
    assert stream.enable_acks is True  # restored once the caller stops


def test_without_ack_nothing_is_acknowledged() -> None:
    _, acked_at, _ = run([b"x"] * 6, 3, max_=2, ack=False)
    assert acked_at == [0, 0, 0]
