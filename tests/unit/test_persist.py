"""The persisting agent's logic on the in-memory repository: no Kafka, no database, no Faust worker.

ResultWriter and store_batch hold the at-least-once rules: duplicates are not counted twice, a
deleted job is not resurrected, an outage is waited out, a refusal is parked instead of blocking.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from fakes import FakeEvent, FakeMessage

from jobstream.agents.acks import held
from jobstream.agents.persist import (
    PARKING_REFUSALS,
    Received,
    ResultWriter,
    know_changelog_partitions,
    store_batch,
)
from jobstream.errors import StorageError
from jobstream.memory import MemoryRepository
from jobstream.models import OperationResult
from jobstream.storage import Progress, SavedProgress
from jobstream.tables.progress import JobProgress
from jobstream.telemetry import Metrics

JOB = "a" * 32
OTHER = "b" * 32


def ok(job_id: str, index: int, total: int) -> OperationResult:
    return OperationResult(job_id, index, total, "succeeded", result=str(index))


def bad(job_id: str, index: int, total: int) -> OperationResult:
    return OperationResult(job_id, index, total, "failed", error="division by zero")


def received(*results: OperationResult) -> Received:
    return Received(FakeEvent(FakeMessage(b"{}")), list(results))  # type: ignore[arg-type]


class Parked:
    """Collects what store_batch parks."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, str]] = []

    async def __call__(self, event: Any, reason: str) -> None:
        self.events.append((event, reason))


@pytest.fixture
def repository() -> MemoryRepository:
    return MemoryRepository()


@pytest.fixture
def table() -> dict[bytes, bytes]:
    return {}


@pytest.fixture
def metrics() -> Metrics:
    return Metrics.create()


