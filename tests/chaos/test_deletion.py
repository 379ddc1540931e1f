"""Deletions that meet big jobs and database restarts: nothing of a deleted job outlives it, and
no partition is blocked by a job deleted while its results are in flight."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import aiohttp
import pytest
from chaoslib import (
    Load,
    System,
    assert_passed,
    generate_load,
    log,
    now,
    run_scenario,
    until,
    url_of,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]

BIG = 100_000
DELETE_DEADLINE = 120.0


async def submit(system: System, text: str, client: str = "client-1") -> str:
    async with system.session.post(
        f"{url_of(client)}/api/jobs",
        data=io.BytesIO(text.encode()),  # raw bytes of a big job would warn (and block)
        headers={"Content-Type": "text/plain"},
        timeout=aiohttp.ClientTimeout(total=120),
    ) as response:
        assert response.status == 201, await response.text()
        return (await response.json())["id"]


async def delete_until_gone(system: System, job_id: str) -> tuple[int, list[int]]:
    """DELETE, retried on 503 (what a client does), until 204 or 404; returns attempts, statuses."""
    statuses: list[int] = []
    deadline = now() + DELETE_DEADLINE
    while now() < deadline:
        try:
            async with system.session.delete(
                f"{url_of('client-2')}/api/jobs/{job_id}",
                timeout=aiohttp.ClientTimeout(total=60),
            ) as response:
                statuses.append(response.status)
                if response.status in (204, 404):
                    return len(statuses), statuses
        except (aiohttp.ClientError, TimeoutError):
            statuses.append(0)
        await asyncio.sleep(0.5)
    raise AssertionError(f"job {job_id} not deleted within {DELETE_DEADLINE} s: {statuses}")


async def leftovers(system: System, job_ids: list[str]) -> dict[str, int]:
    """Documents of these jobs still stored, by collection."""
    db = system.db
    return {
        "jobs": await db["jobs"].count_documents({"_id": {"$in": job_ids}}),
        "chunks": sum([await db["chunks"].count_documents({"job_id": j}) for j in job_ids]),
    }


def nothing_left_of(job_ids: list[str], system: System) -> Any:
    async def check(record: dict[str, Any]) -> list[str]:
        left = await leftovers(system, job_ids)
        record["documents_left_of_deleted_jobs"] = left
        return [f"{n} {name} documents of deleted jobs remain" for name, n in left.items() if n]

    return check


async def test_deleting_a_big_job_half_way_blocks_nothing_and_leaves_nothing(
    system: System,
) -> None:
    deleted: list[str] = []

    async def fault(load: Load) -> dict[str, Any]:
        big = await submit(system, "".join(f"{n % 97} + {n % 13} * 2\n" for n in range(BIG)))
        deleted.append(big)

        async def half_done() -> bool:
            job = await system.job_via_api(big)
            ops = job["operations"]
            return ops["succeeded"] + ops["failed"] >= BIG // 2

        await until(half_done, 300, "the big job half done")
        injected = now()
        attempts, statuses = await delete_until_gone(system, big)
        log(f"big job deleted after {attempts} attempts: {statuses}")
        return {
            "injected_at": injected,
            "restored_at": now(),
            "delete_seconds": round(now() - injected, 1),
            "delete_statuses": statuses,
        }

    record = await run_scenario(
        system,
        "delete-big-job-mid-flight",
        f"DELETE a running {BIG:,}-operation job half-way, with small jobs submitted throughout",
        fault,
        specs=generate_load(40, seed=601, max_ops=20),
        spacing=1.0,
        concurrency=3,
        extra=nothing_left_of(deleted, system),
    )
    assert_passed(record)
    assert record["delete_statuses"][-1] == 204


async def test_ferretdb_restarted_during_deletions_leaves_no_orphans(system: System) -> None:
    deleted: list[str] = []

    async def fault(load: Load) -> dict[str, Any]:
        for n in range(12):
            deleted.append(await submit(system, "".join(f"{n} + {i}\n" for i in range(5_000))))
        injected = now()

        async def one_after_another() -> list[tuple[int, list[int]]]:
            outcomes = []
            for job_id in deleted:
                outcomes.append(await delete_until_gone(system, job_id))
                await asyncio.sleep(1.0)
            return outcomes

        await system.stop_service("ferretdb")
        deletions = asyncio.create_task(one_after_another())
        # longer than a command's server selection (5 s) and its one retry: DELETEs get 503s
        await asyncio.sleep(12)
        await system.start_service("ferretdb")
        restored = now()
        outcomes = await deletions
        return {
            "injected_at": injected,
            "restored_at": restored,
            "victims": ["ferretdb"],
            "delete_attempts": sum(attempts for attempts, _ in outcomes),
            "delete_attempts_refused": sum(a - 1 for a, _ in outcomes),
        }

    async def checks(record: dict[str, Any]) -> list[str]:
        problems = await nothing_left_of(deleted, system)(record)
        if not record["delete_attempts_refused"]:
            problems.append("no deletion met the outage: the scenario proved nothing")
        return problems

    record = await run_scenario(
        system,
        "ferretdb-restart-during-deletions",
        "restart FerretDB while 12 jobs of 5,000 operations are being deleted (DELETE retried)",
        fault,
        specs=generate_load(20, seed=602, max_ops=50),
        spacing=1.0,
        extra=checks,
    )
    assert_passed(record)
