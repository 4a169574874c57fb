"""Why the stages await a table write's own changelog future (streams.stages.base.table_write)
rather than Faust's ``producer.flush()``: a table write goes through Faust's producer buffer, whose
background task takes a record off its queue and then hands it to the Kafka client; ``flush()``
returns as soon as the queue is empty, while that hand-over may still be under way. A crash
then could lose a ``running`` mark for an action whose executor had started. If this test
fails, Faust's flush waits now and the workaround may go."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.transport.producer import ProducerBuffer


def test_fausts_buffer_flush_returns_before_a_record_in_hand_over_is_sent() -> None:
    async def go() -> tuple[bool, int]:
        sent = asyncio.Event()
        handed = asyncio.Event()

        class SlowChannel:
            async def publish_message(self, fut: Any, wait: bool = False) -> None:
                handed.set()
                await sent.wait()  # the broker has not answered yet

        buffer = ProducerBuffer()
        buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))  # type: ignore[assignment]
        await buffer.start()
        try:
            buffer.put(SimpleNamespace(message=SimpleNamespace(channel=SlowChannel())))  # type: ignore[arg-type]
            await asyncio.wait_for(handed.wait(), timeout=5)
            await asyncio.wait_for(buffer.flush(), timeout=5)
            return sent.is_set(), buffer.size
        finally:
            sent.set()
            await buffer.stop()

    sent, size = asyncio.run(go())
    assert (sent, size) == (False, 0)  # flushed, yet the record is not sent
