"""Job events: what changed in a job, its wire form, and the fan-out to the watchers of a worker.

The database stays the source of truth; an event only tells a watcher sooner. So every part here
is lossy by design and bounded: a slow watcher, a full buffer or a broker that is down costs a live
view some intermediate states, never memory, never the persisting agent's time.

- `JobChange`: one job's absolute counters and status after a persist batch (newest wins).
- `JobEventHub`: per-job and all-jobs subscriptions, each coalescing to the newest change per job.
- `JobEventPublisher`: fire-and-forget publishing through a `Sender`, coalesced per job.

Pure: no Faust, no Kafka client and no database here (`jobstream.jobfeed` wires them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, Protocol

import orjson

from jobstream.models import InvalidEvent, Job

log = logging.getLogger(__name__)

ChangeStatus = Literal["in_progress", "completed", "deleted"]
_RANK = {"in_progress": 0, "completed": 1, "deleted": 2}


@dataclass(frozen=True, slots=True)
class JobChange:
    """A job's state after a change: absolute counters, so the newest change says everything."""

    #: The job (also the Kafka key, so one job's changes stay in order on one partition).
    job_id: str
    #: Operations in the job.
    total: int
    #: Operations that succeeded so far.
    succeeded: int
    #: Operations that failed so far.
    failed: int
    #: "in_progress", "completed" (every operation ended) or "deleted".
    status: ChangeStatus
    #: When the change was made (timezone-aware).
    at: datetime
    #: When the job was created, when the publisher knows it.
    created_at: datetime | None = None
    #: When the job completed, when the publisher knows it.
    finished_at: datetime | None = None

    @property
    def done(self) -> int:
        """Operations that ended, either way."""
        return self.succeeded + self.failed

    @property
    def final(self) -> bool:
        """Whether nothing can follow this change (the job completed or was deleted)."""
        return self.status != "in_progress"

    def supersedes(self, other: JobChange) -> bool:
        """Whether this is newer news than `other` about the same job.

        Changes of one job can arrive out of order (a rebalance moves its persisting to another
        worker), and counters only grow: an end beats progress, deletion beats completion, more
        ended operations beat fewer. An equal change is not news.
        """
        return (_RANK[self.status], self.done) > (_RANK[other.status], other.done)

    def completing_from(self, earlier: JobChange) -> JobChange:
        """This change, with the creation time an earlier change of the job knew and it does not."""
        if self.created_at is not None or earlier.created_at is None:
            return self
        return replace(self, created_at=earlier.created_at)

    @classmethod
    def deletion(cls, job_id: str, at: datetime) -> JobChange:
        """A job's deletion as the API that deleted it tells it (its counters are gone: zeros)."""
        return cls(job_id=job_id, total=0, succeeded=0, failed=0, status="deleted", at=at)

    @classmethod
    def of(cls, job: Job, at: datetime | None = None) -> JobChange:
        """The state of a job as read from storage (a cancelled job counts as deleted)."""
        status: ChangeStatus = "deleted" if job.status == "cancelled" else job.status
        return cls(
            job_id=job.id,
            total=job.total,
            succeeded=job.succeeded,
            failed=job.failed,
            status=status,
            at=at or job.finished_at or job.created_at,
            created_at=job.created_at,
            finished_at=job.finished_at,
        )

    def to_json(self) -> dict[str, Any]:
        """The API's job document (`Job.to_json`'s shape; status may also be "deleted")."""
        return {
            "id": self.job_id,
            "status": self.status,
            "operations": {
                "total": self.total,
                "succeeded": self.succeeded,
                "failed": self.failed,
                "pending": max(self.total - self.done, 0),
            },
            "created_at": _iso(self.created_at),
            "finished_at": _iso(self.finished_at),
        }

    def encode(self) -> bytes:
        """The event's value on the events topic (JSON)."""
        return orjson.dumps(
            {
                "job_id": self.job_id,
                "total": self.total,
                "succeeded": self.succeeded,
                "failed": self.failed,
                "status": self.status,
                "at": self.at,
                "created_at": self.created_at,
                "finished_at": self.finished_at,
            },
            option=orjson.OPT_UTC_Z,
        )

    @classmethod
    def decode(cls, raw: bytes | None) -> JobChange:
        """A change from the events topic; raises InvalidEvent unless it is well-formed."""
        if raw is None:
            raise InvalidEvent("job event has no value")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidEvent(f"job event is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidEvent(f"job event must be a JSON object, got {type(data).__name__}")
        status = data.get("status")
        if status not in _RANK:
            raise InvalidEvent(f"job event status must be one of {list(_RANK)}, got {status!r:.50}")
        job_id = data.get("job_id")
        if not isinstance(job_id, str) or not job_id:
            raise InvalidEvent(f"job event job_id must be a non-empty string, got {job_id!r:.50}")
        at = _time(data, "at")
        if at is None:
            raise InvalidEvent("job event has no 'at' time")
        return cls(
            job_id=job_id,
            total=_count(data, "total"),
            succeeded=_count(data, "succeeded"),
            failed=_count(data, "failed"),
            status=status,
            at=at,
            created_at=_time(data, "created_at"),
            finished_at=_time(data, "finished_at"),
        )


def _count(data: dict[str, Any], name: str) -> int:
    value = data.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidEvent(f"job event {name!r} must be a count, got {value!r:.50}")
    return value


def _time(data: dict[str, Any], name: str) -> datetime | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidEvent(f"job event {name!r} must be an ISO time or null, got {value!r:.50}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEvent(f"job event {name!r} is not an ISO time: {value!r:.50}") from None
    if parsed.tzinfo is None:
        raise InvalidEvent(f"job event {name!r} has no time zone: {value!r:.50}")
    return parsed


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


# --- fan-out within one worker ----------------------------------------------------------------


class Subscription:
    """One watcher's pending changes: the newest per job, at most `capacity` jobs.

    A watcher that falls behind loses intermediate states, never the newest one of a job it still
    holds; beyond `capacity` jobs the oldest pending one is dropped and counted in `lost`.
    """

    def __init__(self, job_id: str | None, capacity: int) -> None:
        #: The job watched, or None for every job.
        self.job_id = job_id
        self.capacity = capacity
        #: Changes dropped because too many jobs were pending at once.
        self.lost = 0
        self._pending: dict[str, JobChange] = {}
        self._ready = asyncio.Event()
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether the hub closed this subscription (the worker is shutting down)."""
        return self._closed

    def offer(self, change: JobChange) -> None:
        """Keep the change unless the watcher already has newer news of that job pending."""
        current = self._pending.get(change.job_id)
        if current is not None:
            if change.supersedes(current):
                self._pending[change.job_id] = change
            return
        if len(self._pending) >= self.capacity:
            del self._pending[next(iter(self._pending))]
            self.lost += 1
        self._pending[change.job_id] = change
        self._ready.set()

    def close(self) -> None:
        """Wake the watcher for good: it gets what is pending, then nothing more."""
        self._closed = True
        self._ready.set()

    async def next(self, timeout: float) -> list[JobChange]:
        """The pending changes (oldest job first), waiting up to `timeout` s; [] when none came."""
        if not self._pending and not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), timeout=max(timeout, 0))
        changes = list(self._pending.values())
        self._pending.clear()
        if not self._closed:
            self._ready.clear()
        return changes


class Throughput:
    """Operations ended per second, over a sliding window, from the changes of every job.

    Counters are absolute, so the rate comes from each job's last count (kept for `jobs` jobs at
    most, least recently changed dropped first): a job seen for the first time counts from zero.
    """

    def __init__(
        self, window: int = 5, jobs: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._window = window
        self._jobs = jobs
        self._clock = clock
        self._done: OrderedDict[str, int] = OrderedDict()
        self._seconds: deque[list[int]] = deque()  # [second, operations ended in it]

    def record(self, change: JobChange) -> None:
        """Count the operations this change ended since the job's previous change."""
        before = self._done.pop(change.job_id, 0)
        if change.status != "deleted":
            self._done[change.job_id] = max(before, change.done)
            if len(self._done) > self._jobs:
                self._done.popitem(last=False)
        ended = change.done - before
        if ended <= 0 or change.status == "deleted":
            return
        second = int(self._clock())
        if self._seconds and self._seconds[-1][0] == second:
            self._seconds[-1][1] += ended
        else:
            self._seconds.append([second, ended])
        self._expire(second)

    def per_second(self) -> float:
        """Operations ended per second over the last `window` whole seconds."""
        now = int(self._clock())
        self._expire(now)
        return sum(count for second, count in self._seconds if second < now) / self._window

    def _expire(self, now: int) -> None:
        while self._seconds and self._seconds[0][0] < now - self._window:
            self._seconds.popleft()


class JobEventHub:
    """Hands each change to the subscriptions of its job and to the all-jobs subscriptions."""

    def __init__(self, capacity: int = 1000, throughput: Throughput | None = None) -> None:
        #: Jobs a single all-jobs subscription holds pending at most.
        self.capacity = capacity
        #: Operations per second over every job this worker hears of.
        self.throughput = throughput or Throughput()
        self._by_job: dict[str, set[Subscription]] = {}
        self._everything: set[Subscription] = set()
        self._closed = False

    @property
    def subscriptions(self) -> int:
        """Open subscriptions."""
        return len(self._everything) + sum(len(subs) for subs in self._by_job.values())

    @contextlib.contextmanager
    def subscribe(self, job_id: str | None = None) -> Iterator[Subscription]:
        """Subscribe to one job's changes (or every job's with None) for the `with` block."""
        subscription = Subscription(job_id, 1 if job_id is not None else self.capacity)
        if self._closed:
            subscription.close()
        group = self._everything if job_id is None else self._by_job.setdefault(job_id, set())
        group.add(subscription)
        try:
            yield subscription
        finally:
            group.discard(subscription)
            if job_id is not None and not group:
                self._by_job.pop(job_id, None)

    def dispatch(self, change: JobChange) -> None:
        """Offer a change to every subscription interested in it."""
        self.throughput.record(change)
        for subscription in self._by_job.get(change.job_id, ()):
            subscription.offer(change)
        for subscription in self._everything:
            subscription.offer(change)

    def close(self) -> None:
        """Close every subscription, present and future (the worker is shutting down)."""
        self._closed = True
        for subscription in self._everything:
            subscription.close()
        for group in self._by_job.values():
            for subscription in group:
                subscription.close()


# --- publishing ----------------------------------------------------------------------------------


class Sender(Protocol):
    """Hands one event to the broker client; may return before the broker acknowledges it."""

    async def __call__(self, key: bytes, value: bytes) -> None: ...


class PublisherCounters(Protocol):
    """What the publisher reports (prometheus counters, or anything with these methods)."""

    def failed(self, count: int) -> None: ...
    def dropped(self, count: int) -> None: ...


class _NoCounters:
    def failed(self, count: int) -> None:
        pass

    def dropped(self, count: int) -> None:
        pass


class JobEventPublisher:
    """Publishes job changes in the background: `publish` never waits for the broker, never raises.

    Changes wait in a buffer holding the newest change per job (at most `capacity` jobs; beyond
    that the oldest is dropped and counted); a background task sends what the buffer holds, then
    pauses `interval` seconds, so a busy job yields at most one event per interval.
    """

    def __init__(
        self,
        send: Sender,
        *,
        capacity: int = 10_000,
        interval: float = 0.05,
        counters: PublisherCounters | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._capacity = capacity
        self._interval = interval
        self._counters: PublisherCounters = counters or _NoCounters()
        self._clock = clock
        self._pending: dict[str, JobChange] = {}
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_error_log = float("-inf")

    @property
    def pending(self) -> int:
        """Jobs whose newest change is waiting to be sent."""
        return len(self._pending)

    async def publish(self, changes: Sequence[JobChange]) -> None:
        """Queue the changes (newest per job wins) and return at once."""
        self.publish_nowait(changes)

    def publish_nowait(self, changes: Sequence[JobChange]) -> None:
        """`publish` for code that is not a coroutine."""
        for change in changes:
            current = self._pending.get(change.job_id)
            if current is not None:
                if not current.supersedes(change):
                    self._pending[change.job_id] = change
                continue
            if len(self._pending) >= self._capacity:
                del self._pending[next(iter(self._pending))]
                self._counters.dropped(1)
            self._pending[change.job_id] = change
        if self._pending:
            self._ready.set()

    def start(self) -> None:
        """Start the background sending task (on the running loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="job-events")

    async def stop(self, flush_timeout: float = 2.0) -> None:
        """Send what is pending (for at most `flush_timeout` s), then stop the task."""
        if self._task is None:
            return
        task, self._task = self._task, None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if self._pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush(), timeout=flush_timeout)

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            await self._flush()
            await asyncio.sleep(self._interval)

    async def _flush(self) -> None:
        """Send each job's newest change once; changes coming meanwhile wait for the next turn."""
        for job_id in list(self._pending):
            change = self._pending.pop(job_id, None)
            if change is None:
                continue
            try:
                await self._send(job_id.encode(), change.encode())
            except Exception as exc:
                self._counters.failed(1)
                self._log_error(exc)

    def _log_error(self, exc: Exception) -> None:
        """Log a failed send, at most once every 10 s (a broker that is down fails them all)."""
        now = self._clock()
        if now - self._last_error_log >= 10.0:
            self._last_error_log = now
            log.warning("publishing a job event failed (live views lag): %r", exc)
