"""Jobs, operations and results in MongoDB, behind a small repository.

The document model is MongoDB's bucket pattern, so that the work per job is a few commands:
- a **job document** holds the job's counters and status, and its first BUCKET operations with their
  results, as two arrays of equal length (`ops`, the expressions; `res`, null until a result is
  stored); a job of up to BUCKET operations is that one document;
- every further BUCKET operations of a bigger job are one **chunk document** of the same shape
  (`<job id>.<bucket>`), written before the job document, so a job is never seen half-stored.
A small job therefore costs one insert when submitted and one update when its results are
persisted (the update sets the results, the counters and the completion at once); on MongoDB the
updates of a whole persist batch go as one `bulk_write`. A 100,000-operation job is 1,000
documents, not 200,000.

Every write stays idempotent without transactions (which FerretDB lacks and at-least-once
delivery makes unnecessary):
- a result is set at its position only while that position is null (the filter says so), so the
  first stored result wins, and the document's outcome counters (`ok`, `ko`) move exactly once;
- job counters are *set* to the absolute values the progress table computed, and only on a job
  still in progress;
- results are only ever written into existing documents (never upserted), so late results of a
  deleted job cannot bring any of it back.
While a job runs, its results are written by one process, the persisting agent that owns its
partition (reconciliation completes a job only once every result is stored; a deletion ends it).
Reconciliation keeps its own record of each job it republished (attempts, when) in a collection of
its own rather than in the job document: FerretDB 1.24 applies an update by reading the document
(internal/handler/msg_update.go, line 115; msg_findandmodify.go, line 135), changing it in Go and
writing the whole of it back (internal/handler/common/update.go, line 112, through
internal/backends/postgresql/collection.go `UpdateAll`, line 197: `UPDATE ... SET _jsonb = $1 WHERE
_id = $2`, with no condition on what was read), so two updates of one document from two processes
can lose one. A reconciliation mark written so had overwritten the results a persisting worker
stored a moment before, while the worker's progress table counted them: the fault suite found a
completed job with 100 of its results missing. MongoDB updates a document atomically. (At a
rebalance Faust waits for the events in flight to be acknowledged before it gives a partition up,
faust/app/base.py `_consumer_wait_empty`, line 1829, with `stream_wait_empty`; only a worker
dropped from its group while storing could still write beside the partition's new owner, and on
FerretDB those two writes can race the same way.)
An operation is pending exactly while its result position is null. Driver errors become
`StorageError` here.

Job ids are time-ordered (`models.new_job_id`), so `_id` order is creation order: the jobs listing
pages by `_id` (keyset pagination on the built-in index), newest first.

Where FerretDB (the local stand-in) needs another form of a command, `Forms` holds both, chosen once
at connect time; see its docstring.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import logging
import math
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, ParamSpec, Protocol, TypeVar

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, UpdateOne, monitoring
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    WTimeoutError,
)

from jobstream.dbfailures import (
    LOCK_TIMEOUT_CODES,
    LOCK_TIMEOUT_SQLSTATES,
    OUT_OF_SPACE_CODES,
    backend_unavailable,
    failure_reason,
)
from jobstream.errors import NotFound, StorageError
from jobstream.models import (
    Job,
    ListedStatus,
    Operation,
    OperationResult,
    OperationStatus,
    job_created_at,
    operation_id,
)
from jobstream.names import CHUNKS, JOBS, LISTING, RECONCILIATIONS

# Storage takes its tracer from OpenTelemetry itself: it imports nothing of the web stack or of
# prometheus-client (command metrics come in as PyMongo event listeners, see `connect`).
tracer = trace.get_tracer("jobstream.storage")
log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

DUPLICATE_KEY = 11000
NAMESPACE_NOT_FOUND = 26
#: Operations per document: the job document holds the first BUCKET, each chunk document the next.
#: Two request messages' worth (100 operations each), so a big job's chunk is usually written by
#: one update, and a 100,000-operation job costs about 0.015 document writes per operation.
BUCKET = 200
#: Chunk documents inserted per command (PyMongo splits further by message size).
INSERT_CHUNKS = 200
#: Chunk documents removed per delete command. FerretDB on PostgreSQL refuses a delete matching
#: more than 65,535 documents ("extended protocol limited to 65535 parameters"); bounded deletes
#: also keep each command short on MongoDB.
DELETE_CHUNKS = 500
#: A job being deleted: invisible to the API, refused by progress updates, finished by any retry.
DELETING = "deleting"
PURGE_ATTEMPTS = 5
#: Tries of a conditional result write whose positions were partly taken meanwhile.
WRITE_ATTEMPTS = 3
VISIBLE = {"$in": ["in_progress", "completed"]}
CONCURRENT_COMMANDS = 10  # per batch; the client pool (maxPoolSize) is 20
#: Slots of the slot index whose jobs the FerretDB listing reads at once: first, and at most.
FIRST_SLOTS = 4
SLOTS_AT_ONCE = 16
#: Children of a slot index entry read in one reply.
CHILDREN_BATCH = 10_000
#: Longest a listing's total is reused (FerretDB's estimate; a count by status), in seconds.
TOTAL_EVERY = 5.0
#: Below this many jobs by PostgreSQL's statistics, the FerretDB form has them refreshed first.
COUNTED_BELOW = 1000
#: In-progress jobs the FerretDB form reads at most for a page of them (it sorts them itself).
IN_PROGRESS_READ = 10_000
#: The job fields the API shows (the operation arrays stay in the database).
JOB_FIELDS = {"ops": 0, "res": 0}

Dialect = Literal["mongodb", "ferretdb"]


@dataclass(frozen=True)
class Progress:
    """Absolute counters of one job, as the progress table computed them."""

    job_id: str
    succeeded: int
    failed: int
    complete: bool


@dataclass(frozen=True)
class SavedProgress:
    """What storing a batch did."""

    #: jobs no longer in progress (completed, being deleted or gone): nothing of theirs was stored
    stale: set[str]
    #: job id -> when the job was created (None if unknown), for each job this call completed
    completed: dict[str, datetime | None]
    #: the time the call stored (`updated_at`, and `finished_at` of the jobs it completed)
    at: datetime
    #: results stored (not already there)
    stored: int = 0
    #: the stale jobs that are deleted or being deleted
    gone: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Outcomes:
    """A job's operations by outcome, counted from the stored results."""

    total: int
    succeeded: int
    failed: int

    @property
    def pending(self) -> int:
        """Operations without a result."""
        return self.total - self.succeeded - self.failed


