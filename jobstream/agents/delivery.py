"""Publishing that waits for the broker's acknowledgement, retrying until it gets one."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable, Mapping

import faust
from aiokafka.errors import KafkaError
from opentelemetry.trace import SpanKind

from jobstream.telemetry import Metrics, trace_headers, tracer
from jobstream.topics import Topics

log = logging.getLogger(__name__)

MAX_BACKOFF = 5.0
WINDOW = 5000  # messages awaiting their ack at once, per call


class PublishTimeout(Exception):
    """A publish's deadline passed before every message was acknowledged.

    Messages handed to the producer before the deadline may still be delivered after it.
    """


async def send_durably(
    topic: faust.TopicT,
    key: bytes | None,
    value: bytes,
    metrics: Metrics,
    headers: Mapping[str, bytes] | None = None,
) -> None:
    """Send and wait for acks=all; retry with backoff on broker errors until it succeeds.

    Returning means the message is durable. Retrying may duplicate it: every consumer is idempotent.
    """
    name = topic.get_topic_name()
    with tracer.start_as_current_span(f"publish {name}", kind=SpanKind.PRODUCER):
        carried = {**(headers or {}), **(trace_headers() or {})} or None
        await publish_durably(topic, [(key, value, carried)], metrics)


async def dead_letter(topics: Topics, event: faust.EventT, reason: str, metrics: Metrics) -> None:
    """Park an undecodable or invalid event on the dead-letter topic, with why, and move on."""
    message = event.message
    log.error(
        "dead letter from %s[%s]@%s: %s", message.topic, message.partition, message.offset, reason
    )
    metrics.dead_letters.labels(topic=message.topic).inc()
    headers = {
        "source-topic": message.topic.encode(),
        "source-partition": str(message.partition).encode(),
        "source-offset": str(message.offset).encode(),
        "reason": reason.encode()[:1000],
    }
    raw = message.value if isinstance(message.value, bytes) else b""
    await send_durably(topics.dead_letters, None, raw, metrics, headers)


Message = tuple[bytes | None, bytes, Mapping[str, bytes] | None]  # key, value, headers


async def send_many_durably(
    topic: faust.TopicT,
    messages: Iterable[tuple[bytes, bytes]],
    metrics: Metrics,
    window: int = WINDOW,
    deadline: float | None = None,
) -> None:
    """Send many (key, value) messages in one producer span and wait for every ack.

    With a `deadline` (an instant of the event loop's clock) it raises PublishTimeout then.
    """
    name = topic.get_topic_name()
    with tracer.start_as_current_span(f"publish {name}", kind=SpanKind.PRODUCER):
        headers = trace_headers()
        await publish_durably(
            topic, ((key, value, headers) for key, value in messages), metrics, window, deadline
        )


async def publish_durably(
    topic: faust.TopicT,
    messages: Iterable[Message],
    metrics: Metrics,
    window: int = WINDOW,
    deadline: float | None = None,
) -> None:
    """Send messages with up to `window` awaiting their ack, and return once every one is acked.

    A sliding window: a new message goes out as soon as any earlier one is acknowledged, so the
    producer's batches stay full. Messages that fail are sent again, with backoff, until acked,
    or, with a `deadline` (an instant of the event loop's clock), until it passes: PublishTimeout.
    """
    name = topic.get_topic_name()
    backoff = 0.1
    pending: Iterable[Message] = messages
    while True:
        try:
            async with asyncio.timeout_at(deadline):  # None: no deadline
                failed = await _send_window(topic, pending, window, metrics, deadline)
        except TimeoutError:
            raise PublishTimeout(f"publishing to {name} passed its deadline") from None
        if not failed:
            return
        metrics.produce_errors.labels(topic=name).inc(len(failed))
        if deadline is not None and asyncio.get_running_loop().time() + backoff >= deadline:
            raise PublishTimeout(f"{len(failed)} messages to {name} failed before the deadline")
        log.warning("%d messages to %s failed; retrying in %.1fs", len(failed), name, backoff)
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF)
        pending = failed


async def _send_window(
    topic: faust.TopicT,
    messages: Iterable[Message],
    window: int,
    metrics: Metrics,
    deadline: float | None = None,
) -> list[Message]:
    """One pass of publish_durably; counts the acknowledged, returns the messages that failed."""
    produced = metrics.messages_produced.labels(topic=topic.get_topic_name())
    gate = asyncio.Semaphore(window)
    failed: list[Message] = []
    acks: list[asyncio.Future] = []

    def settled(message: Message, future: asyncio.Future) -> None:
        gate.release()
        if future.cancelled() or future.exception() is not None:
            failed.append(message)
        else:
            produced.inc()

    for message in messages:
        await gate.acquire()
        key, value, headers = message
        try:
            ack = await topic.send(key=key, value=value, headers=headers)
        except KafkaError:
            gate.release()
            failed.append(message)
            continue
        ack.add_done_callback(functools.partial(settled, message))
        acks.append(ack)
    if deadline is None:
        await asyncio.gather(*acks, return_exceptions=True)
    elif acks:
        # Unlike gather, wait leaves the acks alone when the deadline cancels it: the producer
        # still settles them (Faust's own callbacks on them expect to).
        await asyncio.wait(acks)
    return failed
