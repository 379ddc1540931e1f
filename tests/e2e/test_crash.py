"""Nothing lost: a worker killed with SIGKILL mid-job still leaves one result per operation."""

from __future__ import annotations

import uuid

import pytest
from conftest import Stack
from helpers import eventually
from test_jobs import generated_job

from jobstream.storage import MongoRepository

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


async def test_server_killed_mid_job_leaves_every_operation_with_one_result(
    stack: Stack, database: object
) -> None:
    # Given a large job in flight
    total = 20_000
    body, expected = generated_job(total, seed=3000)
    job_id = await stack.submit(body)

    async def started() -> bool:
        job = await stack.job(job_id)
        return job["operations"]["succeeded"] > 0

    await eventually(started, timeout=60, interval=0.05)
    # When a server worker is killed without warning in the middle of it
    stack.kill_worker("server-2")
    try:
        assert (await stack.job(job_id))["status"] == "in_progress", "the job ended before the kill"
        # Then the job still completes (the survivors take over; reconciliation re-publishes
        # whatever the dead worker had taken but not answered)
        job = await stack.wait_completed(job_id, timeout=180)
    finally:
        stack.start_worker("server-2")
    assert job["operations"] == {"total": total, "succeeded": total, "failed": 0, "pending": 0}
    operations = await stack.operations(job_id)
    assert [op["result"] for op in operations] == expected
    # And each operation has exactly one stored result, counted once by its document's counters
    docs = [await database["jobs"].find_one({"_id": job_id})]  # type: ignore[index]
    docs += [d async for d in database["chunks"].find({"job_id": job_id})]  # type: ignore[index]
    assert sum(len(d["res"]) for d in docs) == total
    assert all(r is not None for d in docs for r in d["res"])
    assert sum(d["ok"] + d["ko"] for d in docs) == total


async def test_job_stored_but_never_published_is_completed_by_reconciliation(
    stack: Stack, mongo_url: str
) -> None:
    # Given a job that was stored but whose requests were never published (as after a client
    # crash between storing and publishing)
    job_id = uuid.uuid4().hex
    repository = MongoRepository.connect(mongo_url, "jobstream")
    try:
        await repository.create_job(job_id, ["2 + 2", "3 * 3", "1 / 0"])
    finally:
        await repository.close()
    # When reconciliation notices it (JOBSTREAM_RECONCILE_AFTER is 6 s in the tests)
    job = await stack.wait_completed(job_id, timeout=90)
    # Then every operation ran once through the normal path
    assert job["operations"] == {"total": 3, "succeeded": 2, "failed": 1, "pending": 0}
    results = [op["result"] for op in await stack.operations(job_id)]
    assert results == ["4", "9", None]
