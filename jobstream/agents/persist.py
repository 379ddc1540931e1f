"""Client role: persist results to MongoDB and keep each job's progress in the Faust table.

One actor (Faust forbids table writes at concurrency > 1) takes batches of responses, and for each:
1. asks MongoDB whether the batch's jobs the table does not track are in progress (late results
   of deleted or completed jobs are dropped, so nothing is resurrected);
2. drops responses the progress table has already counted (at-least-once delivery duplicates);
3. stores the new results, then the jobs' absolute counters (an update that matches no job in
   progress reveals a job deleted meanwhile, whose just-stored results are then dropped);
4. only then updates the table, and acknowledges the batch.
A crash anywhere before 4 re-delivers the batch, which the steps above make harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

import faust
from opentelemetry.trace import Span, SpanKind

from jobstream.agents.delivery import MAX_BACKOFF, dead_letter
from jobstream.errors import StorageError
from jobstream.models import InvalidEvent, OperationResult, decode_results
from jobstream.settings import Settings
from jobstream.storage import LiveJob, MongoRepository, Progress, utcnow
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
        # A job the table tracks is in progress (its entry goes when it completes or is found
        # deleted); only the others are looked up. A job deleted meanwhile is caught below.
        unknown = [job_id for job_id in by_job if job_id.encode() not in self._table]
        live = await self._repository.live_jobs(unknown)

        fresh: list[OperationResult] = []
        touched: dict[str, JobProgress] = {}
        for job_id, job_results in by_job.items():
            key = job_id.encode()
            stored = self._table.get(key)
            if stored is None and job_id not in live:
                self._metrics.results_ignored.inc(len(job_results))
                continue
            progress = JobProgress.decode(stored) if stored else JobProgress.new(live[job_id].total)
            for result in job_results:
                if progress.record(result.index, result.status == "succeeded"):
                    fresh.append(result)
                else:
                    self._metrics.results_duplicated.inc()
            touched[job_id] = progress

        completing = [job_id for job_id, p in touched.items() if p.complete]
        started = await self._creation_times(completing, live)
        await self._repository.record_results(fresh)
        stale = await self._repository.save_progress(
            [Progress(j, p.succeeded, p.failed, p.complete) for j, p in touched.items()]
        )
        # A job no longer in progress was either completed meanwhile (by reconciliation) or
        # deleted while this batch was being written: a deleted job must not keep the results
        # just inserted. Checking *after* the insert covers every interleaving with the delete.
        if stale:
            gone = stale - await self._repository.existing_jobs(stale)
            if gone:
                await self._repository.drop_results(gone)
        for job_id, progress in touched.items():
            key = job_id.encode()
            if job_id in stale or progress.complete:
                if job_id not in stale:
                    self._metrics.jobs_completed.inc()
                    if job_id in started:
                        elapsed = (utcnow() - started[job_id]).total_seconds()
                        self._metrics.job_duration.observe(max(elapsed, 0.0))
                if key in self._table:
                    del self._table[key]
            else:
                self._table[key] = progress.encode()

    async def _creation_times(
        self, job_ids: Sequence[str], live: dict[str, LiveJob]
    ) -> dict[str, datetime]:
        """When these jobs were created (for the job-duration histogram)."""
        missing = [job_id for job_id in job_ids if job_id not in live]
        if missing:
            live = {**live, **await self._repository.live_jobs(missing)}
        return {job_id: live[job_id].created_at for job_id in job_ids if job_id in live}


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
                    results += decode_results(event.value)
                except InvalidEvent as exc:
                    await dead_letter(topics, event, str(exc), metrics)
            await _until_stored(writer, results)
            for span in spans:
                span.end()


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
