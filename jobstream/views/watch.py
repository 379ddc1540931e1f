"""Watching jobs without polling: event streams and waits, fed by the worker's `JobEventHub`.

A stream of one job starts with its state (one database read), then sends each change the worker
hears of, and ends after the job completes or is deleted; the stream of every job sends changes
and the operations-per-second figure. A wait reads the job at most once at the start and once at
the end. Each stream or wait holds one of `max_watchers` places (beyond them: 503); streams send a
keepalive comment when idle, end after `event_stream_seconds` (clients reconnect and resume from
the current state), and end at once when the hub closes (the worker shuts down).
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Literal, Protocol

import orjson
from aiohttp import web as aioweb

from jobstream.dbmetrics import WATCH_READ, origin
from jobstream.errors import InvalidJob, NotFound
from jobstream.jobevents import JobChange, JobEventHub, Subscription
from jobstream.jobfeed import EventMetrics
from jobstream.models import Job
from jobstream.settings import Settings
from jobstream.views.base import problem

log = logging.getLogger(__name__)

#: Longest `?wait=`, in seconds.
MAX_WAIT_SECONDS = 60.0
#: An idle stream sends a comment this often, so proxies keep it and gone clients are noticed.
KEEPALIVE_SECONDS = 15.0
#: How often the all-jobs stream looks at the operations-per-second figure.
STATS_SECONDS = 1.0
#: What a client waits before reconnecting after a stream ends without a final state (ms).
RETRY_MILLISECONDS = 2000
#: A decimal number, as JSON or a query string writes it (no sign: waits are not negative).
WAIT = re.compile(r"(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")

Write = Callable[[bytes], Awaitable[None]]
Kind = Literal["stream", "wait"]


class JobReader(Protocol):
    """The one storage call the watching views make."""

    async def get_job(self, job_id: str) -> Job: ...


class TooManyWatchers(Exception):
    """Every place for a stream or a wait on this worker is taken."""


def sse(event: str, data: Any) -> bytes:
    """One Server-Sent Events message (the JSON has no newline, so one `data:` line)."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


KEEPALIVE = b": keepalive\n\n"
STREAM_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache, no-store",
    "X-Accel-Buffering": "no",  # proxies must pass each message on at once
}


def wait_seconds(raw: str) -> float:
    """The `wait` query parameter: seconds, from 0 to MAX_WAIT_SECONDS (given empty, it is
    refused like any other non-number, as `?page=` is)."""
    value = float(raw) if WAIT.fullmatch(raw) else math.nan
    if not 0 <= value <= MAX_WAIT_SECONDS:  # also refuses nan
        raise InvalidJob(
            f"wait must be a number of seconds from 0 to {MAX_WAIT_SECONDS:g}, got {raw[:20]!r}"
        )
    return value


