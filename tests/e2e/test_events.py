"""Watching jobs without polling, end to end: job event streams, `?wait=`, and their bounds.

Tests marked "needs the persisting agent's events" see a job's progress only once the persisting
agent publishes job events (`JobEventPublisher.publish` after each stored batch).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import pytest
import requests
import schemathesis
from aiokafka import AIOKafkaProducer
from conftest import AUTH_HEADERS, DEV, Stack
from helpers import eventually
from hypothesis import HealthCheck, settings
from test_jobs import generated_job

from jobstream.client import Client, Job
from jobstream.jobevents import JobChange
from jobstream.models import OperationResult, new_job_id
from jobstream.settings import Settings
from jobstream.storage import MongoRepository
from jobstream.views.openapi import openapi_document

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

#: Streams have no overall timeout; each read has its own.
STREAMING = aiohttp.ClientTimeout(total=None, sock_connect=10)


class EventStream:
    """The messages of one Server-Sent Events response."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.comments = 0

    async def next(self, timeout: float = 30.0) -> tuple[str, Any] | None:
        """The next message as (event, data), or None when the server ended the stream."""
        event, data = "message", []
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    return None
                line = raw.decode().rstrip("\n")
                if line == "":
                    if data:
                        return event, orjson.loads("\n".join(data))
                    event = "message"
                elif line.startswith(":"):
                    self.comments += 1
                elif line.startswith("event: "):
                    event = line[len("event: ") :]
                elif line.startswith("data: "):
                    data.append(line[len("data: ") :])

    async def job_states(self, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Every job message until the server ends the stream."""
        states = []
        deadline = time.monotonic() + timeout
        while (message := await self.next(deadline - time.monotonic())) is not None:
            if message[0] == "job":
                states.append(message[1])
        return states


@asynccontextmanager
async def stream(stack: Stack, path: str, base: str | None = None) -> AsyncIterator[EventStream]:
    """An open event stream (the response must be 200 text/event-stream)."""
    async with stack.session.get((base or stack.api) + path, timeout=STREAMING) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "text/event-stream"
        yield EventStream(response)


async def samples(base: str, name: str, **labels: str) -> list[float]:
    """The values of a worker's /metrics samples of `name` that have these labels."""
    async with aiohttp.ClientSession() as session, session.get(base + "/metrics") as response:
        text = await response.text()
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    found = []
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if re.match(rf"{re.escape(name)}(\{{|$)", sample) and all(w in sample for w in wanted):
            found.append(float(value))
    return found


async def metric(base: str, name: str, **labels: str) -> float:
    """One sample of a worker's /metrics (0 when absent)."""
    return next(iter(await samples(base, name, **labels)), 0.0)


def done(state: dict[str, Any]) -> int:
    return state["operations"]["succeeded"] + state["operations"]["failed"]


# --- one job's stream -----------------------------------------------------------------------------


async def test_stream_of_a_completed_job_sends_its_state_and_ends(stack: Stack) -> None:
    # Given a completed job
    job_id = await stack.submit("1 + 1\n2 / 0\n")
    job = await stack.wait_completed(job_id)
    # When its stream is opened on another client worker
    async with stream(stack, f"/api/jobs/{job_id}/events", base=stack.client(1)) as events:
        states = await events.job_states(timeout=10)
    # Then it is the job's document, once, and the stream ends by itself
    assert states == [job]


async def test_stream_of_an_unknown_or_malformed_job_is_a_json_error(stack: Stack) -> None:
    status, body, _ = await stack.request("GET", f"/api/jobs/{uuid.uuid4().hex}/events")
    assert status == 404 and "not found" in body["message"]
    status, body, _ = await stack.request("GET", "/api/jobs/not-a-job/events")
    assert status == 400 and "malformed job id" in body["message"]


async def test_stream_follows_a_job_to_completion(stack: Stack) -> None:
    # needs the persisting agent's events
    # Given a job of 5,000 operations, submitted to one client and watched on another
    body, _ = generated_job(5000, seed=5000)
    job_id = await stack.submit(body, base=stack.client(0))
    async with stream(stack, f"/api/jobs/{job_id}/events", base=stack.client(2)) as events:
        # When it runs, Then the stream shows its counters growing and ends once it completed
        states = await events.job_states(timeout=120)
    assert states, "the stream sent nothing"
    assert states[-1]["status"] == "completed", f"the stream ended at {states[-1]}"
    assert [done(s) for s in states] == sorted(done(s) for s in states)
    assert len(states) >= 2, "the stream showed no progress, only the final state"
    # And its last message is the job as the API shows it
    assert states[-1] == await stack.job(job_id)


async def test_client_watch_follows_a_job_through_its_stream_without_polling(
    stack: Stack,
) -> None:
    # needs the persisting agent's events
    # Given a job of 5,000 operations, submitted to one client worker
    body, _ = generated_job(5000, seed=5001)
    job_id = await stack.submit(body, base=stack.client(0))
    base = stack.client(1)
    stream_reads = await metric(base, "job_watcher_reads_total", kind="stream")
    api_reads = sum(await samples(base, "mongo_commands_total", origin="api-read"))

    def follow() -> list[Job]:
        with Client(base, stack.token) as api:
            return list(api.watch(job_id))

    # When the client library watches it on another
    states = await asyncio.wait_for(asyncio.to_thread(follow), 150)

    # Then it saw the counters grow, each state once, up to the job as the API shows it
    assert states[-1].status == "completed" and states[-1].done == 5000, states[-1]
    assert len(states) >= 2, "the watch showed no progress, only the final state"
    done_counts = [state.done for state in states]
    assert done_counts == sorted(set(done_counts)), done_counts
    assert states[-1] == Job.from_json(await stack.job(job_id))  # read on client 0
    # And the watched worker read the job once, for the stream's first state, however many
    # states it yielded: no API read per update (polling reads once per state, at least)
    assert await metric(base, "job_watcher_reads_total", kind="stream") == stream_reads + 1
    assert sum(await samples(base, "mongo_commands_total", origin="api-read")) == api_reads


async def test_stream_of_a_job_deleted_meanwhile_ends_with_deleted(stack: Stack) -> None:
    body, _ = generated_job(30_000, seed=30_000)
    job_id = await stack.submit(body)
    async with stream(stack, f"/api/jobs/{job_id}/events", base=stack.client(1)) as events:
        first = await events.next()
        assert first is not None and first[1]["status"] == "in_progress"
        # When the job is deleted while it runs
        status, _, _ = await stack.request("DELETE", f"/api/jobs/{job_id}")
        assert status == 204
        deleted = time.monotonic()
        # Then the stream says so and ends, soon after the deletion answered
        states = await events.job_states(timeout=60)
        ended = time.monotonic() - deleted
    assert states and states[-1]["status"] == "deleted", states[-1:] or "nothing after the first"
    assert ended < 10, f"the stream ended {ended:.1f} s after the deletion"


@asynccontextmanager
async def repository(mongo_url: str) -> AsyncIterator[MongoRepository]:
    """The workers' database, for jobs stored without going through the API."""
    database = os.environ.get("JOBSTREAM_MONGO_DATABASE", "jobstream")
    repo = MongoRepository.connect(mongo_url, database)
    try:
        yield repo
    finally:
        await repo.close()


async def test_watchers_of_a_job_that_no_result_will_reach_end_when_it_is_deleted(
    stack: Stack, mongo_url: str
) -> None:
    # Given a job stored but not published (no result will ever tell persisting of its deletion;
    # reconciliation would publish it only after JOBSTREAM_RECONCILE_AFTER, 6 s here)
    job_id = uuid.uuid4().hex
    async with repository(mongo_url) as repo:
        await repo.create_job(job_id, ["1 + 1", "2 + 2"])
    # ... watched by a stream on one client worker and a 30 s wait on another
    async with stream(stack, f"/api/jobs/{job_id}/events", base=stack.client(1)) as events:
        first = await events.next()
        assert first is not None and first[1]["status"] == "in_progress"
        # (the wait has read the job's first state once its read command has succeeded: the
        # watchers gauge rises before that read, and a DELETE between the two made the wait's
        # first read answer "not found", not the deletion this test is about)
        read = {"command": "find", "outcome": "succeeded", "origin": "api-watch"}
        reads = await metric(stack.client(2), "mongo_commands_total", **read)
        waiting = asyncio.ensure_future(
            stack.request("GET", f"/api/jobs/{job_id}?wait=30", base=stack.client(2))
        )

        async def listening() -> bool:
            return await metric(stack.client(2), "mongo_commands_total", **read) > reads

        await eventually(listening, timeout=10, interval=0.05)
        # When the job is deleted through a third
        status, _, _ = await stack.request("DELETE", f"/api/jobs/{job_id}", base=stack.client(0))
        assert status == 204
        deleted = time.monotonic()
        # Then the stream ends with the deletion, and the wait answers 404, both at once
        states = await events.job_states(timeout=20)
        ended = time.monotonic() - deleted
        status, body, _ = await asyncio.wait_for(waiting, 20)
        answered = time.monotonic() - deleted
    assert [s["status"] for s in states] == ["deleted"]
    assert ended < 5, f"the stream ended {ended:.1f} s after the deletion"
    assert status == 404 and "deleted" in body["message"], (status, body)
    assert answered < 5, f"the wait answered {answered:.1f} s after the deletion"


async def test_stream_of_a_job_completed_by_reconciliation_ends_with_completed(
    stack: Stack, mongo_url: str
) -> None:
    # Given a job whose results are all stored but whose completion was lost (a crashed worker's
    # progress): only reconciliation completes it, JOBSTREAM_RECONCILE_AFTER (6 s) later
    job_id = new_job_id()
    async with repository(mongo_url) as repo:
        await repo.create_job(job_id, ["1 + 1", "1 / 0"])
        await repo.store_results(
            [
                OperationResult(job_id, 1, 2, "succeeded", result="2"),
                OperationResult(job_id, 2, 2, "failed", error="division by zero"),
            ],
            [],
        )
    async with stream(stack, f"/api/jobs/{job_id}/events", base=stack.client(2)) as events:
        # When reconciliation completes it, Then the stream says so and ends
        states = await events.job_states(timeout=60)
    assert [s["status"] for s in states] == ["in_progress", "completed"]
    assert states[-1] == await stack.job(job_id)
    assert states[-1]["operations"] == {"total": 2, "succeeded": 1, "failed": 1, "pending": 0}


# --- every job's stream ---------------------------------------------------------------------------


async def test_every_client_hears_a_change_published_to_any_partition(stack: Stack) -> None:
    # Given the stream of every job open on each of the three client workers
    settings = Settings()
    async with (
        stream(stack, "/api/events", base=stack.client(0)) as first,
        stream(stack, "/api/events", base=stack.client(1)) as second,
        stream(stack, "/api/events", base=stack.client(2)) as third,
    ):
        # When job changes are published to the events topic (one job per partition, roughly)
        changes = [
            JobChange(uuid.uuid4().hex, 4, 3, 1, "completed", datetime.now(UTC)) for _ in range(12)
        ]
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
        await producer.start()
        try:
            for change in changes:
                await producer.send_and_wait(
                    settings.job_events_topic, change.encode(), key=change.job_id.encode()
                )
        finally:
            await producer.stop()
        # Then every client streams every one of them
        wanted = {change.job_id: change.to_json() for change in changes}
        for events in (first, second, third):
            seen: dict[str, Any] = {}
            while set(seen) != set(wanted):
                message = await events.next(timeout=30)
                assert message is not None, "the stream ended"
                event, data = message
                if event == "job" and data["id"] in wanted:
                    seen[data["id"]] = data
            assert seen == wanted


async def test_stream_of_every_job_shows_jobs_run_by_any_client(stack: Stack) -> None:
    # needs the persisting agent's events
    async with stream(stack, "/api/events", base=stack.client(2)) as events:
        job_id = await stack.submit("1 + 1\n2 + 2\n3 + 3\n", base=stack.client(0))
        last = None
        while last is None or last["status"] != "completed":
            message = await events.next(timeout=30)
            assert message is not None
            if message[0] == "job" and message[1]["id"] == job_id:
                last = message[1]
    assert last["operations"] == {"total": 3, "succeeded": 3, "failed": 0, "pending": 0}


# --- ?wait= ---------------------------------------------------------------------------------------


async def test_wait_answers_as_soon_as_the_job_completes(stack: Stack) -> None:
    # needs the persisting agent's events (without them it answers when the wait is over)
    job_id = await stack.submit("1 + 2\n3 * 4\n", base=stack.client(1))
    started = time.monotonic()
    status, job, _ = await stack.request("GET", f"/api/jobs/{job_id}?wait=30")
    elapsed = time.monotonic() - started
    assert status == 200
    assert job["status"] == "completed"
    assert job["operations"] == {"total": 2, "succeeded": 2, "failed": 0, "pending": 0}
    assert elapsed < 10, f"answered after {elapsed:.1f} s, not when the job completed"
    assert job == await stack.job(job_id)


async def test_wait_on_a_completed_job_answers_at_once(stack: Stack) -> None:
    job_id = await stack.submit("5 - 3\n")
    job = await stack.wait_completed(job_id)
    started = time.monotonic()
    status, waited, _ = await stack.request("GET", f"/api/jobs/{job_id}?wait=60")
    assert status == 200 and waited == job
    assert time.monotonic() - started < 5


async def test_wait_that_runs_out_answers_the_current_state(stack: Stack) -> None:
    # Given a job too large to complete within a second
    body, _ = generated_job(50_000, seed=50_000)
    job_id = await stack.submit(body)
    try:
        # When a client waits one second for it
        started = time.monotonic()
        status, job, _ = await stack.request("GET", f"/api/jobs/{job_id}?wait=1")
        elapsed = time.monotonic() - started
        # Then it gets the job as it is after that second
        assert status == 200
        assert job["status"] == "in_progress"
        assert 1.0 <= elapsed < 5, f"answered after {elapsed:.2f} s"
        assert job["operations"]["total"] == 50_000
    finally:
        await stack.request("DELETE", f"/api/jobs/{job_id}")


@pytest.mark.parametrize("wait", ["61", "-1", "soon", "nan"])
async def test_wait_outside_zero_to_sixty_seconds_is_refused(stack: Stack, wait: str) -> None:
    status, body, _ = await stack.request("GET", f"/api/jobs/{uuid.uuid4().hex}?wait={wait}")
    assert status == 400
    assert "wait must be a number of seconds from 0 to 60" in body["message"]


async def test_wait_on_an_unknown_job_is_not_found_at_once(stack: Stack) -> None:
    started = time.monotonic()
    status, body, _ = await stack.request("GET", f"/api/jobs/{uuid.uuid4().hex}?wait=60")
    assert status == 404 and "not found" in body["message"]
    assert time.monotonic() - started < 5


# --- bounds, metrics, reads, shutdown ------------------------------------------------------------


async def test_watchers_beyond_the_limit_get_a_json_503_and_places_come_back(
    stack: Stack,
) -> None:
    # Given a client worker whose every watcher place is taken (JOBSTREAM_MAX_WATCHERS)
    base = stack.client(2)
    limit = Settings().max_watchers
    held = await metric(base, "job_watchers", kind="stream")
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=STREAMING, headers=AUTH_HEADERS
    ) as session:
        responses = []
        try:
            for _ in range(limit - int(held)):
                response = await session.get(base + "/api/events")
                responses.append(response)
                assert response.status == 200
            # When one more stream, and one more wait, are asked for
            async with session.get(base + "/api/events") as refused:
                body = await refused.json()
                # Then both are refused with a JSON 503 saying why, and when to come back
                assert refused.status == 503
                assert refused.headers["Retry-After"] == "5"
                assert f"already serves {limit} event streams" in body["message"]
            job_id = await stack.submit("1 + 1\n")
            async with session.get(f"{base}/api/jobs/{job_id}?wait=5") as waited:
                assert waited.status == 503
        finally:
            for response in responses:
                response.close()

        # And once streams close, their places are free again
        async def place_free() -> bool:
            async with session.get(f"{base}/api/jobs/{job_id}?wait=1") as response:
                return response.status == 200

        await eventually(place_free, timeout=30, interval=0.5)


