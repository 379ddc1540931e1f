"""The repository contract, run against both repositories: MongoRepository on the real FerretDB
(every query and write it makes is supported there) and its in-memory twin, which the agents' unit
tests rely on. Tests that look at MongoDB's documents themselves take the FerretDB one only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_asyncio
from pymongo.asynchronous.database import AsyncDatabase

from jobstream.errors import NotFound
from jobstream.memory import MemoryRepository
from jobstream.models import OperationResult
from jobstream.storage import MongoRepository, Progress, Repository, utcnow

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture(params=["ferretdb", "memory"])
def repository(request: pytest.FixtureRequest) -> Repository:
    """The repository under contract: MongoDB's on a fresh FerretDB database, or the twin."""
    name = "mongo_repository" if request.param == "ferretdb" else "memory_repository"
    repository: Repository = request.getfixturevalue(name)
    return repository


@pytest.fixture
def memory_repository() -> MemoryRepository:
    """A fresh in-memory repository."""
    return MemoryRepository()


@pytest_asyncio.fixture
async def mongo_repository(
    mongo_db: AsyncDatabase, mongo_url: str
) -> AsyncIterator[MongoRepository]:
    """The MongoDB repository only, for tests that read its documents."""
    repo = MongoRepository.connect(mongo_url, mongo_db.name)
    await repo.ensure_indexes()
    try:
        yield repo
    finally:
        await repo.close()


def result(job_id: str, index: int, value: str = "1", total: int = 3) -> OperationResult:
    return OperationResult(job_id, index, total, "succeeded", result=value)


async def test_created_job_reads_back_with_its_operations(repository: Repository) -> None:
    job = await repository.create_job("a" * 32, ["1 + 1", "2 * 3", "1 / 0"])
    assert (job.status, job.total, job.pending) == ("in_progress", 3, 3)
    assert await repository.get_job("a" * 32) == job
    total, operations = await repository.list_operations("a" * 32, page=1, size=2)
    assert total == 3
    assert [(op.index, op.expression, op.status) for op in operations] == [
        (1, "1 + 1", "pending"),
        (2, "2 * 3", "pending"),
    ]


async def test_creating_the_same_job_twice_is_harmless(repository: Repository) -> None:
    await repository.create_job("b" * 32, ["1", "2"])
    await repository.create_job("b" * 32, ["1", "2"])  # a retried request
    total, operations = await repository.list_operations("b" * 32, page=1, size=10)
    assert total == 2 and len(operations) == 2


async def test_first_result_wins_and_duplicates_are_not_stored(
    repository: Repository,
) -> None:
    job_id = "c" * 32
    await repository.create_job(job_id, ["1", "2", "3"])
    assert await repository.record_results([result(job_id, 1, "1"), result(job_id, 2, "2")]) == 2
    # a redelivered result, and a different one for an operation that already has one
    assert await repository.record_results([result(job_id, 2, "2"), result(job_id, 1, "9")]) == 0
    operation = await repository.get_operation(job_id, 1)
    assert (operation.status, operation.result) == ("succeeded", "1")
    pending = await repository.pending_operations(job_id)
    assert [op.index for op in pending] == [3]


async def test_progress_completes_a_job_once(repository: Repository) -> None:
    job_id = "d" * 32
    job = await repository.create_job(job_id, ["1"])
    saved = await repository.save_progress([Progress(job_id, 1, 0, complete=True)])
    assert (saved.stale, saved.completed) == (set(), {job_id: job.created_at})
    done = await repository.get_job(job_id)
    assert (done.status, done.succeeded, done.finished_at is not None) == ("completed", 1, True)
    # a late progress update never reopens or changes a completed job, and says so
    late = await repository.save_progress([Progress(job_id, 0, 1, complete=False)])
    assert (late.stale, late.completed) == ({job_id}, {})
    assert await repository.get_job(job_id) == done
    assert job.created_at == done.created_at


async def test_deleted_job_is_gone_and_its_late_results_can_be_dropped(
    repository: Repository,
) -> None:
    job_id = "e" * 32
    await repository.create_job(job_id, ["1", "2"])
    await repository.delete_job(job_id)
    with pytest.raises(NotFound):
        await repository.get_job(job_id)
    with pytest.raises(NotFound):
        await repository.delete_job(job_id)
    await repository.record_results([result(job_id, 1)])  # arrives after the delete
    assert (await repository.save_progress([Progress(job_id, 1, 0, True)])).stale == {job_id}
    assert await repository.existing_jobs([job_id]) == set()
    await repository.drop_results([result(job_id, 1)])
    assert await repository.pending_operations(job_id) == []


async def test_lookups_by_id_answer_for_many_jobs_at_once(repository: Repository) -> None:
    ids = [f"{n:032x}" for n in range(40, 65)]  # more than CONCURRENT_COMMANDS
    for job_id in ids:
        await repository.create_job(job_id, ["1", "2"])
    await repository.delete_job(ids[0])
    await repository.save_progress([Progress(ids[1], 2, 0, complete=True)])
    # Then each lookup answers for its own job: deleted, completed and in-progress ones
    assert await repository.existing_jobs([*ids, "f" * 32]) == set(ids[1:])
    progress = [Progress(job_id, 1, 0, complete=False) for job_id in ids]
    assert (await repository.save_progress(progress)).stale == {ids[0], ids[1]}
    assert {(await repository.get_job(job_id)).succeeded for job_id in ids[2:]} == {1}
    completing = [Progress(job_id, 2, 0, complete=True) for job_id in ids]
    saved = await repository.save_progress(completing)
    assert set(saved.completed) == set(ids[2:])
    assert saved.stale == {ids[0], ids[1]}


