"""Behaviour of jobstream.views.watch: event streams and waits over the hub, without a network."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from helpers import eventually
from prometheus_client import CollectorRegistry

from jobstream.dbmetrics import DEFAULT_ORIGIN, WATCH_READ, current_origin
from jobstream.errors import InvalidJob, NotFound
from jobstream.jobevents import JobChange, JobEventHub
from jobstream.jobfeed import EventMetrics
from jobstream.models import Job
from jobstream.settings import Settings
from jobstream.views.watch import (
    KEEPALIVE,
    TooManyWatchers,
    Watch,
    stream_changes,
    wait_seconds,
)

JOB = "0123456789abcdef0123456789abcdef"
CREATED = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
FINISHED = CREATED + timedelta(seconds=2)


def job(succeeded: int = 0, failed: int = 0, status: str = "in_progress") -> Job:
    finished = FINISHED if status == "completed" else None
    return Job(JOB, status, 10, succeeded, failed, CREATED, finished)  # type: ignore[arg-type]


def change(succeeded: int, status: str = "in_progress", **times: Any) -> JobChange:
    return JobChange(JOB, 10, succeeded, 0, status, CREATED, **times)  # type: ignore[arg-type]


class Jobs:
    """A JobReader over one job, counting its reads."""

    def __init__(self, *states: Job) -> None:
        self.states = list(states)
        self.reads = 0
        #: The database-command origin of each read (jobstream.dbmetrics).
        self.origins: list[str] = []

    async def get_job(self, job_id: str) -> Job:
        self.reads += 1
        self.origins.append(current_origin())
        if not self.states or job_id != JOB:
            raise NotFound(f"job {job_id} not found")
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]


class Written:
    """A stream's writer, parsing what it receives back into SSE messages."""

    def __init__(self) -> None:
        self.raw = b""

    async def __call__(self, data: bytes) -> None:
        self.raw += data

    @property
    def messages(self) -> list[tuple[str, Any]]:
        out = []
        for block in self.raw.decode().split("\n\n"):
            lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
            if "event" in lines:
                out.append((lines["event"], orjson.loads(lines["data"])))
        return out

    @property
    def keepalives(self) -> int:
        return self.raw.count(KEEPALIVE)


def watch_over(hub: JobEventHub, jobs: Jobs, **settings: Any) -> Watch:
    return Watch(hub, jobs, Settings(**settings), EventMetrics.create(CollectorRegistry()))


# --- stream_changes -------------------------------------------------------------------------------


async def test_stream_sends_the_state_then_each_change_and_ends_after_completion() -> None:
    # Given a stream of a job in progress
    hub, written = JobEventHub(), Written()
    with hub.subscribe(JOB) as subscription:
        first = JobChange.of(job(2))
        streaming = asyncio.create_task(
            stream_changes(written, subscription, first, deadline=float("inf"))
        )
        # When the job progresses and completes
        await eventually(lambda: written.messages, timeout=2, interval=0.005)
        hub.dispatch(change(6))
        hub.dispatch(change(10, "completed", finished_at=FINISHED))
        ended = await asyncio.wait_for(streaming, 2)
    # Then the client got its state, then the changes, with the creation time kept
    assert ended == "final"
    states = [(data["status"], data["operations"]["succeeded"]) for _, data in written.messages]
    assert states[0] == ("in_progress", 2)
    assert states[-1] == ("completed", 10)
    assert all(data["created_at"] == "2026-05-01T12:00:00Z" for _, data in written.messages)


async def test_stream_of_a_completed_job_sends_its_state_and_ends() -> None:
    hub, written = JobEventHub(), Written()
    with hub.subscribe(JOB) as subscription:
        first = JobChange.of(job(10, status="completed"))
        assert await stream_changes(written, subscription, first, deadline=float("inf")) == "final"
    assert [event for event, _ in written.messages] == ["job"]


async def test_stream_skips_changes_older_than_what_the_client_has() -> None:
    hub, written = JobEventHub(), Written()
    with hub.subscribe(JOB) as subscription:
        hub.dispatch(change(3))  # older than the state read: it crossed the read
        hub.dispatch(change(10, "deleted"))
        first = JobChange.of(job(5))
        assert await stream_changes(written, subscription, first, deadline=float("inf")) == "final"
    assert [d["status"] for _, d in written.messages] == ["in_progress", "deleted"]


async def test_idle_stream_sends_keepalives_until_its_lifetime_ends() -> None:
    hub, written = JobEventHub(), Written()
    loop = asyncio.get_running_loop()
    with hub.subscribe(JOB) as subscription:
        first = JobChange.of(job(1))
        ended = await stream_changes(
            written,
            subscription,
            first,
            deadline=loop.time() + 0.35,
            keepalive=0.1,
            clock=loop.time,
        )
    assert ended == "lifetime"
    assert 2 <= written.keepalives <= 4


async def test_stream_ends_when_the_hub_closes() -> None:
    hub, written = JobEventHub(), Written()
    with hub.subscribe(JOB) as subscription:
        streaming = asyncio.create_task(
            stream_changes(written, subscription, JobChange.of(job(1)), deadline=float("inf"))
        )
        await eventually(lambda: written.messages, timeout=2, interval=0.005)
        hub.close()
        assert await asyncio.wait_for(streaming, 2) == "shutdown"


