"""The job pipeline end to end: HTTP API -> Kafka -> compute workers -> Kafka -> MongoDB."""

from __future__ import annotations

import asyncio
import random
from fractions import Fraction

import pytest
from conftest import ROOT, Stack
from helpers import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def expected_value(a: int, b: int, c: int, d: int) -> str:
    """The canonical result of `a * b + c / d`, computed independently with Fraction."""
    value = Fraction(a) * b + Fraction(c, d)
    if value.denominator == 1:
        return str(value.numerator)
    whole = abs(value.numerator) * 10**6 // value.denominator  # d is 4 or 8: terminates in 3 places
    sign = "-" if value < 0 else ""
    text = f"{whole // 10**6}.{whole % 10**6:06d}".rstrip("0")
    return sign + text


def generated_job(count: int, seed: int) -> tuple[str, list[str]]:
    """A job body of `count` expressions and their expected results."""
    rng = random.Random(seed)
    lines, expected = [], []
    for _ in range(count):
        a, b, c, d = (
            rng.randint(-99, 99),
            rng.randint(0, 99),
            rng.randint(-9, 9),
            rng.choice([4, 8]),
        )
        lines.append(f"{a} * {b} + {c} / {d}")
        expected.append(expected_value(a, b, c, d))
    return "\n".join(lines) + "\n", expected


async def assert_results(stack: Stack, job_id: str, expected: list[str]) -> None:
    """Every operation succeeded, in submission order, with the expected result."""
    operations = await stack.operations(job_id)
    assert [op["index"] for op in operations] == list(range(1, len(expected) + 1))
    assert [op["status"] for op in operations] == ["succeeded"] * len(expected)
    assert [op["result"] for op in operations] == expected


async def test_single_operation_sample_gives_its_result(stack: Stack) -> None:
    job_id = await stack.submit((ROOT / "operations-single.txt").read_text())
    job = await stack.wait_completed(job_id)
    assert job["operations"] == {"total": 1, "succeeded": 1, "failed": 0, "pending": 0}
    assert [op["result"] for op in await stack.operations(job_id)] == ["-8"]


async def test_ten_operation_sample_gives_exact_decimal_results(stack: Stack) -> None:
    # Given the original's ten-operation sample; When it runs
    job_id = await stack.submit((ROOT / "operations.txt").read_text())
    await stack.wait_completed(job_id)
    # Then division is exact (3 / 4 + 1 is 1.75, where the original's integer division gave 1)
    assert [op["result"] for op in await stack.operations(job_id)] == [
        "69", "-8", "69", "-3", "-3", "-3", "-3", "69", "1.75", "198",
    ]  # fmt: skip


async def test_error_sample_is_accepted_and_its_operation_fails_with_where(stack: Stack) -> None:
    job_id = await stack.submit((ROOT / "operations-error.txt").read_text())
    job = await stack.wait_completed(job_id)
    assert job["operations"]["failed"] == 1
    [operation] = await stack.operations(job_id)
    assert operation["status"] == "failed"
    assert operation["result"] is None
    assert "column 19" in operation["error"]
    assert "expected a number" in operation["error"]


async def test_created_job_answers_201_with_location_and_counts(stack: Stack) -> None:
    status, body, headers = await stack.request(
        "POST", "/api/jobs", json={"operations": ["1 + 1", "2 ^ 10", "7 % 3"]}
    )
    assert status == 201
    assert body["created_operations"] == 3
    assert body["status"] == "in_progress"
    assert headers["Location"] == f"/api/jobs/{body['id']}"
    await stack.wait_completed(body["id"])
    assert [op["result"] for op in await stack.operations(body["id"])] == ["2", "1024", "1"]


async def test_blank_lines_and_comments_are_not_operations(stack: Stack) -> None:
    job_id = await stack.submit("# a comment\n\n1 + 1\n   \n# another\n2 + 2\n")
    job = await stack.wait_completed(job_id)
    assert job["operations"]["total"] == 2


