"""The repository contract, run against three repositories: MongoRepository on the real FerretDB in
both command forms (the MongoDB form: `$in`, `bulk_write`; and FerretDB's: single-document
commands), and its in-memory twin, which the agents' unit tests rely on. Tests that look at the
documents themselves take the FerretDB ones only."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from pymongo.asynchronous.database import AsyncDatabase

from jobstream.errors import NotFound
from jobstream.memory import MemoryRepository
from jobstream.models import OperationResult, job_created_at, new_job_id
from jobstream.storage import BUCKET, MongoRepository, Progress, Repository, utcnow

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

REPOSITORIES = ["mongodb-form", "ferretdb-form", "memory"]


@pytest.fixture(params=REPOSITORIES)
def repository(request: pytest.FixtureRequest) -> Repository:
    """The repository under contract: MongoDB's on a fresh FerretDB database (in one of the two
    command forms), or the twin."""
    if request.param == "memory":
        return MemoryRepository()
    repository: Repository = request.getfixturevalue(f"mongo_{request.param[:-5]}")
    return repository


@pytest.fixture(params=["mongodb", "ferretdb"])
def mongo_repository(request: pytest.FixtureRequest) -> MongoRepository:
    """The MongoDB repository only (both forms), for tests that read its documents."""
    repository: MongoRepository = request.getfixturevalue(f"mongo_{request.param}")
    return repository


@contextlib.asynccontextmanager
async def _connected(url: str, name: str, dialect: str) -> AsyncIterator[MongoRepository]:
    repo = MongoRepository.connect(url, name, dialect=dialect)  # type: ignore[arg-type]
    await repo.ensure_indexes()
    try:
        yield repo
    finally:
        await repo.close()


@pytest_asyncio.fixture
async def mongo_mongodb(mongo_db: AsyncDatabase, mongo_url: str) -> AsyncIterator[MongoRepository]:
    async with _connected(mongo_url, mongo_db.name, "mongodb") as repo:
        yield repo


@pytest_asyncio.fixture
async def mongo_ferretdb(mongo_db: AsyncDatabase, mongo_url: str) -> AsyncIterator[MongoRepository]:
    async with _connected(mongo_url, mongo_db.name, "ferretdb") as repo:
        yield repo


def ok(job_id: str, index: int, value: str = "1", total: int = 3) -> OperationResult:
    return OperationResult(job_id, index, total, "succeeded", result=value)


def bad(job_id: str, index: int, total: int, error: str = "e") -> OperationResult:
    return OperationResult(job_id, index, total, "failed", error=error)


def job_ids(n: int) -> list[str]:
    """n job ids, oldest first, a millisecond apart."""
    start = datetime.now(UTC) - timedelta(seconds=10)
    return [new_job_id(start + timedelta(milliseconds=i)) for i in range(n)]


async def test_created_job_reads_back_with_its_operations(repository: Repository) -> None:
    job_id = new_job_id()
    job = await repository.create_job(job_id, ["1 + 1", "2 * 3", "1 / 0"])
    assert (job.status, job.total, job.pending) == ("in_progress", 3, 3)
    assert job.created_at == job_created_at(job_id)
    assert await repository.get_job(job_id) == job
    total, operations = await repository.list_operations(job_id, page=1, size=2)
    assert total == 3
    assert [(op.index, op.expression, op.status) for op in operations] == [
        (1, "1 + 1", "pending"),
        (2, "2 * 3", "pending"),
    ]


async def test_creating_the_same_job_twice_is_harmless(repository: Repository) -> None:
    job_id = new_job_id()
    texts = [str(n) for n in range(2 * BUCKET + 5)]
    await repository.create_job(job_id, texts)
    await repository.create_job(job_id, texts)  # a retried request
    total, operations = await repository.list_operations(job_id, page=3, size=BUCKET)
    assert total == len(texts)
    assert [op.expression for op in operations] == texts[2 * BUCKET :]


async def test_first_result_wins_and_duplicates_are_not_stored(
    repository: Repository,
) -> None:
    job_id = new_job_id()
    total = BUCKET + 3  # results in the job document and in a chunk document
    await repository.create_job(job_id, [str(n) for n in range(total)])
    first = [ok(job_id, 1, "1", total), ok(job_id, BUCKET + 2, "2", total)]
    saved = await repository.store_results(first, [Progress(job_id, 2, 0, False)])
    assert (saved.stored, saved.stale) == (2, set())
    # a redelivered result, and a different one for an operation that already has one
    again = [ok(job_id, BUCKET + 2, "2", total), bad(job_id, 1, total)]
    saved = await repository.store_results(again, [Progress(job_id, 2, 0, False)])
    assert (saved.stored, saved.stale) == (0, set())
    operation = await repository.get_operation(job_id, 1)
    assert (operation.status, operation.result) == ("succeeded", "1")
    operation = await repository.get_operation(job_id, BUCKET + 2)
    assert (operation.status, operation.result) == ("succeeded", "2")
    pending = await repository.pending_operations(job_id)
    assert [op.index for op in pending] == [
        i for i in range(1, total + 1) if i not in (1, BUCKET + 2)
    ]
    outcomes = await repository.count_outcomes(await repository.get_job(job_id))
    assert (outcomes.succeeded, outcomes.failed) == (2, 0)


async def test_a_batch_with_some_results_already_stored_stores_the_others(
    repository: Repository,
) -> None:
    job_id = new_job_id()
    await repository.create_job(job_id, ["1", "2", "3"])
    await repository.store_results([ok(job_id, 2, "2")], [Progress(job_id, 1, 0, False)])
    # the progress table lost its state: the redelivered batch has 2 again beside 1 and 3
    batch = [ok(job_id, 1, "1"), bad(job_id, 2, 3), ok(job_id, 3, "3")]
    saved = await repository.store_results(batch, [Progress(job_id, 3, 0, True)])
    assert (saved.stored, saved.stale, set(saved.completed)) == (2, set(), {job_id})
    _, operations = await repository.list_operations(job_id, 1, 10)
    assert [(op.status, op.result) for op in operations] == [
        ("succeeded", "1"),
        ("succeeded", "2"),
        ("succeeded", "3"),
    ]


async def test_progress_completes_a_job_once(repository: Repository) -> None:
    job_id = new_job_id()
    job = await repository.create_job(job_id, ["1"])
    saved = await repository.store_results([ok(job_id, 1)], [Progress(job_id, 1, 0, True)])
    assert (saved.stale, saved.completed) == (set(), {job_id: job.created_at})
    done = await repository.get_job(job_id)
    assert (done.status, done.succeeded, done.finished_at) == ("completed", 1, saved.at)
    # a late progress update never reopens or changes a completed job, and says so
    late = await repository.store_results([bad(job_id, 1, 1)], [Progress(job_id, 0, 1, False)])
    assert (late.stale, late.gone, late.completed, late.stored) == ({job_id}, set(), {}, 0)
    assert await repository.get_job(job_id) == done
    assert (await repository.get_operation(job_id, 1)).status == "succeeded"


async def test_late_results_of_a_deleted_job_store_nothing(repository: Repository) -> None:
    job_id = new_job_id()
    total = BUCKET + 1
    await repository.create_job(job_id, [str(n) for n in range(total)])
    await repository.delete_job(job_id)
    with pytest.raises(NotFound):
        await repository.get_job(job_id)
    with pytest.raises(NotFound):
        await repository.delete_job(job_id)
    late = [ok(job_id, 1, total=total), ok(job_id, total, total=total)]
    saved = await repository.store_results(late, [Progress(job_id, 2, 0, False)])
    assert (saved.stale, saved.gone, saved.stored) == ({job_id}, {job_id}, 0)
    assert await repository.pending_operations(job_id) == []
    with pytest.raises(NotFound):
        await repository.get_operation(job_id, total)


async def test_a_batch_of_many_jobs_answers_for_each(repository: Repository) -> None:
    ids = job_ids(25)  # more than CONCURRENT_COMMANDS
    for job_id in ids:
        await repository.create_job(job_id, ["1", "2"])
    await repository.delete_job(ids[0])
    await repository.store_results(
        [ok(ids[1], 1, total=2), ok(ids[1], 2, total=2)], [Progress(ids[1], 2, 0, True)]
    )
    # Then each job's write answers for itself: deleted, completed and in-progress ones
    saved = await repository.store_results(
        [ok(job_id, 1, total=2) for job_id in ids], [Progress(j, 1, 0, False) for j in ids]
    )
    assert (saved.stale, saved.gone, saved.stored) == ({ids[0], ids[1]}, {ids[0]}, 23)
    assert {(await repository.get_job(job_id)).succeeded for job_id in ids[2:]} == {1}
    saved = await repository.store_results(
        [ok(job_id, 2, total=2) for job_id in ids], [Progress(j, 2, 0, True) for j in ids]
    )
    assert set(saved.completed) == set(ids[2:])
    assert saved.stale == {ids[0], ids[1]}


async def test_jobs_are_listed_newest_first_by_cursor_or_page(repository: Repository) -> None:
    ids = job_ids(5)
    for job_id in ids:
        await repository.create_job(job_id, ["1"])
    await repository.delete_job(ids[3])
    newest = [ids[4], ids[2], ids[1], ids[0]]

    first = await repository.list_jobs(2)
    assert [job.id for job in first.jobs] == newest[:2]
    assert first.next == newest[1]
    # approximate (from the database's statistics, which may lag or count a job being deleted),
    # but never less than the pages up to this one show
    assert first.total >= 3
    second = await repository.list_jobs(2, after=first.next)
    assert [job.id for job in second.jobs] == newest[2:]
    last = await repository.list_jobs(2, after=second.next)
    assert (last.jobs, last.next) == ([], None)
    by_page = await repository.list_jobs(3, page=2)
    assert ([job.id for job in by_page.jobs], by_page.next) == (newest[3:], None)


async def _is_ferretdb_form(repository: Repository) -> bool:
    return isinstance(repository, MongoRepository) and (
        (await repository.forms()).dialect == "ferretdb"
    )


async def test_jobs_are_listed_by_status_newest_first_with_their_totals(
    repository: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("jobstream.storage.TOTAL_EVERY", 0.0)  # totals counted on every call
    # Given seven jobs: four completed, two in progress, and one in progress then deleted
    ids = job_ids(7)
    for job_id in ids:
        await repository.create_job(job_id, ["1"])
    completed = [ids[5], ids[4], ids[2], ids[0]]  # newest first
    for job_id in completed:
        await repository.store_results([ok(job_id, 1, total=1)], [Progress(job_id, 1, 0, True)])
    await repository.delete_job(ids[6])
    running = [ids[3], ids[1]]

    # When the completed jobs are paged by cursor, three at a time
    first = await repository.list_jobs(3, status="completed")
    second = await repository.list_jobs(3, after=first.next, status="completed")
    # Then they come newest first, none in progress or deleted, and the pages do not overlap
    assert ([job.id for job in first.jobs], first.next) == (completed[:3], completed[2])
    assert ([job.id for job in second.jobs], second.next) == (completed[3:], None)
    assert {job.status for job in first.jobs + second.jobs} == {"completed"}
    # and by page number too
    by_page = await repository.list_jobs(2, page=2, status="completed")
    assert ([job.id for job in by_page.jobs], by_page.next) == (completed[2:], completed[3])
    # and the total counts the completed ones (estimated on FerretDB, never below what pages show)
    if await _is_ferretdb_form(repository):
        assert first.total >= 4
    else:
        assert first.total == 4

    # When the jobs in progress are paged one at a time
    pages = [await repository.list_jobs(1, status="in_progress")]
    while pages[-1].next is not None:
        pages.append(await repository.list_jobs(1, after=pages[-1].next, status="in_progress"))
    # Then both come newest first, the deleted one never, and their total is exact
    assert [[job.id for job in p.jobs] for p in pages] == [[running[0]], [running[1]], []]
    assert {job.status for p in pages for job in p.jobs} == {"in_progress"}
    assert pages[0].total == 2

    # When one of them completes, Then it moves from one listing to the other
    await repository.store_results([ok(ids[3], 1, total=1)], [Progress(ids[3], 1, 0, True)])
    in_progress = await repository.list_jobs(10, status="in_progress")
    assert ([job.id for job in in_progress.jobs], in_progress.total) == ([ids[1]], 1)
    # (a count is not inflated by a full page: this is what the dashboard's totals ask)
    assert (await repository.list_jobs(1, status="in_progress")).total == 1
    done = await repository.list_jobs(10, status="completed")
    assert [job.id for job in done.jobs] == [ids[5], ids[4], ids[3], ids[2], ids[0]]
    # and unfiltered, every visible job is listed once
    every = await repository.list_jobs(10)
    assert [job.id for job in every.jobs] == ids[5::-1]


async def test_sparse_jobs_are_listed_in_order_across_pages(repository: Repository) -> None:
    # Given 40 jobs 300 ms apart (one listing slot each on FerretDB), half completed
    start = utcnow() - timedelta(seconds=60)
    ids = [new_job_id(start + timedelta(milliseconds=300 * i)) for i in range(40)]
    for job_id in ids:
        await repository.create_job(job_id, ["1"])
    done = ids[::2]
    for job_id in done:
        await repository.store_results([ok(job_id, 1, total=1)], [Progress(job_id, 1, 0, True)])

    # When they are paged newest first, twelve at a time, then only the completed ones
    pages = [await repository.list_jobs(12)]
    while pages[-1].next is not None:
        pages.append(await repository.list_jobs(12, after=pages[-1].next))
    completed = await repository.list_jobs(15, status="completed")

    # Then every job comes once, newest first, and the completed ones likewise
    assert [job.id for page in pages for job in page.jobs] == ids[::-1]
    assert [job.id for job in completed.jobs] == done[::-1][:15]


async def test_in_progress_listing_on_ferretdb_reads_a_bounded_number_and_says_so(
    mongo_ferretdb: MongoRepository,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    repository = mongo_ferretdb
    # Given more jobs in progress than the FerretDB form reads for their listing
    monkeypatch.setattr("jobstream.storage.IN_PROGRESS_READ", 3)
    for job_id in job_ids(5):
        await repository.create_job(job_id, ["1"])
    # When they are listed
    with caplog.at_level("WARNING", logger="jobstream.storage"):
        listed = await repository.list_jobs(10, status="in_progress")
    # Then it lists no more than it read, and says the listing is partial
    assert len(listed.jobs) == 3
    assert "more than 3 jobs in progress" in caplog.text
    # while the total, an equality count, still counts them all
    assert listed.total == 5


async def test_operations_of_a_big_job_page_across_documents(repository: Repository) -> None:
    # Given a job of 2.5 buckets with a failure in each bucket and every fourth one succeeded
    job_id = new_job_id()
    total = 2 * BUCKET + BUCKET // 2
    await repository.create_job(job_id, [f"{n} + 0" for n in range(1, total + 1)])
    failed = [7, BUCKET + 7, 2 * BUCKET + 7]
    results = [bad(job_id, i, total, f"e{i}") for i in failed]
    results += [ok(job_id, i, str(i), total) for i in range(4, total + 1, 4) if i not in failed]
    await repository.store_results(results, [Progress(job_id, len(results) - 3, 3, False)])

    # Then a page that straddles two documents comes back in order
    number = BUCKET // 30 + 1
    first = (number - 1) * 30 + 1
    count, page = await repository.list_operations(job_id, page=number, size=30)
    assert (count, [op.index for op in page]) == (total, list(range(first, first + 30)))
    last_of_first_document = page[BUCKET - first]
    assert last_of_first_document.expression == f"{BUCKET} + 0"
    assert last_of_first_document.status == "succeeded"
    # and each status lists its own, across documents, with its own total
    count, page = await repository.list_operations(job_id, page=2, size=2, status="failed")
    assert (count, [(op.index, op.error) for op in page]) == (3, [(failed[2], f"e{failed[2]}")])
    count, page = await repository.list_operations(job_id, page=3, size=20, status="succeeded")
    succeeded = [i for i in range(4, total + 1, 4) if i not in failed]
    assert (count, [op.index for op in page]) == (len(succeeded), succeeded[40:60])
    count, page = await repository.list_operations(job_id, page=1, size=100, status="pending")
    assert count == total - len(results)
    assert [op.index for op in page][:5] == [1, 2, 3, 5, 6]
    assert (await repository.get_operation(job_id, total)).expression == f"{total} + 0"
    with pytest.raises(NotFound):
        await repository.get_operation(job_id, total + 1)
    outcomes = await repository.count_outcomes(await repository.get_job(job_id))
    assert (outcomes.succeeded, outcomes.failed) == (len(succeeded), 3)


async def test_reconciliation_queries(repository: Repository) -> None:
    job_id = new_job_id()
    await repository.create_job(job_id, ["1", "2"])
    await repository.store_results([bad(job_id, 1, 2, "x")], [])
    # Given a job whose counters have not moved
    stalled = await repository.stalled_jobs(utcnow() + timedelta(seconds=1), limit=10)
    assert [job.id for job in stalled] == [job_id]
    # Then its outcomes come from the results, and each reconciliation is counted
    outcomes = await repository.count_outcomes(stalled[0])
    assert (outcomes.succeeded, outcomes.failed, outcomes.pending) == (0, 1, 1)
    assert await repository.note_reconciled(job_id) == 1
    assert await repository.note_reconciled(job_id) == 2
    # ... and a job just reconciled is not stalled until its clock runs out again
    assert await repository.stalled_jobs(utcnow() - timedelta(milliseconds=500), limit=10) == []
    assert await repository.stalled_jobs(utcnow() + timedelta(seconds=1), limit=10) != []
    assert (await repository.count_jobs_by_status())["in_progress"] == 1


async def test_reconciliation_records_outlive_only_the_jobs_in_progress(
    repository: Repository,
) -> None:
    # Given three reconciled jobs, of which one completes and one is deleted
    running, done, deleted = job_ids(3)
    for job_id in (running, done, deleted):
        await repository.create_job(job_id, ["1"])
        assert await repository.note_reconciled(job_id) == 1
    await repository.store_results([ok(done, 1, total=1)], [Progress(done, 1, 0, True)])
    await repository.delete_job(deleted)
    assert await repository.note_reconciled(done) == 0  # no longer in progress

    # When the records older than now are forgotten
    assert await repository.forget_reconciliations(utcnow() + timedelta(seconds=1), 10) == 2

    # Then only the running job's record is left, with its count
    assert await repository.forget_reconciliations(utcnow() + timedelta(seconds=1), 10) == 0
    assert await repository.note_reconciled(running) == 2


async def test_reconciling_leaves_the_job_document_alone(
    mongo_repository: MongoRepository, mongo_db: AsyncDatabase
) -> None:
    job_id = new_job_id()
    await mongo_repository.create_job(job_id, ["1", "2"])
    before = await mongo_db["jobs"].find_one({"_id": job_id})

    assert await mongo_repository.note_reconciled(job_id) == 1

    assert await mongo_db["jobs"].find_one({"_id": job_id}) == before


async def test_a_reconciliation_racing_a_results_write_loses_no_result(
    mongo_repository: MongoRepository, mongo_db: AsyncDatabase
) -> None:
    """FerretDB writes a whole document back for every update: a reconciliation mark on the job
    document once overwrote the results stored a moment before (found by the fault suite)."""
    for _ in range(40):
        # Given a job the reconciler finds stalled just as its results arrive
        job_id = new_job_id()
        await mongo_repository.create_job(job_id, [str(i) for i in range(1, 101)])
        results = [ok(job_id, i, str(i), total=100) for i in range(1, 101)]

        # When both write at once
        await asyncio.gather(
            mongo_repository.store_results(results, [Progress(job_id, 100, 0, True)]),
            mongo_repository.note_reconciled(job_id),
        )

        # Then every result the counters count is stored
        doc = await mongo_db["jobs"].find_one({"_id": job_id})
        assert doc is not None
        stored = sum(1 for r in doc["res"] if r is not None)
        assert (stored, doc["succeeded"], doc["status"]) == (100, 100, "completed")


async def test_completed_jobs_expire_after_the_retention_period(repository: Repository) -> None:
    done, running = job_ids(2)
    await repository.create_job(done, ["1"])
    await repository.create_job(running, ["1", "2"])
    await repository.store_results([ok(done, 1, total=1)], [Progress(done, 1, 0, True)])
    await repository.store_results([ok(running, 1, total=2)], [Progress(running, 1, 0, False)])
    assert await repository.expired_jobs(utcnow() - timedelta(seconds=60), 10) == []
    assert await repository.expired_jobs(utcnow() + timedelta(seconds=1), 10) == [done]


async def test_expired_jobs_are_deleted_with_their_operations(repository: Repository) -> None:
    # Given a completed job of one document, a completed job with chunk documents, one running
    small, big, running = job_ids(3)
    size = 2 * BUCKET + 50
    await repository.create_job(small, ["1"])
    await repository.create_job(big, ["1"] * size)
    await repository.create_job(running, ["1", "2"])
    await repository.store_results([ok(small, 1, total=1)], [Progress(small, 1, 0, True)])
    await repository.store_results(
        [ok(big, n, total=size) for n in range(1, size + 1)], [Progress(big, size, 0, True)]
    )

    # When the sweep's step deletes them (an id twice, an unknown one, the running one)
    deleted = await repository.delete_expired([small, big, running, small, new_job_id()])

    # Then the completed ones are gone with every operation, and the running one stays
    assert sorted(deleted) == sorted([small, big])
    for job_id, last in ((small, 1), (big, size)):
        with pytest.raises(NotFound):
            await repository.get_job(job_id)
        with pytest.raises(NotFound):
            await repository.get_operation(job_id, last)
    assert (await repository.get_job(running)).status == "in_progress"
    assert await repository.delete_expired([]) == []


async def test_expired_big_jobs_leave_no_chunk_document(
    mongo_repository: MongoRepository, mongo_db: AsyncDatabase
) -> None:
    big = new_job_id()
    size = 3 * BUCKET
    await mongo_repository.create_job(big, ["1"] * size)
    await mongo_repository.store_results(
        [ok(big, n, total=size) for n in range(1, size + 1)], [Progress(big, size, 0, True)]
    )
    chunks = mongo_db["chunks"]
    assert await chunks.count_documents({"job_id": big}) > 0

    assert await mongo_repository.delete_expired([big]) == [big]

    assert await chunks.count_documents({"job_id": big}) == 0


async def test_a_few_jobs_are_counted_exactly_though_the_database_has_no_statistics_yet(
    mongo_repository: MongoRepository,
) -> None:
    # Given five jobs in a new collection (PostgreSQL has not analyzed it: FerretDB's estimate
    # from its statistics is 0)
    for job_id in job_ids(5):
        await mongo_repository.create_job(job_id, ["1"])
    # Then the listing's total counts them all, even on a page of one
    assert (await mongo_repository.list_jobs(1)).total == 5


async def test_a_small_job_is_one_document_and_a_big_one_a_document_per_hundred(
    mongo_repository: MongoRepository, mongo_db: AsyncDatabase
) -> None:
    small, big = new_job_id(), new_job_id()
    await mongo_repository.create_job(small, ["1"] * 10)
    await mongo_repository.create_job(big, ["1"] * (10 * BUCKET + 1))
    assert await mongo_db["chunks"].count_documents({"job_id": small}) == 0
    assert await mongo_db["chunks"].count_documents({"job_id": big}) == 10
    assert await mongo_db["jobs"].count_documents({"_id": {"$in": [small, big]}}) == 2


async def test_deletion_goes_in_bounded_steps_and_leaves_nothing_behind(
    mongo_repository: MongoRepository, mongo_db: AsyncDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository = mongo_repository
    # Given a job of 7 documents, with results, and deletes of at most 3 documents each
    monkeypatch.setattr("jobstream.storage.DELETE_CHUNKS", 3)
    job_id = new_job_id()
    total = 6 * BUCKET + 1
    await repository.create_job(job_id, [str(n) for n in range(total)])
    await repository.store_results(
        [ok(job_id, i, total=total) for i in range(1, total + 1, 50)], []
    )

    # When it is deleted
    await repository.delete_job(job_id)

    # Then no document of it is left in any collection
    assert await mongo_db["chunks"].count_documents({"job_id": job_id}) == 0
    assert await mongo_db["jobs"].count_documents({"_id": job_id}) == 0


async def test_a_deletion_stopped_half_way_is_invisible_and_a_retry_finishes_it(
    mongo_repository: MongoRepository, mongo_db: AsyncDatabase
) -> None:
    repository = mongo_repository
    # Given a job whose deletion began (marked) and stopped before its documents were removed
    job_id = new_job_id()
    await repository.create_job(job_id, ["1"] * (BUCKET + 2))
    await mongo_db["jobs"].update_one(
        {"_id": job_id},
        {"$set": {"status": "deleting", "updated_at": utcnow() - timedelta(hours=1)}},
    )

    # Then the API no longer sees it, progress updates refuse it, and the sweep finds it
    with pytest.raises(NotFound):
        await repository.get_job(job_id)
    for status in (None, "in_progress", "completed"):
        listed = await repository.list_jobs(100, status=status)  # type: ignore[arg-type]
        assert job_id not in {job.id for job in listed.jobs}
    saved = await repository.store_results(
        [ok(job_id, 1, total=BUCKET + 2)], [Progress(job_id, 1, 0, False)]
    )
    assert (saved.stale, saved.gone, saved.stored) == ({job_id}, {job_id}, 0)
    assert await repository.unfinished_deletions(utcnow(), 10) == [job_id]

    # When the deletion is retried, it finishes
    await repository.delete_job(job_id)
    assert await mongo_db["chunks"].count_documents({"job_id": job_id}) == 0
    assert await repository.unfinished_deletions(utcnow(), 10) == []
    with pytest.raises(NotFound):
        await repository.delete_job(job_id)


async def test_the_dialect_is_detected_from_the_server(
    mongo_db: AsyncDatabase, mongo_url: str
) -> None:
    repository = MongoRepository.connect(mongo_url, mongo_db.name)
    try:
        assert (await repository.forms()).dialect == "ferretdb"  # the local stand-in
    finally:
        await repository.close()


async def test_workers_registering_the_same_new_slot_at_once_all_succeed(
    mongo_db: AsyncDatabase, mongo_url: str
) -> None:
    # Given six workers (repositories) creating jobs in the same 100 ms on FerretDB's listing
    repositories = [
        MongoRepository.connect(mongo_url, mongo_db.name, dialect="ferretdb") for _ in range(6)
    ]
    at = datetime.now(UTC)
    ids = [new_job_id(at + timedelta(microseconds=n)) for n in range(12)]
    try:
        # When they all create their jobs at once (their upserts of the new slot race)
        await asyncio.gather(
            *(repositories[n % 6].create_job(job_id, ["1"]) for n, job_id in enumerate(ids))
        )
        # Then every job was created and is listed
        listed = await repositories[0].list_jobs(100)
        assert set(ids) <= {job.id for job in listed.jobs}
    finally:
        for repository in repositories:
            await repository.close()


@pytest.mark.parametrize("dialect", ["mongodb", "ferretdb"])
async def test_a_database_where_no_job_was_ever_stored_lists_none(
    mongo_db: AsyncDatabase, mongo_url: str, dialect: str
) -> None:
    # Given a repository on a database with no collection yet (no bootstrap, no job)
    repository = MongoRepository.connect(mongo_url, mongo_db.name, dialect=dialect)  # type: ignore[arg-type]
    try:
        # Then every listing is an empty page, not an error (FerretDB: `$collStats` of a missing
        # collection is NamespaceNotFound)
        for status in (None, "in_progress", "completed"):
            page = await repository.list_jobs(10, status=status)  # type: ignore[arg-type]
            assert (page.jobs, page.next, page.total) == ([], None, 0)
    finally:
        await repository.close()
