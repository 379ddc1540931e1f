"""Jobs and operations in MongoDB, behind a small repository.

Every write is a single-document, idempotent operation (no transactions, sessions or change streams,
which FerretDB lacks and which at-least-once delivery makes unnecessary):
- operations are inserted with deterministic ids, so a retried insert is a no-op;
- a result is written only onto a `pending` operation: a duplicate never overwrites a terminal one;
- job counters are *set* to absolute values computed by the progress table, never incremented.
Driver errors are converted here into `StorageError`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ParamSpec, Protocol, TypeVar

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, InsertOne, UpdateOne
from pymongo.errors import BulkWriteError, PyMongoError

from jobstream.errors import NotFound, StorageError
from jobstream.models import Job, Operation, OperationResult, operation_id

P = ParamSpec("P")
R = TypeVar("R")

DUPLICATE_KEY = 11000
INSERT_CHUNK = 5000


@dataclass(frozen=True)
class Progress:
    """Absolute counters of one job, as the progress table computed them."""

    job_id: str
    succeeded: int
    failed: int
    complete: bool


@dataclass(frozen=True)
class PendingOperation:
    """An operation still waiting for its result (what reconciliation re-publishes)."""

    job_id: str
    index: int
    total: int
    expression: str
    attempts: int


class Repository(Protocol):
    """What agents and views need from storage."""

    async def create_job(self, job_id: str, expressions: Sequence[str]) -> Job: ...
    async def get_job(self, job_id: str) -> Job: ...
    async def list_jobs(self, page: int, size: int) -> tuple[int, list[Job]]: ...
    async def delete_job(self, job_id: str) -> None: ...
    async def get_operation(self, job_id: str, index: int) -> Operation: ...
    async def list_operations(
        self, job_id: str, page: int, size: int
    ) -> tuple[int, list[Operation]]: ...
    async def live_jobs(self, job_ids: Iterable[str]) -> dict[str, int]: ...
    async def record_results(self, results: Sequence[OperationResult]) -> int: ...
    async def save_progress(self, progress: Sequence[Progress]) -> None: ...


def _converted(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Turn driver errors into StorageError at the edge."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except PyMongoError as exc:
            raise StorageError(f"{fn.__name__}: {type(exc).__name__}: {exc}") from exc

    return wrapper


def utcnow() -> datetime:
    """The current time, timezone-aware, at millisecond precision (what BSON stores)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class MongoRepository:
    """The repository over PyMongo's native async client."""

    def __init__(self, client: AsyncMongoClient, database: str) -> None:
        self._client = client
        self._db = client[database]
        self._jobs = self._db["jobs"]
        self._operations = self._db["operations"]

    @classmethod
    def connect(cls, url: str, database: str) -> MongoRepository:
        """A repository on a new client (connections are made lazily)."""
        client: AsyncMongoClient = AsyncMongoClient(
            url, tz_aware=True, serverSelectionTimeoutMS=5000, retryWrites=True
        )
        return cls(client, database)

    async def close(self) -> None:
        """Close the client's connections."""
        await self._client.close()

    @_converted
    async def ensure_indexes(self) -> None:
        """Create the collections' indexes (idempotent)."""
        await self._jobs.create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
        await self._jobs.create_index([("status", ASCENDING), ("updated_at", ASCENDING)])
        await self._operations.create_index(
            [("job_id", ASCENDING), ("index", ASCENDING)], unique=True
        )
        await self._operations.create_index([("status", ASCENDING), ("published_at", ASCENDING)])

    @_converted
    async def ping(self) -> None:
        """Raise StorageError unless the database answers."""
        await self._client.admin.command("ping")

    @_converted
    async def create_job(self, job_id: str, expressions: Sequence[str]) -> Job:
        """Store a job and its operations (operations first: a job is never seen half-stored)."""
        now = utcnow()
        for start in range(0, len(expressions), INSERT_CHUNK):
            chunk = expressions[start : start + INSERT_CHUNK]
            docs = [
                InsertOne(
                    {
                        "_id": operation_id(job_id, index),
                        "job_id": job_id,
                        "index": index,
                        "total": len(expressions),
                        "expression": text,
                        "status": "pending",
                        "result": None,
                        "error": None,
                        "published_at": now,
                        "attempts": 1,
                    }
                )
                for index, text in enumerate(chunk, start=start + 1)
            ]
            await self._bulk(self._operations, docs, ignore_duplicates=True)
        job = {
            "_id": job_id,
            "status": "in_progress",
            "total": len(expressions),
            "succeeded": 0,
            "failed": 0,
            "created_at": now,
            "updated_at": now,
            "finished_at": None,
        }
        await self._bulk(self._jobs, [InsertOne(job)], ignore_duplicates=True)
        return _job(job)

    @_converted
    async def get_job(self, job_id: str) -> Job:
        """The job, or NotFound."""
        doc = await self._jobs.find_one({"_id": job_id})
        if doc is None:
            raise NotFound(f"job {job_id} not found")
        return _job(doc)

    @_converted
    async def list_jobs(self, page: int, size: int) -> tuple[int, list[Job]]:
        """One page of jobs, newest first, and the total count."""
        total = await self._jobs.count_documents({})
        cursor = (
            self._jobs.find({})
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .skip((page - 1) * size)
            .limit(size)
        )
        return total, [_job(doc) async for doc in cursor]

    @_converted
    async def delete_job(self, job_id: str) -> None:
        """Remove a job and its operations; the job first, so late results find nothing live."""
        deleted = await self._jobs.delete_one({"_id": job_id})
        if deleted.deleted_count == 0:
            raise NotFound(f"job {job_id} not found")
        await self._operations.delete_many({"job_id": job_id})

    @_converted
    async def get_operation(self, job_id: str, index: int) -> Operation:
        """One operation of a job, or NotFound."""
        doc = await self._operations.find_one({"_id": operation_id(job_id, index)})
        if doc is None or doc["job_id"] != job_id:
            raise NotFound(f"operation {operation_id(job_id, index)} not found")
        return _operation(doc)

    @_converted
    async def list_operations(
        self, job_id: str, page: int, size: int
    ) -> tuple[int, list[Operation]]:
        """One page of a job's operations in submission order, and the total; NotFound if no job."""
        job = await self.get_job(job_id)
        first = (page - 1) * size + 1
        cursor = self._operations.find(
            {"job_id": job_id, "index": {"$gte": first, "$lt": first + size}}
        ).sort("index", ASCENDING)
        return job.total, [_operation(doc) async for doc in cursor]

    @_converted
    async def live_jobs(self, job_ids: Iterable[str]) -> dict[str, int]:
        """The in-progress jobs among these ids, with their totals."""
        cursor = self._jobs.find(
            {"_id": {"$in": list(job_ids)}, "status": "in_progress"}, {"total": 1}
        )
        return {doc["_id"]: doc["total"] async for doc in cursor}

    @_converted
    async def record_results(self, results: Sequence[OperationResult]) -> int:
        """Write results onto pending operations; returns how many changed."""
        if not results:
            return 0
        now = utcnow()
        writes = [
            UpdateOne(
                {"_id": r.operation_id, "status": "pending"},
                {
                    "$set": {
                        "status": r.status,
                        "result": r.result,
                        "error": r.error,
                        "finished_at": now,
                    }
                },
            )
            for r in results
        ]
        outcome = await self._operations.bulk_write(writes, ordered=False)
        return outcome.modified_count

    @_converted
    async def save_progress(self, progress: Sequence[Progress]) -> None:
        """Set jobs' counters (absolute values), completing those whose operations all ended."""
        if not progress:
            return
        now = utcnow()
        writes = []
        for p in progress:
            fields: dict[str, Any] = {
                "succeeded": p.succeeded,
                "failed": p.failed,
                "updated_at": now,
            }
            if p.complete:
                fields |= {"status": "completed", "finished_at": now}
            writes.append(UpdateOne({"_id": p.job_id, "status": "in_progress"}, {"$set": fields}))
        await self._jobs.bulk_write(writes, ordered=False)

    # -- reconciliation ---------------------------------------------------------------------

    @_converted
    async def stale_operations(
        self, published_before: datetime, limit: int
    ) -> list[PendingOperation]:
        """Pending operations last published before the given time."""
        cursor = self._operations.find(
            {"status": "pending", "published_at": {"$lt": published_before}},
            {"job_id": 1, "index": 1, "total": 1, "expression": 1, "attempts": 1},
        ).limit(limit)
        return [
            PendingOperation(d["job_id"], d["index"], d["total"], d["expression"], d["attempts"])
            async for d in cursor
        ]

    @_converted
    async def mark_republished(self, ops: Sequence[PendingOperation]) -> None:
        """Record that these operations were published again now."""
        if not ops:
            return
        await self._operations.update_many(
            {"_id": {"$in": [operation_id(o.job_id, o.index) for o in ops]}, "status": "pending"},
            {"$set": {"published_at": utcnow()}, "$inc": {"attempts": 1}},
        )

    @_converted
    async def drop_orphans(self, ops: Sequence[PendingOperation]) -> None:
        """Delete operations whose job is gone (a crash between deleting a job and them)."""
        if ops:
            await self._operations.delete_many(
                {"_id": {"$in": [operation_id(o.job_id, o.index) for o in ops]}}
            )

    @_converted
    async def stalled_jobs(self, updated_before: datetime, limit: int) -> list[str]:
        """In-progress jobs not updated since the given time."""
        cursor = self._jobs.find(
            {"status": "in_progress", "updated_at": {"$lt": updated_before}}, {"_id": 1}
        ).limit(limit)
        return [doc["_id"] async for doc in cursor]

    @_converted
    async def count_outcomes(self, job_id: str) -> dict[str, int]:
        """How many of a job's operations are pending, succeeded and failed, from the operations."""
        counts = {"pending": 0, "succeeded": 0, "failed": 0}
        pipeline = [
            {"$match": {"job_id": job_id}},
            {"$group": {"_id": "$status", "n": {"$sum": 1}}},
        ]
        async for row in await self._operations.aggregate(pipeline):
            counts[row["_id"]] = row["n"]
        return counts

    @_converted
    async def touch_job(self, job_id: str) -> None:
        """Mark a job as looked at now (so reconciliation does not inspect it every tick)."""
        await self._jobs.update_one(
            {"_id": job_id, "status": "in_progress"}, {"$set": {"updated_at": utcnow()}}
        )

    async def _bulk(self, collection: Any, writes: list[Any], *, ignore_duplicates: bool) -> None:
        try:
            await collection.bulk_write(writes, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if not ignore_duplicates or any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise


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


def _operation(doc: dict[str, Any]) -> Operation:
    return Operation(
        id=doc["_id"],
        job_id=doc["job_id"],
        index=doc["index"],
        expression=doc["expression"],
        status=doc["status"],
        result=doc.get("result"),
        error=doc.get("error"),
    )
