"""Bad input gets a clear JSON error with the right status, and the workers stay healthy."""

from __future__ import annotations

import asyncio
import io
import uuid

import pytest
from conftest import CLIENT_PORTS, SERVER_PORTS, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

UNKNOWN_ID = uuid.uuid4().hex


def assert_problem(status: int, body: object, expected: int) -> None:
    """An error response: the expected status and a JSON body with a human-readable message."""
    assert status == expected, body
    assert isinstance(body, dict)
    assert isinstance(body.get("message"), str) and body["message"]
    assert isinstance(body.get("error"), str)


async def assert_healthy(stack: Stack) -> None:
    """Every worker still answers (checked after each hostile request)."""
    for port in CLIENT_PORTS + SERVER_PORTS:
        status, body, _ = await stack.request("GET", "/health", base=f"http://127.0.0.1:{port}")
        assert status == 200 and body["status"] == "ok"


async def post(stack: Stack, data: bytes, content_type: str | None = "text/plain") -> tuple:
    headers = {"Content-Type": content_type} if content_type else {}
    # a stream, not raw bytes: aiohttp warns (an error here) about large in-memory bodies
    status, body, _ = await stack.request(
        "POST", "/api/jobs", data=io.BytesIO(data), headers=headers
    )
    return status, body


@pytest.mark.parametrize(
    ("data", "content_type", "expected", "says"),
    [
        (b"", "text/plain", 400, "no operations"),
        (b"\n\n# only a comment\n", "text/plain", 400, "no operations"),
        (b"1 + 1\n\xff\xfe\n", "text/plain", 400, "UTF-8"),
        (b"1 + \x00 2\n", "text/plain", 400, "control character"),
        (b"1" * 1001 + b"\n", "text/plain", 413, "line 1"),
        (b"1 + 1\n" * 100_001, "text/plain", 413, "100000 operations"),
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b'{"operations": "1 + 1"}', "application/json", 400, "operations"),
        (b'{"operations": ["1 + 1", 7]}', "application/json", 400, "operations[1]"),
        (b"1 + 1", "application/xml", 415, "not supported"),
    ],
    ids=[
        "empty", "comments-only", "invalid-utf8", "nul-byte", "line-too-long", "too-many-ops",
        "bad-json", "json-not-a-list", "json-not-a-string", "unsupported-type",
    ],
)  # fmt: skip
async def test_malformed_job_is_rejected_with_a_clear_message(
    stack: Stack, data: bytes, content_type: str, expected: int, says: str
) -> None:
    status, body = await post(stack, data, content_type)
    assert_problem(status, body, expected)
    assert says in body["message"]
    await assert_healthy(stack)


async def test_body_over_the_limit_is_refused_with_413(stack: Stack) -> None:
    # Given a body just over the 4 MiB limit
    status, body = await post(stack, b"1\n" * (2 * 1024 * 1024 + 1))
    assert_problem(status, body, 413)
    await assert_healthy(stack)


async def test_job_without_content_type_is_read_as_plain_text(stack: Stack) -> None:
    status, body, _ = await stack.request(
        "POST", "/api/jobs", data=b"2 + 2\n", headers={"Content-Type": ""}
    )
    assert status == 201, body


@pytest.mark.parametrize(
    "path",
    [
        "/api/jobs/not-a-job-id",
        "/api/jobs/" + "A" * 32,
        "/api/jobs/" + "0" * 33,
        "/api/jobs/" + "0" * 32 + "/operations/zero",
        "/api/jobs/" + "0" * 32 + "/operations/0",
        "/api/jobs/" + "0" * 32 + "/operations/%C2%B2",
        "/api/jobs/" + "0" * 32 + "/operations/01",
    ],
)
async def test_malformed_id_gets_400(stack: Stack, path: str) -> None:
    status, body, _ = await stack.request("GET", path)
    assert_problem(status, body, 400)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/api/jobs/{UNKNOWN_ID}"),
        ("DELETE", f"/api/jobs/{UNKNOWN_ID}"),
        ("GET", f"/api/jobs/{UNKNOWN_ID}/operations"),
        ("GET", f"/api/jobs/{UNKNOWN_ID}/operations/1"),
    ],
)
async def test_unknown_id_gets_404(stack: Stack, method: str, path: str) -> None:
    status, body, _ = await stack.request(method, path)
    assert_problem(status, body, 404)