async def test_jobs_are_listed_newest_first(repository: Repository) -> None:
    for n in range(3):
        await repository.create_job(f"{n:032x}", ["1"])
    total, jobs = await repository.list_jobs(page=1, size=2)
    assert total == 3
    assert [job.id for job in jobs] == [f"{2:032x}", f"{1:032x}"]
    _, rest = await repository.list_jobs(page=2, size=2)
    assert [job.id for job in rest] == [f"{0:032x}"]


async def test_reconciliation_queries(repository: Repository) -> None:
    job_id = "f" * 32
    await repository.create_job(job_id, ["1", "2"])
    await repository.record_results([OperationResult(job_id, 1, 2, "failed", error="x")])
    # Given a job whose counters have not moved
    stalled = await repository.stalled_jobs(utcnow() + timedelta(seconds=1), limit=10)
    assert [job.id for job in stalled] == [job_id]
    # Then its outcomes come from the results, and each reconciliation is counted
    outcomes = await repository.count_outcomes(stalled[0])
    assert (outcomes.succeeded, outcomes.failed, outcomes.pending) == (0, 1, 1)
    assert await repository.note_reconciled(job_id) == 1
    assert await repository.note_reconciled(job_id) == 2
    assert await repository.stalled_jobs(utcnow() - timedelta(seconds=60), limit=10) == []
    assert await repository.count_jobs_by_status() == {"in_progress": 1, "completed": 0}


async def test_deletion_goes_in_bounded_chunks_and_leaves_nothing_behind(
    mongo_repository: MongoRepository, mongo_db: AsyncDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository = mongo_repository
    # Given a job of 7 operations, all with results, and deletes of at most 3 documents each
    monkeypatch.setattr("jobstream.storage.DELETE_CHUNK", 3)
    job_id = "9" * 32
    await repository.create_job(job_id, [str(n) for n in range(7)])
    await repository.record_results([result(job_id, i, total=7) for i in range(1, 8)])

    # When it is deleted
    await repository.delete_job(job_id)

    # Then no document of it is left in any collection
    for name in ("jobs", "operations", "results"):
        assert await mongo_db[name].count_documents({"job_id": job_id}) == 0, name
    assert await mongo_db["jobs"].count_documents({"_id": job_id}) == 0


async def test_a_deletion_stopped_half_way_is_invisible_and_a_retry_finishes_it(
    mongo_repository: MongoRepository, mongo_db: AsyncDatabase
) -> None:
    repository = mongo_repository
    # Given a job whose deletion began (marked) and stopped before its documents were removed
    job_id = "8" * 32
    await repository.create_job(job_id, ["1", "2"])
    await mongo_db["jobs"].update_one(
        {"_id": job_id},
        {"$set": {"status": "deleting", "updated_at": utcnow() - timedelta(hours=1)}},
    )

    # Then the API no longer sees it, progress updates refuse it, and the sweep finds it
    with pytest.raises(NotFound):
        await repository.get_job(job_id)
    assert job_id not in {job.id for job in (await repository.list_jobs(1, 100))[1]}
    assert (await repository.save_progress([Progress(job_id, 1, 0, False)])).stale == {job_id}
    assert await repository.existing_jobs([job_id]) == set()
    assert await repository.unfinished_deletions(utcnow(), 10) == [job_id]

    # When the deletion is retried, it finishes
    await repository.delete_job(job_id)
    assert await mongo_db["operations"].count_documents({"job_id": job_id}) == 0
    assert await repository.unfinished_deletions(utcnow(), 10) == []
    with pytest.raises(NotFound):
        await repository.delete_job(job_id)


async def test_operations_are_listed_by_status_in_submission_order(repository: Repository) -> None:
    # Given a job of six operations: two failed, one succeeded, three pending
    job_id = "7" * 32
    await repository.create_job(job_id, [str(n) for n in range(6)])
    await repository.record_results(
        [
            OperationResult(job_id, 5, 6, "failed", error="e5"),
            OperationResult(job_id, 2, 6, "failed", error="e2"),
            OperationResult(job_id, 3, 6, "succeeded", result="2"),
        ]
    )

    # Then each status lists its own operations, in order, paginated, with their own total
    total, failed = await repository.list_operations(job_id, 1, 1, status="failed")
    assert (total, [op.index for op in failed]) == (2, [2])
    _, failed = await repository.list_operations(job_id, 2, 1, status="failed")
    assert [(op.index, op.error) for op in failed] == [(5, "e5")]
    total, pending = await repository.list_operations(job_id, 1, 10, status="pending")
    assert (total, [op.index for op in pending]) == (3, [1, 4, 6])
    total, succeeded = await repository.list_operations(job_id, 1, 10, status="succeeded")
    assert (total, [(op.index, op.result) for op in succeeded]) == (1, [(3, "2")])
    total, everything = await repository.list_operations(job_id, 1, 10)
    assert (total, len(everything)) == (6, 6)