async def test_thousand_operation_job_completes_with_correct_results(stack: Stack) -> None:
    body, expected = generated_job(1000, seed=1000)
    job_id = await stack.submit(body)
    job = await stack.wait_completed(job_id, timeout=120)
    assert job["operations"] == {"total": 1000, "succeeded": 1000, "failed": 0, "pending": 0}
    assert job["finished_at"] is not None
    await assert_results(stack, job_id, expected)


async def test_twenty_concurrent_jobs_complete_with_correct_results(stack: Stack) -> None:
    # Given 20 jobs of mixed sizes sent at once to all three client workers
    jobs = [generated_job(count, seed) for seed, count in enumerate([1, 5, 20, 50, 100] * 4)]
    ids = await asyncio.gather(
        *(stack.submit(body, base=stack.client(n)) for n, (body, _) in enumerate(jobs))
    )
    # Then every job completes, each with its own correct results
    await asyncio.gather(*(stack.wait_completed(job_id, timeout=120) for job_id in ids))
    for job_id, (_, expected) in zip(ids, jobs, strict=True):
        await assert_results(stack, job_id, expected)


async def test_jobs_are_listed_newest_first_in_pages(stack: Stack) -> None:
    # Given three new jobs created one after another
    created = [await stack.submit(f"{n} + 0\n") for n in range(3)]
    # When the first page of size 2 and the second page are read
    status, first, _ = await stack.request("GET", "/api/jobs?page=1&size=2")
    assert status == 200
    _, second, _ = await stack.request("GET", "/api/jobs?page=2&size=2")
    # Then the newest come first, pages do not overlap, and the total counts every job
    assert first["page"] == 1 and first["size"] == 2 and len(first["items"]) == 2
    assert [job["id"] for job in first["items"]] == created[::-1][:2]
    assert second["items"][0]["id"] == created[0]
    assert first["total"] == second["total"] >= 3
    _, default, _ = await stack.request("GET", "/api/jobs")
    assert default["page"] == 1 and default["size"] == 30


async def test_jobs_are_listed_by_status_and_a_completing_job_changes_listing(
    stack: Stack,
) -> None:
    # Given three small completed jobs, then a big one still running
    done = [await stack.submit(f"{n} * 2\n") for n in range(3)]
    for job_id in done:
        await stack.wait_completed(job_id)
    big = await stack.submit("\n".join(f"{n} * {n} + 1 / 8" for n in range(30_000)))
    try:
        # When the jobs in progress are listed
        status, running, _ = await stack.request("GET", "/api/jobs?status=in_progress&size=100")
        assert status == 200
        still_running = (await stack.job(big))["status"] == "in_progress"
        assert still_running, "the big job completed before it could be listed in progress"
        # Then the big job is there, and nothing there is completed; total counts at least it
        assert big in [job["id"] for job in running["items"]]
        assert {job["status"] for job in running["items"]} == {"in_progress"}
        assert running["total"] >= 1
        # When the completed jobs are paged by cursor, two at a time
        seen: list[dict] = []
        _, page, _ = await stack.request("GET", "/api/jobs?status=completed&size=2")
        seen += page["items"]
        while page["next"] is not None and len(seen) < 4:
            query = f"/api/jobs?status=completed&size=2&cursor={page['next']}"
            _, page, _ = await stack.request("GET", query)
            assert "page" not in page  # paged by cursor
            seen += page["items"]
        # Then they come newest first without repeats, all completed, the three new ones first
        ids = [job["id"] for job in seen]
        assert ids[:3] == done[::-1]
        assert ids == sorted(set(ids), reverse=True)
        assert {job["status"] for job in seen} == {"completed"}
        assert big not in ids
        # When the big job completes, Then it is listed completed, and no longer in progress
        await stack.wait_completed(big, timeout=120)
        _, completed, _ = await stack.request("GET", "/api/jobs?status=completed&size=1")
        assert [job["id"] for job in completed["items"]] == [big]
        assert completed["total"] >= 4
        _, running, _ = await stack.request("GET", "/api/jobs?status=in_progress&size=100")
        assert big not in [job["id"] for job in running["items"]]
    finally:
        await stack.request("DELETE", f"/api/jobs/{big}")


