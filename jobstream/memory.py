"""An in-memory `Repository`, the twin of `MongoRepository` (as dramatiq ships a stub broker).

It keeps the same contract (the first stored result of an operation wins, progress updates only
apply to jobs in progress, a deleted job is invisible from the moment its deletion starts) so that
the agents' logic can be tested in milliseconds, without a network. `fail` queues errors that the
next calls of a method raise, to test what happens when the database fails mid-batch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from jobstream.errors import NotFound
from jobstream.models import (
    Job,
    ListedStatus,
    Operation,
    OperationResult,
    OperationStatus,
    job_created_at,
    operation_id,
)
from jobstream.storage import (
    DELETING,
    JobPage,
    Outcomes,
    Progress,
    SavedProgress,
    bucket_of,
    utcnow,
)

VISIBLE = ("in_progress", "completed")


@dataclass
class _StoredJob:
    job: Job
    updated_at: datetime
    status: str  # the job's status, or DELETING


class MemoryRepository:
    """Jobs, operations and results in dictionaries; one instance is one database."""

    def __init__(self) -> None:
        self._jobs: dict[str, _StoredJob] = {}
        self._operations: dict[str, dict[int, str]] = {}
        self._results: dict[str, dict[int, OperationResult]] = defaultdict(dict)
        self._failures: dict[str, list[BaseException]] = defaultdict(list)
        #: job id -> (reconciliations, when last): kept apart from the jobs, as in MongoDB
        self._reconciliations: dict[str, tuple[int, datetime]] = {}
        #: How many times each method was called (for assertions on database work).
        self.calls: dict[str, int] = defaultdict(int)

    # -- test hooks ---------------------------------------------------------------------------

    def fail(self, method: str, *errors: BaseException) -> None:
        """Make the next calls of `method` raise these errors, one per call, in order."""
        self._failures[method].extend(errors)

    def stored_results(self, job_id: str) -> dict[int, OperationResult]:
        """The results stored for a job, by operation index (a copy)."""
        return dict(self._results.get(job_id, {}))

    def backdate(self, job_id: str, updated_at: datetime) -> None:
        """Pretend a job's counters last moved, and it was last reconciled, at the given time."""
        self._jobs[job_id].updated_at = updated_at
        if job_id in self._reconciliations:
            self._reconciliations[job_id] = (self._reconciliations[job_id][0], updated_at)

    def reconciliation_records(self) -> set[str]:
        """The jobs with a reconciliation record."""
        return set(self._reconciliations)

    def _enter(self, method: str) -> None:
        self.calls[method] += 1
        if self._failures[method]:
            raise self._failures[method].pop(0)

    def _visible(self, job_id: str) -> _StoredJob:
        stored = self._jobs.get(job_id)
        if stored is None or stored.status not in VISIBLE:
            raise NotFound(f"job {job_id} not found")
        return stored

    async def ping(self) -> None:
        self._enter("ping")

    # -- the API ------------------------------------------------------------------------------

    async def create_job(self, job_id: str, expressions: Sequence[str]) -> Job:
        self._enter("create_job")
        now = utcnow()
        self._operations.setdefault(job_id, dict(enumerate(expressions, start=1)))
        if job_id not in self._jobs:
            created = job_created_at(job_id) or now
            job = Job(job_id, "in_progress", len(expressions), 0, 0, created, None)
            self._jobs[job_id] = _StoredJob(job, now, "in_progress")
        return self._jobs[job_id].job

    async def get_job(self, job_id: str) -> Job:
        self._enter("get_job")
        return self._visible(job_id).job

    async def list_jobs(
        self,
        size: int,
        *,
        after: str | None = None,
        page: int = 1,
        status: ListedStatus | None = None,
    ) -> JobPage:
        self._enter("list_jobs")
        wanted = VISIBLE if status is None else (status,)
        jobs = sorted(
            (s.job for s in self._jobs.values() if s.status in wanted),
            key=lambda job: job.id,
            reverse=True,
        )
        # like MongoDB's estimate, the total of all jobs counts jobs being deleted
        total = len(self._jobs) if status is None else len(jobs)
        if after is not None:
            jobs = [job for job in jobs if job.id < after]
        else:
            jobs = jobs[(page - 1) * size :]
        jobs = jobs[:size]
        return JobPage(jobs, jobs[-1].id if len(jobs) == size else None, total)

    async def delete_job(self, job_id: str) -> None:
        self._enter("delete_job")
        stored = self._jobs.get(job_id)
        if stored is None:
            raise NotFound(f"job {job_id} not found")
        stored.status = DELETING
        stored.updated_at = utcnow()
        self._enter("delete_job:purge")  # a failure here leaves the job half-deleted
        self._operations.pop(job_id, None)
        self._results.pop(job_id, None)
        del self._jobs[job_id]

    async def get_operation(self, job_id: str, index: int) -> Operation:
        self._enter("get_operation")
        expression = self._operations.get(job_id, {}).get(index)
        if expression is None:
            raise NotFound(f"operation {operation_id(job_id, index)} not found")
        return self._operation(job_id, index, expression)

    async def list_operations(
        self, job_id: str, page: int, size: int, status: OperationStatus | None = None
    ) -> tuple[int, list[Operation]]:
        self._enter("list_operations")
        self._visible(job_id)
        operations = [
            self._operation(job_id, index, text)
            for index, text in sorted(self._operations.get(job_id, {}).items())
        ]
        if status is not None:
            operations = [op for op in operations if op.status == status]
        return len(operations), operations[(page - 1) * size : page * size]

    def _operation(self, job_id: str, index: int, expression: str) -> Operation:
        result = self._results.get(job_id, {}).get(index)
        return Operation(
            id=operation_id(job_id, index),
            job_id=job_id,
            index=index,
            expression=expression,
            status="pending" if result is None else result.status,
            result=None if result is None else result.result,
            error=None if result is None else result.error,
        )

    # -- persisting results -------------------------------------------------------------------

    async def store_results(
        self, results: Sequence[OperationResult], progress: Sequence[Progress]
    ) -> SavedProgress:
        self._enter("store_results")
        now = utcnow()
        saved = SavedProgress(set(), {}, now)
        stored = 0
        for result in results:
            # Like the documents: a result lands only in a job that exists (never upserted), and
            # in the job document's first bucket only while the job is in progress.
            job = self._jobs.get(result.job_id)
            if job is None or (bucket_of(result.index) == 0 and job.status != "in_progress"):
                continue
            kept = self._results[result.job_id]
            if result.index not in kept:
                kept[result.index] = result
                stored += 1
        # a failure here leaves the results stored and the counters not (chunks before jobs)
        self._enter("store_results:progress")
        for p in progress:
            job = self._jobs.get(p.job_id)
            if job is None or job.status != "in_progress":
                saved.stale.add(p.job_id)
                if job is None or job.status == DELETING:
                    saved.gone.add(p.job_id)
                continue
            changes: dict[str, Any] = {"succeeded": p.succeeded, "failed": p.failed}
            if p.complete:
                changes |= {"status": "completed", "finished_at": now}
                job.status = "completed"
                saved.completed[p.job_id] = job.job.created_at
            job.job = replace(job.job, **changes)
            job.updated_at = now
        return replace(saved, stored=stored)

    # -- reconciliation -----------------------------------------------------------------------

    async def stalled_jobs(self, updated_before: datetime, limit: int) -> list[Job]:
        self._enter("stalled_jobs")
        stalled = [
            s.job
            for job_id, s in self._jobs.items()
            if s.status == "in_progress"
            and s.updated_at < updated_before
            and not (
                job_id in self._reconciliations
                and self._reconciliations[job_id][1] >= updated_before
            )
        ]
        return stalled[:limit]

    async def expired_jobs(self, finished_before: datetime, limit: int) -> list[str]:
        self._enter("expired_jobs")
        ids = [
            job_id
            for job_id, s in self._jobs.items()
            if s.status == "completed" and s.updated_at < finished_before
        ]
        return ids[:limit]

    async def delete_expired(self, job_ids: Sequence[str]) -> list[str]:
        self._enter("delete_expired")
        deleted = []
        for job_id in dict.fromkeys(job_ids):
            stored = self._jobs.get(job_id)
            if stored is None or stored.status != "completed":
                continue
            self._operations.pop(job_id, None)
            self._results.pop(job_id, None)
            del self._jobs[job_id]
            deleted.append(job_id)
        return deleted

    async def unfinished_deletions(self, updated_before: datetime, limit: int) -> list[str]:
        self._enter("unfinished_deletions")
        ids = [
            job_id
            for job_id, s in self._jobs.items()
            if s.status == DELETING and s.updated_at < updated_before
        ]
        return ids[:limit]

    async def pending_operations(self, job_id: str) -> list[Operation]:
        self._enter("pending_operations")
        done = self._results.get(job_id, {})
        return [
            self._operation(job_id, index, text)
            for index, text in self._operations.get(job_id, {}).items()
            if index not in done
        ]

    async def count_outcomes(self, job: Job) -> Outcomes:
        self._enter("count_outcomes")
        results = self._results.get(job.id, {}).values()
        succeeded = sum(1 for r in results if r.status == "succeeded")
        return Outcomes(job.total, succeeded, len(results) - succeeded)

    async def note_reconciled(self, job_id: str) -> int:
        self._enter("note_reconciled")
        stored = self._jobs.get(job_id)
        if stored is None or stored.status != "in_progress":
            return 0
        attempts = self._reconciliations[job_id][0] + 1 if job_id in self._reconciliations else 1
        self._reconciliations[job_id] = (attempts, utcnow())
        return attempts

    async def forget_reconciliations(self, before: datetime, limit: int) -> int:
        self._enter("forget_reconciliations")
        old = [j for j, (_, at) in self._reconciliations.items() if at < before][:limit]
        ended = [j for j in old if j not in self._jobs or self._jobs[j].status != "in_progress"]
        for job_id in ended:
            del self._reconciliations[job_id]
        return len(ended)

    async def count_jobs_by_status(self) -> dict[str, int]:
        self._enter("count_jobs_by_status")
        counts = dict.fromkeys(VISIBLE, 0)
        for s in self._jobs.values():
            if s.status in counts:
                counts[s.status] += 1
        return counts