@pytest.fixture
def writer(repository: MemoryRepository, table: dict, metrics: Metrics) -> ResultWriter:
    return ResultWriter(repository, table, metrics)


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries back off with asyncio.sleep; the tests need not wait for it."""

    async def instant(_: float) -> None:
        return None

    monkeypatch.setattr("jobstream.agents.persist.asyncio.sleep", instant)


def counter(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(f"{name}_total", labels or None) or 0.0


async def test_a_job_completes_when_its_last_result_is_stored(
    repository: MemoryRepository, writer: ResultWriter, table: dict
) -> None:
    # Given a job of three operations
    await repository.create_job(JOB, ["1", "2", "1/0"])

    # When its results arrive in two batches
    await writer.apply([ok(JOB, 1, 3), ok(JOB, 2, 3)])
    job = await repository.get_job(JOB)
    assert (job.status, job.succeeded, job.failed) == ("in_progress", 2, 0)
    assert JobProgress.decode(table[JOB.encode()]).succeeded == 2
    await writer.apply([bad(JOB, 3, 3)])

    # Then the job is completed with counters equal to its stored results, and leaves the table
    job = await repository.get_job(JOB)
    assert (job.status, job.succeeded, job.failed) == ("completed", 2, 1)
    assert len(repository.stored_results(JOB)) == 3
    assert JOB.encode() not in table


async def test_duplicate_results_are_stored_and_counted_once(
    repository: MemoryRepository, writer: ResultWriter, metrics: Metrics
) -> None:
    await repository.create_job(JOB, ["1", "2", "3"])

    # When the same result is delivered three times, twice in one batch
    await writer.apply([ok(JOB, 1, 3), ok(JOB, 1, 3)])
    await writer.apply([ok(JOB, 1, 3)])

    # Then it counts once
    job = await repository.get_job(JOB)
    assert (job.succeeded, job.failed, job.pending) == (1, 0, 2)
    assert counter(metrics, "results_duplicated") == 2
    assert counter(metrics, "results_stored") == 1


async def test_the_first_result_of_an_operation_wins(
    repository: MemoryRepository, writer: ResultWriter
) -> None:
    await repository.create_job(JOB, ["1", "2"])
    await writer.apply([ok(JOB, 1, 2)])

    # When a later, different result for the same operation arrives (a re-published request)
    await writer.apply([bad(JOB, 1, 2)])

    assert repository.stored_results(JOB)[1].status == "succeeded"
    assert (await repository.get_job(JOB)).failed == 0


async def test_late_results_of_a_deleted_job_do_not_resurrect_it(
    repository: MemoryRepository, writer: ResultWriter, table: dict, metrics: Metrics
) -> None:
    # Given a job with one stored result, then deleted
    await repository.create_job(JOB, ["1", "2"])
    await writer.apply([ok(JOB, 1, 2)])
    await repository.delete_job(JOB)

    # When its last result arrives late
    await writer.apply([ok(JOB, 2, 2)])

    # Then nothing of it is stored, and the table forgets it
    assert repository.stored_results(JOB) == {}
    assert JOB.encode() not in table
    assert counter(metrics, "results_ignored") == 1


async def test_a_deletion_in_the_middle_of_a_batch_keeps_none_of_that_jobs_results(
    repository: MemoryRepository, table: dict, metrics: Metrics
) -> None:
    # Given two jobs, and the first is deleted while the batch is being stored
    await repository.create_job(JOB, ["1", "2"])
    await repository.create_job(OTHER, ["1"])
    original = repository.store_results

    async def delete_then_store(results: Any, progress: Any) -> Any:
        await repository.delete_job(JOB)
        return await original(results, progress)

    repository.store_results = delete_then_store  # type: ignore[method-assign]
    changes: list = []
    writer = ResultWriter(repository, table, metrics, changes.extend)

    # When the batch carrying results of both is applied
    await writer.apply([ok(JOB, 1, 2), ok(OTHER, 1, 1)])

    # Then nothing of the deleted job is stored, watchers hear it was deleted, the other completes
    assert repository.stored_results(JOB) == {}
    assert JOB.encode() not in table
    assert {c.job_id: c.status for c in changes} == {JOB: "deleted", OTHER: "completed"}
    assert (await repository.get_job(OTHER)).status == "completed"


async def test_results_of_a_job_already_completed_change_nothing(
    repository: MemoryRepository, writer: ResultWriter, metrics: Metrics
) -> None:
    await repository.create_job(JOB, ["1"])
    await writer.apply([ok(JOB, 1, 1)])

    # When a duplicate arrives at another worker whose table does not know the job any more
    other_writer = ResultWriter(repository, {}, metrics)
    await other_writer.apply([bad(JOB, 1, 1)])

    job = await repository.get_job(JOB)
    assert (job.status, job.succeeded, job.failed) == ("completed", 1, 0)
    assert repository.stored_results(JOB)[1].status == "succeeded"


async def test_a_storage_error_mid_batch_leaves_the_table_untouched_and_the_retry_counts_once(
    repository: MemoryRepository, writer: ResultWriter, table: dict
) -> None:
    await repository.create_job(JOB, ["1", "2"])
    # When the results are stored but the progress update fails
    repository.fail("store_results:progress", StorageError("connection reset"))
    with pytest.raises(StorageError):
        await writer.apply([ok(JOB, 1, 2), ok(JOB, 2, 2)])
    assert table == {}

    # Then the redelivered batch completes the job with exact counters
    await writer.apply([ok(JOB, 1, 2), ok(JOB, 2, 2)])
    job = await repository.get_job(JOB)
    assert (job.status, job.succeeded) == ("completed", 2)


async def test_an_outage_is_waited_out_however_long_it_lasts(
    repository: MemoryRepository, writer: ResultWriter, metrics: Metrics
) -> None:
    await repository.create_job(JOB, ["1"])
    outage = [StorageError("unreachable", transient=True)] * (PARKING_REFUSALS * 5)
    repository.fail("store_results", *outage)
    parked = Parked()

    await store_batch(writer, [received(ok(JOB, 1, 1))], parked, metrics)

    assert parked.events == []
    assert (await repository.get_job(JOB)).status == "completed"


async def test_a_refused_job_is_parked_and_the_rest_of_the_batch_is_stored(
    repository: MemoryRepository, writer: ResultWriter, metrics: Metrics
) -> None:
    # Given two jobs in one batch, and a database that refuses every command touching the first
    await repository.create_job(JOB, ["1"])
    await repository.create_job(OTHER, ["1"])
    refusal = StorageError("extended protocol limited to 65535 parameters", transient=False)

    async def refuse_job(results: Any, progress: Any) -> Any:
        if any(r.job_id == JOB for r in results):
            raise refusal
        return await original_store(results, progress)

    original_store = repository.store_results
    repository.store_results = refuse_job  # type: ignore[method-assign]
    first, second = received(ok(JOB, 1, 1)), received(ok(OTHER, 1, 1))
    parked = Parked()

    # When the batch is stored
    await store_batch(writer, [first, second], parked, metrics)

    # Then the refused job's event is parked with the reason, and the other job completes
    assert [event for event, _ in parked.events] == [first.event]
    assert "65535" in parked.events[0][1]
    assert counter(metrics, "batches_parked", topic="responses") == 1
    assert (await repository.get_job(OTHER)).status == "completed"
    assert (await repository.get_job(JOB)).status == "in_progress"


async def test_a_bug_in_storing_is_retried_then_parked_never_raised(
    repository: MemoryRepository, writer: ResultWriter, metrics: Metrics
) -> None:
    await repository.create_job(JOB, ["1"])
    repository.fail("store_results", *[KeyError("boom")] * (2 * PARKING_REFUSALS))
    parked = Parked()

    await store_batch(writer, [received(ok(JOB, 1, 1))], parked, metrics)

    assert len(parked.events) == 1
    assert "KeyError" in parked.events[0][1]


# --- acknowledgement ------------------------------------------------------------------------


def test_a_batch_is_acknowledged_when_its_body_completes() -> None:
    events = [FakeEvent(FakeMessage(b"1")), FakeEvent(FakeMessage(b"2"))]

    with held(events):  # type: ignore[arg-type]
        pass
    for event in events:  # what take_events' finally does
        event.ack()

    assert all(event.message.acked for event in events)


def test_a_batch_whose_body_raises_stays_unacknowledged_despite_fausts_finally() -> None:
    events = [FakeEvent(FakeMessage(b"1"))]

    with pytest.raises(RuntimeError), held(events):  # type: ignore[arg-type]
        raise RuntimeError("cancelled mid-batch")
    events[0].ack()  # take_events acknowledges in its finally

    assert not events[0].message.acked


async def test_each_stored_batch_tells_the_new_state_of_every_job_it_moved(
    repository: MemoryRepository, table: dict, metrics: Metrics
) -> None:
    # Given a listener of job changes, a job in progress and a deleted one
    changes: list[Any] = []
    writer = ResultWriter(repository, table, metrics, on_changes=changes.extend)
    await repository.create_job(JOB, ["1", "2"])
    await repository.create_job(OTHER, ["1", "2"])
    await repository.delete_job(OTHER)

    # When batches move them
    await writer.apply([ok(JOB, 1, 2), ok(JOB, 1, 2), ok(OTHER, 1, 2)])
    await writer.apply([bad(JOB, 2, 2)])

    # Then one change per job and batch says where each stands
    seen = [(c.job_id, c.status, c.succeeded, c.failed) for c in changes]
    assert seen == [
        (JOB, "in_progress", 1, 0),
        (OTHER, "deleted", 1, 0),
        (JOB, "completed", 1, 1),
    ]
    assert changes[-1].finished_at is not None and changes[-1].created_at is not None


async def test_the_changelog_partitions_are_known_before_the_first_table_write() -> None:
    """Faust reads a changelog message's partition from the producer's metadata without waiting
    for it; the persisting agent asks for the changelog topic's partitions before its loop."""
    asked: list[str] = []
    tracked: set[str] = set()

    class Client:
        async def add_topic(self, topic: str) -> bool:
            tracked.add(topic)
            return True

    class AioProducer:
        client = Client()

        async def partitions_for(self, topic: str) -> set[int]:
            asked.append(topic)
            return {0, 1}

    app = SimpleNamespace(producer=SimpleNamespace(_ensure_producer=AioProducer))
    table = SimpleNamespace(
        changelog_topic=SimpleNamespace(get_topic_name=lambda: "group-job-progress-changelog")
    )
    await know_changelog_partitions(app, table)  # type: ignore[arg-type]
    assert asked == ["group-job-progress-changelog"]
    assert tracked == {"group-job-progress-changelog"}  # kept in every later metadata refresh

    class Broken:
        client = Client()

        async def partitions_for(self, topic: str) -> set[int]:
            raise TimeoutError("no metadata")

    app.producer._ensure_producer = Broken
    await know_changelog_partitions(app, table)  # type: ignore[arg-type]  # logged, not raised