async def test_streams_and_waits_are_counted_in_the_http_metrics(stack: Stack) -> None:
    base = stack.client(1)
    route = "/api/jobs/{job_id}/events"
    streams_before = await metric(base, "http_requests_total", route=route, status="200")
    waits_before = await metric(
        base, "http_requests_total", route="/api/jobs/{job_id}", method="GET", status="200"
    )
    job_id = await stack.submit("2 + 2\n")
    await stack.wait_completed(job_id)
    async with stream(stack, f"/api/jobs/{job_id}/events", base=base) as events:
        await events.job_states(timeout=10)
    status, _, _ = await stack.request("GET", f"/api/jobs/{job_id}?wait=5", base=base)
    assert status == 200

    async def counted() -> bool:
        streams = await metric(base, "http_requests_total", route=route, status="200")
        waits = await metric(
            base, "http_requests_total", route="/api/jobs/{job_id}", method="GET", status="200"
        )
        return streams == streams_before + 1 and waits == waits_before + 1

    await eventually(counted, timeout=10)


async def test_watchers_read_a_running_job_once_each(stack: Stack) -> None:
    # Given a 20,000-operation job and 20 clients watching it on one worker: 10 streams, 10 waits
    base = stack.client(0)
    body, _ = generated_job(20_000, seed=20_000)
    job_id = await stack.submit(body)
    reads_before = {
        kind: await metric(base, "job_watcher_reads_total", kind=kind)
        for kind in ("stream", "wait")
    }

    async def watch_stream() -> list[dict[str, Any]]:
        async with stream(stack, f"/api/jobs/{job_id}/events", base=base) as events:
            return await events.job_states(timeout=150)

    async def watch_wait() -> dict[str, Any]:
        while True:
            status, job, _ = await stack.request("GET", f"/api/jobs/{job_id}?wait=60", base=base)
            assert status == 200
            if job["status"] == "completed":
                return job
            waits.append(job)

    waits: list[dict[str, Any]] = []
    results = await asyncio.wait_for(
        asyncio.gather(*[watch_stream() for _ in range(10)], *[watch_wait() for _ in range(10)]),
        timeout=180,
    )
    # Then every watcher saw the job complete
    for states in results[:10]:
        assert states[-1]["status"] == "completed"
    # And the database was read once per stream, and at most twice per wait (start and end)
    stream_reads = await metric(base, "job_watcher_reads_total", kind="stream")
    wait_reads = await metric(base, "job_watcher_reads_total", kind="wait")
    assert stream_reads - reads_before["stream"] == 10
    assert wait_reads - reads_before["wait"] <= 2 * (10 + len(waits))


