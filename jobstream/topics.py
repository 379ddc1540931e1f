"""The Kafka topics, declared once; agents and views take them from here.

Values travel as raw bytes (JSON encoded by `jobstream.models`): decoding happens in the agents, so
a malformed event becomes a dead letter instead of crashing the stream. Requests are keyed by
operation id, so one job's operations spread over every server worker; responses are keyed by job
id, so all results of a job land on one partition (the one its progress-table entry lives on).

Requests and responses travel in two lanes: jobs of up to `Settings.bulk_operations` operations on
the request and response topics, bigger ones on the bulk topics. Each lane has agents of their own
(`compute` / `compute-bulk`, `persist` / `persist-bulk`), with buffers of their own: a
100,000-operation job is a thousand request messages, and a single-operation job sent after it
waited behind them on its way to a compute actor (its traced request hop took 1.5 s), then on
the client persisting the big job's results (single-operation jobs at 4/s beside one: p99
6.3-8.1 s with one lane, 0.8-1.9 s with two, 0.1 s alone; README, *Two lanes*). The lanes share
the workers' CPU, not their queues. Both lanes' topics have the same number of partitions and
the same keys, so a job's results land on the same partition number either way, and the
progress table's changelog partition stays the one of its responses.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from jobstream.settings import Settings


@dataclass(frozen=True)
class Topics:
    """The topics of one app."""

    requests: faust.TopicT
    responses: faust.TopicT
    dead_letters: faust.TopicT
    bulk_requests: faust.TopicT
    bulk_responses: faust.TopicT
    #: Jobs of more operations than this travel on the bulk topics.
    bulk_operations: int

    def requests_for(self, total: int) -> faust.TopicT:
        """The request topic of a job of `total` operations."""
        return self.bulk_requests if total > self.bulk_operations else self.requests

    def responses_for(self, total: int) -> faust.TopicT:
        """The response topic of a job of `total` operations (results of the API or of
        reconciliation; computing answers on the lane its request came from)."""
        return self.bulk_responses if total > self.bulk_operations else self.responses


def declare_topics(app: faust.App, settings: Settings) -> Topics:
    """Declare jobstream's topics on the app (they are created by `jobstream.bootstrap`)."""

    def topic(name: str) -> faust.TopicT:
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
            replicas=settings.replication_factor,
            acks=True,
        )

    return Topics(
        requests=topic(settings.request_topic),
        responses=topic(settings.response_topic),
        dead_letters=topic(settings.dead_letter_topic),
        bulk_requests=topic(settings.bulk_request_topic),
        bulk_responses=topic(settings.bulk_response_topic),
        bulk_operations=settings.bulk_operations,
    )
