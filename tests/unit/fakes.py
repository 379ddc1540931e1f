"""In-process stand-ins for Faust's topics and events, for the agents' unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jobstream.topics import Topics


class FakeTopic:
    """A topic whose sends are acknowledged at once (or fail, as queued by `fail_next`)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[tuple[bytes | None, bytes, Mapping[str, bytes] | None]] = []
        self._failures = 0

    def get_topic_name(self) -> str:
        return self.name

    def fail_next(self, count: int) -> None:
        """The next `count` sends fail."""
        self._failures += count

    async def send(
        self, key: bytes | None, value: bytes, headers: Mapping[str, bytes] | None = None
    ) -> asyncio.Future:
        ack: asyncio.Future = asyncio.get_running_loop().create_future()
        if self._failures:
            self._failures -= 1
            ack.set_exception(ConnectionError("broker unavailable"))
        else:
            self.sent.append((key, value, headers))
            ack.set_result(None)
        return ack


@dataclass
class FakeTopics:
    """The topics of an app, routed by lane as `jobstream.topics.Topics` routes them."""

    requests: FakeTopic = field(default_factory=lambda: FakeTopic("requests"))
    responses: FakeTopic = field(default_factory=lambda: FakeTopic("responses"))
    dead_letters: FakeTopic = field(default_factory=lambda: FakeTopic("dead-letters"))
    bulk_requests: FakeTopic = field(default_factory=lambda: FakeTopic("bulk-requests"))
    bulk_responses: FakeTopic = field(default_factory=lambda: FakeTopic("bulk-responses"))
    bulk_operations: int = 1000

    requests_for = Topics.requests_for
    responses_for = Topics.responses_for


@dataclass
class FakeMessage:
    """The part of a Kafka message the agents read, with Faust's reference counting."""

    value: bytes
    topic: str = "responses"
    partition: int = 0
    offset: int = 0
    refcount: int = 1
    acked: bool = False

    def incref(self, n: int = 1) -> None:
        self.refcount += n

    def release(self) -> None:
        if not self.acked:
            self.refcount -= 1
            self.acked = self.refcount == 0


@dataclass
class FakeEvent:
    """A stream event: its value, headers, message, and ack()."""

    message: FakeMessage
    headers: dict[str, Any] = field(default_factory=dict)

    @property
    def value(self) -> bytes:
        return self.message.value

    def ack(self) -> bool:
        self.message.release()
        return self.message.acked
