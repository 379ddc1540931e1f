"""Where the queue is: consumer-group lag of jobstream's request and response topics, both lanes
(end offset - committed).

Faust commits every few seconds, so lag is approximate, but a queue that grows in front of one
stage (requests: compute; responses: persist) is plain to see.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from jobstream.settings import Settings

#: (label, topic, consumer group) of each hop.
HOPS = (
    ("requests", "request_topic", "server_group"),
    ("responses", "response_topic", "client_group"),
    ("bulk requests", "bulk_request_topic", "server_group"),
    ("bulk responses", "bulk_response_topic", "client_group"),
)


def summarize_lag(end: dict[int, int], committed: dict[int, int]) -> dict[str, Any]:
    """Total lag, partitions lagging, and the worst partitions (pure)."""
    per = {p: max(end[p] - committed.get(p, 0), 0) for p in end}
    worst = sorted(((lag, p) for p, lag in per.items() if lag), reverse=True)[:5]
    return {
        "total": sum(per.values()),
        "partitions_lagging": sum(1 for lag in per.values() if lag),
        "worst": [[p, lag] for lag, p in worst],
    }


@dataclass
class LagProbe:
    """An admin client and a group-less consumer, started once, asked at phase boundaries."""

    settings: Settings
    admin: AIOKafkaAdminClient | None = None
    consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        """Connect (idempotent)."""
        servers = self.settings.bootstrap_servers
        self.admin = AIOKafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=10_000)
        await self.admin.start()
        self.consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
        await self.consumer.start()

    async def stop(self) -> None:
        """Disconnect."""
        if self.consumer is not None:
            await self.consumer.stop()
        if self.admin is not None:
            await self.admin.close()

    async def lag(self) -> dict[str, Any]:
        """Lag of each hop; {} on a Kafka error (lag is evidence, never a reason to fail)."""
        if self.admin is None or self.consumer is None:
            return {}
        out: dict[str, Any] = {}
        with contextlib.suppress(KafkaError, TimeoutError, OSError):
            for label, topic_field, group_field in HOPS:
                topic = getattr(self.settings, topic_field)
                group = getattr(self.settings, group_field)
                partitions = [TopicPartition(topic, p) for p in range(self.settings.partitions)]
                ends = await self.consumer.end_offsets(partitions)
                offsets = await self.admin.list_consumer_group_offsets(group, partitions=partitions)
                out[label] = summarize_lag(
                    {tp.partition: off for tp, off in ends.items()},
                    {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0},
                )
        return out
