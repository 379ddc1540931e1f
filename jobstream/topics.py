"""The Kafka topics, declared once; agents and views take them from here.

Values travel as raw bytes (JSON encoded by `jobstream.models`): decoding happens in the agents, so
a malformed event becomes a dead letter instead of crashing the stream. Requests are keyed by
operation id, so one job's operations spread over every server worker; responses are keyed by job
id, so all results of a job land on one partition (the one its progress-table entry lives on).
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
    )
