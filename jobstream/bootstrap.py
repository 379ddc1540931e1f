"""Create jobstream's topics and indexes idempotently (local stack and compose init share this).

Run as `python -m jobstream.bootstrap`. Topics are never left to broker auto-creation: the progress
table's changelog must have exactly as many partitions as the response topic it is keyed like.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from jobstream.names import changelog_topic
from jobstream.settings import Settings
from jobstream.storage import MongoRepository

log = logging.getLogger("jobstream.bootstrap")


@dataclass(frozen=True)
class TopicSpec:
    """One topic as jobstream needs it."""

    name: str
    partitions: int
    config: dict[str, str]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic jobstream reads or writes, with its partitions and configuration."""
    common = {"min.insync.replicas": str(settings.min_insync_replicas)}
    return [
        TopicSpec(settings.request_topic, settings.partitions, common),
        TopicSpec(settings.response_topic, settings.partitions, common),
        # The bulk lane (see jobstream.topics): as many partitions as the first, keyed alike.
        TopicSpec(settings.bulk_request_topic, settings.partitions, common),
        TopicSpec(settings.bulk_response_topic, settings.partitions, common),
        TopicSpec(settings.dead_letter_topic, settings.partitions, common),
        # Live views only (every client follows it from its end): an hour of history is plenty.
        TopicSpec(
            settings.job_events_topic,
            settings.job_events_partitions,
            {**common, "retention.ms": str(3_600_000), "segment.ms": str(600_000)},
        ),
        TopicSpec(
            changelog_topic(settings.client_group),
            settings.partitions,
            {**common, "cleanup.policy": "compact"},
        ),
    ]


async def create_topics(settings: Settings, timeout: float = 60.0) -> list[str]:
    """Create the missing topics; returns the names created. Existing ones are left alone."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=30_000
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            await admin.start()
            break
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise
            log.info("Kafka not reachable yet (%s); retrying", exc)
            await asyncio.sleep(1)
    created: list[str] = []
    try:
        existing = set(await admin.list_topics())
        for spec in topic_specs(settings):
            if spec.name in existing:
                continue
            topic = NewTopic(
                name=spec.name,
                num_partitions=spec.partitions,
                replication_factor=settings.replication_factor,
                topic_configs=spec.config,
            )
            response = await admin.create_topics([topic], timeout_ms=30_000)
            for name, code, *rest in response.topic_errors:
                if code == TopicAlreadyExistsError.errno:
                    continue  # another bootstrap won the race; that is fine
                if code != 0:
                    message = rest[0] if rest else ""
                    raise RuntimeError(f"creating topic {name} failed: error {code} {message}")
                created.append(name)
    finally:
        await admin.close()
    return created


async def prepare_storage(settings: Settings) -> None:
    """Create the collections' indexes once, before any worker writes.

    Done here rather than by every worker at start: FerretDB's SQLite backend can deadlock when
    index creation races with writes from other connections.
    """
    repository = MongoRepository.connect(settings.mongo_url, settings.mongo_database)
    try:
        await repository.ensure_indexes()
    finally:
        await repository.close()


async def bootstrap(settings: Settings) -> None:
    """Topics and indexes, idempotently."""
    created = await create_topics(settings)
    for name in created:
        log.info("created topic %s", name)
    log.info("topics ready (%d created)", len(created))
    await prepare_storage(settings)
    log.info("indexes ready in database %s", settings.mongo_database)


def main() -> int:
    """Entry point of `python -m jobstream.bootstrap`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(bootstrap(Settings.from_env()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
