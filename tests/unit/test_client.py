"""The client against the in-memory API (`jobstream.client.fake`): every method, every error code,
retries, timeouts and paging. Each behaviour runs against both `Client` and `AsyncClient`."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from jobstream.client import (
    ApiError,
    ApiUnreachable,
    AsyncClient,
    BadRequest,
    Client,
    InternalError,
    MethodNotAllowed,
    NotFound,
    Poll,
    ProtocolError,
    Retry,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    WaitTimeout,
    _async,
    _sync,
)
from jobstream.client._core import Config, Pager, Waiter
from jobstream.client.fake import FakeApi
from jobstream.client.models import Job

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "operations.txt"
BASE = "http://jobstream.test"
MISSING = "0" * 32


class Blocking:
    """An AsyncClient driven from a synchronous test, so one test body checks both clients."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._loop = asyncio.new_event_loop()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            if inspect.isasyncgen(result):
                return iter(self._loop.run_until_complete(_collect(result)))
            return self._loop.run_until_complete(result)

        return call

    def close(self) -> None:
        self._loop.run_until_complete(self._client.aclose())
        self._loop.close()


async def _collect(items: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in items]


Factory = Callable[..., Any]


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every pause either client takes (retries, polls), recorded instead of slept."""
    taken: list[float] = []

    async def pause_async(seconds: float) -> None:
        taken.append(seconds)

    monkeypatch.setattr(_sync, "_sleep", taken.append)
    monkeypatch.setattr(_async, "_sleep", pause_async)
    return taken


@pytest.fixture(params=["sync", "async"])
def connect(request: pytest.FixtureRequest, pauses: list[float]) -> Iterator[Factory]:
    """Makes a client of the parametrised kind on a fake API: `connect(fake, **options)`."""
    opened: list[Any] = []

    def make(fake: FakeApi | None = None, handler: Any = None, **options: Any) -> Any:
        handle = handler or (fake or FakeApi()).handle
        options.setdefault("base_url", BASE)
        if request.param == "sync":
            client: Any = Client(transport=httpx.MockTransport(handle), **options)
        else:
            client = Blocking(AsyncClient(transport=httpx.MockTransport(handle), **options))
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


def _queries(fake: FakeApi) -> list[dict[str, str]]:
    return [dict(request.url.params) for request in fake.requests]


# --- configuration ---


def test_url_and_token_come_from_arguments_then_environment_then_defaults() -> None:
    env = {"JOBSTREAM_API_URL": "http://api.example:9000/", "JOBSTREAM_API_TOKEN": "s3cret"}
    assert Config.resolve(env=env).base_url == "http://api.example:9000"
    assert Config.resolve(env=env).token == "s3cret"
    assert Config.resolve("http://other:1", "mine", env=env).base_url == "http://other:1"
    assert Config.resolve("http://other:1", "mine", env=env).token == "mine"
    assert Config.resolve(env={}).base_url == "http://127.0.0.1:8080"
    assert Config.resolve(env={}).token is None
    assert Config.resolve("localhost:8080", env={}).base_url == "http://localhost:8080"


def test_a_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match="http://host:port"):
        Config.resolve("ftp://files.example", env={})


def test_the_token_is_sent_as_a_bearer_token(connect: Factory) -> None:
    # Given an API that requires a token
    fake = FakeApi(token="s3cret")

    # When a client with the token, and one without, read the listing
    list(connect(fake, token="s3cret").jobs())
    with pytest.raises(Unauthorized) as refused:
        list(connect(fake, token=None).jobs())

    # Then the first sent it as a bearer token, and the second got the API's 401
    assert fake.requests[0].headers["Authorization"] == "Bearer s3cret"
    assert "Authorization" not in fake.requests[1].headers
    assert refused.value.message == "a valid bearer token is required"


def test_the_token_is_read_from_the_environment(
    connect: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBSTREAM_API_TOKEN", "from-env")
    fake = FakeApi(token="from-env")
    assert list(connect(fake).jobs()) == []


# --- submit, job, operation, delete ---


def test_submit_takes_a_path_text_bytes_or_a_list(connect: Factory) -> None:
    fake = FakeApi()
    api = connect(fake)
    seed_lines = [line for line in SEED.read_text().splitlines() if line.strip()]

    from_path = api.submit(SEED)
    from_text = api.submit("1 + 1\n2 * 3\n")
    from_bytes = api.submit(b"7 - 2\n")
    from_list = api.submit(["1 + 2", "3 / 4 + 1"])

    assert from_path.created_operations == len(seed_lines)
    assert from_path.status == "in_progress"
    assert [s.created_operations for s in (from_text, from_bytes, from_list)] == [2, 1, 2]
    kinds = [r.headers["Content-Type"] for r in fake.requests]
    assert kinds[:3] == ["text/plain; charset=utf-8"] * 3
    assert kinds[3] == "application/json"
    assert orjson.loads(fake.requests[3].content) == {"operations": ["1 + 2", "3 / 4 + 1"]}
    assert [op.expression for op in fake.jobs[from_path.id].operations] == seed_lines


def test_submit_refuses_a_list_of_non_strings(connect: Factory) -> None:
    with pytest.raises(TypeError):
        connect().submit([1, 2])


def test_job_reads_the_counters_and_times(connect: Factory) -> None:
    # Given a job of which two operations out of three are done, one of them failed
    fake = FakeApi()
    api = connect(fake)
    job_id = api.submit(["1 + 1", "1 +", "2 * 2"]).id
    fake.run(job_id, 2)

    job = api.job(job_id)

    assert (job.id, job.status, job.total, job.succeeded, job.failed, job.pending) == (
        job_id,
        "in_progress",
        3,
        1,
        1,
        1,
    )
    assert job.done == 2 and not job.finished
    assert job.created_at.tzinfo is not None and job.finished_at is None
    fake.run(job_id)
    finished = api.job(job_id)
    assert finished.finished and finished.finished_at is not None
    assert finished.finished_at >= finished.created_at


def test_operation_by_index_or_by_id(connect: Factory) -> None:
    fake = FakeApi()
    api = connect(fake)
    job_id = api.submit(SEED).id
    fake.run(job_id)

    ninth = api.operation(job_id, 9)
    tenth = api.operation(job_id, f"{job_id}-10")

    assert (ninth.id, ninth.index, ninth.expression) == (f"{job_id}-9", 9, "3 / 4 + 1")
    assert (ninth.status, ninth.result, ninth.error) == ("succeeded", "1.75", None)
    assert tenth.result == "198"


def test_a_failed_operation_carries_its_error(connect: Factory) -> None:
    fake = FakeApi()
    api = connect(fake)
    job_id = api.submit(ROOT / "operations-error.txt").id
    fake.run(job_id)

    failed = api.operation(job_id, 1)

    assert failed.status == "failed" and failed.result is None
    assert failed.error is not None and "column" in failed.error


def test_delete_removes_the_job(connect: Factory) -> None:
    fake = FakeApi()
    api = connect(fake)
    job_id = api.submit("1 + 1").id

    assert api.delete(job_id) is None

    assert job_id not in fake.jobs
    with pytest.raises(NotFound):
        api.job(job_id)
    with pytest.raises(NotFound):
        api.delete(job_id)


def test_ids_cannot_change_the_path(connect: Factory) -> None:
    fake = FakeApi()
    with pytest.raises(BadRequest):
        connect(fake).job("../../health")
    assert fake.requests[0].url.raw_path == b"/api/jobs/..%2F..%2Fhealth"


# --- listings ---


def test_operations_iterates_every_page_in_order(connect: Factory) -> None:
    # Given a job of 250 operations
    fake = FakeApi()
    api = connect(fake)
    job_id = api.submit([f"{i} + 0" for i in range(1, 251)]).id
    fake.run(job_id)

    operations = list(api.operations(job_id))

    assert [op.index for op in operations] == list(range(1, 251))
    assert [op.result for op in operations] == [str(i) for i in range(1, 251)]
    pages = [q for q in _queries(fake)[1:]]
    assert pages == [{"size": "100", "page": str(n)} for n in (1, 2, 3)]


def test_operations_filters_by_status_on_the_server(connect: Factory) -> None:
    fake = FakeApi()
    api = connect(fake)
    job_id = api.submit(["1 +"] * 3 + ["1"] * 200).id
    fake.run(job_id)

    failed = list(api.operations(job_id, "failed"))

    assert [op.index for op in failed] == [1, 2, 3]
    assert _queries(fake)[1:] == [{"size": "100", "status": "failed", "page": "1"}]


def test_operations_filters_by_status_when_the_server_does_not(connect: Factory) -> None:
    # Given an API that ignores ?status= (as it did before the filter existed)
    fake = FakeApi(filters=False)
    api = connect(fake)
    job_id = api.submit(["1"] * 150 + ["2 *"] + ["1"] * 10).id
    fake.run(job_id)

    failed = list(api.operations(job_id, status="failed"))

    assert [op.index for op in failed] == [151]
    assert len(fake.requests) == 1 + 2  # the submission, then both pages


def test_listings_follow_the_next_cursor_when_the_api_gives_one(connect: Factory) -> None:
    fake = FakeApi(cursors=True)
    api = connect(fake)
    job_id = api.submit([str(i) for i in range(1, 206)]).id
    fake.run(job_id)

    indexes = [op.index for op in api.operations(job_id)]

    assert indexes == list(range(1, 206))
    cursors = [q.get("cursor") for q in _queries(fake)[1:]]
    assert cursors == [None, "100", "200"]
    assert all("page" not in q for q in _queries(fake)[2:])


def test_a_next_cursor_that_is_a_url_is_followed_as_it_is() -> None:
    pager = Pager("/api/jobs", 10, None)
    pager.advance({"items": [{"id": 1}], "next": "/api/jobs?after=abc&size=10"})
    assert pager.request() == ("/api/jobs?after=abc&size=10", {})
    assert not pager.done
    pager.advance({"items": [{"id": 2}], "next": None})
    assert pager.done


def test_pages_smaller_than_asked_for_do_not_end_the_listing() -> None:
    # Given an API that serves at most 50 items a page whatever is asked
    pager = Pager("/api/jobs", 100, None)

    pager.advance({"page": 1, "size": 50, "total": 120, "items": [{}] * 50})
    assert not pager.done and pager.request()[1]["page"] == 2
    pager.advance({"page": 2, "size": 50, "total": 120, "items": [{}] * 50})
    assert not pager.done
    pager.advance({"page": 3, "size": 50, "total": 120, "items": [{}] * 20})
    assert pager.done


def test_a_cursor_that_does_not_move_is_a_protocol_error() -> None:
    pager = Pager("/api/jobs", 10, None)
    pager.advance({"items": [{"id": 1}], "next": "x"})
    with pytest.raises(ProtocolError, match="same 'next'"):
        pager.advance({"items": [{"id": 1}], "next": "x"})


def test_jobs_lists_newest_first_with_a_status_filter(connect: Factory) -> None:
    fake = FakeApi()
    api = connect(fake)
    ids = [api.submit(f"{n} + 1").id for n in range(5)]
    fake.run(ids[1])
    fake.run(ids[3])

    every = [job.id for job in api.jobs(page_size=2)]
    completed = [job.id for job in api.jobs("completed")]

    assert every == ids[::-1]
    assert completed == [ids[3], ids[1]]


def test_jobs_does_not_repeat_a_job_pushed_onto_the_next_page(connect: Factory) -> None:
    # Given a listing that gains a job between two of its pages
    fake = FakeApi()
    seeded = connect(fake)
    old = [seeded.submit(f"{n}").id for n in range(3)]
    reads = 0

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal reads
        if request.method == "GET":
            reads += 1
            if reads == 2:  # a job arrives between page 1 and page 2
                fake.handle(httpx.Request("POST", f"{BASE}/api/jobs", content=b"9"))
        return fake.handle(request)

    # When every job is listed two by two
    listed = [job.id for job in connect(handler=handle).jobs(page_size=2)]

    # Then each job shows up once
    assert sorted(listed) == sorted(set(listed))
    assert set(old) <= set(listed)


def test_a_page_size_over_the_api_maximum_is_refused_before_sending(connect: Factory) -> None:
    fake = FakeApi()
    with pytest.raises(ValueError, match="between 1 and 100"):
        list(connect(fake).jobs(page_size=500))
    assert fake.requests == []


# --- wait and watch ---


def test_wait_asks_the_api_to_hold_the_request(connect: Factory) -> None:
    fake = FakeApi()
    api = connect(fake, timeout=5)
    job_id = api.submit(SEED).id

    job = api.wait(job_id)

    assert job.status == "completed" and job.succeeded == 10
    read = fake.requests[-1]
    assert read.url.params["wait"] == "60"
    assert read.extensions["timeout"]["read"] == 65  # the hold on top of the request timeout
    assert len(fake.requests) == 2


def test_wait_never_asks_the_api_to_hold_past_the_deadline(connect: Factory) -> None:
    fake = FakeApi()
    api = connect(fake)
    job_id = api.submit("1").id

    api.wait(job_id, timeout=12.5)

    assert fake.requests[-1].url.params["wait"] in {"11", "12"}


def test_wait_polls_with_backoff_when_the_api_does_not_hold(
    connect: Factory, pauses: list[float]
) -> None:
    # Given an API that ignores ?wait= and a job that advances by 2 operations per read
    fake = FakeApi(supports_wait=False, steps_per_read=2)
    api = connect(fake, poll=Poll(interval=0.1, max_interval=0.4))
    job_id = api.submit(SEED).id

    job = api.wait(job_id)

    # Then it read the job until it completed, pausing longer each time up to the maximum
    assert job.status == "completed" and job.done == 10
    assert len(fake.requests) == 1 + 5
    assert pauses == [0.1, 0.2, 0.4, 0.4]


def test_wait_gives_up_at_the_deadline_with_the_last_state(connect: Factory) -> None:
    fake = FakeApi(supports_wait=False)
    api = connect(fake)
    job_id = api.submit(SEED).id

    with pytest.raises(WaitTimeout) as late:
        api.wait(job_id, timeout=0)

    assert late.value.job.id == job_id and late.value.job.status == "in_progress"
    assert "0 of 10 operations done" in str(late.value)


def test_waiter_asks_again_at_once_after_a_held_answer() -> None:
    waiter = Waiter("j", None, Poll(interval=0.5, max_interval=1))
    job = _job("in_progress")
    assert waiter.hold() == 60
    assert waiter.after(job, held=60, elapsed=60.0) == 0
    assert waiter.after(job, held=60, elapsed=0.01) == 0.5  # answered early: the API does not hold
    assert waiter.after(job, held=60, elapsed=0.01) == 1
    assert waiter.after(_job("completed"), held=60, elapsed=0.01) is None


def test_wait_raises_not_found_for_a_deleted_job(connect: Factory) -> None:
    with pytest.raises(NotFound):
        connect().wait(MISSING, timeout=1)


def test_watch_yields_each_change_until_the_job_is_finished(
    connect: Factory, pauses: list[float]
) -> None:
    fake = FakeApi(steps_per_read=4)
    api = connect(fake)
    job_id = api.submit(SEED).id

    seen = list(api.watch(job_id, interval=0.3))

    assert [job.done for job in seen] == [4, 8, 10]
    assert seen[-1].finished and not any(job.finished for job in seen[:-1])
    assert pauses == [0.3, 0.3]


def test_watch_reports_only_changes(connect: Factory) -> None:
    # Given a job that does not move for a few reads
    fake = FakeApi()
    reads = 0

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal reads
        if request.method == "GET":
            reads += 1
            if reads == 4:
                fake.run(job_id)
        return fake.handle(request)

    api = connect(handler=handle)
    job_id = api.submit("1\n2").id

    seen = list(api.watch(job_id, interval=0))

    assert [(job.status, job.done) for job in seen] == [("in_progress", 0), ("completed", 2)]
    assert reads == 4


# --- errors ---

ERRORS = [
    (400, "bad_request", BadRequest),
    (401, "unauthorized", Unauthorized),
    (404, "not_found", NotFound),
    (405, "method_not_allowed", MethodNotAllowed),
    (413, "too_large", TooLarge),
    (415, "unsupported_media_type", UnsupportedMediaType),
    (500, "internal", InternalError),
    (503, "unavailable", Unavailable),
]


@pytest.mark.parametrize(("status", "code", "kind"), ERRORS)
def test_every_api_error_code_has_its_exception(
    connect: Factory, status: int, code: str, kind: type[ApiError]
) -> None:
    message = f"what the API says about {code}"

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": code, "message": message})

    with pytest.raises(kind) as raised:
        connect(handler=handle, retry=Retry(attempts=1)).job(MISSING)

    assert (raised.value.status, raised.value.code, raised.value.message) == (
        status,
        code,
        message,
    )
    assert isinstance(raised.value, ApiError)
    assert str(raised.value) == f"{message} (HTTP {status} {code})"


def test_the_api_s_own_messages_come_through(connect: Factory) -> None:
    api = connect(FakeApi())

    with pytest.raises(TooLarge, match="line 2 is 1001 characters long; the limit is 1000"):
        api.submit("1\n" + "1" * 1001)
    with pytest.raises(BadRequest, match="no operations"):
        api.submit("\n# only a comment\n")
    with pytest.raises(NotFound, match=f"no job {MISSING}"):
        api.job(MISSING)
    with pytest.raises(BadRequest, match="malformed job id"):
        api.job("nope")


def test_an_unknown_error_code_is_an_api_error_with_its_code(connect: Factory) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json={"error": "too_many_requests", "message": "slow down"})

    with pytest.raises(ApiError) as raised:
        connect(handler=handle).jobs().__next__()

    assert type(raised.value) is ApiError
    assert (raised.value.status, raised.value.code, raised.value.message) == (
        429,
        "too_many_requests",
        "slow down",
    )


def test_an_error_page_that_is_not_json_keeps_its_text(connect: Factory) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="<html><body>nothing   here</body></html>")

    with pytest.raises(NotFound, match="<html><body>nothing here</body></html>"):
        connect(handler=handle).job(MISSING)


def test_a_success_that_is_not_json_is_a_protocol_error(connect: Factory) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>a proxy's page</html>")

    with pytest.raises(ProtocolError, match="not JSON: is this a jobstream API"):
        connect(handler=handle).job(MISSING)


def test_a_document_of_the_wrong_shape_is_a_protocol_error(connect: Factory) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"id": MISSING, "status": "completed"})

    with pytest.raises(ProtocolError, match=r"job\.operations"):
        connect(handler=handle).job(MISSING)


# --- retries and timeouts ---


def test_reads_are_retried_on_connection_failures_and_503(
    connect: Factory, pauses: list[float]
) -> None:
    # Given an API that refuses a connection, answers 503, then times out once
    fake = FakeApi()
    api = connect(fake, retry=Retry(attempts=4, backoff=0.5, max_backoff=1.5))
    job_id = api.submit("1").id
    fake.fail_next(httpx.ConnectError("refused"), 503, httpx.ReadTimeout("slow"))

    job = api.job(job_id)

    # Then the fourth try got the job, after pauses that doubled up to the maximum
    assert job.id == job_id
    assert len(fake.requests) == 1 + 4
    assert pauses == [0.5, 1.0, 1.5]


def test_reads_give_up_after_the_last_attempt(connect: Factory) -> None:
    fake = FakeApi()
    api = connect(fake, retry=Retry(attempts=3))
    fake.fail_next(*[httpx.ConnectError("[Errno 111] Connection refused")] * 3)

    with pytest.raises(ApiUnreachable) as unreachable:
        api.job(MISSING)

    assert len(fake.requests) == 3
    assert str(unreachable.value) == (
        f"cannot reach the jobstream API at {BASE}/api/jobs/{MISSING}: "
        "[Errno 111] Connection refused"
    )


def test_reads_give_up_on_a_persistent_503_with_the_api_s_message(connect: Factory) -> None:
    fake = FakeApi()
    fake.fail_next(503, 503)
    with pytest.raises(Unavailable, match="injected fault"):
        list(connect(fake, retry=Retry(attempts=2)).jobs())
    assert len(fake.requests) == 2


def test_a_request_timeout_is_reported_as_no_answer(connect: Factory) -> None:
    fake = FakeApi()
    api = connect(fake, timeout=2.5, retry=Retry(attempts=2))
    fake.fail_next(httpx.ReadTimeout("slow"), httpx.ReadTimeout("slow"))

    with pytest.raises(ApiUnreachable, match=r"no answer within 2\.5 s"):
        api.job(MISSING)

    assert fake.requests[0].extensions["timeout"]["read"] == 2.5


def test_a_submission_is_retried_when_it_never_reached_the_server(connect: Factory) -> None:
    fake = FakeApi()
    fake.fail_next(httpx.ConnectError("refused"))

    created = connect(fake).submit("1 + 1")

    assert len(fake.requests) == 2
    assert list(fake.jobs) == [created.id]


@pytest.mark.parametrize("fault", [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("cut")])
def test_a_submission_that_may_have_arrived_is_not_retried(
    connect: Factory, fault: Exception
) -> None:
    fake = FakeApi()
    fake.fail_next(fault)

    with pytest.raises(ApiUnreachable, match="the job may have been created"):
        connect(fake).submit("1 + 1")

    assert len(fake.requests) == 1


def test_a_submission_answered_503_is_not_retried(connect: Factory) -> None:
    fake = FakeApi()
    fake.fail_next(503)
    with pytest.raises(Unavailable):
        connect(fake).submit("1 + 1")
    assert len(fake.requests) == 1 and fake.jobs == {}


def test_a_retried_delete_that_finds_the_job_gone_succeeds(connect: Factory) -> None:
    # Given a delete whose first try deleted the job but lost the answer
    fake = FakeApi()
    api = connect(fake)
    job_id = api.submit("1").id
    deleting = 0

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal deleting
        response = fake.handle(request)
        if request.method == "DELETE":
            deleting += 1
            if deleting == 1:
                raise httpx.ReadTimeout("the answer was lost")
        return response

    # When it is deleted, then Then the retry's 404 means done
    connect(handler=handle).delete(job_id)
    assert deleting == 2 and fake.jobs == {}


def test_a_delete_refused_before_reaching_the_server_still_reports_not_found(
    connect: Factory,
) -> None:
    fake = FakeApi()
    fake.fail_next(httpx.ConnectError("refused"))
    with pytest.raises(NotFound):
        connect(fake).delete(MISSING)


def _job(status: str) -> Job:
    return Job.from_json(
        {
            "id": MISSING,
            "status": status,
            "operations": {"total": 1, "succeeded": 0, "failed": 0, "pending": 1},
            "created_at": "2026-01-01T00:00:00Z",
            "finished_at": None,
        }
    )
