"""Client role: persist results to MongoDB and keep each job's progress in the Faust table.

One actor (Faust forbids table writes at concurrency > 1) takes batches of responses, and for each:
1. drops responses the progress table has already counted (at-least-once delivery duplicates);
2. stores the new results with the jobs' absolute counters, in one write per job document (a
   result already stored for an operation wins; only jobs still in progress change, so a late
   result of an ended or deleted job changes nothing, see `jobstream.storage`);
3. only then updates the table, and acknowledges the batch.
A crash anywhere before 3 re-delivers the batch, which the steps above make harmless.

No batch blocks its partitions for good: a batch is retried for as long as the database is
unreachable, but one that the database refuses (the command itself fails, PARKING_REFUSALS times)
is stored job by job, and the events of a job that is still refused are parked on the dead-letter
topic with their origin, like undecodable events; reconciliation then deals with that job's
pending operations.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import faust
from opentelemetry.trace import Span, SpanKind

from jobstream.agents.acks import gathered, released
from jobstream.agents.delivery import MAX_BACKOFF, dead_letter
from jobstream.errors import StorageError
from jobstream.jobevents import JobChange
from jobstream.models import InvalidEvent, OperationResult, decode_results
from jobstream.settings import Settings
from jobstream.storage import Progress, Repository, SavedProgress
from jobstream.tables.progress import JobProgress
from jobstream.telemetry import Metrics, context_from, is_sampled, tracer
from jobstream.topics import Topics

log = logging.getLogger(__name__)

#: Refusals of the same batch (not outages: the database answered "no") before it is split by job
#: and what is still refused is parked.
PARKING_REFUSALS = 3


class ProgressTable(Protocol):
    """The part of the Faust table (or of a dict, in tests) the writer uses."""

    def get(self, key: bytes) -> bytes | None: ...
    def __contains__(self, key: object) -> bool: ...
    def __setitem__(self, key: bytes, value: bytes) -> None: ...
    def __delitem__(self, key: bytes) -> None: ...


class ResultWriter:
    """Applies batches of results to storage and the progress table (steps 1-3 above)."""

    def __init__(
        self,
        repository: Repository,
        table: ProgressTable,
        metrics: Metrics,
        on_changes: Callable[[list[JobChange]], None] | None = None,
    ) -> None:
        self._repository = repository
        self._table = table
        self._metrics = metrics
        #: Told, after each stored batch, the new state of every job it moved (never waits).
        self._on_changes = on_changes
        #: job id -> done when the batch writing that job now ends (see `apply`)
        self._writing: dict[str, asyncio.Future[None]] = {}

    async def apply(self, results: Sequence[OperationResult]) -> None:
        """Persist one batch; raises StorageError (nothing in the table changed) on failure.

        The persisting agents of both lanes share this writer. A job's results all travel in one
        lane, but a batch waits for any batch of the other lane that is writing one of its jobs
        (the lane is chosen by a setting, which a rolling change could make differ between
        workers): reading a job's progress and writing it back must not interleave.
        """
        jobs = {r.job_id for r in results}
        while busy := {self._writing[j] for j in jobs if j in self._writing}:
            await asyncio.wait(busy)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._writing.update(dict.fromkeys(jobs, done))
        try:
            await self._apply(results)
        finally:
            for job_id in jobs:
                if self._writing.get(job_id) is done:
                    del self._writing[job_id]
            done.set_result(None)

    async def _apply(self, results: Sequence[OperationResult]) -> None:
        by_job: dict[str, list[OperationResult]] = defaultdict(list)
        for result in results:
            by_job[result.job_id].append(result)

        fresh: list[OperationResult] = []
        touched: dict[str, JobProgress] = {}
        for job_id, job_results in by_job.items():
            stored = self._table.get(job_id.encode())
            progress = (
                JobProgress.decode(stored) if stored else JobProgress.new(job_results[0].total)
            )
            for result in job_results:
                if progress.record(result.index, result.status == "succeeded"):
                    fresh.append(result)
                else:
                    self._metrics.results_duplicated.inc()
            touched[job_id] = progress

        # Only jobs with new results are written: duplicates alone change nothing stored.
        moved = {r.job_id for r in fresh}
        saved = await self._repository.store_results(
            fresh,
            [
                Progress(j, p.succeeded, p.failed, p.complete)
                for j, p in touched.items()
                if j in moved
            ],
        )
        for job_id in saved.stale:
            self._metrics.results_ignored.inc(len(by_job[job_id]))
        self._metrics.results_stored.inc(saved.stored)
        for job_id, progress in touched.items():
            key = job_id.encode()
            if job_id in saved.stale or progress.complete:
                if job_id in saved.completed:
                    self._metrics.jobs_completed.inc()
                    created = saved.completed[job_id]
                    if created is not None:
                        elapsed = (saved.at - created).total_seconds()
                        self._metrics.job_duration.observe(max(elapsed, 0.0))
                if key in self._table:
                    del self._table[key]
            else:
                self._table[key] = progress.encode()
        if self._on_changes is not None:
            self._on_changes(_changes({j: p for j, p in touched.items() if j in moved}, saved))


def _changes(touched: dict[str, JobProgress], saved: SavedProgress) -> list[JobChange]:
    """One change per job a batch moved: its counters, completion (at the time the database
    stored), or deletion."""
    stale, completed, now, gone = saved.stale, saved.completed, saved.at, saved.gone
    changes = []
    for job_id, p in touched.items():
        if job_id in gone:
            status = "deleted"
        elif job_id in stale:
            continue  # ended before this batch: late duplicates changed nothing
        else:
            status = "completed" if job_id in completed else "in_progress"
        changes.append(
            JobChange(
                job_id,
                p.total,
                p.succeeded,
                p.failed,
                status,  # type: ignore[arg-type]
                now,
                created_at=completed.get(job_id),
                finished_at=now if job_id in completed else None,
            )
        )
    return changes


@dataclass(frozen=True)
class Received:
    """One response event and the results it carries (all of one job)."""

    event: faust.EventT
    results: list[OperationResult]


Park = Callable[[faust.EventT, str], Awaitable[None]]


def register_persist(
    app: faust.App,
    topics: Topics,
    settings: Settings,
    repository: Repository,
    table: faust.Table,
    metrics: Metrics,
    on_changes: Callable[[list[JobChange]], None] | None = None,
) -> None:
    """Register the persisting agents, one per lane (one actor each per worker, batches of
    responses)."""
    writer = ResultWriter(repository, table, metrics, on_changes)

    async def park(event: faust.EventT, reason: str) -> None:
        await dead_letter(topics, event, reason, metrics)

    # One agent per lane (jobstream.topics), so a big job's results never hold a small job's
    # batch; they share the writer, which keeps their batches off each other's jobs.
    lanes = (("persist", topics.responses), ("persist-bulk", topics.bulk_responses))
    for name, source in lanes:
        _register_lane(app, name, source, settings, writer, table, park, metrics)


def _register_lane(
    app: faust.App,
    name: str,
    source: faust.TopicT,
    settings: Settings,
    writer: ResultWriter,
    table: faust.Table,
    park: Park,
    metrics: Metrics,
) -> None:
    async def persist(stream: faust.StreamT) -> None:
        await know_changelog_partitions(app, table)
        async for events in gathered(stream.events(), settings.persist_batch_size):
            with released(events):  # acknowledged only if everything below completes
                received: list[Received] = []
                spans: list[Span] = []
                for event in events:
                    context = context_from(event.headers)
                    if is_sampled(context):  # a span per traced result; none at all otherwise
                        spans.append(
                            tracer.start_span(
                                f"persist {event.message.topic}", context, kind=SpanKind.CONSUMER
                            )
                        )
                    try:
                        results = _checked(decode_results(event.value), settings.max_operations)
                    except InvalidEvent as exc:
                        await park(event, str(exc))
                        continue
                    received.append(Received(event, results))
                metrics.persist_batch_messages.observe(len(events))
                metrics.persist_batch_results.observe(sum(len(r.results) for r in received))
                await store_batch(writer, received, park, metrics)
                for span in spans:
                    span.end()

    persist.__name__ = persist.__qualname__ = name.replace("-", "_")
    app.agent(source, name=name, concurrency=1)(persist)


async def know_changelog_partitions(app: faust.App, table: faust.Table) -> None:
    """Have the producer track the changelog topic's partitions before the first table write.

    Faust picks a changelog message's partition synchronously from the producer's metadata
    (faust/transport/drivers/aiokafka.py `Producer.key_partition`, lines 1495-1506, which calls
    aiokafka's `_partition`, aiokafka/producer/producer.py line 422). aiokafka's metadata holds
    every topic only until the producer first sends: from then on it refreshes just the topics it
    tracks (aiokafka/client.py `add_topic`, lines 351-363; an empty set means all), so the
    changelog topic drops out. The first table write after a worker started (a job whose results
    span more than one batch) then raised TypeError ('NoneType' object is not iterable) until the
    batch was parked: seen in the benchmark's first job. Tracking the topic keeps it in every
    refresh. A failure here is only logged (a batch that still meets the error is retried, then
    parked, and reconciliation publishes its operations again).
    """
    topic = table.changelog_topic.get_topic_name()
    try:
        # private: Faust's Producer offers no public way to reach its aiokafka producer
        producer = app.producer._ensure_producer()
        await producer.client.add_topic(topic)
        await producer.partitions_for(topic)
    except Exception as exc:
        log.warning("could not read the partitions of %s (%r)", topic, exc)


def _checked(results: list[OperationResult], max_operations: int) -> list[OperationResult]:
    """The results, unless one claims a job size no job can have (the table trusts it)."""
    for result in results:
        if not 1 <= result.total <= max_operations:
            raise InvalidEvent(f"total must be within 1..{max_operations}, got {result.total}")
    return results


async def store_batch(
    writer: ResultWriter, received: Sequence[Received], park: Park, metrics: Metrics
) -> None:
    """Store a batch, or park the events of the jobs the database refuses; see the docstring."""
    refused = await _until_stored(writer, [r for item in received for r in item.results])
    if refused is None:
        return
    by_job: dict[str, list[Received]] = defaultdict(list)
    for item in received:
        by_job[item.results[0].job_id].append(item)
    log.error(
        "the database refused a batch (%s); storing its %d jobs one by one", refused, len(by_job)
    )
    for job_id, items in by_job.items():
        refused = await _until_stored(writer, [r for item in items for r in item.results])
        if refused is None:
            continue
        log.error(
            "parking %d events of job %s: the database refuses them (%s)",
            len(items),
            job_id,
            refused,
        )
        for item in items:
            metrics.batches_parked.labels(topic=item.event.message.topic).inc()
            await park(item.event, f"the database refused these results: {refused}")


async def _until_stored(writer: ResultWriter, results: list[OperationResult]) -> str | None:
    """Apply results, retrying while the database is unreachable; what it refused, or None.

    The batch must not be acknowledged unstored, so outages are waited out for as long as they
    last; a refusal (or a bug of ours) is retried PARKING_REFUSALS times, then reported.
    """
    backoff = 0.1
    refusals = 0
    while True:
        try:
            await writer.apply(results)
            return None
        except StorageError as exc:
            error = str(exc)
            refusals += 0 if exc.transient else 1
        except Exception as exc:  # never let a bug acknowledge or block the batch
            log.exception("storing %d results raised", len(results))
            error = f"{type(exc).__name__}: {exc}"
            refusals += 1
        if refusals >= PARKING_REFUSALS:
            return error
        log.warning(
            "storing %d results failed (%s); retrying in %.1fs", len(results), error, backoff
        )
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF)
