"""Fill jobstream's database with synthetic completed jobs, fast and bounded in time.

The benchmark runs its small-job and listing phases a second time on a database holding at least
a million documents, to show whether anything costs more as data piles up (a query that scans,
a total that counts). The documents are completed jobs in the repository's own shape, built by a
factory the caller passes (`factory(n, created_at) -> document`), so the prefill follows the
document model when it changes. They are created in the hour before the prefill starts, so the
benchmark's own jobs stay the newest (first on the jobs list's first page), and recent enough that
no retention period removes them during the run.

`insert_many(ordered=False)` in batches, a few batches in flight; it stops at the time budget and
says how far it got. Ids are time-ordered like real ones, with `feed` where real ids have random
bits; a document already there counts as present. On FerretDB the seconds the jobs were created in
are then registered in jobstream's slot index (`MongoRepository.register_slots`), so they are
listed like the jobs jobstream creates itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import BulkWriteError

from bench.storage_limit import expressions
from jobstream.storage import completed_job_document

log = logging.getLogger("bench.prefill")

DUPLICATE_KEY = 11000
ID_PREFIX = 0xFEED
SPREAD = timedelta(hours=1)

Factory = Callable[[int, datetime], dict[str, Any]]
#: Called once `checkpoint_at` documents are stored: None to go on, or why to stop.
Checkpoint = Callable[[int], Awaitable[str | None]]


def prefill_id(n: int, created_at: datetime) -> str:
    """The id of the n-th synthetic job: time-ordered like jobstream's own (the creation time in
    milliseconds, then the UUIDv7 version digit), then `feed` and n instead of random bits."""
    millis = int(created_at.timestamp() * 1000)
    return f"{millis:012x}7{ID_PREFIX:04x}{n:015x}"


def completed_job(n: int, created_at: datetime) -> dict[str, Any]:
    """The default factory: a completed 10-operation job, finished 50 ms after its creation, in
    jobstream's own document model (`jobstream.storage.completed_job_document`)."""
    finished = created_at + timedelta(milliseconds=50)
    return completed_job_document(prefill_id(n, created_at), expressions(n), created_at, finished)


def creation_times(count: int, end: datetime, spread: timedelta = SPREAD) -> Iterator[datetime]:
    """`count` instants evenly spread over `spread` before `end`, oldest first, in whole ms."""
    step = spread / max(count, 1)
    for n in range(count):
        t = end - spread + step * n
        yield t.replace(microsecond=t.microsecond // 1000 * 1000)


def batches(
    count: int, factory: Factory, size: int, end: datetime
) -> Iterator[list[dict[str, Any]]]:
    """The documents, `size` at a time (built lazily: a million never sit in memory at once)."""
    batch: list[dict[str, Any]] = []
    for n, created_at in enumerate(creation_times(count, end)):
        batch.append(factory(n, created_at))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


async def _insert(collection: Any, docs: list[dict[str, Any]]) -> tuple[int, int]:
    """(inserted, already present) of one batch."""
    try:
        outcome = await collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        return int(exc.details.get("nInserted", len(docs) - len(errors))), len(errors)
    return len(outcome.inserted_ids), 0


async def prefill(
    url: str,
    database: str,
    documents: int,
    factory: Factory = completed_job,
    collection: str = "jobs",
    batch_size: int = 1000,
    in_flight: int = 4,
    budget_seconds: float = 300.0,
    checkpoint: Checkpoint | None = None,
    checkpoint_at: int = 100_000,
    connect: Callable[..., Any] = AsyncMongoClient,
    end: datetime | None = None,
) -> dict[str, Any]:
    """Insert `documents` synthetic documents (or as many as `budget_seconds` allows).

    With a `checkpoint`, it is awaited once `checkpoint_at` documents are stored (the time it
    takes is not charged to the budget); if it returns a reason, the prefill stops there.
    """
    end = end or datetime.now(UTC)
    client = connect(url, tz_aware=True, serverSelectionTimeoutMS=10_000, maxPoolSize=in_flight + 1)
    target = client[database][collection]
    inserted = present = 0
    started = time.monotonic()
    deadline = started + budget_seconds
    pending: set[asyncio.Task[tuple[int, int]]] = set()
    last_log = started
    stopped: str | None = None
    checked = checkpoint is None
    paused = 0.0

    async def settle(until: int) -> None:
        nonlocal inserted, present, pending
        while len(pending) > until:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                new, old = task.result()
                inserted, present = inserted + new, present + old

    try:
        for docs in batches(documents, factory, batch_size, end):
            if time.monotonic() > deadline:
                break
            pending.add(asyncio.create_task(_insert(target, docs)))
            await settle(in_flight - 1)
            if not checked and inserted + present + len(pending) * batch_size >= checkpoint_at:
                await settle(0)
                checked = True
                pause_started = time.monotonic()
                stopped = await checkpoint(inserted + present)  # type: ignore[misc]
                paused += time.monotonic() - pause_started
                deadline += time.monotonic() - pause_started
                if stopped:
                    log.info("prefill stopped at %d documents: %s", inserted + present, stopped)
                    break
            if time.monotonic() - last_log > 10:
                last_log = time.monotonic()
                log.info("prefill: %d of %d documents", inserted + present, documents)
        await settle(0)
    finally:
        for task in pending:
            task.cancel()
        await client.close()
    seconds = time.monotonic() - started - paused
    return {
        "database": database,
        "collection": collection,
        "requested": documents,
        "inserted": inserted,
        "already_present": present,
        "stored": inserted + present,
        "complete": inserted + present >= documents,
        "stopped": stopped,
        "seconds": round(seconds, 1),
        "documents_per_s": inserted / seconds if seconds > 0 else None,
        "budget_seconds": budget_seconds,
        "batch_size": batch_size,
        "in_flight": in_flight,
        # the creation seconds the documents span, for `MongoRepository.register_slots`
        "created_seconds": [int((end - SPREAD).timestamp()), int(end.timestamp())],
    }
