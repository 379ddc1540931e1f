"""The reconciliation pass on the in-memory repository and in-process topics."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from fakes import FakeTopics
from faust.types import TP

from jobstream.agents.reconcile import SWEEP_JOBS, Reconciler, leads
from jobstream.errors import NotFound, StorageError
from jobstream.jobevents import JobChange
from jobstream.memory import MemoryRepository
from jobstream.models import Job, OperationResult, decode_requests, decode_results
from jobstream.settings import Settings
from jobstream.storage import Outcomes, Progress, utcnow
from jobstream.telemetry import Metrics

JOB = "c" * 32
SETTINGS = Settings(reconcile_after=120.0, max_attempts=3)
LONG_AGO = timedelta(seconds=600)


@pytest.fixture
def repository() -> MemoryRepository:
    return MemoryRepository()


@pytest.fixture
def topics() -> FakeTopics:
    return FakeTopics()


@pytest.fixture
def reconciler(repository: MemoryRepository, topics: FakeTopics) -> Reconciler:
    return Reconciler(repository, topics, SETTINGS, Metrics.create())  # type: ignore[arg-type]


def listened(
    repository: MemoryRepository,
    topics: FakeTopics,
    settings: Settings = SETTINGS,
    metrics: Metrics | None = None,
) -> tuple[Reconciler, list[JobChange]]:
    """A reconciler whose job changes are collected in the list beside it."""
    changes: list[JobChange] = []
    reconciler = Reconciler(
        repository,
        topics,  # type: ignore[arg-type]
        settings,
        metrics or Metrics.create(),
        on_changes=changes.extend,
    )
    return reconciler, changes


def republished(topics: FakeTopics) -> list[tuple[int, int]]:
    """(index, attempt) of every request published again."""
    return [(r.index, r.attempt) for _, v, _ in topics.requests.sent for r in decode_requests(v)]


async def test_a_recent_job_is_left_alone(
    repository: MemoryRepository, reconciler: Reconciler, topics: FakeTopics
) -> None:
    await repository.create_job(JOB, ["1", "2"])

    assert await reconciler.run_once() == 0
    assert topics.requests.sent == []


async def test_a_stalled_job_has_only_its_pending_operations_published_again(
    repository: MemoryRepository, reconciler: Reconciler, topics: FakeTopics
) -> None:
    # Given a job whose first operation has a result and whose counters stopped moving long ago
    await repository.create_job(JOB, ["1", "2", "3"])
    await repository.store_results([OperationResult(JOB, 1, 3, "succeeded", result="1")], [])
    repository.backdate(JOB, utcnow() - LONG_AGO)

    # When reconciliation runs
    count = await reconciler.run_once()

    # Then operations 2 and 3 are published again, as a second attempt, and the clock restarts
    assert count == 2
    assert republished(topics) == [(2, 2), (3, 2)]
    assert await reconciler.run_once() == 0


async def test_republishing_leaves_the_job_document_to_the_persisting_agent(
    repository: MemoryRepository, reconciler: Reconciler
) -> None:
    # Given a stalled job
    await repository.create_job(JOB, ["1", "2"])
    repository.backdate(JOB, utcnow() - LONG_AGO)
    before = await repository.get_job(JOB)

    # When reconciliation publishes its operations again
    assert await reconciler.run_once() == 2

    # Then the attempt is recorded apart: the job is as it was, yet not stalled for a while
    assert await repository.get_job(JOB) == before
    assert repository.reconciliation_records() == {JOB}
    assert await repository.stalled_jobs(utcnow() - timedelta(seconds=1), 10) == []


async def test_the_record_of_a_reconciled_job_is_forgotten_once_it_ended(
    repository: MemoryRepository, reconciler: Reconciler
) -> None:
    # Given two reconciled jobs, of which one then completes
    done, running = "d" * 32, "e" * 32
    for job_id in (done, running):
        await repository.create_job(job_id, ["1"])
        repository.backdate(job_id, utcnow() - LONG_AGO)
    assert await reconciler.run_once() == 2
    await repository.store_results(
        [OperationResult(done, 1, 1, "succeeded", result="1")], [Progress(done, 1, 0, True)]
    )

    # When a later pass runs, after `reconcile_after`
    repository.backdate(done, utcnow() - LONG_AGO)
    repository.backdate(running, utcnow() - LONG_AGO)
    await reconciler.run_once()

    # Then the completed job's record is gone; the running one's counts its second attempt
    assert repository.reconciliation_records() == {running}
    assert await repository.note_reconciled(running) == 3


async def test_after_the_maximum_attempts_pending_operations_fail_through_the_response_path(
    repository: MemoryRepository, reconciler: Reconciler, topics: FakeTopics
) -> None:
    await repository.create_job(JOB, ["1"])
    for _ in range(SETTINGS.max_attempts - 1):
        repository.backdate(JOB, utcnow() - LONG_AGO)
        await reconciler.run_once()
    assert republished(topics) == [(1, 2), (1, 3)]

    # When the job stalls once more
    repository.backdate(JOB, utcnow() - LONG_AGO)
    await reconciler.run_once()

    # Then its operation is failed with a "gave up" error, sent like any other result
    results = [r for _, v, _ in topics.responses.sent for r in decode_results(v)]
    assert [(r.index, r.status) for r in results] == [(1, "failed")]
    assert "no result after 3 delivery attempts" in (results[0].error or "")


async def results_all_stored_but_not_completed(repository: MemoryRepository) -> None:
    """A stalled job of two operations whose results are stored but whose completion was lost."""
    await repository.create_job(JOB, ["1", "1/0"])
    await repository.store_results(
        [
            OperationResult(JOB, 1, 2, "succeeded", result="1"),
            OperationResult(JOB, 2, 2, "failed", error="division by zero"),
        ],
        [],
    )
    repository.backdate(JOB, utcnow() - LONG_AGO)


async def test_a_job_whose_results_are_all_stored_is_completed_from_them(
    repository: MemoryRepository, reconciler: Reconciler, topics: FakeTopics
) -> None:
    # Given every result stored but the completing update lost (a crashed worker's table)
    await results_all_stored_but_not_completed(repository)

    await reconciler.run_once()

    job = await repository.get_job(JOB)
    assert (job.status, job.succeeded, job.failed) == ("completed", 1, 1)
    assert topics.requests.sent == []


async def test_a_job_completed_from_its_results_is_published_as_completed(
    repository: MemoryRepository, topics: FakeTopics
) -> None:
    # Given a listener of job changes, and a job whose completion was lost
    reconciler, changes = listened(repository, topics)
    await results_all_stored_but_not_completed(repository)

    # When reconciliation completes it
    await reconciler.run_once()

    # Then its watchers are told, with the counters and times the database stored
    job = await repository.get_job(JOB)
    assert changes == [
        JobChange(
            JOB,
            2,
            1,
            1,
            "completed",
            job.finished_at,  # type: ignore[arg-type]
            created_at=job.created_at,
            finished_at=job.finished_at,
        )
    ]
    # ... once: the next pass finds nothing stalled
    await reconciler.run_once()
    assert len(changes) == 1


class CompletedMeanwhile(MemoryRepository):
    """A repository where a persisting worker completes the job while reconciliation counts."""

    async def count_outcomes(self, job: Job) -> Outcomes:
        outcomes = await super().count_outcomes(job)
        await self.store_results([], [Progress(job.id, outcomes.succeeded, outcomes.failed, True)])
        return outcomes


async def test_a_job_completed_meanwhile_by_persisting_is_not_published_again(
    topics: FakeTopics,
) -> None:
    repository = CompletedMeanwhile()
    reconciler, changes = listened(repository, topics)
    await results_all_stored_but_not_completed(repository)

    await reconciler.run_once()

    # persisting told of that completion itself; reconciliation completed nothing
    assert (await repository.get_job(JOB)).status == "completed"
    assert changes == []


async def test_republishing_pending_operations_publishes_no_change(
    repository: MemoryRepository, topics: FakeTopics
) -> None:
    changes: list[Any] = []
    reconciler = Reconciler(
        repository,
        topics,  # type: ignore[arg-type]
        SETTINGS,
        Metrics.create(),
        on_changes=changes.extend,
    )
    await repository.create_job(JOB, ["1", "2"])
    repository.backdate(JOB, utcnow() - LONG_AGO)

    assert await reconciler.run_once() == 2
    assert changes == []


async def test_a_deletion_that_stopped_half_way_is_finished(
    repository: MemoryRepository, reconciler: Reconciler
) -> None:
    # Given a deletion that failed after the job was marked
    await repository.create_job(JOB, ["1"])
    repository.fail("delete_job:purge", StorageError("connection reset"))
    with pytest.raises(StorageError):
        await repository.delete_job(JOB)
    with pytest.raises(NotFound):
        await repository.get_job(JOB)  # already invisible
    repository.backdate(JOB, utcnow() - LONG_AGO)

    # When reconciliation runs
    await reconciler.run_once()

    # Then nothing of the job is left
    assert await repository.pending_operations(JOB) == []
    assert await repository.unfinished_deletions(utcnow(), 10) == []
    with pytest.raises(NotFound):
        await repository.delete_job(JOB)


async def test_a_retried_delete_finishes_what_a_failed_one_started(
    repository: MemoryRepository,
) -> None:
    await repository.create_job(JOB, ["1"])
    repository.fail("delete_job:purge", StorageError("connection reset"))
    with pytest.raises(StorageError):
        await repository.delete_job(JOB)

    await repository.delete_job(JOB)

    assert await repository.unfinished_deletions(utcnow() + LONG_AGO, 10) == []


async def test_completed_jobs_past_the_retention_period_are_deleted_and_counted(
    repository: MemoryRepository, topics: FakeTopics
) -> None:
    # Given a retention of one hour, a job completed two hours ago, one just now, one running
    metrics = Metrics.create()
    reconciler, changes = listened(repository, topics, Settings(retention=3600), metrics)
    old, recent, running = "1" * 32, "2" * 32, "3" * 32
    for job_id in (old, recent, running):
        await repository.create_job(job_id, ["1"])
    for job_id in (old, recent):
        await repository.store_results(
            [OperationResult(job_id, 1, 1, "succeeded", result="1")],
            [Progress(job_id, 1, 0, complete=True)],
        )
    repository.backdate(old, utcnow() - timedelta(hours=2))
    repository.backdate(running, utcnow() - timedelta(hours=2))

    # When the sweep runs
    assert await reconciler.sweep_expired() == 1

    # Then only the old completed job is gone, watchers are told, and the metric says so
    assert [(c.job_id, c.status) for c in changes] == [(old, "deleted")]
    with pytest.raises(NotFound):
        await repository.get_job(old)
    assert (await repository.get_job(recent)).status == "completed"
    assert (await repository.get_job(running)).status == "in_progress"
    assert metrics.registry.get_sample_value("jobs_expired_total") == 1


async def test_a_backlog_of_expired_jobs_is_swept_in_one_tick(
    repository: MemoryRepository, topics: FakeTopics
) -> None:
    # Given more expired jobs than the sweep deletes at a time (a retention first switched on,
    # or a load above what 50 deletions a tick kept up with)
    metrics = Metrics.create()
    reconciler, changes = listened(repository, topics, Settings(retention=3600), metrics)
    backlog = [f"{n:032x}" for n in range(2 * SWEEP_JOBS + 7)]
    for job_id in backlog:
        await repository.create_job(job_id, ["1"])
        await repository.store_results(
            [OperationResult(job_id, 1, 1, "succeeded", result="1")],
            [Progress(job_id, 1, 0, complete=True)],
        )
        repository.backdate(job_id, utcnow() - timedelta(hours=2))

    # When one tick sweeps
    assert await reconciler.sweep_expired() == len(backlog)

    # Then every one is gone, in rounds of SWEEP_JOBS, and watchers heard of each
    assert repository.calls["delete_expired"] == 3
    assert sorted(c.job_id for c in changes) == backlog
    assert metrics.registry.get_sample_value("jobs_expired_total") == len(backlog)
    assert await repository.expired_jobs(utcnow(), 10) == []


async def test_the_sweep_stops_when_a_round_deletes_nothing(
    repository: MemoryRepository, topics: FakeTopics
) -> None:
    # Given a full round of expired jobs that the database does not delete (as if a DELETE
    # had each of them meanwhile)
    reconciler = Reconciler(repository, topics, Settings(retention=3600), Metrics.create())  # type: ignore[arg-type]
    for n in range(SWEEP_JOBS):
        job_id = f"{n:032x}"
        await repository.create_job(job_id, ["1"])
        await repository.store_results(
            [OperationResult(job_id, 1, 1, "succeeded", result="1")],
            [Progress(job_id, 1, 0, complete=True)],
        )
        repository.backdate(job_id, utcnow() - timedelta(hours=2))

    async def delete_none(job_ids: Any) -> list[str]:
        return []

    repository.delete_expired = delete_none  # type: ignore[method-assign]

    # Then one round is all the tick does (no loop until the time budget)
    assert await reconciler.sweep_expired() == 0
    assert repository.calls["expired_jobs"] == 1


async def test_a_retention_of_zero_keeps_every_job(
    repository: MemoryRepository, topics: FakeTopics
) -> None:
    reconciler = Reconciler(repository, topics, Settings(retention=0), Metrics.create())  # type: ignore[arg-type]
    await repository.create_job(JOB, ["1"])
    await repository.store_results(
        [OperationResult(JOB, 1, 1, "succeeded", result="1")], [Progress(JOB, 1, 0, True)]
    )
    repository.backdate(JOB, utcnow() - timedelta(days=3650))

    await reconciler.run_once()

    assert repository.calls["expired_jobs"] == 0
    assert (await repository.get_job(JOB)).status == "completed"


async def test_a_bulk_job_is_published_again_and_given_up_in_the_bulk_lane(
    repository: MemoryRepository,
) -> None:
    # Given topics whose bulk lane takes jobs of more than 2 operations, and a stalled job of 3
    topics = FakeTopics(bulk_operations=2)
    reconciler = Reconciler(repository, topics, SETTINGS, Metrics.create())  # type: ignore[arg-type]
    await repository.create_job(JOB, ["1", "2", "3"])

    # When it is published again until reconciliation gives up on it
    for _ in range(SETTINGS.max_attempts):
        repository.backdate(JOB, utcnow() - LONG_AGO)
        await reconciler.run_once()

    # Then its requests went to the bulk request topic, and its failures to the bulk responses
    assert topics.requests.sent == [] and topics.responses.sent == []
    again = [
        (r.index, r.attempt) for _, v, _ in topics.bulk_requests.sent for r in decode_requests(v)
    ]
    assert again == [(i, a) for a in (2, 3) for i in (1, 2, 3)]
    failed = [r for _, v, _ in topics.bulk_responses.sent for r in decode_results(v)]
    assert [(r.index, r.status) for r in failed] == [(1, "failed"), (2, "failed"), (3, "failed")]


def test_the_worker_holding_partition_0_of_the_response_topic_leads() -> None:
    # Faust's leader partition is left out of the assignment at times (see `leads`): it is not
    # what decides; partition 0 of the response topic is, whatever else a worker holds
    def worker(*tps: TP) -> Any:
        return SimpleNamespace(consumer=SimpleNamespace(assignment=lambda: set(tps)))

    topic = SETTINGS.response_topic
    faust_leader = TP("operation-response-group-__assignor-__leader", 0)
    assert leads(worker(TP(topic, 0), TP(topic, 7)), topic)
    assert not leads(worker(TP(topic, 1), faust_leader), topic)
    assert not leads(worker(TP(SETTINGS.bulk_response_topic, 0)), topic)
