"""The client against the in-memory API (`jobstream.client.fake`): every method, every error code,
retries, timeouts and paging. Each behaviour runs against both `Client` and `AsyncClient`."""

from __future__ import annotations

import asyncio
import inspect
import time
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
from jobstream.client._core import Config, Pager, Waiter, Watcher
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


# --- wait ---


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


# --- watch: the event stream ---


class Chunks(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body that arrives in exactly these reads; with `cut`, the connection then
    breaks instead of ending."""

    def __init__(self, *chunks: bytes, cut: bool = False, delay: float = 0) -> None:
        self.chunks = chunks
        self.cut = cut
        self.delay = delay

    def __iter__(self) -> Iterator[bytes]:
        for number, chunk in enumerate(self.chunks):
            if number and self.delay:
                time.sleep(self.delay)  # a real pause: the watch's clock is the real one
            yield chunk
        if self.cut:
            raise httpx.RemoteProtocolError("peer closed connection without a complete body")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.__iter__():
            yield chunk


def event_stream(*chunks: bytes, cut: bool = False, delay: float = 0) -> httpx.Response:
    """A 200 event stream whose body comes in these reads (`delay` seconds apart)."""
    return httpx.Response(
        200,
        headers={"Content-Type": "text/event-stream; charset=utf-8"},
        stream=Chunks(*chunks, cut=cut, delay=delay),
    )


def state(done: int, status: str = "in_progress", total: int = 10) -> bytes:
    """One `job` message of job MISSING with `done` operations ended (the last one failed)."""
    failed = 1 if done == total else 0
    doc = {
        "id": MISSING,
        "status": status,
        "operations": {
            "total": total,
            "succeeded": done - failed,
            "failed": failed,
            "pending": total - done,
        },
        "created_at": "2026-01-01T00:00:00Z",
        "finished_at": "2026-01-01T00:00:09Z" if status == "completed" else None,
    }
    return b"event: job\ndata: " + orjson.dumps(doc) + b"\n\n"


DONE = state(10, "completed")


class Answers:
    """A handler that answers each request with the next answer (a response, or an exception to
    raise), and keeps the requests."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _progress(jobs: list[Job]) -> list[tuple[str, int]]:
    return [(job.status, job.done) for job in jobs]


def _cut(raw: bytes, size: int) -> list[bytes]:
    return [raw[i : i + size] for i in range(0, len(raw), size)]


def test_watcher_yields_at_most_one_state_per_interval_but_never_holds_back_the_last() -> None:
    # Given a watch that yields at most one state per second, on a clock the test moves
    now = [100.0]
    watcher = Watcher(MISSING, Config.resolve(BASE, env={}), None, 1.0, clock=lambda: now[0])

    def read(chunk: bytes, at: float) -> list[tuple[str, int]]:
        now[0] = at
        return _progress(watcher.read(chunk.decode()))

    # Then the first state goes at once; states within the second are held back, the newest
    # replacing older ones, and go with the next message or keepalive after the second
    assert read(state(1), 100.0) == [("in_progress", 1)]
    assert read(state(2) + state(3), 100.4) == []
    assert read(b": keepalive\n\n", 100.9) == []
    assert read(state(4), 101.0) == [("in_progress", 4)]
    assert read(state(5), 101.5) == []
    assert read(b": keepalive\n\n", 102.1) == [("in_progress", 5)]
    # And the final state is never held back
    assert read(state(6), 102.2) == []
    assert read(DONE, 102.3) == [("completed", 10)]
    assert watcher.finished


def test_watch_follows_the_event_stream_until_the_job_completes(
    connect: Factory, pauses: list[float]
) -> None:
    # Given a job that moves 4 operations between two of its events
    fake = FakeApi(steps_per_read=4)
    api = connect(fake, timeout=7)
    job_id = api.submit(SEED).id

    seen = list(api.watch(job_id, interval=0))

    # Then it yielded each state up to the completed one, from one stream, without pausing
    assert _progress(seen) == [("in_progress", 4), ("in_progress", 8), ("completed", 10)]
    assert seen[-1].finished_at is not None and seen[-1].succeeded == 10
    (request,) = fake.requests[1:]
    assert request.url.path == f"/api/jobs/{job_id}/events"
    assert request.headers["Accept"] == "text/event-stream"
    # with a read timeout longer than the API's 15 s keepalives; the rest as configured
    assert request.extensions["timeout"] == {"connect": 7, "read": 45, "write": 7, "pool": 7}
    assert pauses == []


@pytest.mark.parametrize("size", [1, 7, 50])
def test_watch_reads_messages_split_across_reads_and_yields_each_change_once(
    connect: Factory, pauses: list[float], size: int
) -> None:
    # Given a stream cut mid-line, with keepalives, a job event without data, and a state sent
    # twice
    body = (
        b"retry: 2000\n\n"
        + state(2)
        + b": keepalive\n\nevent: job\n\n"
        + state(2)
        + state(7)
        + DONE
    )
    answers = Answers(event_stream(*_cut(body, size)))

    seen = list(connect(handler=answers).watch(MISSING, interval=0))

    assert _progress(seen) == [("in_progress", 2), ("in_progress", 7), ("completed", 10)]
    assert len(answers.requests) == 1 and pauses == []


def test_watch_reads_crlf_and_cr_line_ends_split_between_reads(
    connect: Factory, pauses: list[float]
) -> None:
    # Given a stream whose CRLFs are split between reads, and whose last message ends with CR
    # line ends, the stream's very last byte a CR
    crlf = state(4).replace(b"\n", b"\r\n")
    cr = DONE.replace(b"\n", b"\r")
    body = crlf + cr
    split = body.index(b"\r\n") + 1
    answers = Answers(event_stream(body[:split], body[split:-1], body[-1:]))

    seen = list(connect(handler=answers).watch(MISSING, interval=0))

    # Then both states came from the one stream (the final one was not dropped at its end)
    assert _progress(seen) == [("in_progress", 4), ("completed", 10)]
    assert len(answers.requests) == 1 and pauses == []


def test_watch_reconnects_when_a_stream_ends_without_a_final_state(
    connect: Factory, pauses: list[float]
) -> None:
    # Given a stream whose lifetime ends before the job does, then one that sees it complete
    answers = Answers(
        event_stream(b"retry: 1500\n\n" + state(3), state(5)),
        event_stream(b"retry: 1500\n\n" + state(5), state(8) + DONE),
    )

    seen = list(connect(handler=answers).watch(MISSING, interval=0))

    # Then it opened the stream again after the server's reconnection time, and went on from
    # the new stream's first state, which it did not yield twice
    assert _progress(seen) == [
        ("in_progress", 3),
        ("in_progress", 5),
        ("in_progress", 8),
        ("completed", 10),
    ]
    assert len(answers.requests) == 2
    assert pauses == [1.5]


def test_watch_keeps_the_server_s_reconnection_time_across_streams(
    connect: Factory, pauses: list[float]
) -> None:
    # Given a first stream that sets the reconnection time, and a second one that does not
    answers = Answers(
        event_stream(b"retry: 1500\n\n" + state(3)),
        event_stream(state(5)),
        event_stream(b"retry: -1\n\nretry: soon\n\n" + state(8)),
        event_stream(DONE),
    )

    seen = list(connect(handler=answers).watch(MISSING, interval=0))

    # Then every reconnection waited the 1.5 s it set (a retry that is no time changes nothing)
    assert [job.done for job in seen] == [3, 5, 8, 10]
    assert pauses == [1.5, 1.5, 1.5]


def test_watch_reconnects_after_a_broken_connection_with_the_retry_backoff(
    connect: Factory, pauses: list[float]
) -> None:
    # Given a stream whose connection breaks, an API that then refuses once, then a stream
    answers = Answers(
        event_stream(state(4), b'event: job\ndata: {"half', cut=True),
        httpx.ConnectError("refused"),
        event_stream(state(6) + DONE),
    )
    api = connect(handler=answers, retry=Retry(attempts=3, backoff=0.5))

    seen = list(api.watch(MISSING, interval=0))

    assert _progress(seen) == [("in_progress", 4), ("in_progress", 6), ("completed", 10)]
    assert pauses == [0.5, 1.0]  # two failures in a row


def test_watch_starts_counting_failures_again_after_a_stream_that_brought_a_state(
    connect: Factory,
) -> None:
    # Given streams that each bring a new state and then break, more times than the retry
    # policy allows failures in a row
    breaking = [event_stream(state(n), cut=True) for n in range(1, 6)]
    answers = Answers(*breaking, event_stream(DONE))

    seen = list(connect(handler=answers, retry=Retry(attempts=2)).watch(MISSING, interval=0))

    assert [job.done for job in seen] == [1, 2, 3, 4, 5, 10]


def test_watch_gives_up_after_the_retry_policy_s_attempts(
    connect: Factory, pauses: list[float]
) -> None:
    # Given an API that sends one state, then breaks or refuses every time
    answers = Answers(
        event_stream(state(1), cut=True),
        httpx.ConnectError("[Errno 111] Connection refused"),
        event_stream(cut=True),  # a stream that breaks before any state is a failure too
    )
    api = connect(handler=answers, retry=Retry(attempts=3, backoff=0.1))

    with pytest.raises(ApiUnreachable, match=r"Connection refused|complete body"):
        list(api.watch(MISSING, interval=0))

    assert len(answers.requests) == 3
    assert pauses == [0.1, 0.2]


def test_watch_of_a_stream_that_ends_before_any_state_retries_then_gives_up(
    connect: Factory,
) -> None:
    answers = Answers(event_stream(b"retry: 2000\n\n"), event_stream(b": keepalive\n\n"))
    with pytest.raises(ApiUnreachable, match="the stream ended before any state"):
        list(connect(handler=answers, retry=Retry(attempts=2)).watch(MISSING))
    assert len(answers.requests) == 2


def test_watch_raises_not_found_when_the_job_is_deleted(connect: Factory) -> None:
    # Given a stream that shows the job, then its deletion
    deleted = b'event: job\ndata: {"id": "%s", "status": "deleted"}\n\n' % MISSING.encode()
    answers = Answers(event_stream(state(3), deleted))

    # Then watching it fails as reading a deleted job does: NotFound, 404 not_found
    with pytest.raises(NotFound) as gone:
        list(connect(handler=answers).watch(MISSING, interval=0))

    assert (gone.value.status, gone.value.code) == (404, "not_found")
    assert gone.value.message == f"job {MISSING} was deleted"


def test_watch_yields_the_states_before_a_deletion() -> None:
    deleted = b'event: job\ndata: {"id": "%s", "status": "deleted"}\n\n' % MISSING.encode()
    answers = Answers(event_stream(state(3), deleted))
    seen: list[Job] = []

    with Client(BASE, transport=httpx.MockTransport(answers)) as api, pytest.raises(NotFound):
        seen.extend(api.watch(MISSING, interval=0))

    assert _progress(seen) == [("in_progress", 3)]


def test_watch_of_an_unknown_job_is_not_found_at_once(connect: Factory) -> None:
    fake = FakeApi()
    with pytest.raises(NotFound, match=f"no job {MISSING}"):
        list(connect(fake).watch(MISSING))
    assert len(fake.requests) == 1


def test_watch_retries_a_busy_api(connect: Factory, pauses: list[float]) -> None:
    # Given a worker whose every watcher place is taken, once
    fake = FakeApi(steps_per_read=10)
    job_id = connect(fake).submit(SEED).id
    busy = httpx.Response(
        503,
        json={"error": "busy", "message": "this worker already serves 200 event streams"},
        headers={"Retry-After": "5"},
    )
    answers = Answers(busy)

    def handle(request: httpx.Request) -> httpx.Response:
        return answers(request) if answers.answers else fake.handle(request)

    seen = list(connect(handler=handle, retry=Retry(backoff=0.3)).watch(job_id, interval=0))

    assert _progress(seen) == [("completed", 10)]
    assert pauses == [0.3]


def test_watch_gives_up_on_a_busy_api_with_its_message(connect: Factory) -> None:
    busy = {"error": "busy", "message": "this worker already serves 200 event streams"}
    answers = Answers(*[httpx.Response(503, json=busy) for _ in range(2)])
    with pytest.raises(Unavailable, match="already serves 200 event streams"):
        list(connect(handler=answers, retry=Retry(attempts=2)).watch(MISSING))


def test_watch_sends_the_token(connect: Factory) -> None:
    fake = FakeApi(token="s3cret", steps_per_read=10)
    job_id = connect(fake, token="s3cret").submit(SEED).id

    assert [job.done for job in connect(fake, token="s3cret").watch(job_id)] == [10]
    with pytest.raises(Unauthorized):
        list(connect(fake, token=None).watch(job_id))

    assert fake.requests[1].url.path.endswith("/events")
    assert fake.requests[1].headers["Authorization"] == "Bearer s3cret"
    assert "Authorization" not in fake.requests[2].headers


def test_watch_gives_up_at_the_deadline_with_the_newest_state(connect: Factory) -> None:
    # Given a job that does not move
    fake = FakeApi()
    api = connect(fake)
    job_id = api.submit(SEED).id
    fake.run(job_id, 3)

    with pytest.raises(WaitTimeout) as late:
        list(api.watch(job_id, timeout=0))

    assert late.value.job.id == job_id and late.value.job.done == 3
    assert "is still in_progress after 0 s (3 of 10 operations done)" in str(late.value)


def test_watch_checks_the_deadline_at_a_keepalive(connect: Factory) -> None:
    # Given a job that moves once, then sends only a keepalive (half a second later) before the
    # state that completes it
    answers = Answers(event_stream(state(3), b": keepalive\n\n", DONE, delay=0.5))

    # When it is watched with a deadline that passes before the keepalive comes
    with pytest.raises(WaitTimeout) as late:
        list(connect(handler=answers).watch(MISSING, interval=0, timeout=0.2))

    # Then the keepalive was enough to end it, with the newest state
    assert late.value.job.done == 3


def test_watch_of_an_answer_that_is_not_a_stream_is_a_protocol_error(connect: Factory) -> None:
    answers = Answers(httpx.Response(200, json={"id": MISSING}))
    with pytest.raises(ProtocolError, match="not an event stream: is this a jobstream API"):
        list(connect(handler=answers).watch(MISSING))


def test_watch_of_an_event_that_is_not_json_is_a_protocol_error(connect: Factory) -> None:
    answers = Answers(event_stream(b"event: job\ndata: <html>\n\n"))
    with pytest.raises(ProtocolError, match="not JSON"):
        list(connect(handler=answers).watch(MISSING))


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
