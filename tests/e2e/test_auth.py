"""Who may do what: with JOBSTREAM_API_TOKENS set, no API request without a token reads or changes
anything; the probes and /metrics stay open. Run with JOBSTREAM_E2E_TOKEN set (see conftest) for
the refusals; without it the same routes are checked to be open.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from conftest import CLIENT_PORTS, SERVER_PORTS, TOKEN, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

#: Ways of not authenticating: nothing, a wrong token, the right one under another scheme, ...
NOT_AUTHENTICATED: list[dict[str, str]] = [
    {},
    {"Authorization": "Bearer wrong-token-0123456789"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Bearer {(TOKEN or '')[:-1]}"},
]


@pytest_asyncio.fixture(loop_scope="session")
async def anonymous() -> AsyncIterator[aiohttp.ClientSession]:
    """A session that sends no token (the stack's own session sends one)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


def api_requests(job_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """One request per API route and method (and an unknown route and method), for `job_id`."""
    text = {"data": b"1 + 1\n", "headers": {"Content-Type": "text/plain"}}
    return [
        ("GET", "/api/jobs", {}),
        ("POST", "/api/jobs", text),
        ("POST", "/api/jobs", {"json": {"operations": ["2 + 2"]}}),
        ("GET", f"/api/jobs/{job_id}", {}),
        ("GET", f"/api/jobs/{job_id}?wait=1", {}),
        ("DELETE", f"/api/jobs/{job_id}", {}),
        ("GET", f"/api/jobs/{job_id}/operations", {}),
        ("GET", f"/api/jobs/{job_id}/operations/1", {}),
        ("GET", f"/api/jobs/{job_id}/operations/{job_id}-1", {}),
        ("GET", "/api/openapi.json", {}),
        ("PUT", "/api/jobs", text),
        ("GET", "/api/no-such-route", {}),
    ]


async def count_401(port: int, session: aiohttp.ClientSession) -> float:
    """The worker's count of refused API requests, from its /metrics."""
    async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    pattern = r'^http_requests_total\{.*status="401".*\} (\S+)$'  # routes hold braces
    return sum(float(value) for value in re.findall(pattern, text, re.MULTILINE))


@pytest.mark.skipif(TOKEN is None, reason="needs JOBSTREAM_E2E_TOKEN (the API is open)")
@pytest.mark.parametrize(
    "headers", NOT_AUTHENTICATED, ids=["none", "wrong", "basic", "longer", "shorter"]
)
async def test_with_tokens_no_api_request_without_one_reads_or_changes_anything(
    stack: Stack, database: Any, anonymous: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    # Given a completed job, the database's counts and each client's count of refusals
    job_id = await stack.submit("1 + 1\n2 * 3\n")
    job = await stack.wait_completed(job_id)
    jobs_before = await database["jobs"].count_documents({})
    chunks_before = await database["chunks"].count_documents({})
    refused_before = [await count_401(port, anonymous) for port in CLIENT_PORTS]

    for port in CLIENT_PORTS:
        for method, path, options in api_requests(job_id):
            # When any client worker is asked without an accepted token
            url = f"http://127.0.0.1:{port}{path}"
            options = {**options, "headers": {**options.get("headers", {}), **headers}}
            async with anonymous.request(method, url, **options) as response:
                # Then it answers a JSON 401 that says how to authenticate
                assert response.status == 401, (port, method, path, await response.text())
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
                body = await response.json()
                assert body["error"] == "unauthorized" and body["message"]

    # ... nothing was stored or deleted: the job is as it was, with its operations
    assert await database["jobs"].count_documents({}) == jobs_before
    assert await database["chunks"].count_documents({}) == chunks_before
    assert await stack.job(job_id) == job
    assert len(await stack.operations(job_id)) == 2
    # ... and every refusal was counted
    refused = [await count_401(port, anonymous) for port in CLIENT_PORTS]
    requests_per_client = len(api_requests(job_id))
    assert [after - before for before, after in zip(refused_before, refused, strict=True)] == [
        requests_per_client
    ] * len(CLIENT_PORTS)


@pytest.mark.skipif(TOKEN is None, reason="needs JOBSTREAM_E2E_TOKEN (the API is open)")
async def test_with_tokens_the_probes_and_metrics_stay_open(
    stack: Stack, anonymous: aiohttp.ClientSession
) -> None:
    for port in CLIENT_PORTS + SERVER_PORTS:
        for path in ("/health", "/ready", "/metrics"):
            async with anonymous.get(f"http://127.0.0.1:{port}{path}") as response:
                assert response.status == 200, (port, path)


async def test_the_session_token_opens_every_route(stack: Stack) -> None:
    # Given the session's token (or none, when the API is open)
    job_id = await stack.submit("5 * 5\n")
    await stack.wait_completed(job_id)

    # Then every route answers, as the job's owner expects, on every client
    for n in range(3):
        base = stack.client(n)
        status, body, _ = await stack.request("GET", f"/api/jobs/{job_id}", base=base)
        assert status == 200 and body["status"] == "completed"
        status, body, _ = await stack.request("GET", f"/api/jobs/{job_id}/operations/1", base=base)
        assert status == 200 and body["result"] == "25"
    status, _, _ = await stack.request("DELETE", f"/api/jobs/{job_id}")
    assert status == 204


async def test_without_tokens_the_api_needs_none(
    stack: Stack, anonymous: aiohttp.ClientSession
) -> None:
    # When the session has no token, the workers have none either: the API is open to anyone
    async with anonymous.get(f"{stack.api}/api/jobs?size=1") as response:
        assert response.status == (200 if TOKEN is None else 401)
