"""Deleting big jobs through the API: the deletion finishes and nothing of the job is left."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from conftest import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

BIG = 100_000


async def documents_of(database: Any, job_id: str) -> dict[str, int]:
    return {
        "jobs": await database["jobs"].count_documents({"_id": job_id}),
        "operations": await database["operations"].count_documents({"job_id": job_id}),
        "results": await database["results"].count_documents({"job_id": job_id}),
    }


async def test_deleting_a_completed_100000_operation_job_leaves_nothing(
    stack: Stack, database: Any
) -> None:
    # Given a completed job of 100,000 operations (more than one delete command can match on
    # FerretDB, which refuses a delete of over 65,535 documents)
    job_id = await stack.submit("".join(f"{n % 10} + 1\n" for n in range(BIG)))
    await stack.wait_completed(job_id, timeout=300)
    assert (await documents_of(database, job_id))["results"] == BIG

    # When it is deleted
    status, body, _ = await stack.request(
        "DELETE", f"/api/jobs/{job_id}", timeout=aiohttp.ClientTimeout(total=120)
    )

    # Then the deletion answers 204, the job is gone, and no document of it is left
    assert status == 204, body
    status, body, _ = await stack.request("GET", f"/api/jobs/{job_id}")
    assert status == 404, body
    assert await documents_of(database, job_id) == {"jobs": 0, "operations": 0, "results": 0}
