"""The job events topic on the local Kafka cluster: a publisher, and followers on every partition.

No workers: two JobFeeds (as two client workers would have) on a topic of this test's own.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from helpers import eventually
from prometheus_client import CollectorRegistry

from jobstream.jobevents import JobChange, Subscription
from jobstream.jobfeed import EventMetrics, JobFeed
from jobstream.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest_asyncio.fixture
async def feeds(
    make_topic: Callable[..., Awaitable[str]], kafka_brokers: list[str]
) -> AsyncIterator[list[JobFeed]]:
    """Two started feeds on a new 6-partition events topic."""
    topic = await make_topic(partitions=6)
    settings = dataclasses.replace(
        Settings(), kafka_brokers=",".join(kafka_brokers), job_events_topic=topic
    )
    started = [JobFeed(settings, EventMetrics.create(CollectorRegistry())) for _ in range(2)]
    for feed in started:
        await feed.start()
    try:
        yield started
    finally:
        for feed in started:
            await feed.stop()


async def received(subscription: Subscription, wanted: set[str]) -> dict[str, JobChange]:
    """The changes of `wanted` jobs a subscription gets, once it has them all."""
    seen: dict[str, JobChange] = {}

    async def all_seen() -> bool:
        for change in await subscription.next(0.2):
            seen[change.job_id] = change
        return wanted <= set(seen)

    await eventually(all_seen, timeout=40, interval=0.01, description=f"{len(wanted)} changes")
    return seen


async def test_every_follower_gets_every_change_from_every_partition(feeds: list[JobFeed]) -> None:
    # Given two followers, each subscribed to every job
    publisher, *_ = feeds
    with feeds[0].hub.subscribe() as first, feeds[1].hub.subscribe() as second:
        # When one feed publishes changes of twenty jobs (spread over the partitions by id)
        # (the followers start from the end: publish until they hear a first marker)
        marker = uuid.uuid4().hex

        async def following() -> bool:
            publisher.publisher.publish_nowait([change(marker, 1)])
            got = [c.job_id for c in await first.next(0.2)] + [
                c.job_id for c in await second.next(0.2)
            ]
            return marker in got

        await eventually(following, timeout=40, interval=0.5, description="followers ready")
        jobs = {uuid.uuid4().hex: n for n in range(1, 21)}
        publisher.publisher.publish_nowait([change(job_id, n) for job_id, n in jobs.items()])
        # Then both followers get each job's change, as published
        for subscription in (first, second):
            seen = await received(subscription, set(jobs))
            assert {job_id: seen[job_id].succeeded for job_id in jobs} == jobs


async def test_a_job_changing_fast_is_sent_newest_first_and_never_goes_back(
    feeds: list[JobFeed],
) -> None:
    publisher, follower = feeds
    job_id = uuid.uuid4().hex
    with follower.hub.subscribe(job_id) as subscription:

        async def ready() -> bool:
            publisher.publisher.publish_nowait([change(job_id, 0)])
            return bool(await subscription.next(0.2))

        await eventually(ready, timeout=40, interval=0.5, description="follower ready")
        # When a thousand progress changes, then the completion, are published back to back
        for done in range(1, 1001):
            publisher.publisher.publish_nowait([change(job_id, done, total=1000)])
        publisher.publisher.publish_nowait(
            [dataclasses.replace(change(job_id, 1000, total=1000), status="completed")]
        )
        # Then the watcher sees growing counters, far fewer messages than changes, and the end
        seen: list[JobChange] = []

        async def completed() -> bool:
            seen.extend(await subscription.next(0.2))
            return bool(seen) and seen[-1].status == "completed"

        await eventually(completed, timeout=40, interval=0.01, description="completion")
    assert [c.done for c in seen] == sorted(c.done for c in seen)
    assert len(seen) < 100


def change(job_id: str, succeeded: int, total: int = 100) -> JobChange:
    return JobChange(job_id, total, succeeded, 0, "in_progress", datetime.now(UTC))
