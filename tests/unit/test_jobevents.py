"""Behaviour of jobstream.jobevents: job changes, their wire form, the hub and the publisher."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from helpers import eventually
from hypothesis import given
from hypothesis import strategies as st

from jobstream.jobevents import (
    JobChange,
    JobEventHub,
    JobEventPublisher,
    Subscription,
    Throughput,
)
from jobstream.models import InvalidEvent, Job
from jobstream.settings import Settings

JOB = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"
T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


def change(
    succeeded: int = 0,
    failed: int = 0,
    status: str = "in_progress",
    job_id: str = JOB,
    total: int = 10,
    **times: datetime | None,
) -> JobChange:
    return JobChange(job_id, total, succeeded, failed, status, T0, **times)  # type: ignore[arg-type]


# --- JobChange ------------------------------------------------------------------------------------


def test_change_survives_its_wire_form_with_every_time() -> None:
    original = change(7, 3, "completed", created_at=T0 - timedelta(seconds=2), finished_at=T0)
    assert JobChange.decode(original.encode()) == original


def test_change_without_known_times_survives_its_wire_form() -> None:
    original = change(1, 0)
    assert JobChange.decode(original.encode()) == original


@given(
    succeeded=st.integers(0, 10**6),
    failed=st.integers(0, 10**6),
    status=st.sampled_from(["in_progress", "completed", "deleted"]),
    seconds=st.integers(0, 10**9),
)
def test_any_change_survives_its_wire_form(
    succeeded: int, failed: int, status: str, seconds: int
) -> None:
    at = datetime.fromtimestamp(seconds, UTC)
    original = JobChange(JOB, succeeded + failed, succeeded, failed, status, at)  # type: ignore[arg-type]
    assert JobChange.decode(original.encode()) == original


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        (None, "no value"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (orjson.dumps({**orjson.loads(change().encode()), "status": "running"}), "status"),
        (orjson.dumps({**orjson.loads(change().encode()), "job_id": ""}), "job_id"),
        (orjson.dumps({**orjson.loads(change().encode()), "total": -1}), "total"),
        (orjson.dumps({**orjson.loads(change().encode()), "failed": True}), "failed"),
        (orjson.dumps({**orjson.loads(change().encode()), "at": None}), "'at'"),
        (orjson.dumps({**orjson.loads(change().encode()), "at": "yesterday"}), "ISO"),
        (orjson.dumps({**orjson.loads(change().encode()), "at": "2026-05-01T12:00:00"}), "zone"),
    ],
)
def test_malformed_change_is_an_invalid_event(raw: bytes | None, complaint: str) -> None:
    with pytest.raises(InvalidEvent, match=complaint):
        JobChange.decode(raw)


def test_change_reads_as_the_api_job_document() -> None:
    created = T0 - timedelta(seconds=1)
    document = change(6, 1, "completed", created_at=created, finished_at=T0).to_json()
    assert document == {
        "id": JOB,
        "status": "completed",
        "operations": {"total": 10, "succeeded": 6, "failed": 1, "pending": 3},
        "created_at": "2026-05-01T11:59:59Z",
        "finished_at": "2026-05-01T12:00:00Z",
    }


def test_change_of_a_stored_job_matches_that_job_document() -> None:
    job = Job(JOB, "completed", 10, 9, 1, T0 - timedelta(seconds=3), T0)
    assert JobChange.of(job).to_json() == job.to_json()


@pytest.mark.parametrize(
    ("newer", "older"),
    [
        (change(5), change(4)),  # more ended operations
        (change(4, 1), change(4)),  # a failure is news too
        (change(10, 0, "completed"), change(10)),  # completion beats progress
        (change(3, 0, "deleted"), change(10, 0, "completed")),  # deletion beats everything
    ],
)
def test_newer_news_supersedes_older_and_not_the_reverse(
    newer: JobChange, older: JobChange
) -> None:
    assert newer.supersedes(older)
    assert not older.supersedes(newer)


def test_an_equal_change_is_not_news() -> None:
    assert not change(4).supersedes(change(4))


def test_completing_from_an_earlier_change_fills_only_the_creation_time() -> None:
    earlier = change(1, created_at=T0 - timedelta(seconds=5))
    later = change(10, 0, "completed", finished_at=T0)
    completed = later.completing_from(earlier)
    assert completed.created_at == earlier.created_at
    assert completed.finished_at == T0
    assert replace(completed, created_at=None) == later


# --- Subscription and hub -------------------------------------------------------------------------


async def test_slow_subscriber_gets_the_newest_state_not_a_backlog() -> None:
    # Given a subscriber to one job that reads nothing while three changes arrive
    hub = JobEventHub()
    with hub.subscribe(JOB) as subscription:
        for done in (1, 2, 3):
            hub.dispatch(change(done))
        # When it reads, Then it gets only the newest
        assert await subscription.next(0.1) == [change(3)]


async def test_late_older_change_does_not_replace_newer_pending_one() -> None:
    hub = JobEventHub()
    with hub.subscribe(JOB) as subscription:
        hub.dispatch(change(10, 0, "completed"))
        hub.dispatch(change(7))  # crossed on the way (another worker's buffer)
        assert await subscription.next(0.1) == [change(10, 0, "completed")]


async def test_job_subscription_ignores_other_jobs_and_all_jobs_one_sees_both() -> None:
    hub = JobEventHub()
    with hub.subscribe(JOB) as mine, hub.subscribe() as everything:
        hub.dispatch(change(1, job_id=OTHER))
        hub.dispatch(change(2))
        assert await mine.next(0.1) == [change(2)]
        assert await everything.next(0.1) == [change(1, job_id=OTHER), change(2)]


async def test_waiting_subscriber_wakes_on_a_change() -> None:
    hub = JobEventHub()
    with hub.subscribe(JOB) as subscription:
        waiting = asyncio.create_task(subscription.next(5))
        await asyncio.sleep(0)
        hub.dispatch(change(1))
        assert await asyncio.wait_for(waiting, 1) == [change(1)]


async def test_quiet_subscription_returns_nothing_after_its_timeout() -> None:
    hub = JobEventHub()
    with hub.subscribe(JOB) as subscription:
        assert await subscription.next(0.01) == []


async def test_all_jobs_subscription_is_bounded_and_counts_what_it_dropped() -> None:
    # Given an all-jobs subscription holding at most two jobs
    hub = JobEventHub(capacity=2)
    with hub.subscribe() as subscription:
        jobs = [f"{i:032x}" for i in range(5)]
        for job_id in jobs:
            hub.dispatch(change(1, job_id=job_id))
        # Then the newest two stay, and three are counted as lost
        assert [c.job_id for c in await subscription.next(0.1)] == jobs[-2:]
        assert subscription.lost == 3


async def test_closing_the_hub_wakes_subscribers_with_what_was_pending() -> None:
    hub = JobEventHub()
    with hub.subscribe(JOB) as subscription:
        hub.dispatch(change(1))
        hub.close()
        assert await subscription.next(5) == [change(1)]
        assert subscription.closed
        assert await asyncio.wait_for(subscription.next(5), 1) == []


async def test_subscribing_to_a_closed_hub_gives_a_closed_subscription() -> None:
    hub = JobEventHub()
    hub.close()
    with hub.subscribe(JOB) as subscription:
        assert subscription.closed


def test_leaving_the_with_block_unsubscribes() -> None:
    hub = JobEventHub()
    with hub.subscribe(JOB), hub.subscribe():
        assert hub.subscriptions == 2
    assert hub.subscriptions == 0
    hub.dispatch(change(1))  # nobody left: nothing happens


def test_subscription_capacity_of_a_job_is_one() -> None:
    subscription = Subscription(JOB, 1)
    subscription.offer(change(1))
    subscription.offer(change(2))
    assert subscription.lost == 0


# --- Throughput -----------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_throughput_counts_operations_ended_between_changes() -> None:
    # Given two jobs progressing within one second
    clock = Clock()
    rate = Throughput(window=5, clock=clock)
    rate.record(change(10, total=100))
    rate.record(change(30, 5, total=100))
    rate.record(change(4, job_id=OTHER))
    # When the second is over, Then 39 operations over a 5 s window is 7.8 per second
    clock.now += 1
    assert rate.per_second() == pytest.approx(39 / 5)


def test_throughput_ignores_stale_changes_and_forgets_old_seconds() -> None:
    clock = Clock()
    rate = Throughput(window=5, clock=clock)
    rate.record(change(10))
    rate.record(change(8))  # older news: nothing ended
    clock.now += 1
    assert rate.per_second() == pytest.approx(10 / 5)
    clock.now += 10
    assert rate.per_second() == 0


def test_throughput_does_not_count_a_deletion() -> None:
    clock = Clock()
    rate = Throughput(window=5, clock=clock)
    rate.record(change(2))
    rate.record(change(2, 0, "deleted", total=10))
    clock.now += 1
    assert rate.per_second() == pytest.approx(2 / 5)


# --- Publisher ------------------------------------------------------------------------------------


class Broker:
    """A Sender recording what it was handed; can fail or hang on demand."""

    def __init__(self) -> None:
        self.sent: list[JobChange] = []
        self.keys: list[bytes] = []
        self.fail = False
        self.gate: asyncio.Event | None = None

    async def __call__(self, key: bytes, value: bytes) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("broker down")
        self.keys.append(key)
        self.sent.append(JobChange.decode(value))


class Counters:
    def __init__(self) -> None:
        self.failures = 0
        self.drops = 0

    def failed(self, count: int) -> None:
        self.failures += count

    def dropped(self, count: int) -> None:
        self.drops += count


async def test_publisher_sends_one_event_per_job_with_the_newest_state() -> None:
    # Given a publisher whose background task has not run yet
    broker = Broker()
    publisher = JobEventPublisher(broker, interval=0.01)
    # When a batch touches a job twice and another once
    await publisher.publish([change(1), change(1, job_id=OTHER), change(3)])
    publisher.start()
    try:
        # Then each job's newest state is sent, keyed by its job id
        await eventually(lambda: len(broker.sent) == 2, timeout=2, interval=0.005)
        assert sorted(broker.sent, key=lambda c: c.job_id) == [change(3), change(1, job_id=OTHER)]
        assert set(broker.keys) == {JOB.encode(), OTHER.encode()}
    finally:
        await publisher.stop()


async def test_publish_returns_at_once_while_the_broker_hangs() -> None:
    # Given a broker that does not answer
    broker = Broker()
    broker.gate = asyncio.Event()
    publisher = JobEventPublisher(broker, interval=0.01, capacity=100)
    publisher.start()
    try:
        # When thousands of changes are published, Then every call returns at once
        for done in range(1, 3001):
            await asyncio.wait_for(publisher.publish([change(done, total=5000)]), 0.05)
        # And what waits is the newest change of the job, not a backlog
        assert publisher.pending <= 1
    finally:
        broker.gate.set()
        await publisher.stop()


async def test_full_buffer_drops_the_oldest_job_and_counts_it() -> None:
    counters = Counters()
    publisher = JobEventPublisher(Broker(), capacity=2, counters=counters)
    await publisher.publish([change(1, job_id=f"{i:032x}") for i in range(5)])
    assert publisher.pending == 2
    assert counters.drops == 3


async def test_failed_sends_are_counted_never_raised() -> None:
    # Given a broker that refuses everything
    broker = Broker()
    broker.fail = True
    counters = Counters()
    publisher = JobEventPublisher(broker, interval=0.01, counters=counters)
    publisher.start()
    try:
        # When changes are published, Then the failures are counted and publish never raises
        await publisher.publish([change(1), change(1, job_id=OTHER)])
        await eventually(lambda: counters.failures == 2, timeout=2, interval=0.005)
        await publisher.publish([change(2)])
        await eventually(lambda: counters.failures == 3, timeout=2, interval=0.005)
    finally:
        await publisher.stop()


async def test_stopping_flushes_what_is_pending() -> None:
    broker = Broker()
    publisher = JobEventPublisher(broker, interval=10)
    publisher.start()
    await publisher.publish([change(1)])
    await eventually(lambda: broker.sent == [change(1)], timeout=2, interval=0.005)
    await publisher.publish([change(10, 0, "completed")])  # waits for the 10 s interval
    await publisher.stop()
    assert broker.sent == [change(1), change(10, 0, "completed")]


async def test_older_change_in_a_later_call_does_not_replace_a_pending_newer_one() -> None:
    broker = Broker()
    publisher = JobEventPublisher(broker)
    await publisher.publish([change(10, 0, "completed")])
    await publisher.publish([change(9)])
    publisher.start()
    await publisher.stop()
    assert broker.sent == [change(10, 0, "completed")]


# --- settings -------------------------------------------------------------------------------------


def test_event_settings_have_documented_defaults_and_read_their_variables() -> None:
    assert Settings().job_events_topic == "application.job.events"
    assert Settings().max_watchers == 200
    assert Settings().event_stream_seconds == 900.0
    settings = Settings.from_env(
        {
            "JOBSTREAM_JOB_EVENTS_TOPIC": "events",
            "JOBSTREAM_MAX_WATCHERS": "3",
            "JOBSTREAM_EVENT_STREAM_SECONDS": "1.5",
        }
    )
    assert (settings.job_events_topic, settings.max_watchers, settings.event_stream_seconds) == (
        "events",
        3,
        1.5,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [("JOBSTREAM_MAX_WATCHERS", "0"), ("JOBSTREAM_EVENT_STREAM_SECONDS", "-1")],
)
def test_bad_event_settings_fail_loudly(variable: str, value: str) -> None:
    with pytest.raises(ValueError, match=variable):
        Settings.from_env({variable: value})
