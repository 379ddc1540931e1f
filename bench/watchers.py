"""Watchers during load (issue 13): what waiting without polling costs the database and throughput.

The small-job load runs twice in a row, the same way each time, beside one bigger *watched job*
submitted at its start: once with nobody watching, once with `clients` clients waiting for the
watched job to complete (half of them on its event stream `GET /api/jobs/{id}/events`, half with
`GET /api/jobs/{id}?wait=60`, spread over the three client APIs) and a dashboard-like follower of
`GET /api/events` on the first one. Per half: the small jobs' completed ops/s, and the database
commands the watchers caused, which the workers label `origin="api-watch"` in
`mongo_commands_total` (the jobs they read: `job_watcher_reads_total`). A watcher reads its job's
first state once; everything after comes from the job events, so any read beyond one per watch
(stream opened or wait answered) is a read the design says should not happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from bench.load import (
    Phases,
    Submission,
    await_completion,
    body_for,
    open_loop,
    settle,
    submit,
    summarize_load,
    tag,
)
from bench.stack import Stack

log = logging.getLogger("bench.watchers")

#: jobstream.dbmetrics.WATCH_READ (the benchmark reads it from the workers' /metrics).
WATCH_ORIGIN = "api-watch"
COMMANDS = "mongo_commands_total"
WATCHER_READS = "job_watcher_reads_total"
#: Longest `?wait=` the API takes.
MAX_WAIT = 60
#: After the watched job completed, how long watchers get to notice it before they are stopped.
GRACE_SECONDS = 10.0
#: Each run starts once Kafka holds fewer unconsumed messages than this (what earlier phases
#: left would slow the first run only).
SETTLED_BELOW = 100


@dataclass
class WatchLog:
    """What the watching clients saw, from their side."""

    streams: int = 0  # event streams opened (200)
    stream_ends: Counter[str] = field(default_factory=Counter)  # last status each stream sent
    waits: int = 0  # ?wait= requests answered 200
    waits_completed: int = 0  # ... of which answered with the job completed
    followed_events: int = 0  # `event: job` messages the /api/events follower got
    errors: list[str] = field(default_factory=list)

    @property
    def watches(self) -> int:
        """Watches the API served: each opened stream and each answered wait reads a first state."""
        return self.streams + self.waits

    def to_json(self) -> dict[str, Any]:
        return {
            "streams": self.streams,
            "stream_ends": dict(self.stream_ends),
            "waits": self.waits,
            "waits_completed": self.waits_completed,
            "watches": self.watches,
            "followed_events": self.followed_events,
            "errors": len(self.errors),
            "first_errors": self.errors[:3],
        }


async def watch_stream(session: aiohttp.ClientSession, url: str, seen: WatchLog) -> None:
    """Follow one job's event stream until the server ends it; note the last status sent."""
    last = "none"
    try:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with session.get(url, timeout=timeout) as response:
            if response.status != 200:
                seen.errors.append(f"stream: HTTP {response.status}")
                return
            seen.streams += 1
            async for line in response.content:
                if line.startswith(b"data: "):
                    last = str(orjson.loads(line[len(b"data: ") :]).get("status", "?"))
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        seen.errors.append(f"stream: {type(exc).__name__}: {exc}"[:200])
    seen.stream_ends[last] += 1


async def watch_wait(
    session: aiohttp.ClientSession, url: str, seen: WatchLog, deadline: float
) -> None:
    """`?wait=` again and again until the job is completed (or the deadline passes)."""
    while (left := deadline - time.monotonic()) > 0:
        wait = max(1, min(MAX_WAIT, int(left)))
        try:
            timeout = aiohttp.ClientTimeout(total=wait + 15)
            async with session.get(f"{url}?wait={wait}", timeout=timeout) as response:
                raw = await response.read()
                if response.status != 200:
                    seen.errors.append(f"wait: HTTP {response.status}: {raw[:100]!r}")
                    return
        except (aiohttp.ClientError, TimeoutError) as exc:
            seen.errors.append(f"wait: {type(exc).__name__}: {exc}"[:200])
            return
        seen.waits += 1
        if orjson.loads(raw).get("status") == "completed":
            seen.waits_completed += 1
            return


async def follow_everything(session: aiohttp.ClientSession, url: str, seen: WatchLog) -> None:
    """The dashboard's list: `/api/events` until cancelled, counting job events."""
    try:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with session.get(url, timeout=timeout) as response:
            if response.status != 200:
                seen.errors.append(f"follower: HTTP {response.status}")
                return
            async for line in response.content:
                if line.startswith(b"event: job"):
                    seen.followed_events += 1
    except (aiohttp.ClientError, TimeoutError) as exc:
        seen.errors.append(f"follower: {type(exc).__name__}: {exc}"[:200])


