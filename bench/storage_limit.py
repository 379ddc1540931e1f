"""The storage limit beside jobstream: the least database work a job needs, with a bare client.

Same run, same database server as jobstream, a scratch database of its own (dropped after):
PyMongo's async client, no Kafka, no Faust, no HTTP. Each of N coroutines loops over 10-operation
jobs, one after the other, in the document model MongoDB's schema guidance suggests (one job
document embedding its operations and their results):
  1. `insert` the job document, its operations inside;
  2. one `update` that `$set`s the 10 results, the counters, `status: completed` and `finished_at`
     (the persist agent knows from its progress table that these results complete the job, so
     storing them and completing the job can be one command).
Two commands per job, whatever the concurrency; N in 4, 8, 16, 32, 64, each twice for a few
seconds, and the best N gives the limit. Then, at that N, the same with completion as a third
command (the form where the results arrive in more than one batch), for reference.

The commands are counted by jobstream's own listener (jobstream.dbmetrics), so the figures say
how many commands and documents a job took here, in the same units as the workers' /metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from bench.stats import rate, summarize
from jobstream.dbmetrics import command_listener

log = logging.getLogger("bench.storage_limit")

OPERATIONS = 10
CONCURRENCY = (4, 8, 16, 32, 64)
#: The indexes a `jobs` collection carries (listing newest first; reconciliation's scan).
JOB_INDEXES: tuple[list[tuple[str, int]], ...] = (
    [("created_at", DESCENDING), ("_id", DESCENDING)],
    [("status", ASCENDING), ("updated_at", ASCENDING)],
)


def now() -> datetime:
    """The current time at millisecond precision (what BSON stores)."""
    t = datetime.now(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def expressions(seed: int, count: int = OPERATIONS) -> list[str]:
    """`count` small expressions, like the benchmark's jobs (bench.load.expression)."""
    return [f"{(seed + i) % 997} + {(seed + i) % 13} * 2 - {(seed + i) % 7}" for i in range(count)]


def job_document(job_id: str, texts: Sequence[str], created_at: datetime) -> dict[str, Any]:
    """A new job: its counters and its operations embedded, results still absent."""
    return {
        "_id": job_id,
        "status": "in_progress",
        "total": len(texts),
        "succeeded": 0,
        "failed": 0,
        "created_at": created_at,
        "updated_at": created_at,
        "finished_at": None,
        "operations": [{"expression": text} for text in texts],
    }


def results_update(
    results: Sequence[tuple[int, str]], succeeded: int, failed: int, at: datetime, complete: bool
) -> dict[str, Any]:
    """`$set` of results on their operations' positions (index from 1), and of the counters."""
    fields: dict[str, Any] = {"succeeded": succeeded, "failed": failed, "updated_at": at}
    for index, value in results:
        fields[f"operations.{index - 1}.status"] = "succeeded"
        fields[f"operations.{index - 1}.result"] = value
        fields[f"operations.{index - 1}.finished_at"] = at
    if complete:
        fields |= {"status": "completed", "finished_at": at}
    return {"$set": fields}


def completion_update(at: datetime) -> dict[str, Any]:
    """`$set` that completes a job."""
    return {"$set": {"status": "completed", "finished_at": at, "updated_at": at}}


def completed_job_document(
    job_id: str, texts: Sequence[str], created_at: datetime, finished_at: datetime
) -> dict[str, Any]:
    """A job as it is once every operation succeeded (what the prefilled database holds)."""
    doc = job_document(job_id, texts, created_at)
    for n, operation in enumerate(doc["operations"]):
        operation.update(status="succeeded", result=str(n), finished_at=finished_at)
    doc.update(
        status="completed",
        succeeded=len(texts),
        updated_at=finished_at,
        finished_at=finished_at,
    )
    return doc


@dataclass
class Tally:
    """What one run of a concurrency level did."""

    jobs: int = 0
    seconds: float = 0.0
    lost_updates: int = 0  # an update that matched no job in progress: a bug of the workload
    latencies: list[float] = field(default_factory=list)


async def _one_job(jobs: AsyncCollection, seed: int, fold: bool) -> bool:
    """Store a job, its results, and its completion; True when every update matched."""
    job_id = uuid.uuid4().hex
    texts = expressions(seed)
    await jobs.insert_one(job_document(job_id, texts, now()))
    results = [(i, str(i)) for i in range(1, len(texts) + 1)]
    in_progress = {"_id": job_id, "status": "in_progress"}
    stored = await jobs.update_one(
        in_progress, results_update(results, len(texts), 0, now(), complete=fold)
    )
    if fold:
        return stored.matched_count == 1
    completed = await jobs.update_one(in_progress, completion_update(now()))
    return stored.matched_count == 1 and completed.matched_count == 1


async def run_level(
    jobs: AsyncCollection, concurrency: int, seconds: float, fold: bool = True
) -> Tally:
    """`concurrency` coroutines store jobs one after the other for `seconds`."""
    tally = Tally()
    deadline = time.monotonic() + seconds

    async def loop(n: int) -> None:
        seed = n
        while time.monotonic() < deadline:
            started = time.perf_counter()
            ok = await _one_job(jobs, seed, fold)
            tally.latencies.append((time.perf_counter() - started) * 1000)
            tally.jobs += 1
            tally.lost_updates += not ok
            seed += concurrency

    started = time.monotonic()
    await asyncio.gather(*(loop(n) for n in range(concurrency)))
    tally.seconds = time.monotonic() - started
    return tally


