"""What the synchronous and asynchronous clients share, free of I/O: configuration, request
bodies, which failures to retry, answers to results or errors, paging, waiting and watching
decisions (the Server-Sent Events themselves are decoded by httpx-sse).

Each client only runs the loops (send, sleep) around these pieces, so the two cannot disagree.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import orjson

# EventSource.iter_sse() swallows comments, so a keepalive would never reach the Watcher: it feeds
# each read to the two decoders iter_sse is made of instead (httpx-sse is pinned exactly).
from httpx_sse._decoders import SSEDecoder, SSELineDecoder

from jobstream import __version__
from jobstream.client.errors import ApiUnreachable, NotFound, ProtocolError, WaitTimeout, api_error
from jobstream.client.models import Job

URL_ENV = "JOBSTREAM_API_URL"
TOKEN_ENV = "JOBSTREAM_API_TOKEN"
DEFAULT_URL = "http://127.0.0.1:8080"
#: Seconds the API holds `GET /api/jobs/{id}?wait=` at most.
MAX_SERVER_WAIT = 60
#: Query parameter that carries a listing's `next` cursor back to the API.
CURSOR_PARAM = "cursor"
#: Largest page the API serves.
MAX_PAGE_SIZE = 100
#: Seconds an event stream may stay silent before its connection is taken for dead and replaced:
#: three of the API's keepalives (one every 15 s when nothing changes).
STREAM_READ_TIMEOUT = 45.0
#: Headers of an event stream's request (the client's own go too: the token among them).
STREAM_HEADERS = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}

#: Methods that may be sent twice with the effect of once.
IDEMPOTENT = frozenset({"GET", "HEAD", "DELETE"})
#: Statuses that say "not now": the API's 503, and a proxy's 502/504 in front of it.
RETRY_STATUSES = frozenset({502, 503, 504})
#: Failures that happen before a request reaches the server: retrying them is safe for any method.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: Failures after which an idempotent request is retried.
TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

#: What `submit` takes: a Path (read as a file), text or bytes (one expression per line), or a
#: list of expressions (sent as JSON).
Source = PurePath | str | bytes | Iterable[str]


@dataclass(frozen=True)
class Retry:
    """How often and how patiently safe requests are retried (exponential backoff)."""

    #: Tries in all, the first included.
    attempts: int = 4
    #: Seconds before the second try; doubled for each further one.
    backoff: float = 0.25
    max_backoff: float = 4.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th failed try."""
        return min(self.backoff * 2 ** (failures - 1), self.max_backoff)


@dataclass(frozen=True)
class Poll:
    """How `wait` polls an API that does not hold `?wait=` requests, and how `watch` paces what
    it yields."""

    #: First pause between two reads of a job, in seconds; doubled up to `max_interval`.
    interval: float = 0.2
    max_interval: float = 2.0
    #: Least time between two states `watch` yields, in seconds (the event stream is not polled).
    watch_interval: float = 0.5


DEFAULT_RETRY = Retry()
DEFAULT_POLL = Poll()