def watcher_db_reads(counters: dict[str, dict[str, float]]) -> dict[str, float]:
    """From a phase's counter deltas: commands labelled origin=api-watch, and jobs watchers read."""
    commands = reads = 0.0
    for values in counters.values():
        for key, value in values.items():
            if key.startswith(COMMANDS + "{") and f"origin={WATCH_ORIGIN}" in key:
                commands += value
            elif key.startswith(WATCHER_READS):
                reads += value
    return {"commands": commands, "job_reads": reads}


async def half(
    stack: Stack,
    phases: Phases,
    name: str,
    *,
    clients: int,
    operations_per_job: int,
    jobs_per_second: float,
    seconds: float,
    watched_operations: int,
    drain_timeout: float,
) -> dict[str, Any]:
    """One run of the load beside a watched job, with `clients` watchers (0: nobody watches)."""
    seen = WatchLog()
    watched = Submission(-1, watched_operations, scheduled=time.time())
    tasks: list[asyncio.Task[None]] = []
    follower: asyncio.Task[None] | None = None
    if phases.lag_probe is not None:
        await settle(phases.lag_probe, below=SETTLED_BELOW, timeout=30.0)
    async with phases.phase(name) as record:
        await submit(stack, watched, body_for(watched_operations, seed=7), stack.base(0))
        if watched.job_id is None:
            return {"phase": name, "watchers": clients, "error": f"watched job: {watched.error}"}
        watch_deadline = time.monotonic() + seconds + drain_timeout
        try:
            if clients:
                follower = asyncio.create_task(
                    follow_everything(stack.session, f"{stack.base(0)}/api/events", seen)
                )
            for n in range(clients):
                url = f"{stack.base(n)}/api/jobs/{watched.job_id}"
                watch = (
                    watch_stream(stack.session, url + "/events", seen)
                    if n % 2 == 0
                    else watch_wait(stack.session, url, seen, watch_deadline)
                )
                tasks.append(asyncio.create_task(watch))
            subs = await open_loop(
                stack,
                jobs_per_second,
                max(int(jobs_per_second * seconds), 1),
                operations_per_job,
                duration=seconds,
            )
            drained = await await_completion(stack, subs, timeout=drain_timeout)
            watched_done = await await_completion(
                stack, [watched], timeout=max(watch_deadline - time.monotonic(), 1.0)
            )
            if tasks:
                _, late = await asyncio.wait(tasks, timeout=GRACE_SECONDS)
                if late:
                    seen.errors.append(f"{len(late)} watchers had not seen the job complete")
        finally:
            for task in [*tasks, *([follower] if follower else [])]:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        tag(record, subs, operations_per_job, drained)
        record["watchers"] = clients
    summary = summarize_load(subs, jobs_per_second, operations_per_job)
    reads = watcher_db_reads(record.get("counters") or {})
    beyond = None if not clients else max(reads["job_reads"] - seen.watches, 0.0)
    out = {
        "phase": name,
        "watchers": clients,
        "load": summary,
        "drained": drained,
        "watched_job": {
            "operations": watched_operations,
            "completed": watched_done,
            "seconds": None
            if watched.finished_at is None
            else round(watched.finished_at - watched.scheduled, 3),
        },
        "watch": seen.to_json(),
        "db": reads | {"job_reads_beyond_first_state": beyond},
    }
    log.info(
        "%s: %s ops/s completed, watchers %d, watches %d, their database commands %.0f "
        "(jobs read %.0f)",
        name,
        summary["completed_ops_per_s"],
        clients,
        seen.watches,
        reads["commands"],
        reads["job_reads"],
    )
    return out


async def with_and_without(
    stack: Stack,
    phases: Phases,
    *,
    clients: int,
    operations_per_job: int,
    offered_ops_per_second: float,
    seconds: float,
    watched_operations: int,
    drain_timeout: float,
    offered_share: float | None = None,
) -> dict[str, Any]:
    """The load without watchers, then with them; both throughputs and their ratio.

    `offered_share`: the offered load as a share of the sustained throughput, when known."""
    jobs_per_second = offered_ops_per_second / operations_per_job
    phases.labels["run"] = "watchers"  # kept out of the per-job database cost of the sweep
    try:
        halves = []
        for n in (0, clients):
            halves.append(
                await half(
                    stack,
                    phases,
                    f"watchers: {n} during {offered_ops_per_second:.0f} ops/s",
                    clients=n,
                    operations_per_job=operations_per_job,
                    jobs_per_second=jobs_per_second,
                    seconds=seconds,
                    watched_operations=watched_operations,
                    drain_timeout=drain_timeout,
                )
            )
    finally:
        phases.labels.pop("run", None)
    without, with_watchers = ((h.get("load") or {}).get("completed_ops_per_s") for h in halves)
    return {
        "clients": clients,
        "operations_per_job": operations_per_job,
        "offered_ops_per_s": offered_ops_per_second,
        "offered_share": offered_share,
        "seconds": seconds,
        "watched_operations": watched_operations,
        "halves": halves,
        "ratio": None if not without or with_watchers is None else with_watchers / without,
    }