@dataclass(frozen=True)
class JobPage:
    """One page of the jobs listing, newest first."""

    jobs: list[Job]
    #: the cursor of the next page (the last job's id), or None when this is the last page
    next: str | None
    #: how many jobs there are (of the status asked for), approximately: it may count jobs being
    #: deleted, lag a few seconds, and on FerretDB the completed ones are estimated
    total: int


class Repository(Protocol):
    """Everything jobstream asks of storage; `MongoRepository` and `MemoryRepository` provide it."""

    async def ping(self) -> None: ...

    # -- the API ------------------------------------------------------------------------------
    async def create_job(self, job_id: str, expressions: Sequence[str]) -> Job: ...
    async def get_job(self, job_id: str) -> Job: ...
    async def list_jobs(
        self,
        size: int,
        *,
        after: str | None = None,
        page: int = 1,
        status: ListedStatus | None = None,
    ) -> JobPage: ...
    async def delete_job(self, job_id: str) -> None: ...
    async def get_operation(self, job_id: str, index: int) -> Operation: ...
    async def list_operations(
        self, job_id: str, page: int, size: int, status: OperationStatus | None = None
    ) -> tuple[int, list[Operation]]: ...

    # -- persisting results -----------------------------------------------------------------
    async def store_results(
        self, results: Sequence[OperationResult], progress: Sequence[Progress]
    ) -> SavedProgress: ...

    # -- reconciliation and retention -------------------------------------------------------
    async def stalled_jobs(self, updated_before: datetime, limit: int) -> list[Job]: ...
    async def unfinished_deletions(self, updated_before: datetime, limit: int) -> list[str]: ...
    async def expired_jobs(self, finished_before: datetime, limit: int) -> list[str]: ...
    async def delete_expired(self, job_ids: Sequence[str]) -> list[str]: ...
    async def pending_operations(self, job_id: str) -> list[Operation]: ...
    async def count_outcomes(self, job: Job) -> Outcomes: ...
    async def note_reconciled(self, job_id: str) -> int: ...
    async def forget_reconciliations(self, before: datetime, limit: int) -> int: ...
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
                    f"{fn.__name__}: {type(exc).__name__}: {exc}",
                    transient=is_transient(exc),
                    full=is_out_of_space(exc),
                ) from exc

    return wrapper


#: Server error codes that name a passing state of the deployment, not the command itself:
#: shutdown, elections, a primary stepping down, network, lock and time-limit errors.
TRANSIENT_CODES = (
    frozenset({6, 7, 50, 89, 91, 112, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436})
    | LOCK_TIMEOUT_CODES
)


#: FerretDB (the local stand-in) reports its PostgreSQL backend's deadlocks, serialization
#: failures and lock timeouts (a table locked by someone else for longer than `lock_timeout`:
#: seen with an operator's `LOCK TABLE`) as InternalError (code 1) with the SQLSTATE in the
#: message; MongoDB never sends these.
FERRETDB_TRANSIENT_SQLSTATES = ("SQLSTATE 40P01", "SQLSTATE 40001", *LOCK_TIMEOUT_SQLSTATES)


def is_out_of_space(exc: PyMongoError) -> bool:
    """Whether the database failed because it has no space left to write (`dbfailures`). Writes
    fail until an operator frees or adds space, then succeed unchanged: an outage of writes, not a
    refusal of the command, so it is waited out like one (a first version parked every batch the
    persisting agent could not store, and reconciliation computed their operations again)."""
    if isinstance(exc, BulkWriteError):
        codes = {e.get("code") for e in exc.details.get("writeErrors", [])}
        if codes & OUT_OF_SPACE_CODES:
            return True
    code = exc.code if isinstance(exc, OperationFailure) else None
    return failure_reason(code, str(exc)) == "out_of_space"


def is_transient(exc: PyMongoError) -> bool:
    """Whether retrying can cure the error: the database (or FerretDB's PostgreSQL) is
    unreachable, changing primaries, locked by someone else, or out of space."""
    if any(state in str(exc) for state in FERRETDB_TRANSIENT_SQLSTATES):
        return True
    if backend_unavailable(str(exc)) or is_out_of_space(exc):
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


def bucket_of(index: int) -> int:
    """The bucket (0: the job document) holding the operation of this 1-based index."""
    return (index - 1) // BUCKET


def chunk_id(job_id: str, bucket: int) -> str:
    """The id of a job's chunk document for a bucket from 1."""
    return f"{job_id}.{bucket}"


# -- the two forms of the commands that differ ----------------------------------------------------


class Forms:
    """The MongoDB form of the commands that FerretDB 1.x runs badly, and FerretDB's.

    MongoDB: a batch of conditional updates is one `bulk_write(ordered=False)`. FerretDB 1.24
    (PostgreSQL backend) pushes only plain equality filters down to its backend
    (internal/backends/postgresql/query.go `prepareWhereClause`: `$in`, ranges and sorts are
    evaluated in Go over the whole collection), and it holds one backend connection per statement
    of a command until the whole command ends; so there the same work
    goes as concurrent single-document commands with equality filters. For the same reason it
    cannot page jobs newest first without reading them all (its sorts are never pushed down: the
    first page of 200,000 jobs took 36 s), so there the listing walks a `SlotIndex` instead, and
    the listing by status does too (completed), or reads the few jobs in progress by equality and
    sorts them itself (`MongoRepository._list_in_progress`); nor can it count the completed jobs
    without reading them, so their total is estimated.
    """

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

    async def update_each(
        self, collection: AsyncCollection, updates: Sequence[tuple[dict[str, Any], dict[str, Any]]]
    ) -> list[bool] | None:
        """Apply conditional single-document updates; which matched (None: not known per update,
        only that at least one did not)."""
        if not updates:
            return []
        if self.dialect == "mongodb":
            outcome = await collection.bulk_write(
                [UpdateOne(f, u) for f, u in updates], ordered=False
            )
            return [True] * len(updates) if outcome.matched_count == len(updates) else None
        matched = await _each(updates, lambda fu: collection.update_one(fu[0], fu[1]))
        return [m.matched_count > 0 for m in matched]


async def detect_dialect(client: AsyncMongoClient) -> Dialect:
    """ "ferretdb" when the server says it is FerretDB (its buildInfo has `ferretdbVersion`)."""
    info = await client.admin.command("buildInfo")
    return "ferretdb" if "ferretdbVersion" in info else "mongodb"


