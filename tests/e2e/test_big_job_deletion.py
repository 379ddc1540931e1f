"""Deleting big jobs through the API: the deletion finishes and nothing of the job is left."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from conftest import Stack

from jobstream.storage import BUCKET

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

BIG = 100_000


async def documents_of(database: Any, job_id: str) -> dict[str, int]:
    return {
        "jobs": await database["jobs"].count_documents({"_id": job_id}),
        "chunks": await database["chunks"].count_documents({"job_id": job_id}),
    }


async def results_stored(database: Any, job_id: str) -> int:
    """Results held by the job's documents (its outcome counters)."""
    total = 0
    async for doc in database["chunks"].find({"job_id": job_id}, {"ok": 1, "ko": 1}):
        total += doc["ok"] + doc["ko"]
    job = await database["jobs"].find_one({"_id": job_id}, {"ok": 1, "ko": 1})
    return total + job["ok"] + job["ko"]


async def test_deleting_a_completed_100000_operation_job_leaves_nothing(
    stack: Stack, database: Any
) -> None:
    # Given a completed job of 100,000 operations (500 documents)
    job_id = await stack.submit("".join(f"{n % 10} + 1\n" for n in range(BIG)))
    await stack.wait_completed(job_id, timeout=300)
    assert await results_stored(database, job_id) == BIG
    assert await documents_of(database, job_id) == {"jobs": 1, "chunks": BIG // BUCKET - 1}

    # When it is deleted
    status, body, _ = await stack.request(
        "DELETE", f"/api/jobs/{job_id}", timeout=aiohttp.ClientTimeout(total=120)
    )

    # Then the deletion answers 204, the job is gone, and no document of it is left
    assert status == 204, body
    status, body, _ = await stack.request("GET", f"/api/jobs/{job_id}")
    assert status == 404, body
    assert await documents_of(database, job_id) == {"jobs": 0, "chunks": 0}