def level_summary(concurrency: int, fold: bool, tallies: Sequence[Tally]) -> dict[str, Any]:
    """A level's figures over its runs: jobs/s = all its jobs over all its time."""
    jobs = sum(t.jobs for t in tallies)
    jobs_per_s = rate(jobs, sum(t.seconds for t in tallies))
    return {
        "concurrency": concurrency,
        "commands_per_job": 2 if fold else 3,
        "jobs": jobs,
        "seconds": round(sum(t.seconds for t in tallies), 3),
        "jobs_per_s": jobs_per_s,
        "ops_per_s": None if jobs_per_s is None else jobs_per_s * OPERATIONS,
        "runs_jobs_per_s": [rate(t.jobs, t.seconds) for t in tallies],
        "lost_updates": sum(t.lost_updates for t in tallies),
        "job_ms": summarize(x for t in tallies for x in t.latencies),
    }


def counted(registry: CollectorRegistry) -> dict[str, float]:
    """Commands and documents written so far, per command, from the listener's registry."""
    out: dict[str, float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name in ("mongo_commands_total", "mongo_documents_written_total"):
                key = f"{sample.name}{{command={sample.labels['command']}}}"
                out[key] = out.get(key, 0.0) + sample.value
    return out


def _per_job(before: dict[str, float], after: dict[str, float], jobs: int) -> dict[str, float]:
    grown = {k: v - before.get(k, 0.0) for k, v in after.items()}
    return {k: round(v / jobs, 3) for k, v in grown.items() if v and jobs}


async def measure(
    url: str,
    seconds: float = 5.0,
    concurrency: Sequence[int] = CONCURRENCY,
    warmup_seconds: float = 1.0,
    passes: int = 2,
    database: str | None = None,
    connect: Callable[..., AsyncMongoClient] = AsyncMongoClient,
) -> dict[str, Any]:
    """The storage limit of 10-operation jobs on the server at `url` (scratch database, dropped).

    Each concurrency runs `passes` times for `seconds`, in ascending then descending order (a
    level's figure does not depend on when it ran: what the database does in the background,
    autovacuum or a checkpoint, falls on several levels), and its figure is over all its runs.
    """
    database = database or f"bench_storage_{uuid.uuid4().hex[:8]}"
    registry = CollectorRegistry()
    client: AsyncMongoClient = connect(
        url,
        tz_aware=True,
        serverSelectionTimeoutMS=10_000,
        maxPoolSize=max(concurrency) + 2,
        event_listeners=[command_listener(registry)],
    )
    levels: list[dict[str, Any]] = []
    try:
        jobs = client[database]["jobs"]
        for keys in JOB_INDEXES:
            await jobs.create_index(keys)
        warmup = 0
        if warmup_seconds > 0:  # connections opened, tables and plans warm: not recorded
            warmup = (await run_level(jobs, max(concurrency), warmup_seconds)).jobs
        runs: dict[int, list[Tally]] = {n: [] for n in concurrency}
        counts: dict[int, tuple[dict[str, float], dict[str, float]]] = {}
        for p in range(passes):
            for n in concurrency if p % 2 == 0 else list(reversed(concurrency)):
                before = counted(registry)
                runs[n].append(await run_level(jobs, n, seconds))
                counts[n] = (before, counted(registry))
                log.info(
                    "storage limit: %d concurrent: %.0f jobs/s",
                    n,
                    rate(runs[n][-1].jobs, runs[n][-1].seconds) or 0.0,
                )
        for n in concurrency:
            level = level_summary(n, True, runs[n])
            level["per_job"] = _per_job(*counts[n], runs[n][-1].jobs)
            levels.append(level)
        best = max(levels, key=lambda lv: lv["jobs_per_s"] or 0.0)
        before = counted(registry)
        three = await run_level(jobs, best["concurrency"], seconds, fold=False)
        unfolded = level_summary(best["concurrency"], False, [three])
        unfolded["per_job"] = _per_job(before, counted(registry), three.jobs)
        stored = await jobs.count_documents({"status": "completed"})
    finally:
        try:
            await client.drop_database(database)
        finally:
            await client.close()
    total = warmup + sum(lv["jobs"] for lv in levels) + unfolded["jobs"]
    return {
        "database": database,
        "operations_per_job": OPERATIONS,
        "model": "one job document embedding its operations and results",
        "levels": levels,
        "best_concurrency": best["concurrency"],
        "jobs_per_s": best["jobs_per_s"],
        "ops_per_s": best["ops_per_s"],
        "commands_per_job": best["commands_per_job"],
        "per_job": best["per_job"],
        "three_commands": unfolded,
        "jobs_stored": total,  # warm-up included
        "completed_documents": stored,  # what the database holds completed: jobs_stored
        "lost_updates": sum(lv["lost_updates"] for lv in levels) + unfolded["lost_updates"],
        "seconds_per_level": seconds,
        "passes": passes,
    }


def main() -> int:
    """`python -m bench.storage_limit [seconds]`: this phase alone, against JOBSTREAM_MONGO_URL."""
    import sys

    import orjson

    from jobstream.settings import Settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    result = asyncio.run(measure(Settings.from_env().mongo_url, seconds=seconds))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
