"""Client role: the reconciliation loop, so that no accepted operation stays pending forever.

Runs on one client worker, the one holding partition 0 of the response topic (`leads`). Each tick
it looks at in-progress jobs whose counters have not moved for `reconcile_after` seconds (a crash
between storing and publishing, a progress update lost with a crashed worker's table, a message
lost in a way not found yet) and:
- if every operation has a result, finishes the job from counts taken from the results themselves;
- otherwise publishes the requests of the operations without a result again, and after
  `max_attempts` reconciliations fails them instead, through the normal response path, so that the
  progress table counts them like any other result.
Its record of a job (attempts, when last) is kept apart from the job document, which carries the
results the persisting agent stores (see `jobstream.storage`), and forgotten once the job ended.
It also finishes deletions that stopped half-way (the DELETE was not retried), so no operation or
result of a deleted job outlives it, and deletes the completed jobs older than the retention period
(`JOBSTREAM_RETENTION`; a sweep rather than a TTL index, which would remove a big job's document
but not its chunk documents).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from datetime import timedelta

import faust
from faust.types import TP

from jobstream.agents.delivery import send_many_durably
from jobstream.errors import NotFound, StorageError
from jobstream.jobevents import JobChange
from jobstream.models import (
    Job,
    Operation,
    OperationRequest,
    OperationResult,
    request_messages,
    result_messages,
)
from jobstream.settings import Settings
from jobstream.storage import Progress, Repository, utcnow
from jobstream.telemetry import Metrics
from jobstream.topics import Topics

log = logging.getLogger(__name__)

JOBS_PER_TICK = 50
#: Expired jobs the retention sweep reads and deletes at a time, and the longest it goes on in one
#: tick: it must keep up with what the API takes in (50 jobs a tick could not: 5 jobs/s, where
#: the benchmark's small jobs come in at about 50 a second).
SWEEP_JOBS = 500
SWEEP_SECONDS = 5.0


class Reconciler:
    """One reconciliation pass at a time; see the module docstring."""

    def __init__(
        self,
        repository: Repository,
        topics: Topics,
        settings: Settings,
        metrics: Metrics,
        on_changes: Callable[[list[JobChange]], None] | None = None,
    ) -> None:
        self._repository = repository
        self._topics = topics
        self._settings = settings
        self._metrics = metrics
        #: Told of each job this pass completes from its results (never waits), like persisting's.
        self._on_changes = on_changes

    async def run_once(self) -> int:
        """Reconcile stalled jobs; returns how many operations were published again."""
        cutoff = utcnow() - timedelta(seconds=self._settings.reconcile_after)
        for job_id in await self._repository.unfinished_deletions(cutoff, JOBS_PER_TICK):
            log.warning("reconciliation finishes the deletion of job %s", job_id)
            with contextlib.suppress(NotFound):  # finished meanwhile
                await self._repository.delete_job(job_id)
                self._deleted(job_id)
        if self._settings.retention:
            await self.sweep_expired()
        republished = 0
        for job in await self._repository.stalled_jobs(cutoff, JOBS_PER_TICK):
            republished += await self._reconcile(job)
        await self._repository.forget_reconciliations(cutoff, SWEEP_JOBS)
        for status, count in (await self._repository.count_jobs_by_status()).items():
            self._metrics.jobs_by_status.labels(status=status).set(count)
        return republished

    def _deleted(self, job_id: str) -> None:
        """Tell watchers a job is gone (they end on it)."""
        if self._on_changes is not None:
            self._on_changes([JobChange.deletion(job_id, utcnow())])

    async def sweep_expired(self) -> int:
        """Delete completed jobs older than the retention period, SWEEP_JOBS at a time for up to
        SWEEP_SECONDS; returns how many."""
        cutoff = utcnow() - timedelta(seconds=self._settings.retention)
        deadline = time.monotonic() + SWEEP_SECONDS
        total = 0
        while True:
            expired = await self._repository.expired_jobs(cutoff, SWEEP_JOBS)
            deleted = await self._repository.delete_expired(expired) if expired else []
            for job_id in deleted:
                self._deleted(job_id)
            self._metrics.jobs_expired.inc(len(deleted))
            total += len(deleted)
            if len(expired) < SWEEP_JOBS or not deleted or time.monotonic() >= deadline:
                break
        if total:
            log.info("retention: deleted %d jobs completed before %s", total, cutoff)
        return total

    async def _reconcile(self, job: Job) -> int:
        pending = await self._repository.pending_operations(job.id)
        if not pending:
            outcomes = await self._repository.count_outcomes(job)
            log.warning("reconciliation finished job %s from its results", job.id)
            saved = await self._repository.store_results(
                [], [Progress(job.id, outcomes.succeeded, outcomes.failed, complete=True)]
            )
            # absent: deleted or completed meanwhile
            if job.id in saved.completed and self._on_changes is not None:
                self._on_changes(
                    [
                        JobChange(
                            job.id,
                            job.total,
                            outcomes.succeeded,
                            outcomes.failed,
                            "completed",
                            saved.at,
                            created_at=job.created_at,
                            finished_at=saved.at,
                        )
                    ]
                )
            return 0
        attempt = await self._repository.note_reconciled(job.id)
        if attempt == 0:
            return 0  # deleted or finished meanwhile
        if attempt >= self._settings.max_attempts:
            log.warning(
                "job %s: failing %d operations after %d attempts", job.id, len(pending), attempt
            )
            await self._give_up(job, pending, attempt)
            return 0
        log.warning("job %s: publishing %d pending operations again", job.id, len(pending))
        await send_many_durably(
            self._topics.requests_for(job.total),
            request_messages(
                OperationRequest(job.id, op.index, job.total, op.expression, attempt + 1)
                for op in pending
            ),
            self._metrics,
        )
        self._metrics.republished.inc(len(pending))
        return len(pending)

    async def _give_up(self, job: Job, pending: list[Operation], attempts: int) -> None:
        error = f"no result after {attempts} delivery attempts"
        await send_many_durably(
            self._topics.responses_for(job.total),
            result_messages(
                OperationResult(job.id, op.index, job.total, "failed", error=error)
                for op in pending
            ),
            self._metrics,
        )


def leads(app: faust.App, topic: str) -> bool:
    """Whether this worker runs the client role's singletons: it holds partition 0 of `topic`.

    Not Faust's leader (`on_leader=True`, the holder of its `<group>-__assignor-__leader` topic's
    one partition): a worker declares that topic as it starts, and the group leader computing the
    assignment skips it while its metadata lacks it (faust/assignor/partition_assignor.py, line 179,
    "Ignoring missing topic"); until the next rebalance, which may be minutes away, no worker was
    the leader, and reconciliation and retention did not run. Seen on 2 of 5 first starts of the
    local stack on fresh topics (a job published while the servers were down stayed pending for
    6 minutes). The response topic is what every client worker subscribes to from its first join,
    so some worker always holds its partition 0 once the group is assigned.
    """
    return TP(topic, 0) in app.consumer.assignment()


def register_reconcile(
    app: faust.App,
    topics: Topics,
    settings: Settings,
    repository: Repository,
    metrics: Metrics,
    on_changes: Callable[[list[JobChange]], None] | None = None,
) -> Reconciler:
    """Register the reconciliation timer, which runs on the worker that `leads` (`on_changes`:
    jobs it completes)."""
    reconciler = Reconciler(repository, topics, settings, metrics, on_changes)

    @app.timer(interval=settings.reconcile_interval, name="reconcile")
    async def reconcile() -> None:
        if not leads(app, settings.response_topic):
            return
        try:
            await reconciler.run_once()
        except StorageError as exc:
            log.warning("reconciliation skipped: %s", exc)

    return reconciler