async def test_all_jobs_stream_sends_changes_and_figures_when_they_change() -> None:
    hub, written = JobEventHub(), Written()
    figures = {"operations_per_second": 0.0}
    with hub.subscribe() as subscription:
        streaming = asyncio.create_task(
            stream_changes(
                written, subscription, None, deadline=float("inf"), stats=lambda: dict(figures)
            )
        )
        await eventually(lambda: written.messages, timeout=2, interval=0.005)
        hub.dispatch(change(4))
        figures["operations_per_second"] = 4.0
        await eventually(lambda: len(written.messages) == 3, timeout=3, interval=0.01)
        hub.close()
        assert await asyncio.wait_for(streaming, 2) == "shutdown"
    assert written.messages == [
        ("stats", {"operations_per_second": 0.0}),
        ("job", change(4).to_json()),
        ("stats", {"operations_per_second": 4.0}),
    ]


# --- waiting --------------------------------------------------------------------------------------


async def test_wait_answers_as_soon_as_the_job_completes_without_reading_again() -> None:
    # Given a job in progress and a client waiting up to 30 s
    hub, jobs = JobEventHub(), Jobs(job(3))
    watch = watch_over(hub, jobs)
    waiting = asyncio.create_task(watch.until_completed(JOB, 30))
    await eventually(lambda: jobs.reads == 1 and hub.subscriptions == 1, timeout=2, interval=0.005)
    # When the completion event arrives
    hub.dispatch(change(10, "completed", finished_at=FINISHED))
    answered = await asyncio.wait_for(waiting, 2)
    # Then the answer is the completed job, from one database read in all
    assert answered == job(10, status="completed")
    assert jobs.reads == 1


async def test_wait_that_times_out_reads_the_job_once_more() -> None:
    hub, jobs = JobEventHub(), Jobs(job(3), job(4))
    watch = watch_over(hub, jobs)
    assert await watch.until_completed(JOB, 0.05) == job(4)
    assert jobs.reads == 2


async def test_wait_that_times_out_after_progress_answers_from_the_news() -> None:
    hub, jobs = JobEventHub(), Jobs(job(3))
    watch = watch_over(hub, jobs)
    waiting = asyncio.create_task(watch.until_completed(JOB, 0.2))
    await eventually(lambda: hub.subscriptions == 1 and jobs.reads == 1, timeout=2, interval=0.005)
    hub.dispatch(change(7))
    assert await asyncio.wait_for(waiting, 2) == job(7)
    assert jobs.reads == 1


async def test_wait_on_a_completed_job_answers_at_once() -> None:
    jobs = Jobs(job(10, status="completed"))
    assert await watch_over(JobEventHub(), jobs).until_completed(JOB, 60) == job(
        10, status="completed"
    )
    assert jobs.reads == 1


async def test_wait_on_a_job_deleted_meanwhile_is_not_found() -> None:
    hub, jobs = JobEventHub(), Jobs(job(3))
    watch = watch_over(hub, jobs)
    waiting = asyncio.create_task(watch.until_completed(JOB, 30))
    await eventually(lambda: hub.subscriptions == 1 and jobs.reads == 1, timeout=2, interval=0.005)
    hub.dispatch(change(3, "deleted"))
    with pytest.raises(NotFound, match="deleted"):
        await asyncio.wait_for(waiting, 2)


async def test_watchers_reads_carry_an_origin_of_their_own() -> None:
    # the database counters tell what watchers cost from what polling costs
    jobs = Jobs(job(10, status="completed"))
    watch = watch_over(JobEventHub(), jobs)
    await watch.until_completed(JOB, 60)
    await watch.until_completed(JOB, 0)  # no wait: a plain read, labelled by the view
    assert jobs.origins == [WATCH_READ, DEFAULT_ORIGIN]


async def test_wait_of_an_unknown_job_is_not_found() -> None:
    with pytest.raises(NotFound):
        await watch_over(JobEventHub(), Jobs()).until_completed(JOB, 5)


async def test_watchers_beyond_the_limit_are_refused_and_places_are_given_back() -> None:
    # Given a worker allowing two watchers, both taken
    hub, jobs = JobEventHub(), Jobs(job(1))
    watch = watch_over(hub, jobs, max_watchers=2)
    waits = [asyncio.create_task(watch.until_completed(JOB, 30)) for _ in range(2)]
    await eventually(lambda: hub.subscriptions == 2, timeout=2, interval=0.005)
    # When a third comes, Then it is refused
    with pytest.raises(TooManyWatchers, match="2 event streams"):
        await watch.until_completed(JOB, 30)
    # And once the others are answered, a place is free again
    hub.dispatch(change(10, "completed", finished_at=FINISHED))
    await asyncio.wait_for(asyncio.gather(*waits), 2)
    with watch.place("stream"):
        pass


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("0", 0.0), ("5", 5.0), ("60", 60.0), ("2.5", 2.5), ("1e-05", 1e-05), (".5", 0.5)],
)
def test_wait_parameter_accepts_seconds_up_to_a_minute(raw: str, seconds: float) -> None:
    assert wait_seconds(raw) == seconds


@pytest.mark.parametrize(
    "raw", ["", "61", "-1", "1e3", "nan", "inf", "ten", "60.001", "100", "1_0", " 5"]
)
def test_wait_parameter_refuses_anything_else(raw: str) -> None:
    with pytest.raises(InvalidJob, match="wait must be a number of seconds from 0 to 60"):
        wait_seconds(raw)