async def test_page_past_the_end_is_empty_and_does_not_inflate_the_total(stack: Stack) -> None:
    _, first, _ = await stack.request("GET", "/api/jobs?size=100")
    page = first["total"] // 100 + 2  # starts at least 100 jobs past the end
    assert page <= 100, "the test's store holds too many jobs for pages by number to pass it"
    status, body, _ = await stack.request("GET", f"/api/jobs?page={page}&size=100")
    assert status == 200
    assert body["items"] == []
    # the total is the store's, not the jobs the page number skips
    assert body["total"] < (page - 1) * 100


async def test_operations_are_paginated_in_submission_order(stack: Stack) -> None:
    body, expected = generated_job(25, seed=25)
    job_id = await stack.submit(body)
    await stack.wait_completed(job_id)
    status, page2, _ = await stack.request("GET", f"/api/jobs/{job_id}/operations?page=2&size=10")
    assert status == 200
    assert page2["total"] == 25
    assert [op["index"] for op in page2["items"]] == list(range(11, 21))
    assert [op["result"] for op in page2["items"]] == expected[10:20]
    op = page2["items"][0]
    status, one, _ = await stack.request("GET", f"/api/jobs/{job_id}/operations/{op['id']}")
    assert status == 200
    assert one == op
    status, by_index, _ = await stack.request("GET", f"/api/jobs/{job_id}/operations/11")
    assert status == 200 and by_index == op


async def test_deleted_job_is_gone_with_its_operations(stack: Stack, database: object) -> None:
    job_id = await stack.submit("1 + 1\n2 + 2\n")
    await stack.wait_completed(job_id)
    status, _, _ = await stack.request("DELETE", f"/api/jobs/{job_id}")
    assert status == 204
    assert (await stack.request("GET", f"/api/jobs/{job_id}"))[0] == 404
    assert (await stack.request("GET", f"/api/jobs/{job_id}/operations"))[0] == 404
    assert (await stack.request("GET", f"/api/jobs/{job_id}/operations/1"))[0] == 404
    assert (await stack.request("DELETE", f"/api/jobs/{job_id}"))[0] == 404


async def test_job_deleted_in_flight_is_never_resurrected(stack: Stack, database: object) -> None:
    # Given a large job deleted right after it was accepted, while its operations are in flight
    body, _ = generated_job(2000, seed=2000)
    job_id = await stack.submit(body)
    status, _, _ = await stack.request("DELETE", f"/api/jobs/{job_id}")
    assert status == 204
    # When its late results arrive (the other jobs' results overtaking them prove they flowed)
    marker = await stack.submit("1 + 1\n")
    await stack.wait_completed(marker)

    async def no_late_results_remain() -> bool:
        results = await database["results"].count_documents({"job_id": job_id})  # type: ignore[index]
        return results == 0

    await eventually(no_late_results_remain, timeout=30)
    # Then the job stays gone: no job document, no operations, and the API answers 404
    assert await database["jobs"].count_documents({"_id": job_id}) == 0  # type: ignore[index]
    assert await database["operations"].count_documents({"job_id": job_id}) == 0  # type: ignore[index]
    assert (await stack.request("GET", f"/api/jobs/{job_id}"))[0] == 404


async def test_operations_can_be_listed_by_status(stack: Stack) -> None:
    # Given a completed job with one failed operation among three
    job_id = await stack.submit("1 + 1\n1 / 0\n2 * 3\n")
    await stack.wait_completed(job_id)

    # When its operations are listed by status
    status, failed, _ = await stack.request("GET", f"/api/jobs/{job_id}/operations?status=failed")
    _, succeeded, _ = await stack.request(
        "GET", f"/api/jobs/{job_id}/operations?status=succeeded&size=1&page=2"
    )
    bad, error, _ = await stack.request("GET", f"/api/jobs/{job_id}/operations?status=done")

    # Then each lists its own, with its own total; an unknown status is a clear 400
    assert status == 200, failed
    assert (failed["total"], [op["index"] for op in failed["items"]]) == (1, [2])
    assert "division by zero" in failed["items"][0]["error"]
    assert (succeeded["total"], [op["result"] for op in succeeded["items"]]) == (2, ["6"])
    assert bad == 400 and "status must be one of" in error["message"]
