"""Jobs, operations and results in MongoDB, behind a small repository.

Every write is a single-document, idempotent operation (no transactions, sessions or change streams,
which FerretDB lacks and which at-least-once delivery makes unnecessary):
- operations are immutable and inserted with deterministic ids, so a retried insert is a no-op;
- a result is an immutable document whose id is its operation's: the first one stored wins and a
  duplicate is rejected by the unique id, so a terminal result is never overwritten;
- job counters are *set* to absolute values computed by the progress table, never incremented.
An operation is pending exactly while it has no result document. Driver errors are converted here
into `StorageError`.

Commands suit FerretDB too (the stand-in for MongoDB in local runs): lookups and updates go one id
at a time with plain equality filters, the only ones it pushes down to its backend, and never as
one large multi-statement command, since it holds a backend connection per statement.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ParamSpec, Protocol, TypeVar

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, monitoring
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    WTimeoutError,
)

from jobstream.errors import NotFound, StorageError
from jobstream.models import Job, Operation, OperationResult, OperationStatus, operation_id
from jobstream.names import JOBS, OPERATIONS, RESULTS

# Storage takes its tracer from OpenTelemetry itself: it imports nothing of the web stack or of
# prometheus-client (command metrics come in as PyMongo event listeners, see `connect`).
tracer = trace.get_tracer("jobstream.storage")

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

DUPLICATE_KEY = 11000
INSERT_CHUNK = 5000
#: Operations (and results) removed per delete command. FerretDB on PostgreSQL refuses a delete
#: matching more than 65,535 documents ("extended protocol limited to 65535 parameters"); bounded
#: deletes also keep each command short on MongoDB.
DELETE_CHUNK = 10_000
#: A job being deleted: invisible to the API, refused by progress updates, finished by any retry.
DELETING = "deleting"
PURGE_ATTEMPTS = 5
VISIBLE = {"$in": ["in_progress", "completed"]}
CONCURRENT_COMMANDS = 10  # per batch; the client pool (maxPoolSize) is 20


@dataclass(frozen=True)
class Progress:
    """Absolute counters of one job, as the progress table computed them."""

    job_id: str
    succeeded: int
    failed: int
    complete: bool


@dataclass(frozen=True)
class SavedProgress:
    """What save_progress did: jobs it found no longer in progress, and those it completed."""

    stale: set[str]
    #: job id -> when the job was created, for each job this call completed
    completed: dict[str, datetime]
    #: the time the call stored (`updated_at`, and `finished_at` of the jobs it completed)
    at: datetime


@dataclass(frozen=True)
class Outcomes:
    """A job's operations by outcome, counted from the result documents."""

    total: int
    succeeded: int
    failed: int

    @property
    def pending(self) -> int:
        """Operations without a result."""
        return self.total - self.succeeded - self.failed


class Repository(Protocol):
    """Everything jobstream asks of storage; `MongoRepository` and `MemoryRepository` provide it."""

    async def ping(self) -> None: ...

    # -- the API ------------------------------------------------------------------------------
    async def create_job(self, job_id: str, expressions: Sequence[str]) -> Job: ...
    async def get_job(self, job_id: str) -> Job: ...
    async def list_jobs(self, page: int, size: int) -> tuple[int, list[Job]]: ...
    async def delete_job(self, job_id: str) -> None: ...
    async def get_operation(self, job_id: str, index: int) -> Operation: ...
    async def list_operations(
        self, job_id: str, page: int, size: int, status: OperationStatus | None = None
    ) -> tuple[int, list[Operation]]: ...

    # -- persisting results -----------------------------------------------------------------
    async def record_results(self, results: Sequence[OperationResult]) -> int: ...
    async def save_progress(self, progress: Sequence[Progress]) -> SavedProgress: ...
    async def existing_jobs(self, job_ids: Iterable[str]) -> set[str]: ...
    async def drop_results(self, results: Sequence[OperationResult]) -> None: ...

    # -- reconciliation -----------------------------------------------------------------------
    async def stalled_jobs(self, updated_before: datetime, limit: int) -> list[Job]: ...
    async def unfinished_deletions(self, updated_before: datetime, limit: int) -> list[str]: ...
    async def pending_operations(self, job_id: str) -> list[Operation]: ...
    async def count_outcomes(self, job: Job) -> Outcomes: ...
    async def note_reconciled(self, job_id: str) -> int: ...
    async def count_jobs_by_status(self) -> dict[str, int]: ...