class GatedRepository(MemoryRepository):
    """Stores results only once `release` is set, counting the writes that started."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.started = 0
        self.two_started = asyncio.Event()

    async def store_results(
        self, results: Sequence[OperationResult], progress: Sequence[Progress]
    ) -> SavedProgress:
        self.started += 1
        if self.started == 2:
            self.two_started.set()
        await self.release.wait()
        return await super().store_results(results, progress)


async def test_batches_of_both_lanes_never_interleave_on_one_job(
    table: dict, metrics: Metrics
) -> None:
    # Given one writer shared by both lanes' agents, and a database that takes its time
    repository = GatedRepository()
    writer = ResultWriter(repository, table, metrics)
    await repository.create_job(JOB, ["1", "2"])

    # When each lane brings one of the job's two results at the same moment
    await repository.create_job(OTHER, ["1"])
    first = asyncio.create_task(writer.apply([ok(JOB, 1, 2)]))
    second = asyncio.create_task(writer.apply([ok(JOB, 2, 2)]))
    other = asyncio.create_task(writer.apply([ok(OTHER, 1, 1)]))
    # (tasks start in order: once `other` writes, `second` has run up to where it waits)
    await asyncio.wait_for(repository.two_started.wait(), timeout=5)

    # Then the second batch waits for the first (a batch of another job does not)
    assert repository.started == 2
    repository.release.set()
    await asyncio.gather(first, second, other)

    # ... so it counts on top of the first one's progress, and the job completes
    job = await repository.get_job(JOB)
    assert (job.status, job.succeeded) == ("completed", 2)
    assert JOB.encode() not in table