async def stream_changes(
    write: Write,
    subscription: Subscription,
    first: JobChange | None,
    *,
    deadline: float,
    keepalive: float = KEEPALIVE_SECONDS,
    stats: Callable[[], dict[str, Any]] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Write a job's state, then its changes, until one is final; returns why the stream ended.

    With `first` None, every change the subscription gets (the all-jobs stream), with a `stats`
    message whenever the figures change. Ends with "final", "lifetime" (the deadline passed) or
    "shutdown" (the hub closed the subscription).
    """
    last = first
    if first is not None:
        await write(sse("job", first.to_json()))
        if first.final:
            return "final"
    sent_stats: dict[str, Any] | None = None
    idle_since = clock()
    while True:
        now = clock()
        if now >= deadline:
            return "lifetime"
        if stats is not None:
            figures = stats()
            if figures != sent_stats:
                await write(sse("stats", figures))
                sent_stats, idle_since = figures, now
        timeout = min(deadline, idle_since + keepalive) - now
        if stats is not None:
            timeout = min(timeout, STATS_SECONDS)
        changes = await subscription.next(timeout)
        messages = []
        for change in changes:
            if last is not None:
                if not change.supersedes(last):
                    continue  # older news than what the client has (events can cross)
                change = change.completing_from(last)
                last = change
            messages.append(sse("job", change.to_json()))
        if messages:
            await write(b"".join(messages))  # one write per wake-up, however many jobs changed
            idle_since = clock()
        if last is not None and last.final:
            return "final"
        if subscription.closed:
            return "shutdown"
        if not changes and clock() - idle_since >= keepalive and clock() < deadline:
            await write(KEEPALIVE)
            idle_since = clock()


class Watch:
    """What the watching views share: the hub, the first-state reads, and the bounds."""

    def __init__(
        self,
        hub: JobEventHub,
        jobs: JobReader,
        settings: Settings,
        metrics: EventMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hub = hub
        self._jobs = jobs
        self._limit = settings.max_watchers
        self._lifetime = settings.event_stream_seconds
        self._metrics = metrics
        self._clock = clock
        self._held = 0

    @contextlib.contextmanager
    def place(self, kind: Kind) -> Iterator[None]:
        """Hold one of the worker's places for a stream or a wait, or raise TooManyWatchers."""
        if self._held >= self._limit:
            raise TooManyWatchers(
                f"this worker already serves {self._limit} event streams and waiting requests; "
                "retry later or on another worker"
            )
        self._held += 1
        gauge = self._metrics.watchers.labels(kind)
        gauge.inc()
        try:
            yield
        finally:
            self._held -= 1
            gauge.dec()

    async def job_response(self, job_id: str, raw_wait: str) -> aioweb.Response:
        """`GET /api/jobs/{id}?wait=`: the job, once completed or when the wait is over."""
        seconds = wait_seconds(raw_wait)
        try:
            job = await self.until_completed(job_id, seconds)
        except TooManyWatchers as exc:
            return _busy(exc)
        return aioweb.json_response(job.to_json())

    async def until_completed(self, job_id: str, seconds: float) -> Job:
        """The job once it is completed, or as it is after `seconds`; NotFound if deleted."""
        if seconds <= 0:
            return await self._jobs.get_job(job_id)
        with self.place("wait"), self.hub.subscribe(job_id) as subscription:
            job = await self._read(job_id, "wait")  # subscribed first: no change slips between
            if job.status != "in_progress":
                return job
            read = latest = JobChange.of(job)
            deadline = self._clock() + seconds
            while not latest.final and not subscription.closed:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                for change in await subscription.next(remaining):
                    if change.supersedes(latest):
                        latest = change.completing_from(latest)
        if latest.status == "deleted":
            raise NotFound(f"job {job_id} was deleted")
        if latest is read or (latest.status == "completed" and latest.finished_at is None):
            # No news (events may be lost, or not flowing), or no completion time: read once more.
            return await self._read(job_id, "wait")
        return Job(
            id=job.id,
            status=latest.status,  # type: ignore[arg-type]
            total=latest.total,
            succeeded=latest.succeeded,
            failed=latest.failed,
            created_at=job.created_at,
            finished_at=latest.finished_at,
        )

    async def _read(self, job_id: str, kind: Kind) -> Job:
        """The job from storage, counted (watchers read it at their start and end only), its
        database commands labelled origin=api-watch."""
        self._metrics.reads.labels(kind).inc()
        with origin(WATCH_READ):
            return await self._jobs.get_job(job_id)

    async def stream(self, request: aioweb.Request, job_id: str | None) -> aioweb.StreamResponse:
        """An event stream of one job (its state first) or of every job."""
        try:
            with self.place("stream"), self.hub.subscribe(job_id) as subscription:
                first = None
                if job_id is not None:  # subscribed first: no change slips between; a NotFound
                    first = JobChange.of(await self._read(job_id, "stream"))  # still answers 404
                response = aioweb.StreamResponse(headers=STREAM_HEADERS)
                await response.prepare(request)
                await self._run(response, subscription, first, job_id)
                self._metrics.dropped.labels("watcher").inc(subscription.lost)
                return response
        except TooManyWatchers as exc:
            return _busy(exc)

    async def _run(
        self,
        response: aioweb.StreamResponse,
        subscription: Subscription,
        first: JobChange | None,
        job_id: str | None,
    ) -> None:
        """Stream until the end; from here on, a failure can only end the stream (headers left)."""
        try:
            await response.write(f"retry: {RETRY_MILLISECONDS}\n\n".encode())
            await stream_changes(
                response.write,
                subscription,
                first,
                deadline=self._clock() + self._lifetime,
                stats=self._stats if job_id is None else None,
                clock=self._clock,
            )
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away
        except Exception:
            log.exception("event stream of %s failed", job_id or "every job")

    def _stats(self) -> dict[str, Any]:
        return {"operations_per_second": round(self.hub.throughput.per_second(), 1)}


def _busy(exc: TooManyWatchers) -> aioweb.Response:
    response = problem(503, "busy", str(exc))
    response.headers["Retry-After"] = "5"
    return response


#: Where views find the worker's Watch (`request.app[WATCH]`); `views.jobs` takes `?wait=` to it.
WATCH = aioweb.AppKey("jobstream.watch", Watch)