#: Milliseconds of creation time that one slot of the FerretDB listing covers.
SLOT_MS = 100
#: Slots per minute.
SLOTS_PER_MINUTE = 60_000 // SLOT_MS
#: The levels of the slot index, widest first: each entry's key prefix and how many slots it
#: covers (a day, an hour, a minute, six seconds, a slot). Each level has at most a few dozen
#: entries under one parent, so every read of the walk is small: FerretDB spends about 20 µs per
#: document it returns, and a minute of 600 slots read at once cost ~10 ms.
LEVELS: tuple[tuple[str, int], ...] = (
    ("d", 24 * 60 * SLOTS_PER_MINUTE),
    ("h", 60 * SLOTS_PER_MINUTE),
    ("m", SLOTS_PER_MINUTE),
    ("g", SLOTS_PER_MINUTE // 10),
    ("s", 1),
)
SPANS = dict(LEVELS)


def slot_of(created_at: datetime) -> int:
    """The listing slot of a job created at this time (SLOT_MS-long intervals since the epoch)."""
    return int(created_at.timestamp() * 1000) // SLOT_MS


def slot_path(slot: int) -> list[tuple[str, str]]:
    """The (key, parent) entries that list a slot, widest level first."""
    keys = [f"{prefix}:{slot // span}" for prefix, span in LEVELS]
    return list(zip(keys, ["root", *keys[:-1]], strict=True))


def _span(key: str) -> tuple[int, int]:
    """The first and last slot an entry covers."""
    prefix, number = key.split(":", 1)
    span = SPANS[prefix]
    return int(number) * span, (int(number) + 1) * span - 1


class SlotIndex:
    """Which slots (SLOT_MS of creation time) have jobs: FerretDB's stand-in for MongoDB's sorted
    `_id` index.

    Every job document carries `slot`, from its creation time, which FerretDB looks up by equality
    on an index. The index is a tree of tiny documents in `listing`, each naming its parent: a day
    `d:<n>` (parent `root`), its hours `h:<n>`, their minutes `m:<n>`, six-second groups `g:<n>`
    and slots `s:<n>` (`LEVELS`). The listing walks the tree newest first, reading the children of
    one entry at a time (those on the path of the current time all at once, before it needs them;
    those of entries closed minutes ago from memory, see CLOSED_AFTER), then the jobs of each
    slot, and stops when a page is full: a few small lookups by equality however many jobs are
    stored. A worker inserts a slot's entries once, before its first job in
    that slot is inserted (so no job is ever unlisted): at most one insert per worker and busy
    slot, not one per job. Entries are inserted, never updated: FerretDB runs an update as a read
    then a write, so concurrent `$addToSet`s on one shared document lose entries (seen in the
    benchmark: jobs never listed). The walk orders entries by the slots they cover, whatever their
    level, so an index written with the earlier three levels (`h` under `root`, `s` under `m`)
    still lists its jobs in order. Unused on MongoDB.
    """

    #: Entries remembered as inserted; forgotten all at once past this many.
    MEMO = 10_000
    #: An entry whose time ended this many slots ago is closed: no worker creates jobs in it any
    #: more (5 minutes: beyond any clock difference between workers). Its children are read once
    #: and reused for CLOSED_SECONDS; only the benchmark's prefill (`register_slots`) adds to a
    #: closed entry, and what it adds is listed once that time has passed.
    CLOSED_AFTER = 5 * SLOTS_PER_MINUTE
    CLOSED_SECONDS = 60.0

    def __init__(
        self, collection: AsyncCollection, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._collection = collection
        self._clock = clock
        self._known: set[str] = set()
        #: closed entry -> (when read, its children)
        self._closed: dict[str, tuple[float, list[str]]] = {}
        #: Entries being inserted now, and whether that insert succeeded: a concurrent POST in
        #: the same new slot waits for it instead of inserting the same entries again.
        self._inserting: dict[str, asyncio.Future[bool]] = {}

    async def register(self, slots: Iterable[int]) -> None:
        """Record that jobs exist in these slots (idempotent); parents before children."""
        levels: list[dict[str, str]] = [{} for _ in LEVELS]
        for slot in slots:
            for level, (key, parent) in zip(levels, slot_path(slot), strict=True):
                level[key] = parent
        for level in levels:
            others = {k: self._inserting[k] for k in level if k in self._inserting}
            mine = {k: p for k, p in level.items() if k not in self._known and k not in others}
            if mine:
                await self._insert(mine)
            if others:
                await asyncio.wait(set(others.values()))
                failed = {k: level[k] for k, done in others.items() if not done.result()}
                if failed:  # that insert failed: this job's slot must be recorded all the same
                    await self._insert(failed)
            if len(self._known) >= self.MEMO:
                self._known.clear()
            self._known.update(level)

    async def _insert(self, entries: dict[str, str]) -> None:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        for key in entries:
            self._inserting[key] = done
        try:
            docs = [{"_id": k, "parent": p} for k, p in entries.items()]
            for start in range(0, len(docs), 1000):
                await _insert_new(self._collection, docs[start : start + 1000])
            done.set_result(True)
        finally:
            if not done.done():
                done.set_result(False)
            for key in entries:
                if self._inserting.get(key) is done:
                    del self._inserting[key]

    async def _children(self, parent: str) -> list[str]:
        closed = parent != "root" and _span(parent)[1] < slot_of(utcnow()) - self.CLOSED_AFTER
        if closed and parent in self._closed:
            at, children = self._closed[parent]
            if self._clock() - at <= self.CLOSED_SECONDS:
                return children
        # in one reply (FerretDB's first batch is otherwise 101 documents, then a getMore)
        cursor = self._collection.find({"parent": parent}, {"_id": 1}, batch_size=CHILDREN_BATCH)
        children = [doc["_id"] async for doc in cursor]
        if closed:
            if len(self._closed) >= self.MEMO:
                self._closed.clear()
            self._closed[parent] = (self._clock(), children)
        return children

    async def slots(
        self, *, before: int | None = None, after: int | None = None, near: Iterable[int] = ()
    ) -> AsyncIterator[int]:
        """Registered slots: newest first up to `before`, or oldest first from `after`.

        The children of `root` and of the entries on the paths to the `near` slots are read at
        once, in one round trip: a listing from the current time finds the newest slots in that
        round trip when they are recent. Any other entry's children are read when the walk
        reaches it, which is when it covers the newest (oldest) slots left.
        """
        newest_first = before is not None
        low = -1 if after is None else after
        high = before if before is not None else 1 << 62
        keys = ["root", *{key for slot in near for key, _ in slot_path(slot)[:-1]}]
        read = dict(zip(keys, await asyncio.gather(*map(self._children, keys)), strict=True))
        heap: list[tuple[int, str]] = []

        def push(children: list[str]) -> None:
            for key in children:
                first, last = _span(key)
                if last >= low and first <= high:
                    heapq.heappush(heap, (-last, key) if newest_first else (first, key))

        # Entries by the newest (oldest) slot they may hold: a slot comes out only when no entry
        # left can hold a newer (older) one, whatever the levels (and the index's layout).
        push(read.pop("root"))
        while heap:
            _, key = heapq.heappop(heap)
            if key.startswith("s:"):
                yield int(key[2:])
            else:
                children = read.pop(key, None)
                push(await self._children(key) if children is None else children)

    async def forget(self, slot: int) -> None:
        """Drop a slot whose jobs are all gone (retention), and each parent left childless."""
        await self.forget_many([slot])

    async def forget_many(self, slots: Iterable[int]) -> None:
        """Drop slots whose jobs are all gone, then, level by level, each parent they leave
        childless (the entries of a level concurrently: a sweep empties hundreds of slots)."""
        keys = [f"s:{slot}" for slot in dict.fromkeys(slots)]
        while keys:
            entries = await _each(
                keys, lambda k: self._collection.find_one({"_id": k}, {"parent": 1})
            )
            await _each(keys, lambda k: self._collection.delete_one({"_id": k}))
            for key in keys:
                self._known.discard(key)
                self._closed.pop(key, None)
            parents = list({e["parent"] for e in entries if e is not None} - {"root"})
            for parent in parents:
                self._closed.pop(parent, None)
            children = await _each(
                parents, lambda p: self._collection.find_one({"parent": p}, {"_id": 1})
            )
            keys = [p for p, child in zip(parents, children, strict=True) if child is None]


@dataclass
class _Write:
    """Results to set in one document (job or chunk), with the fields to set beside them."""

    key: str
    #: (position in the document's arrays, result)
    items: list[tuple[int, OperationResult]]
    condition: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)

    def command(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The filter (positions still null) and update (results, outcome counters, fields)."""
        query: dict[str, Any] = {"_id": self.key, **self.condition}
        sets: dict[str, Any] = dict(self.fields)
        ok = ko = 0
        for position, r in self.items:
            query[f"res.{position}"] = None
            sets[f"res.{position}"] = _result_value(r)
            ok += r.status == "succeeded"
            ko += r.status == "failed"
        update: dict[str, Any] = {"$set": sets} if sets else {}
        if ok or ko:
            update["$inc"] = {"ok": ok, "ko": ko}
        return query, update

    def without_taken(self, res: list[Any]) -> _Write:
        """This write, keeping only the results whose positions are still null in `res`."""
        free = [(p, r) for p, r in self.items if p < len(res) and res[p] is None]
        return _Write(self.key, free, self.condition, self.fields)


class MongoRepository:
    """The repository over PyMongo's native async client."""

    def __init__(
        self, client: AsyncMongoClient, database: str, dialect: Dialect | None = None
    ) -> None:
        self._client = client
        self._db = client[database]
        self._jobs = self._db[JOBS]
        self._chunks = self._db[CHUNKS]
        self._slots = SlotIndex(self._db[LISTING])
        self._reconciliations = self._db[RECONCILIATIONS]
        self._total: tuple[float, int] = (float("-inf"), 0)
        #: status -> (when counted, count): the listing's totals by status
        self._counts: dict[str, tuple[float, int]] = {}
        self._forms = None if dialect is None else Forms(dialect)

    @classmethod
    def connect(
        cls,
        url: str,
        database: str,
        event_listeners: Sequence[monitoring._EventListener] = (),
        dialect: Dialect | None = None,
    ) -> MongoRepository:
        """A repository on a new client (connections are made lazily).

        `event_listeners` are PyMongo monitoring listeners, such as the worker's command metrics.
        `dialect` is detected on first use unless given (`Settings.mongo_dialect`).
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
        return cls(client, database, dialect)

    async def forms(self) -> Forms:
        """The command forms of the database's dialect (detected once)."""
        if self._forms is None:
            self._forms = Forms(await detect_dialect(self._client))
        return self._forms

    async def register_slots(self, slots: Iterable[int]) -> None:
        """List the jobs of these slots (`slot_of` their creation times: documents inserted by
        other means than `create_job`, such as the benchmark's prefill); nothing on MongoDB."""
        if (await self.forms()).dialect == "ferretdb":
            await self._slots.register(slots)

    async def close(self) -> None:
        """Close the client's connections."""
        await self._client.close()

    @_converted
    async def ensure_indexes(self) -> None:
        """Create the collections and their indexes (idempotent; run once, by bootstrap).

        The jobs listing pages on `_id`, which is creation order; by status, on `(status, _id)`,
        which also covers its count.
        """
        await self._jobs.create_index([("status", ASCENDING), ("updated_at", ASCENDING)])
        await self._jobs.create_index([("status", ASCENDING), ("_id", DESCENDING)])
        await self._chunks.create_index([("job_id", ASCENDING), ("bucket", ASCENDING)])
        await self._reconciliations.create_index([("at", ASCENDING)])

    @_converted
    async def ping(self) -> None:
        """Raise StorageError unless the database answers."""
        await self._client.admin.command("ping")

    @_converted
    async def create_job(self, job_id: str, expressions: Sequence[str]) -> Job:
        """Store a job: its chunk documents first, then the job document (a job is never seen
        half-stored, and a retry with the same id inserts only what is missing)."""
        now = utcnow()
        created = job_created_at(job_id) or now
        slot = slot_of(created)
        if (await self.forms()).dialect == "ferretdb":
            await self._slots.register([slot])
        total = len(expressions)
        chunks = [
            _bucket_doc(expressions, bucket) | {"_id": chunk_id(job_id, bucket), "job_id": job_id}
            for bucket in range(1, bucket_of(total) + 1)
        ]
        for start in range(0, len(chunks), INSERT_CHUNKS):
            await _insert_new(self._chunks, chunks[start : start + INSERT_CHUNKS])
        job = {
            "_id": job_id,
            "status": "in_progress",
            "total": total,
            "succeeded": 0,
            "failed": 0,
            "created_at": created,
            "slot": slot,
            "updated_at": now,
            "finished_at": None,
            **_bucket_doc(expressions, 0),
        }
        await _insert_new(self._jobs, [job])
        return _job(job)

    @_converted
    async def get_job(self, job_id: str) -> Job:
        """The job, or NotFound (also while it is being deleted)."""
        doc = await self._jobs.find_one({"_id": job_id, "status": VISIBLE}, JOB_FIELDS)
        if doc is None:
            raise NotFound(f"job {job_id} not found")
        return _job(doc)

    @_converted
    async def list_jobs(
        self,
        size: int,
        *,
        after: str | None = None,
        page: int = 1,
        status: ListedStatus | None = None,
    ) -> JobPage:
        """A page of jobs (of one status, when given), newest first: those created before the job
        `after` (keyset), or the `page`-th page of `size` (offset, kept for the API's `?page=`)."""
        skip = 0 if after is not None else (page - 1) * size
        ferretdb = (await self.forms()).dialect == "ferretdb"
        if ferretdb:
            if status == "in_progress":
                jobs = await self._list_in_progress(skip + size, after)
            else:
                jobs = await self._list_by_slots(skip + size, after, status)
            jobs = jobs[skip:]
        else:
            # served by the `_id` index, or by `(status, _id)` with a status
            query: dict[str, Any] = {"status": VISIBLE if status is None else status}
            if after is not None:
                query["_id"] = {"$lt": after}
            cursor = self._jobs.find(query, JOB_FIELDS).sort("_id", DESCENDING).skip(skip)
            jobs = [_job(doc) async for doc in cursor.limit(size)]
        full = len(jobs) == size
        # what the pages up to this one show: none of them past an empty page
        shown = skip + len(jobs) if jobs else 0
        # on FerretDB the completed jobs' total is an estimate (see `_total_of`)
        if status is None or (status == "completed" and ferretdb):
            # an estimate: never less than what the pages up to this one show, and one more when
            # this page is full (there may be a next)
            total = (
                await self._estimated_total() if status is None else await self._total_of(status)
            )
            total = max(total, shown + (1 if full else 0))
        else:
            # a count (at most TOTAL_EVERY s old): never less than what the pages show
            total = max(await self._total_of(status), shown)
        return JobPage(jobs, jobs[-1].id if full else None, total)

    async def _list_by_slots(
        self, count: int, after: str | None, status: ListedStatus | None = None
    ) -> list[Job]:
        """The newest `count` visible jobs (of `status`, if given; before `after`), from the slot
        index (FerretDB): the newest FIRST_SLOTS slots at once, then as many as the jobs still
        wanted need at the number of them per slot seen so far, up to SLOTS_AT_ONCE. A slot is
        read by equality on `slot` alone, with or without a status (the status is kept here), so
        a filtered page reads the same slots as an unfiltered one, plus those holding the jobs it
        leaves out. FerretDB spends about a millisecond per job document it returns, so a page
        reads few more jobs than it shows."""
        start = job_created_at(after) if after is not None else None
        # from the cursor's slot, or from a minute ahead (a worker's clock may be ahead)
        now = slot_of(utcnow())
        before = slot_of(start) if start is not None else now + SLOTS_PER_MINUTE
        # the entries above the first slot to read come in one round trip: the cursor's, or the
        # current time's (those of the minute ahead are rarely there, and the walk finds them)
        near = [before] if start is not None else [now]
        wanted = VISIBLE["$in"] if status is None else [status]
        jobs: list[Job] = []
        pending: list[int] = []
        batch, slots_read = FIRST_SLOTS, 0

        async def read(slots: list[int]) -> None:
            found = await _each(slots, lambda s: self._jobs.find({"slot": s}, JOB_FIELDS).to_list())
            for docs in found:
                for doc in sorted(docs, key=lambda d: d["_id"], reverse=True):
                    if doc["status"] in wanted and (after is None or doc["_id"] < after):
                        jobs.append(_job(doc))

        async for slot in self._slots.slots(before=before, near=near):
            pending.append(slot)
            if len(pending) == batch:
                await read(pending)
                slots_read += len(pending)
                pending = []
                if len(jobs) >= count:
                    break
                per_slot = len(jobs) / slots_read
                wanted_slots = math.ceil((count - len(jobs)) / per_slot) if per_slot else batch * 2
                batch = max(1, min(wanted_slots, SLOTS_AT_ONCE))
        if pending and len(jobs) < count:
            await read(pending)
        return jobs[:count]

    async def _list_in_progress(self, count: int, after: str | None) -> list[Job]:
        """The newest `count` jobs in progress (before `after`) on FerretDB.

        FerretDB pushes `{"status": "in_progress"}` down to PostgreSQL (the GIN index on `status`
        of scripts/infra/postgres/ferretdb-indexes.sql serves it) but neither a sort, a range on
        `_id` nor a limit beside a filter, so the jobs in progress are read by that equality alone
        and sorted and paged here. They are few (a job is in progress for seconds), so the cost
        follows them, not the completed jobs stored; at most IN_PROGRESS_READ are read, and a
        listing past that says so in the log (its order is then that of the ones read).
        """
        cursor = self._jobs.find({"status": "in_progress"}, JOB_FIELDS).limit(IN_PROGRESS_READ + 1)
        docs = await cursor.to_list()
        if len(docs) > IN_PROGRESS_READ:
            docs = docs[:IN_PROGRESS_READ]
            trace.get_current_span().set_attribute("jobstream.listing.truncated", True)
            log.warning(
                "more than %d jobs in progress: the in-progress listing shows the newest of the "
                "%d it read, not of all",
                IN_PROGRESS_READ,
                IN_PROGRESS_READ,
            )
        if after is not None:
            docs = [doc for doc in docs if doc["_id"] < after]
        docs.sort(key=lambda d: d["_id"], reverse=True)
        return [_job(doc) for doc in docs[:count]]

    async def _total_of(self, status: ListedStatus) -> int:
        """How many jobs have this status, reused for TOTAL_EVERY s.

        MongoDB: `count_documents`, covered by the `(status, _id)` index. FerretDB: exact for
        `in_progress` (an equality it pushes down; they are few), but counting the completed jobs
        would read every one of them, so that is the estimated total minus those in progress.
        """
        at, total = self._counts.get(status, (float("-inf"), 0))
        if time.monotonic() - at <= TOTAL_EVERY:
            return total
        if (await self.forms()).dialect == "ferretdb" and status == "completed":
            in_progress = await self._total_of("in_progress")
            total = max(await self._estimated_total() - in_progress, 0)
        else:
            total = await self._jobs.count_documents({"status": status})
        self._counts[status] = (time.monotonic(), total)
        return total

    async def _estimated_total(self) -> int:
        """How many jobs are stored, approximately (jobs being deleted included).

        MongoDB: `estimatedDocumentCount`, from the collection's metadata. FerretDB answers that
        (and `count`) by reading every document, and its `collStats` command runs ANALYZE first
        (internal/handler/msg_collstats.go: `Refresh: true`; 0.4-0.6 s on 100,000 jobs), so
        there it is the `$collStats` stage's count, which reads PostgreSQL's statistics as they
        are (pg_class.reltuples, kept by autovacuum), at most every TOTAL_EVERY s; below
        COUNTED_BELOW, where those statistics are missing or stale, they are refreshed first.
        """
        if (await self.forms()).dialect == "mongodb":
            return await self._jobs.estimated_document_count()
        at, total = self._total
        if time.monotonic() - at > TOTAL_EVERY:
            try:
                cursor = await self._jobs.aggregate([{"$collStats": {"count": {}}}])
                stats = await cursor.to_list()
            except OperationFailure as exc:
                if exc.code != NAMESPACE_NOT_FOUND:
                    raise
                stats = []  # no job was ever stored in this database
            total = max(int(stats[0].get("count", 0)) if stats else 0, 0)
            if total < COUNTED_BELOW:
                # A new table has no statistics (reltuples -1: 0 here), and autovacuum analyzes
                # only after 50 rows and 10 % changed. The `collStats` command runs ANALYZE and
                # counts from its result: exact and a few milliseconds on a small table, and once
                # at most ~0.3 s on a big one whose statistics lag (ANALYZE samples 30,000 rows),
                # after which they no longer do. Reading the ids instead cost ~0.45 s per 1,000
                # jobs every TOTAL_EVERY s (FerretDB decodes each whole document).
                stats = await self._db.command("collStats", JOBS)
                total = max(total, int(stats.get("count", 0)))
            self._total = (time.monotonic(), total)
        return total

    @_converted
    async def delete_job(self, job_id: str) -> None:
        """Remove a job with its operations and results, or finish a deletion that stopped half-way.

        The job is first marked as being deleted (the API no longer shows it and late results no
        longer count), then its chunk documents go in bounded steps, and the job document last: a
        failure at any point leaves a job that a retried DELETE, or the reconciliation sweep,
        deletes to the end. Results are never upserted, so none can outlive the documents.
        """
        doc = await self._jobs.find_one_and_update(
            {"_id": job_id}, {"$set": {"status": DELETING, "updated_at": utcnow()}}
        )
        if doc is None:
            raise NotFound(f"job {job_id} not found")
        last = bucket_of(doc["total"])
        for start in range(1, last + 1, DELETE_CHUNKS):
            query = {"job_id": job_id, "bucket": {"$gte": start, "$lt": start + DELETE_CHUNKS}}
            await _retried(lambda q=query: self._chunks.delete_many(q))
        # Unconditional: FerretDB's findAndModify is not atomic against a concurrent conditional
        # update, so a completing progress update can overwrite the mark above (seen in the fault
        # suite); the job must go all the same.
        await _retried(lambda: self._jobs.delete_one({"_id": job_id}))

    @_converted
    async def unfinished_deletions(self, updated_before: datetime, limit: int) -> list[str]:
        """Ids of jobs whose deletion began before the given time and has not finished."""
        cursor = self._jobs.find(
            {"status": DELETING, "updated_at": {"$lt": updated_before}}, {"_id": 1}
        ).limit(limit)
        return [doc["_id"] async for doc in cursor]

    @_converted
    async def expired_jobs(self, finished_before: datetime, limit: int) -> list[str]:
        """Ids of completed jobs finished before the given time (for the retention sweep).

        A completed job's `updated_at` is its `finished_at`, so the `(status, updated_at)` index
        serves this on MongoDB. FerretDB would read every completed job for it, so there the
        oldest slots of the slot index are walked instead (and forgotten once empty).
        """
        if (await self.forms()).dialect == "mongodb":
            cursor = self._jobs.find(
                {"status": "completed", "updated_at": {"$lt": finished_before}}, {"_id": 1}
            ).limit(limit)
            return [doc["_id"] async for doc in cursor]
        expired: list[str] = []
        last = slot_of(finished_before)
        pending: list[int] = []

        async def read(slots: list[int]) -> None:  # SLOTS_AT_ONCE slots read concurrently
            fields = {"status": 1, "updated_at": 1}
            found = await _each(slots, lambda s: self._jobs.find({"slot": s}, fields).to_list())
            await self._slots.forget_many(
                s for s, docs in zip(slots, found, strict=True) if not docs
            )
            for docs in found:
                expired.extend(
                    d["_id"]
                    for d in docs
                    if d["status"] == "completed" and d["updated_at"] < finished_before
                )

        async for slot in self._slots.slots(after=0):
            if slot >= last:
                break
            pending.append(slot)
            if len(pending) == SLOTS_AT_ONCE:
                await read(pending)
                pending = []
                if len(expired) >= limit:
                    break
        if pending and len(expired) < limit:
            await read(pending)
        return expired[:limit]

    @_converted
    async def delete_expired(self, job_ids: Sequence[str]) -> list[str]:
        """Delete those of these jobs that are completed, each with its operations and results;
        the ids deleted (the retention sweep's step).

        A job of at most BUCKET operations is one document: MongoDB deletes all of them in one
        `delete_many` on `_id` (FerretDB: a `delete_one` by `_id` each, concurrently, see `Forms`).
        A bigger one has chunk documents and goes the way of a DELETE (`delete_job`), so that a
        failure half-way leaves a job marked as being deleted, which reconciliation finishes.
        """
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            return []
        small = {"status": "completed", "total": {"$lte": BUCKET}}
        if (await self.forms()).dialect == "mongodb":
            cursor = self._jobs.find({"_id": {"$in": ids}, "status": "completed"}, {"total": 1})
            found = {doc["_id"]: doc["total"] async for doc in cursor}
            deleted = [j for j in ids if j in found and found[j] <= BUCKET]
            if deleted:
                await self._jobs.delete_many({"_id": {"$in": deleted}, **small})
            big = [j for j in ids if j in found and found[j] > BUCKET]
        else:
            outcomes = await _each(ids, lambda j: self._jobs.delete_one({"_id": j, **small}))
            deleted = [j for j, done in zip(ids, outcomes, strict=True) if done.deleted_count]
            gone = set(deleted)
            rest = [j for j in ids if j not in gone]
            docs = await _each(
                rest, lambda j: self._jobs.find_one({"_id": j, "status": "completed"}, {"_id": 1})
            )
            big = [j for j, doc in zip(rest, docs, strict=True) if doc is not None]
        for job_id in big:
            with contextlib.suppress(NotFound):  # deleted meanwhile
                await self.delete_job(job_id)
                deleted.append(job_id)
        return deleted

    @_converted
    async def get_operation(self, job_id: str, index: int) -> Operation:
        """One operation of a job with its result if any, or NotFound."""
        bucket = bucket_of(index)
        if bucket == 0:
            doc = await self._jobs.find_one({"_id": job_id})
        else:
            doc = await self._chunks.find_one({"_id": chunk_id(job_id, bucket)})
        position = index - 1 - bucket * BUCKET
        if doc is None or position >= len(doc["ops"]):
            raise NotFound(f"operation {operation_id(job_id, index)} not found")
        return _operation(job_id, index, doc["ops"][position], doc["res"][position])

    @_converted
    async def list_operations(
        self, job_id: str, page: int, size: int, status: OperationStatus | None = None
    ) -> tuple[int, list[Operation]]:
        """One page of a job's operations in submission order, and how many there are (of that
        status, when one is given); NotFound if no job."""
        job = await self._jobs.find_one({"_id": job_id, "status": VISIBLE})
        if job is None:
            raise NotFound(f"job {job_id} not found")
        skip = (page - 1) * size
        if status is None:
            first, last = skip + 1, min(skip + size, job["total"])
            if first > last:
                return job["total"], []
            docs = await self._buckets(job, bucket_of(first), bucket_of(last))
            operations = [op for doc in docs for op in _operations(job_id, doc)]
            start = bucket_of(first) * BUCKET + 1
            return job["total"], operations[first - start : last - start + 1]
        # Count the matches per bucket from the outcome counters, then read only the buckets
        # that hold the page.
        counts = [(0, _matching(job, status))]
        if job["total"] > BUCKET:
            cursor = self._chunks.find(
                {"job_id": job_id}, {"bucket": 1, "ok": 1, "ko": 1, "n": 1}
            ).sort("bucket", ASCENDING)
            counts += [(doc["bucket"], _matching(doc, status)) async for doc in cursor]
        total = sum(n for _, n in counts)
        wanted, seen = [], 0
        for bucket, n in counts:
            if seen + n > skip and seen < skip + size:
                wanted.append(bucket)
            seen += n
        if not wanted:
            return total, []
        offset = skip - sum(n for b, n in counts if b < wanted[0])
        docs = await self._buckets(job, wanted[0], wanted[-1])
        matches = [op for doc in docs for op in _operations(job_id, doc) if op.status == status]
        return total, matches[offset : offset + size]

    async def _buckets(self, job: dict[str, Any], first: int, last: int) -> list[dict[str, Any]]:
        """The documents of buckets first..last of a job (0 is the job document itself)."""
        docs = [job] if first == 0 else []
        if last >= max(first, 1):
            cursor = self._chunks.find(
                {"job_id": job["_id"], "bucket": {"$gte": max(first, 1), "$lte": last}}
            ).sort("bucket", ASCENDING)
            docs += [doc async for doc in cursor]
        return docs

    @_converted
    async def count_jobs_by_status(self) -> dict[str, int]:
        """How many jobs there are in each status (completed: approximately, from the total)."""
        in_progress = await self._jobs.count_documents({"status": "in_progress"})
        total = await self._estimated_total()
        return {"in_progress": in_progress, "completed": max(total - in_progress, 0)}

    # -- persisting results -----------------------------------------------------------------

    @_converted
    async def store_results(
        self, results: Sequence[OperationResult], progress: Sequence[Progress]
    ) -> SavedProgress:
        """Store results and set their jobs' counters (absolute values), completing the jobs
        whose operations all ended; only jobs still in progress change (the others come back as
        `stale`). A result already stored for an operation is kept.

        Chunk documents first, then the job documents (which carry the first bucket's results),
        so a job is never completed before its results are stored.
        """
        now = utcnow()
        forms = await self.forms()
        by_job: dict[str, dict[int, list[tuple[int, OperationResult]]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for r in results:
            bucket = bucket_of(r.index)
            by_job[r.job_id][bucket].append((r.index - 1 - bucket * BUCKET, r))
        chunk_writes = [
            _Write(chunk_id(job_id, bucket), items)
            for job_id, buckets in by_job.items()
            for bucket, items in buckets.items()
            if bucket > 0
        ]
        job_writes = []
        for p in progress:
            fields: dict[str, Any] = {
                "succeeded": p.succeeded,
                "failed": p.failed,
                "updated_at": now,
            }
            if p.complete:
                fields |= {"status": "completed", "finished_at": now}
            items = by_job.get(p.job_id, {}).get(0, [])
            job_writes.append(_Write(p.job_id, items, {"status": "in_progress"}, fields))
        told = {p.job_id for p in progress}
        for job_id, buckets in by_job.items():  # results without counters (not the agent's way)
            if job_id not in told and buckets.get(0):
                job_writes.append(_Write(job_id, buckets[0], {"status": "in_progress"}))

        stored = 0
        applied, _ = await self._apply(forms, self._chunks, chunk_writes)
        stored += applied
        applied, missed = await self._apply(forms, self._jobs, job_writes)
        stored += applied
        gone = {job_id for job_id, is_gone in missed.items() if is_gone}
        saved = SavedProgress(set(missed), {}, now, stored, gone)
        for p in progress:
            if p.complete and p.job_id not in saved.stale:
                saved.completed[p.job_id] = job_created_at(p.job_id)
        return saved

    async def _apply(
        self, forms: Forms, collection: AsyncCollection, writes: list[_Write]
    ) -> tuple[int, dict[str, bool]]:
        """Apply writes; returns the results stored, and the documents that matched none of
        their write (id -> whether the document is gone or being deleted)."""
        matched = await forms.update_each(collection, [w.command() for w in writes])
        stored = 0
        missed: dict[str, bool] = {}
        retry = [w for i, w in enumerate(writes) if matched is None or not matched[i]]
        stored += sum(len(w.items) for w in writes) - sum(len(w.items) for w in retry)
        outcomes = await _each(
            retry, lambda w: self._apply_one(collection, w, applied_maybe=matched is None)
        )
        for w, outcome in zip(retry, outcomes, strict=True):
            if isinstance(outcome, int):
                stored += outcome
            else:
                missed[w.key] = outcome == "gone"
        return stored, missed

    async def _apply_one(
        self, collection: AsyncCollection, write: _Write, applied_maybe: bool
    ) -> int | Literal["gone", "stale"]:
        """Apply one write that did not match as a whole: read the document, drop the results
        whose positions are taken (a duplicate after the progress table lost its state), and try
        again. Returns the results stored, or why the document refused them.

        `applied_maybe`: a bulk write did not say which of its updates matched, so this one may
        have; a job document whose `updated_at` is this write's was updated by it.
        """
        for attempt in range(WRITE_ATTEMPTS):
            if attempt > 0 or not applied_maybe:
                query, update = write.command()
                if update and (await collection.update_one(query, update)).matched_count:
                    return len(write.items)
            doc = await collection.find_one(
                {"_id": write.key}, {"res": 1, "status": 1, "updated_at": 1}
            )
            if doc is None or doc.get("status") == DELETING:
                return "gone"
            marker = write.fields.get("updated_at")
            if applied_maybe and attempt == 0 and marker and doc.get("updated_at") == marker:
                return len(write.items)
            if any(doc.get(k) != v for k, v in write.condition.items()):
                return "stale"
            write = write.without_taken(doc["res"])
            if not write.items and not write.fields:
                return 0
        raise StorageError(f"results for {write.key} kept conflicting", transient=True)

    # -- reconciliation ---------------------------------------------------------------------

    @_converted
    async def stalled_jobs(self, updated_before: datetime, limit: int) -> list[Job]:
        """In-progress jobs whose counters have not moved since the given time, nor been
        reconciled since then."""
        recent = self._reconciliations.find({"at": {"$gte": updated_before}}, {"_id": 1})
        query: dict[str, Any] = {"status": "in_progress", "updated_at": {"$lt": updated_before}}
        if skipped := [doc["_id"] async for doc in recent]:
            query["_id"] = {"$nin": skipped}
        cursor = self._jobs.find(query, JOB_FIELDS).limit(limit)
        return [_job(doc) async for doc in cursor]

    @_converted
    async def pending_operations(self, job_id: str) -> list[Operation]:
        """A job's operations that have no result yet."""
        job = await self._jobs.find_one({"_id": job_id})
        if job is None:
            return []
        docs = await self._buckets(job, 0, bucket_of(job["total"]))
        return [op for doc in docs for op in _operations(job_id, doc) if op.status == "pending"]

    @_converted
    async def count_outcomes(self, job: Job) -> Outcomes:
        """A job's operations by outcome, from the stored results' counters."""
        doc = await self._jobs.find_one({"_id": job.id}, {"ok": 1, "ko": 1})
        succeeded, failed = (doc or {}).get("ok", 0), (doc or {}).get("ko", 0)
        if job.total > BUCKET:
            async for chunk in self._chunks.find({"job_id": job.id}, {"ok": 1, "ko": 1}):
                succeeded += chunk["ok"]
                failed += chunk["ko"]
        return Outcomes(job.total, succeeded, failed)

    @_converted
    async def note_reconciled(self, job_id: str) -> int:
        """Record one more reconciliation of a job still in progress (which also restarts its
        clock); returns the count, or 0 if the job is no longer in progress.

        The record is a document of its own, never the job document (see the module docstring).
        """
        if await self._jobs.find_one({"_id": job_id, "status": "in_progress"}, {"_id": 1}) is None:
            return 0
        doc = await self._reconciliations.find_one_and_update(
            {"_id": job_id},
            {"$set": {"at": utcnow()}, "$inc": {"attempts": 1}},
            upsert=True,
            return_document=True,  # no projection: FerretDB rejects findAndModify's "fields"
        )
        return int(doc["attempts"])

    @_converted
    async def forget_reconciliations(self, before: datetime, limit: int) -> int:
        """Remove the reconciliation records, last written before the given time, of jobs no
        longer in progress (completed, deleted or expired since); returns how many."""
        cursor = self._reconciliations.find({"at": {"$lt": before}}, {"_id": 1}).limit(limit)
        ids = [doc["_id"] async for doc in cursor]
        if not ids:
            return 0
        running = self._jobs.find({"_id": {"$in": ids}, "status": "in_progress"}, {"_id": 1})
        ended = set(ids) - {doc["_id"] async for doc in running}
        if not ended:
            return 0
        outcome = await self._reconciliations.delete_many({"_id": {"$in": sorted(ended)}})
        return outcome.deleted_count


def completed_job_document(
    job_id: str, expressions: Sequence[str], created_at: datetime, finished_at: datetime
) -> dict[str, Any]:
    """The document of a job of at most BUCKET operations, all succeeded with their index as
    result, as `create_job` and `store_results` leave it (for tools that fill a database)."""
    if len(expressions) > BUCKET:
        raise ValueError(f"a job of {len(expressions)} operations needs chunk documents")
    doc = _bucket_doc(expressions, 0)
    doc["res"] = [{"status": "succeeded", "result": str(i)} for i in range(1, doc["n"] + 1)]
    return doc | {
        "_id": job_id,
        "status": "completed",
        "total": len(expressions),
        "succeeded": len(expressions),
        "failed": 0,
        "created_at": created_at,
        "slot": slot_of(created_at),
        "updated_at": finished_at,
        "finished_at": finished_at,
        "ok": len(expressions),
    }


async def _each(items: Iterable[T], call: Callable[[T], Awaitable[R]]) -> list[R]:
    """Run one single-document command per item, at most CONCURRENT_COMMANDS at once."""
    gate = asyncio.Semaphore(CONCURRENT_COMMANDS)

    async def gated(item: T) -> R:
        async with gate:
            return await call(item)

    return list(await asyncio.gather(*(gated(item) for item in items)))


async def _retried(command: Callable[[], Awaitable[Any]]) -> None:
    """Run an idempotent command, retrying a transient failure (a deadlock with a concurrent
    purge of the same job, a primary stepping down) a few times before it is reported."""
    for attempt in range(PURGE_ATTEMPTS):
        try:
            await command()
            return
        except PyMongoError as exc:
            if attempt + 1 == PURGE_ATTEMPTS or not is_transient(exc):
                raise
            await asyncio.sleep(0.05 * 2**attempt)


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


def _bucket_doc(expressions: Sequence[str], bucket: int) -> dict[str, Any]:
    """The operation fields of one bucket: expressions, null results, outcome counters."""
    ops = list(expressions[bucket * BUCKET : (bucket + 1) * BUCKET])
    return {"bucket": bucket, "n": len(ops), "ops": ops, "res": [None] * len(ops), "ok": 0, "ko": 0}


def _result_value(r: OperationResult) -> dict[str, Any]:
    if r.status == "succeeded":
        return {"status": r.status, "result": r.result}
    return {"status": r.status, "error": r.error}


def _matching(doc: dict[str, Any], status: OperationStatus) -> int:
    """How many operations of a bucket document have this status (from its counters)."""
    if status == "succeeded":
        return int(doc["ok"])
    if status == "failed":
        return int(doc["ko"])
    return int(doc["n"] - doc["ok"] - doc["ko"])


def _operations(job_id: str, doc: dict[str, Any]) -> list[Operation]:
    """The operations of one bucket document, in order."""
    first = doc["bucket"] * BUCKET + 1
    return [_operation(job_id, first + i, text, doc["res"][i]) for i, text in enumerate(doc["ops"])]


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


def _operation(
    job_id: str, index: int, expression: str, result: dict[str, Any] | None
) -> Operation:
    return Operation(
        id=operation_id(job_id, index),
        job_id=job_id,
        index=index,
        expression=expression,
        status="pending" if result is None else result["status"],
        result=None if result is None else result.get("result"),
        error=None if result is None else result.get("error"),
    )