async def test_operation_id_naming_another_job_gets_404(stack: Stack) -> None:
    # Given two jobs
    first, second = await stack.submit("1 + 1\n"), await stack.submit("2 + 2\n")
    # When the first job's operation is asked for under the second, by its full id
    status, body, _ = await stack.request("GET", f"/api/jobs/{second}/operations/{first}-1")
    # Then it is not found there (the document's operation id pattern admits it: not a 400)
    assert_problem(status, body, 404)
    assert f"not an operation of job {second}" in body["message"]


async def test_unknown_operation_of_a_known_job_gets_404(stack: Stack) -> None:
    job_id = await stack.submit("1 + 1\n")
    status, body, _ = await stack.request("GET", f"/api/jobs/{job_id}/operations/2")
    assert_problem(status, body, 404)
    assert "operation" in body["message"]


@pytest.mark.parametrize(
    "query",
    [
        "page=0",
        "page=-1",
        "page=abc",
        "size=0",
        "size=101",
        "size=1e3",
        "page=99999999999999",
        "page=1000000001",
        "page=",
        "size=",
        "page=&size=",
    ],
)
async def test_bad_page_or_size_gets_400(stack: Stack, query: str) -> None:
    status, body, _ = await stack.request("GET", f"/api/jobs?{query}")
    assert_problem(status, body, 400)


@pytest.mark.parametrize("raw", ["deleted", "cancelled", "", "Completed", "in_progress,completed"])
async def test_unknown_job_status_filter_gets_400_naming_the_statuses(
    stack: Stack, raw: str
) -> None:
    status, body, _ = await stack.request("GET", "/api/jobs", params={"status": raw})
    assert_problem(status, body, 400)
    assert "status must be one of in_progress, completed" in body["message"]


async def test_unknown_route_and_method_answer_json(stack: Stack) -> None:
    status, body, _ = await stack.request("GET", "/api/nothing-here")
    assert_problem(status, body, 404)
    status, body, headers = await stack.request("PUT", "/api/jobs")
    assert_problem(status, body, 405)
    # RFC 9110: a 405 says which methods the resource has
    assert set(headers["Allow"].split(",")) == {"GET", "HEAD", "POST"}
    status, body, headers = await stack.request("PATCH", f"/api/jobs/{UNKNOWN_ID}")
    assert_problem(status, body, 405)
    assert set(headers["Allow"].split(",")) == {"GET", "HEAD", "DELETE"}


async def test_a_jobs_page_number_past_100_is_refused_with_the_way_on(stack: Stack) -> None:
    status, body, _ = await stack.request("GET", "/api/jobs?page=100&size=100")
    assert status == 200 and body["page"] == 100
    # deeper, up to the largest page number the operations listing takes: a 400 naming the cursor
    for page in (101, 1_000_000_000):
        status, body, _ = await stack.request("GET", f"/api/jobs?page={page}&size=1")
        assert_problem(status, body, 400)
        assert "between 1 and 100" in body["message"] and "'next' cursor" in body["message"]


async def test_concurrent_deletes_of_one_job_all_end_with_it_gone(stack: Stack) -> None:
    # Given a job deleted six times at once, through every client
    job_id = await stack.submit("1 + 1\n")
    statuses = await asyncio.gather(
        *(stack.request("DELETE", f"/api/jobs/{job_id}", base=stack.client(n)) for n in range(6))
    )
    # Then each delete either did (part of) the deletion or found it done, none failed ...
    codes = [status for status, _, _ in statuses]
    assert 204 in codes and set(codes) <= {204, 404}, codes
    # ... and the job is gone for every client
    for n in range(3):
        status, body, _ = await stack.request("GET", f"/api/jobs/{job_id}", base=stack.client(n))
        assert_problem(status, body, 404)
    await assert_healthy(stack)


async def test_hostile_expressions_fail_their_operation_not_the_worker(stack: Stack) -> None:
    # Given expressions built to exhaust a naive evaluator
    hostile = ["9^9^9^9", "(" * 450 + "1" + ")" * 450, "1" * 1000, "10^1000^1000", "1 / 0"]
    status, body, _ = await stack.request("POST", "/api/jobs", json={"operations": hostile})
    assert status == 201
    job = await stack.wait_completed(body["id"])
    # Then each fails fast with a message, and every worker is still healthy
    assert job["operations"]["failed"] == len(hostile)
    for operation in await stack.operations(body["id"]):
        assert operation["status"] == "failed" and operation["error"]
    await assert_healthy(stack)