@dataclass(frozen=True)
class Config:
    """Where the API is and how to talk to it."""

    base_url: str
    token: str | None = None
    #: Seconds for one request (connect, read, write); `?wait=` requests get their wait on top.
    timeout: float = 30.0
    retry: Retry = DEFAULT_RETRY
    poll: Poll = DEFAULT_POLL

    @classmethod
    def resolve(
        cls,
        base_url: str | None = None,
        token: str | None = None,
        *,
        env: Mapping[str, str] | None = None,
        **options: Any,
    ) -> Config:
        """Arguments first, then JOBSTREAM_API_URL / JOBSTREAM_API_TOKEN, then the defaults."""
        env = os.environ if env is None else env
        url = base_url or env.get(URL_ENV) or DEFAULT_URL
        if "://" not in url:
            url = "http://" + url  # "localhost:8080" is what people type
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the API URL must look like http://host:port, got {url!r}")
        return cls(base_url=url.rstrip("/"), token=token or env.get(TOKEN_ENV) or None, **options)

    def url(self, path: str) -> str:
        """The full URL of a path (or of an absolute URL the API handed out)."""
        return path if "://" in path else self.base_url + path

    def headers(self) -> dict[str, str]:
        """Headers every request carries."""
        headers = {"Accept": "application/json", "User-Agent": f"jobstream-client/{__version__}"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def stream_timeout(self) -> httpx.Timeout:
        """An event stream's timeouts: `timeout` to connect, STREAM_READ_TIMEOUT per read."""
        return httpx.Timeout(self.timeout, read=STREAM_READ_TIMEOUT)


def job_path(job_id: str, *rest: str | int) -> str:
    """`/api/jobs/{id}/...`, every segment quoted (an id can never change the path)."""
    segments = [quote(str(part), safe="") for part in (job_id, *rest)]
    return "/api/jobs/" + "/".join(segments)


def submission_body(source: Source) -> tuple[bytes, str]:
    """The POST body and its content type for what `submit` was given."""
    if isinstance(source, PurePath):
        with open(source, "rb") as file:
            return file.read(), "text/plain; charset=utf-8"
    if isinstance(source, bytes):
        return source, "text/plain; charset=utf-8"
    if isinstance(source, str):
        return source.encode(), "text/plain; charset=utf-8"
    operations = list(source)
    if not all(isinstance(item, str) for item in operations):
        raise TypeError("submit takes a Path, text, bytes or an iterable of expression strings")
    return orjson.dumps({"operations": operations}), "application/json"


class Attempts:
    """The retry decisions for one logical request, tried up to `retry.attempts` times."""

    def __init__(self, method: str, url: str, retry: Retry, timeout: float) -> None:
        self.method = method
        self.url = url
        self.retry = retry
        self.timeout = timeout
        self.failures = 0
        #: Whether an earlier try may have reached the server (so it may have taken effect).
        self.maybe_done = False

    def on_error(self, exc: httpx.TransportError) -> float:
        """Seconds to wait before the next try after `exc`; raises when it must not be retried."""
        sent = not isinstance(exc, NOT_SENT)
        retryable = not sent or (self.method in IDEMPOTENT and isinstance(exc, TRANSIENT))
        self.maybe_done = self.maybe_done or sent
        self.failures += 1
        if not retryable or self.failures >= self.retry.attempts:
            raise ApiUnreachable(self._describe(exc)) from exc
        return self.retry.delay(self.failures)

    def on_response(self, response: httpx.Response) -> float | None:
        """Seconds to wait before retrying this answer, or None to take it as final."""
        if response.status_code not in RETRY_STATUSES or self.method not in IDEMPOTENT:
            return None
        self.maybe_done = True
        self.failures += 1
        return self.retry.delay(self.failures) if self.failures < self.retry.attempts else None

    def result(self, response: httpx.Response) -> Any:
        """The decoded JSON of a successful answer (None when empty), or the API's error raised."""
        status = response.status_code
        if status == 404 and self.method == "DELETE" and self.maybe_done:
            return None  # an earlier try may have deleted it: the caller's wish holds either way
        body = _json(response)
        if status >= 400:
            raise api_error(status, body, "" if body is not None else response.text)
        if status == 204 or not response.content:
            return None
        if body is None:
            raise ProtocolError(
                f"{self.method} {self.url} answered {status} with "
                f"{response.headers.get('Content-Type', 'no content type')}, not JSON: is "
                "this a jobstream API?"
            )
        return body

    def _describe(self, exc: httpx.TransportError) -> str:
        if isinstance(exc, httpx.TimeoutException):
            what = f"no answer within {self.timeout:g} s"
        else:
            what = str(exc) or type(exc).__name__
        message = f"cannot reach the jobstream API at {self.url}: {what}"
        if self.method == "POST" and not isinstance(exc, NOT_SENT):
            message += " (the request was sent: the job may have been created)"
        return message


def _json(response: httpx.Response) -> Any:
    kind = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if kind != "application/json" or not response.content:
        return None
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None


class Pager:
    """Walks a listing page by page: by its `next` cursor when the API gives one, else by number."""

    def __init__(self, path: str, size: int, status: str | None) -> None:
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise ValueError(f"page size must be between 1 and {MAX_PAGE_SIZE}, got {size}")
        self.path = path
        self.size = size
        self.status = status
        self.page = 1
        self.cursor: str | None = None
        self.done = False

    def request(self) -> tuple[str, dict[str, Any]]:
        """The path and query of the next page."""
        params: dict[str, Any] = {"size": self.size}
        if self.status is not None:
            params["status"] = self.status
        if self.cursor is None:
            return self.path, {**params, "page": self.page}
        if self.cursor.startswith(("/", "http://", "https://")):
            return self.cursor, {}  # the API gave the whole next URL
        return self.path, {**params, CURSOR_PARAM: self.cursor}

    def advance(self, body: Any) -> list[dict[str, Any]]:
        """Take one page's answer; returns its items that match the status filter."""
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise ProtocolError(f"a listing should have an 'items' list, got {body!r:.100}")
        items: list[dict[str, Any]] = body["items"]
        if "next" in body:
            following = body["next"]
            if following is not None and not isinstance(following, str):
                raise ProtocolError(f"'next' should be a string or null, got {following!r:.60}")
            if following == self.cursor and following is not None:
                raise ProtocolError(f"the API gave the same 'next' cursor twice: {following!r:.60}")
            self.cursor = following
            self.done = not following or not items
        else:
            total, size = body.get("total"), body.get("size")
            served = size if isinstance(size, int) and size > 0 else self.size  # may be capped
            self.done = (
                not items
                or len(items) < served
                or (isinstance(total, int) and self.page * served >= total)
            )
            self.page += 1
        # the API may not filter yet (an unknown parameter is ignored): filter here too
        return [i for i in items if self.status is None or i.get("status") == self.status]


class Waiter:
    """The decisions of `wait`: how long to ask the API to hold, and what to do with its answer.

    Every read asks the API to hold it until the job completes (`?wait=`). An API that does not
    know that parameter answers at once; an early answer for an unfinished job therefore means
    "poll", with a pause that doubles from `poll.interval` to `poll.max_interval`.
    """

    def __init__(self, job_id: str, timeout: float | None, poll: Poll) -> None:
        self.job_id = job_id
        self.timeout = timeout
        self.deadline = math.inf if timeout is None else time.monotonic() + timeout
        self.poll = poll
        self.pause = poll.interval

    def hold(self) -> int:
        """Whole seconds to ask the API to hold the next read (0: none left, do not ask)."""
        remaining = self.deadline - time.monotonic()
        return max(int(min(remaining, MAX_SERVER_WAIT)), 0)

    def after(self, job: Job, held: int, elapsed: float) -> float | None:
        """None when `job` is the answer; else seconds to pause before the next read.

        Raises WaitTimeout when the deadline has passed.
        """
        if job.finished:
            return None
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise _late(job, self.timeout)
        if held and elapsed >= held * 0.9:
            return 0.0  # the API held the request as asked: ask again at once
        pause = min(self.pause, remaining)
        self.pause = min(self.pause * 2, self.poll.max_interval)
        return pause


def _late(job: Job, timeout: float | None) -> WaitTimeout:
    """The error of a wait or a watch whose deadline passed before the job finished."""
    return WaitTimeout(
        f"job {job.id} is still {job.status} after {timeout:g} s "
        f"({job.done:,} of {job.total:,} operations done)",
        job,
    )


def changed(before: Job | None, now: Job) -> bool:
    """Whether `watch` has something new to report."""
    return before is None or (before.status, before.succeeded, before.failed, before.total) != (
        now.status,
        now.succeeded,
        now.failed,
        now.total,
    )


class Watcher:
    """The decisions of `watch`, which follows the job's event stream (`GET .../events`).

    The stream sends the job's state, then each change, and ends after a final state (completed,
    or deleted: NotFound); a stream that ends without one (its lifetime ran out) or whose
    connection failed is opened again, and its first message is the state then. Failures in a
    row are retried as `Retry` says; a stream that brought a state starts the count again.

    Yields states that changed (`changed`), at most one per `interval` seconds: a state that comes
    sooner is held back, replaced by newer ones, and yielded at the next message or keepalive
    once `interval` has passed; the final state is never held back. With a `timeout`, the
    deadline is checked at each message, keepalive and reconnection.

    httpx-sse decodes the stream; `read` takes it read by read (so a keepalive, which decodes to
    no event, still gets a held-back state out and the deadline checked) and `on_event` takes
    each event.
    """

    def __init__(
        self,
        job_id: str,
        config: Config,
        timeout: float | None,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job_id = job_id
        self.path = job_path(job_id, "events")
        self.timeout = timeout
        self.interval = interval
        self.deadline = math.inf if timeout is None else clock() + timeout
        self._url = config.url(self.path)
        self._retry = config.retry
        self._clock = clock
        self._attempts = self._new_attempts()
        self._lines = SSELineDecoder()
        self._events = SSEDecoder()
        #: Seconds the server asks a client to wait before reconnecting (its last `retry:`).
        self._reconnect: float | None = None
        #: A state came on the current connection.
        self._heard = False
        #: The newest state heard, yielded or held back.
        self.latest: Job | None = None
        #: The last state yielded.
        self.shown: Job | None = None
        self._shown_at = -math.inf

    def opened(self, response: httpx.Response) -> bool:
        """Whether the answer is the event stream; else `on_answer` says what to do with it."""
        self._lines, self._events = SSELineDecoder(), SSEDecoder()  # `_reconnect` outlives them
        kind = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        return response.status_code == 200 and kind == "text/event-stream"

    def on_answer(self, response: httpx.Response) -> float:
        """Seconds to wait before asking again after an answer that is not a stream (502-504);
        else raises the API's error (NotFound for a 404) or ProtocolError."""
        pause = self._attempts.on_response(response)
        if pause is not None:
            return pause
        self._attempts.result(response)
        raise ProtocolError(
            f"GET {self._url} answered {response.status_code} with "
            f"{response.headers.get('Content-Type', 'no content type')}, not an event stream: "
            "is this a jobstream API?"
        )

    def read(self, text: str) -> list[Job]:
        """The states to yield now that `text` of the stream has come (one read, decoded)."""
        return self._decode(self._lines.decode(text))

    def read_end(self) -> list[Job]:
        """The states to yield when the stream ends (a final CR may end a message's blank line),
        as `EventSource.iter_sse` does."""
        return self._decode(self._lines.flush())

    def on_event(self, event: str, data: str, retry: int | None) -> list[Job]:
        """The states to yield now that an event has come (`retry` in milliseconds)."""
        if retry is not None and retry >= 0:
            self._reconnect = retry / 1000
        if event != "job" or not data or self.finished:
            return []  # a `job` event without data is none, as the format says
        self.latest = self._state(data)
        self._heard = True
        return self._offer()

    def _decode(self, lines: list[str]) -> list[Job]:
        shown = []
        for line in lines:
            event = self._events.decode(line)
            if event is not None:
                shown += self.on_event(event.event, event.data, event.retry)
        return shown + self._offer()

    @property
    def finished(self) -> bool:
        """Whether the final state has been yielded."""
        return self.shown is not None and self.shown.finished

    def check_deadline(self) -> None:
        """Raise WaitTimeout, with the newest state, once the deadline has passed."""
        job = self.latest
        if job is not None and not job.finished and self._clock() >= self.deadline:
            raise _late(job, self.timeout)

    def on_end(self) -> float:
        """Seconds to wait before opening the stream again after it ended without a final state."""
        if not self._heard:
            return self.on_error(httpx.RemoteProtocolError("the stream ended before any state"))
        self.check_deadline()
        self._renew()
        return self._reconnect if self._reconnect is not None else self._retry.delay(1)

    def on_error(self, exc: httpx.TransportError) -> float:
        """Seconds to wait before opening the stream again after `exc`; raises ApiUnreachable
        after the last attempt."""
        self.check_deadline()
        self._renew()
        return self._attempts.on_error(exc)

    def _renew(self) -> None:
        """Count failures from zero again when the last connection brought a state."""
        if self._heard:
            self._attempts, self._heard = self._new_attempts(), False

    def _new_attempts(self) -> Attempts:
        return Attempts("GET", self._url, self._retry, STREAM_READ_TIMEOUT)

    def _state(self, data: str) -> Job:
        """The job in a `job` message; NotFound when it says the job was deleted."""
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise ProtocolError(f"a job event that is not JSON: {data!r:.100}") from None
        if isinstance(doc, dict) and doc.get("status") == "deleted":
            raise NotFound(f"job {self.job_id} was deleted")
        return Job.from_json(doc)

    def _offer(self) -> list[Job]:
        """The newest state, when it is news and it is final or its turn has come."""
        job = self.latest
        if job is None or not changed(self.shown, job):
            return []
        now = self._clock()
        if not job.finished and now - self._shown_at < self.interval:
            return []
        self.shown, self._shown_at = job, now
        return [job]