async def test_stopping_a_worker_ends_its_streams_at_once(stack: Stack) -> None:
    # Given a client worker with a stream of every job open
    async with stream(stack, "/api/events", base=stack.client(2)) as events:
        # When the worker is stopped (SIGTERM, graceful)
        process = await asyncio.create_subprocess_exec(DEV, "stop-one", "client-3")
        try:
            # Then the stream ends cleanly and promptly, instead of holding up the shutdown
            started = time.monotonic()
            while await events.next(timeout=30) is not None:
                pass
            ended = time.monotonic() - started
            assert await asyncio.wait_for(process.wait(), 60) == 0
        finally:
            await asyncio.to_thread(stack.start_worker, "client-3")
    assert ended < 10, f"the stream ended {ended:.1f} s after the stop began"


# --- the streams against generated input (schemathesis), read as streams -------------------------

STREAMS = schemathesis.openapi.from_dict(openapi_document(Settings())).include(
    path_regex="/events$"
)


@STREAMS.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_event_streams_answer_generated_requests_as_documented(case: Any, stack: Stack) -> None:
    # Whatever schemathesis sends, the answer is one the document lists, never a 5xx but the
    # documented 503; errors are JSON with a message, and a 200 is an event stream that starts
    # at once (read for a moment only: /api/events never ends by itself)
    request = case.as_transport_kwargs(base_url=stack.api, headers=AUTH_HEADERS)
    with requests.request(**request, stream=True, timeout=(5, 20)) as response:
        documented = case.operation.definition.raw["responses"]
        if request["method"].upper() != case.operation.method.upper():  # e.g. TRACE
            assert response.status_code == 405, (response.status_code, request)
        else:
            assert str(response.status_code) in documented, (response.status_code, request)
        if response.status_code == 200:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            first = next(response.iter_lines())
            assert first.startswith(b"retry: "), first
        else:
            assert response.headers["Content-Type"].startswith("application/json")
            assert response.json()["message"]