def _converted(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Turn driver errors into StorageError at the edge, in a span of its own."""

    name = f"mongodb {fn.__name__}"

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with tracer.start_as_current_span(name, kind=SpanKind.CLIENT) as span:
            try:
                return await fn(*args, **kwargs)
            except PyMongoError as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                raise StorageError(
                    f"{fn.__name__}: {type(exc).__name__}: {exc}", transient=is_transient(exc)
                ) from exc

    return wrapper


#: Server error codes that name a passing state of the deployment, not the command itself:
#: shutdown, elections, a primary stepping down, network and time-limit errors.
TRANSIENT_CODES = frozenset(
    {6, 7, 50, 89, 91, 112, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436}
)


#: FerretDB (the local stand-in) reports its PostgreSQL backend's deadlocks and serialization
#: failures as InternalError (code 1) with the SQLSTATE in the message; MongoDB never sends these.
FERRETDB_TRANSIENT_SQLSTATES = ("SQLSTATE 40P01", "SQLSTATE 40001")


def is_transient(exc: PyMongoError) -> bool:
    """Whether retrying can cure the error: the database is unreachable or changing primaries."""
    if any(state in str(exc) for state in FERRETDB_TRANSIENT_SQLSTATES):
        return True
    if isinstance(exc, (ConnectionFailure, ExecutionTimeout, WTimeoutError)):
        return True  # includes AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError
    if exc.has_error_label("RetryableWriteError") or exc.has_error_label("ResetPool"):
        return True
    if isinstance(exc, BulkWriteError):
        codes = {e.get("code") for e in exc.details.get("writeErrors", [])}
        return bool(codes) and codes <= TRANSIENT_CODES
    return isinstance(exc, OperationFailure) and exc.code in TRANSIENT_CODES


def utcnow() -> datetime:
    """The current time, timezone-aware, at millisecond precision (what BSON stores)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class MongoRepository:
    """The repository over PyMongo's native async client."""

    def __init__(self, client: AsyncMongoClient, database: str) -> None:
        self._client = client
        self._db = client[database]
        self._jobs = self._db[JOBS]
        self._operations = self._db[OPERATIONS]
        self._results = self._db[RESULTS]

    @classmethod
    def connect(
        cls,
        url: str,
        database: str,
        event_listeners: Sequence[monitoring._EventListener] = (),
    ) -> MongoRepository:
        """A repository on a new client (connections are made lazily).

        `event_listeners` are PyMongo monitoring listeners, such as the worker's command metrics.
        """
        client: AsyncMongoClient = AsyncMongoClient(
            url,
            event_listeners=list(event_listeners),
            tz_aware=True,
            serverSelectionTimeoutMS=5000,
            connectTimeoutMS=5000,
            socketTimeoutMS=30_000,
            # Bounded so that several workers together stay well inside FerretDB's backend pool.
            maxPoolSize=20,
            retryWrites=True,
        )
        return cls(client, database)

    async def close(self) -> None:
        """Close the client's connections."""
        await self._client.close()

    @_converted
    async def ensure_indexes(self) -> None:
        """Create the collections and their indexes (idempotent; run once, by bootstrap)."""
        await self._jobs.create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
        await self._jobs.create_index([("status", ASCENDING), ("updated_at", ASCENDING)])
        await self._operations.create_index(
            [("job_id", ASCENDING), ("index", ASCENDING)], unique=True
        )
        await self._results.create_index([("job_id", ASCENDING), ("index", ASCENDING)])

    @_converted
    async def ping(self) -> None:
        """Raise StorageError unless the database answers."""
        await self._client.admin.command("ping")

    @_converted
    async def create_job(self, job_id: str, expressions: Sequence[str]) -> Job:
        """Store a job and its operations (operations first: a job is never seen half-stored)."""
        now = utcnow()
        total = len(expressions)
        for start in range(0, total, INSERT_CHUNK):
            chunk = expressions[start : start + INSERT_CHUNK]
            docs = [
                {
                    "_id": operation_id(job_id, index),
                    "job_id": job_id,
                    "index": index,
                    "expression": text,
                }
                for index, text in enumerate(chunk, start=start + 1)
            ]
            await _insert_new(self._operations, docs)
        job = {
            "_id": job_id,
            "status": "in_progress",
            "total": total,
            "succeeded": 0,
            "failed": 0,
            "created_at": now,
            "updated_at": now,
            "finished_at": None,
            "reconciliations": 0,
        }
        await _insert_new(self._jobs, [job])
        return _job(job)

    @_converted
    async def get_job(self, job_id: str) -> Job:
        """The job, or NotFound (also while it is being deleted)."""
        doc = await self._jobs.find_one({"_id": job_id, "status": VISIBLE})
        if doc is None:
            raise NotFound(f"job {job_id} not found")
        return _job(doc)

    @_converted
    async def list_jobs(self, page: int, size: int) -> tuple[int, list[Job]]:
        """One page of jobs, newest first, and the total count."""
        total = await self._jobs.count_documents({"status": VISIBLE})
        cursor = (
            self._jobs.find({"status": VISIBLE})
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .skip((page - 1) * size)
            .limit(size)
        )
        return total, [_job(doc) async for doc in cursor]

    @_converted
    async def delete_job(self, job_id: str) -> None:
        """Remove a job with its operations and results, or finish a deletion that stopped half-way.

        The job is first marked as being deleted (the API no longer shows it and late results no
        longer count), then its operations and results go in bounded chunks, and the job document
        last: a failure at any point leaves a job that a retried DELETE, or the reconciliation
        sweep, deletes to the end.
        """
        doc = await self._jobs.find_one_and_update(
            {"_id": job_id}, {"$set": {"status": DELETING, "updated_at": utcnow()}}
        )
        if doc is None:
            raise NotFound(f"job {job_id} not found")
        await self._purge(self._operations, job_id, doc["total"])
        await self._purge(self._results, job_id, doc["total"])
        await self._jobs.delete_one({"_id": job_id})
        # Once more after the job document is gone: a persisting worker checks for the job after
        # storing results, so whatever it stored before this point is found here and whatever it
        # stores after finds no job and removes itself. Needed on FerretDB, whose findAndModify is
        # not atomic against a concurrent conditional update: a progress update racing the mark
        # above can overwrite it (seen in the fault suite), and the worker then keeps its results.
        await self._purge(self._results, job_id, doc["total"])

    async def _purge(
        self, collection: AsyncCollection, job_id: str, last: int, first: int = 1
    ) -> None:
        """Delete a job's documents of operations first..last, DELETE_CHUNK indexes at a time.

        Each chunk is idempotent, so a transient failure (a deadlock with a concurrent purge of
        the same job, a primary stepping down) is retried a few times before it is reported.
        """
        for start in range(first, last + 1, DELETE_CHUNK):
            end = min(start + DELETE_CHUNK, last + 1)
            query = {"job_id": job_id, "index": {"$gte": start, "$lt": end}}
            for attempt in range(PURGE_ATTEMPTS):
                try:
                    await collection.delete_many(query)
                    break
                except PyMongoError as exc:
                    if attempt + 1 == PURGE_ATTEMPTS or not is_transient(exc):
                        raise
                    await asyncio.sleep(0.05 * 2**attempt)

    @_converted
    async def unfinished_deletions(self, updated_before: datetime, limit: int) -> list[str]:
        """Ids of jobs whose deletion began before the given time and has not finished."""
        cursor = self._jobs.find(
            {"status": DELETING, "updated_at": {"$lt": updated_before}}, {"_id": 1}
        ).limit(limit)
        return [doc["_id"] async for doc in cursor]

    @_converted
    async def get_operation(self, job_id: str, index: int) -> Operation:
        """One operation of a job with its result if any, or NotFound."""
        op_id = operation_id(job_id, index)
        doc = await self._operations.find_one({"_id": op_id})
        if doc is None:
            raise NotFound(f"operation {op_id} not found")
        return _operation(doc, await self._results.find_one({"_id": op_id}))

    @_converted
    async def list_operations(
        self, job_id: str, page: int, size: int, status: OperationStatus | None = None
    ) -> tuple[int, list[Operation]]:
        """One page of a job's operations in submission order, and how many there are (of that
        status, when one is given); NotFound if no job."""
        job = await self.get_job(job_id)
        skip = (page - 1) * size
        if status is None:
            total = job.total
            indexes = list(range(skip + 1, min(skip + size, total) + 1))
        elif status == "pending":
            # the operations without a result: the indexes of the results, read on the
            # (job_id, index) index, then the gaps between them
            ended = {d["index"] async for d in self._results.find({"job_id": job_id}, {"index": 1})}
            pending = [i for i in range(1, job.total + 1) if i not in ended]
            total, indexes = len(pending), pending[skip : skip + size]
        else:
            query = {"job_id": job_id, "status": status}
            total = await self._results.count_documents(query)
            cursor = self._results.find(query, {"index": 1}).sort("index", ASCENDING)
            indexes = [d["index"] async for d in cursor.skip(skip).limit(size)]
        ids = [operation_id(job_id, i) for i in indexes]
        operations = await _each(ids, lambda op_id: self._operations.find_one({"_id": op_id}))
        results = await _each(ids, lambda op_id: self._results.find_one({"_id": op_id}))
        return total, [
            _operation(doc, result)
            for doc, result in zip(operations, results, strict=True)
            if doc is not None
        ]

    @_converted
    async def count_jobs_by_status(self) -> dict[str, int]:
        """How many jobs there are in each status."""
        return {
            status: await self._jobs.count_documents({"status": status})
            for status in ("in_progress", "completed")
        }

    @_converted
    async def record_results(self, results: Sequence[OperationResult]) -> int:
        """Store results; one already stored for an operation is kept. Returns how many were new."""
        now = utcnow()
        docs = [
            {
                "_id": r.operation_id,
                "job_id": r.job_id,
                "index": r.index,
                "status": r.status,
                "result": r.result,
                "error": r.error,
                "finished_at": now,
            }
            for r in results
        ]
        return await _insert_new(self._results, docs)

    @_converted
    async def existing_jobs(self, job_ids: Iterable[str]) -> set[str]:
        """The ids among these whose job is still there (in progress or completed, not deleting)."""
        docs = await _each(
            job_ids,
            lambda job_id: self._jobs.find_one({"_id": job_id, "status": VISIBLE}, {"_id": 1}),
        )
        return {doc["_id"] for doc in docs if doc is not None}

    @_converted
    async def drop_results(self, results: Sequence[OperationResult]) -> None:
        """Delete these results (just stored for jobs that turned out to be deleted).

        One range of operation indexes per job, on the `(job_id, index)` index: only what the
        caller stored goes, so this never competes with the deletion's own chunks.
        """
        spans: dict[str, tuple[int, int]] = {}
        for r in results:
            low, high = spans.get(r.job_id, (r.index, r.index))
            spans[r.job_id] = (min(low, r.index), max(high, r.index))
        await _each(
            spans.items(),
            lambda item: self._purge(self._results, item[0], item[1][1], first=item[1][0]),
        )

    @_converted
    async def save_progress(self, progress: Sequence[Progress]) -> SavedProgress:
        """Set jobs' counters (absolute values), completing those whose operations all ended.

        Only jobs still in progress are updated; the others (deleted, or completed meanwhile by
        reconciliation) come back as `stale`.
        """
        now = utcnow()
        saved = SavedProgress(set(), {}, now)

        async def save(p: Progress) -> None:
            fields: dict[str, Any] = {
                "succeeded": p.succeeded,
                "failed": p.failed,
                "updated_at": now,
            }
            in_progress = {"_id": p.job_id, "status": "in_progress"}
            if not p.complete:
                outcome = await self._jobs.update_one(in_progress, {"$set": fields})
                if outcome.matched_count == 0:
                    saved.stale.add(p.job_id)
                return
            fields |= {"status": "completed", "finished_at": now}
            # one command that also tells when the job was created (no projection: FerretDB
            # rejects findAndModify's "fields")
            doc = await self._jobs.find_one_and_update(in_progress, {"$set": fields})
            if doc is None:
                saved.stale.add(p.job_id)
            else:
                saved.completed[p.job_id] = doc["created_at"]

        await _each(progress, save)
        return saved

    # -- reconciliation ---------------------------------------------------------------------

    @_converted
    async def stalled_jobs(self, updated_before: datetime, limit: int) -> list[Job]:
        """In-progress jobs whose counters have not moved since the given time."""
        cursor = self._jobs.find(
            {"status": "in_progress", "updated_at": {"$lt": updated_before}}
        ).limit(limit)
        return [_job(doc) async for doc in cursor]

    @_converted
    async def pending_operations(self, job_id: str) -> list[Operation]:
        """A job's operations that have no result yet."""
        done = {doc["index"] async for doc in self._results.find({"job_id": job_id}, {"index": 1})}
        cursor = self._operations.find({"job_id": job_id})
        return [_operation(doc, None) async for doc in cursor if doc["index"] not in done]

    @_converted
    async def count_outcomes(self, job: Job) -> Outcomes:
        """A job's operations by outcome, from the results themselves."""
        succeeded = await self._results.count_documents({"job_id": job.id, "status": "succeeded"})
        failed = await self._results.count_documents({"job_id": job.id, "status": "failed"})
        return Outcomes(job.total, succeeded, failed)

    @_converted
    async def note_reconciled(self, job_id: str) -> int:
        """Record one more reconciliation of a job (and restart its clock); returns the count."""
        doc = await self._jobs.find_one_and_update(
            {"_id": job_id, "status": "in_progress"},
            {"$set": {"updated_at": utcnow()}, "$inc": {"reconciliations": 1}},
            return_document=True,  # no projection: FerretDB rejects findAndModify's "fields"
        )
        return 0 if doc is None else int(doc.get("reconciliations", 0))


async def _each(items: Iterable[T], call: Callable[[T], Awaitable[R]]) -> list[R]:
    """Run one single-document command per item, at most CONCURRENT_COMMANDS at once.

    Single-id commands rather than `$in` or bulk writes: FerretDB pushes only plain equality
    filters down to its backend (with `$in` it reads the whole collection), and it holds one
    backend connection per statement of a command until the whole command ends.
    """
    gate = asyncio.Semaphore(CONCURRENT_COMMANDS)

    async def gated(item: T) -> R:
        async with gate:
            return await call(item)

    return list(await asyncio.gather(*(gated(item) for item in items)))


async def _insert_new(collection: AsyncCollection, docs: list[dict[str, Any]]) -> int:
    """Insert documents, skipping those whose id exists; returns how many were inserted."""
    if not docs:
        return 0
    try:
        outcome = await collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        return int(exc.details.get("nInserted", len(docs) - len(errors)))
    return len(outcome.inserted_ids)


def _job(doc: dict[str, Any]) -> Job:
    return Job(
        id=doc["_id"],
        status=doc["status"],
        total=doc["total"],
        succeeded=doc["succeeded"],
        failed=doc["failed"],
        created_at=doc["created_at"],
        finished_at=doc.get("finished_at"),
    )


def _operation(doc: dict[str, Any], result: dict[str, Any] | None) -> Operation:
    return Operation(
        id=doc["_id"],
        job_id=doc["job_id"],
        index=doc["index"],
        expression=doc["expression"],
        status="pending" if result is None else result["status"],
        result=None if result is None else result.get("result"),
        error=None if result is None else result.get("error"),
    )
