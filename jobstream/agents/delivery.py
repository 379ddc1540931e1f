"""Publishing that waits for the broker's acknowledgement, retrying until it gets one."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import TypeVar

import faust
from aiokafka.errors import KafkaError
from opentelemetry.trace import SpanKind

from jobstream.telemetry import Metrics, trace_headers, tracer
from jobstream.topics import Topics

log = logging.getLogger(__name__)

MAX_BACKOFF = 5.0
T = TypeVar("T")


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
        backoff = 0.1
        while True:
            try:
                pending = await topic.send(key=key, value=value, headers=carried)
                await pending
                metrics.messages_produced.labels(topic=name).inc()
                return
            except KafkaError as exc:
                metrics.produce_errors.labels(topic=name).inc()
                log.warning("publishing to %s failed (%s); retrying in %.1fs", name, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)


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


async def send_many_durably(
    topic: faust.TopicT,
    messages: Iterable[tuple[bytes, bytes]],
    metrics: Metrics,
    window: int = 5000,
) -> None:
    """Send many (key, value) messages, `window` in flight at once, and wait for every ack.

    The producer batches what is in flight; messages that fail are sent again until acknowledged.
    """
    name = topic.get_topic_name()
    with tracer.start_as_current_span(f"publish {name}", kind=SpanKind.PRODUCER):
        headers = trace_headers()
        for chunk in _chunks(messages, window):
            await _send_chunk(topic, chunk, headers, metrics)


async def _send_chunk(
    topic: faust.TopicT,
    chunk: list[tuple[bytes, bytes]],
    headers: Mapping[str, bytes] | None,
    metrics: Metrics,
) -> None:
    """Send a chunk at once (the producer batches it); resend what fails until all are acked."""
    name = topic.get_topic_name()
    backoff = 0.1
    while chunk:
        futures = [await topic.send(key=key, value=value, headers=headers) for key, value in chunk]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        failed = [m for m, o in zip(chunk, outcomes, strict=True) if isinstance(o, Exception)]
        metrics.messages_produced.labels(topic=name).inc(len(chunk) - len(failed))
        if failed:
            metrics.produce_errors.labels(topic=name).inc(len(failed))
            log.warning("%d messages to %s failed; retrying in %.1fs", len(failed), name, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
        chunk = failed


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk
