"""The persisting agent's batches: taken as soon as an event comes, grown by what arrives while
one is handled, bounded, and acknowledged only when their work is done."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from fakes import FakeEvent, FakeMessage

from jobstream.agents.acks import gathered, released

END = object()


class Stream:
    """Events as Faust's stream iteration gives them: each acknowledged (Faust's own reference)
    when the iteration moves past it."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[object] = asyncio.Queue()

    def send(self, *values: object) -> list[FakeEvent]:
        events = []
        for value in values:
            item = FakeEvent(FakeMessage(str(value).encode())) if isinstance(value, int) else value
            self.queue.put_nowait(item)
            if isinstance(item, FakeEvent):
                events.append(item)
        return events

    async def events(self) -> AsyncIterator[FakeEvent]:
        while True:
            item = await self.queue.get()
            if item is END:
                return
            if isinstance(item, Exception):
                raise item
            assert isinstance(item, FakeEvent)
            try:
                yield item
            finally:
                item.ack()


def values(batch: list[FakeEvent]) -> list[int]:
    return [int(event.value) for event in batch]


async def test_a_lone_event_is_a_batch_at_once_and_those_arriving_meanwhile_the_next() -> None:
    stream = Stream()
    batches = gathered(stream.events(), 100)  # type: ignore[arg-type]
    stream.send(1)
    first = await asyncio.wait_for(anext(batches), 5)
    assert values(first) == [1]  # nothing else had come: no waiting for more

    stream.send(2, 3, 4)  # while the first batch is handled
    assert values(await asyncio.wait_for(anext(batches), 5)) == [2, 3, 4]
    await batches.aclose()


async def test_a_batch_holds_at_most_max_size_events() -> None:
    stream = Stream()
    stream.send(1, 2, 3, 4, 5)
    batches = gathered(stream.events(), 2)  # type: ignore[arg-type]
    sizes = [len(await asyncio.wait_for(anext(batches), 5)) for _ in range(3)]
    assert sizes == [2, 2, 1]
    await batches.aclose()


async def test_events_are_acknowledged_only_when_their_batch_is_released() -> None:
    stream = Stream()
    batches = gathered(stream.events(), 10)  # type: ignore[arg-type]
    done, failed = stream.send(1), stream.send(2)

    batch = await asyncio.wait_for(anext(batches), 5)
    assert batch == done + failed
    # Faust's iteration moved past both (its own reference is gone): still unacknowledged
    assert [e.message.acked for e in batch] == [False, False]

    with released(done):  # type: ignore[arg-type]
        pass
    with pytest.raises(RuntimeError), released(failed):  # type: ignore[arg-type]
        raise RuntimeError("the database refused")
    assert done[0].message.acked
    assert not failed[0].message.acked  # re-delivered to the partition's next owner
    await batches.aclose()


async def test_a_shutdown_leaves_the_events_not_yet_handed_out_unacknowledged() -> None:
    stream = Stream()
    stream.send(1)
    batches = gathered(stream.events(), 1)  # type: ignore[arg-type]
    await asyncio.wait_for(anext(batches), 5)
    queued = stream.send(2, 3)
    await asyncio.sleep(0)  # let the reader take them from the stream

    await batches.aclose()  # the agent is cancelled

    assert not any(event.message.acked for event in queued)


async def test_a_failing_stream_fails_the_batches_and_an_ended_one_ends_them() -> None:
    stream = Stream()
    stream.send(1, ConnectionError("the consumer stopped"))
    batches = gathered(stream.events(), 10)  # type: ignore[arg-type]
    assert values(await asyncio.wait_for(anext(batches), 5)) == [1]
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(anext(batches), 5)

    stream = Stream()
    stream.send(1, END)
    batches = gathered(stream.events(), 10)  # type: ignore[arg-type]
    assert [values(b) async for b in batches] == [[1]]


async def test_an_agent_cancelled_while_waiting_leaves_nothing_reading_its_stream() -> None:
    stream = Stream()
    batches = gathered(stream.events(), 10)  # type: ignore[arg-type]
    waiting = asyncio.ensure_future(anext(batches))
    for _ in range(5):  # scheduler turns (not time): the batches wait for an event
        await asyncio.sleep(0)
    assert not waiting.done()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting

    (late,) = stream.send(1)
    for _ in range(10):
        await asyncio.sleep(0)
    assert late.message.refcount == 1  # nobody took (and held) it
    assert stream.queue.qsize() == 1
