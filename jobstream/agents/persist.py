"""Client role: persist results to MongoDB and keep each job's progress in the Faust table.

One actor (Faust forbids table writes at concurrency > 1) takes batches of responses, and for each:
1. drops responses the progress table has already counted (at-least-once delivery duplicates);
2. stores the new results (a result already stored for an operation wins);
3. sets the jobs' absolute counters, only on jobs still in progress: one that matches none reveals
   a late result of an ended job (nothing changes) or of a job deleted meanwhile (whose
   just-stored results are dropped, so nothing is resurrected);
4. only then updates the table, and acknowledges the batch.
A crash anywhere before 4 re-delivers the batch, which the steps above make harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence

import faust
from opentelemetry.trace import Span, SpanKind

from jobstream.agents.delivery import MAX_BACKOFF, dead_letter
from jobstream.errors import StorageError
from jobstream.models import InvalidEvent, OperationResult, decode_results
from jobstream.settings import Settings
from jobstream.storage import MongoRepository, Progress, utcnow
from jobstream.tables.progress import JobProgress
from jobstream.telemetry import Metrics, context_from, is_sampled, tracer
from jobstream.topics import Topics

log = logging.getLogger(__name__)


class ResultWriter:
    """Applies batches of results to storage and the progress table (steps 1-4 above)."""

    def __init__(self, repository: MongoRepository, table: faust.Table, metrics: Metrics) -> None:
        self._repository = repository
        self._table = table
        self._metrics = metrics

    async def apply(self, results: Sequence[OperationResult]) -> None:
        """Persist one batch; raises StorageError (nothing in the table changed) on failure."""
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

        inserted = await self._repository.record_results(fresh)
        saved = await self._repository.save_progress(
            [Progress(j, p.succeeded, p.failed, p.complete) for j, p in touched.items()]
        )
        # A job no longer in progress was deleted, or had already ended (late duplicates, whose
        # inserts the unique ids rejected): a deleted job must not keep the results just inserted.
        # Checking *after* the insert covers every interleaving with the delete.
        if saved.stale:
            gone = saved.stale - await self._repository.existing_jobs(saved.stale)
            if gone:
                await self._repository.drop_results(gone)
            for job_id in saved.stale:
                self._metrics.results_ignored.inc(len(by_job[job_id]))
        self._metrics.results_stored.inc(inserted)
        for job_id, progress in touched.items():
            key = job_id.encode()
            if job_id in saved.stale or progress.complete:
                if job_id in saved.completed:
                    self._metrics.jobs_completed.inc()
                    elapsed = (utcnow() - saved.completed[job_id]).total_seconds()
                    self._metrics.job_duration.observe(max(elapsed, 0.0))
                if key in self._table:
                    del self._table[key]
            else:
                self._table[key] = progress.encode()


def register_persist(
    app: faust.App,
    topics: Topics,
    settings: Settings,
    repository: MongoRepository,
    table: faust.Table,
    metrics: Metrics,
) -> None:
    """Register the persisting agent (one actor per worker, batches of responses)."""
    writer = ResultWriter(repository, table, metrics)

    @app.agent(topics.responses, name="persist", concurrency=1)
    async def persist(stream: faust.StreamT) -> None:
        batches = stream.take_events(settings.persist_batch_size, settings.persist_batch_seconds)
        async for events in batches:
            results: list[OperationResult] = []
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
                    results += _checked(decode_results(event.value), settings.max_operations)
                except InvalidEvent as exc:
                    await dead_letter(topics, event, str(exc), metrics)
            await _until_stored(writer, results)
            for span in spans:
                span.end()


def _checked(results: list[OperationResult], max_operations: int) -> list[OperationResult]:
    """The results, unless one claims a job size no job can have (the table trusts it)."""
    for result in results:
        if not 1 <= result.total <= max_operations:
            raise InvalidEvent(f"total must be within 1..{max_operations}, got {result.total}")
    return results


async def _until_stored(writer: ResultWriter, results: list[OperationResult]) -> None:
    """Retry a batch until MongoDB takes it: the batch must not be acknowledged unstored."""
    backoff = 0.1
    while True:
        try:
            await writer.apply(results)
            return
        except StorageError as exc:
            log.warning(
                "storing %d results failed (%s); retrying in %.1fs", len(results), exc, backoff
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
