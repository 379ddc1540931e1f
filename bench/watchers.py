"""Watchers during load (issue 13): what waiting without polling costs the database and throughput.

The small-job load runs several times, the same way each time, beside one bigger *watched job*
submitted at the start of each run: some runs with nobody watching, the others with `clients`
clients waiting for the watched job to complete (half of them on its event stream
`GET /api/jobs/{id}/events`, half with `GET /api/jobs/{id}?wait=60`, spread over the three client
APIs), a follower of `GET /api/events` (the dashboard's jobs list) and one client doing what the
dashboard's job page does on the watched job (`dashboard_job_page`). The runs alternate in pairs
whose order flips (without, with, with, without, ...), so a drift of the machine over the section
weighs on both conditions alike, and repeats of one condition show the run-to-run noise.

Per run: the small jobs' completed ops/s, and the database commands the watchers caused, which
the workers label `origin="api-watch"` in `mongo_commands_total` (the jobs they read:
`job_watcher_reads_total`). A watcher reads its job's first state once; everything after comes
from the job events, so any read beyond one per watch (stream opened or wait answered) is a read
the design says should not happen. The job page's own reads of operations pages (and of the job,
when its stream is quiet) are ordinary API reads (`origin="api-read"`), counted from the client
side and by the workers' HTTP metrics.
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
    delete_jobs,
    open_loop,
    settle,
    submit,
    summarize_load,
    tag,
)
from bench.report import watcher_comparison
from bench.stack import Stack, counter_delta, scrape

log = logging.getLogger("bench.watchers")

#: jobstream.dbmetrics.WATCH_READ (the benchmark reads it from the workers' /metrics).
WATCH_ORIGIN = "api-watch"
#: jobstream.dbmetrics.API_READ: what the API's GET requests read.
READ_ORIGIN = "api-read"
COMMANDS = "mongo_commands_total"
WATCHER_READS = "job_watcher_reads_total"
REQUESTS = "http_request_duration_seconds_count"
OPERATIONS_ROUTE = "/api/jobs/{job_id}/operations"
#: Longest `?wait=` the API takes.
MAX_WAIT = 60
#: How long the watched job may take after the load's schedule (then its watchers are stopped).
WATCHED_TIMEOUT = 240.0
#: After the watched job completed, how long watchers get to notice it before they are stopped.
GRACE_SECONDS = 10.0
#: Each run starts once Kafka holds fewer unconsumed messages than this (what earlier phases
#: left would slow the first run only).
SETTLED_BELOW = 100
#: What the dashboard's job page does (jobstream/views/static/app.js, `jobPage`): operations
#: pages of OPERATIONS_PAGE_SIZE, and a read of the job when its stream said nothing for POLL_MS.
OPERATIONS_PAGE_SIZE = 50
POLL_SECONDS = 3.0
#: Its reconnection delay after a stream ended without a final state (doubles up to 15 s).
RECONNECT_SECONDS = 1.0


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


@dataclass
class PageLog:
    """What the dashboard-like job page requested and saw."""

    streams: int = 0  # its event streams opened (200): one first-state read each (api-watch)
    events: int = 0  # `event: job` messages on them
    last_status: str = "none"
    operations_pages: int = 0  # GET /api/jobs/{id}/operations answered 200 (api-read)
    job_reads: int = 0  # GET /api/jobs/{id} when its stream was quiet (api-read)
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "streams": self.streams,
            "events": self.events,
            "last_status": self.last_status,
            "operations_pages": self.operations_pages,
            "job_reads": self.job_reads,
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


async def dashboard_job_page(
    session: aiohttp.ClientSession, base: str, job_id: str, seen: PageLog, deadline: float
) -> None:
    """The dashboard's job page on one job, request for request (app.js `jobPage`).

    As it opens: the first page of operations (`?page=1&size=50`) and the job's event stream.
    Every POLL_SECONDS, while the job runs and its stream has said nothing for that long (or has
    not sent the first state yet), it reads the job itself. When it sees the job complete after
    having seen it running, it reads the operations page again (the results are all there). A
    stream that ends without a final state is opened again after 1 s (doubling, at most 15 s).
    Returns once a final state arrived (the page then stays open and requests nothing more), or
    at `deadline`.
    """
    job: dict[str, Any] = {"status": None}
    news = 0.0  # monotonic time of the stream's last message
    reloads: list[asyncio.Task[None]] = []

    async def operations() -> None:
        url = f"{base}/api/jobs/{job_id}/operations?page=1&size={OPERATIONS_PAGE_SIZE}"
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=30)) as response:
                await response.read()
                if response.status == 200:
                    seen.operations_pages += 1
                else:
                    seen.errors.append(f"operations: HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            seen.errors.append(f"operations: {type(exc).__name__}: {exc}"[:200])

    def show(state: dict[str, Any], source: str) -> None:
        was = job["status"]
        if was == "completed":
            return
        job["status"] = state.get("status")
        if job["status"] == "completed" and was is not None and source != "first":
            reloads.append(asyncio.create_task(operations()))

    async def poll() -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            if job["status"] == "completed":
                return
            if job["status"] is not None and time.monotonic() - news < POLL_SECONDS:
                continue
            try:
                url = f"{base}/api/jobs/{job_id}"
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=30)) as response:
                    raw = await response.read()
                    if response.status != 200:
                        seen.errors.append(f"job read: HTTP {response.status}")
                        continue
                seen.job_reads += 1
                show(orjson.loads(raw), "first" if job["status"] is None else "poll")
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                seen.errors.append(f"job read: {type(exc).__name__}: {exc}"[:200])

    async def follow() -> None:
        nonlocal news
        first, delay = True, RECONNECT_SECONDS
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        while time.monotonic() < deadline:
            try:
                url = f"{base}/api/jobs/{job_id}/events"
                headers = {"Accept": "text/event-stream"}
                async with session.get(url, timeout=timeout, headers=headers) as response:
                    if response.status != 200:
                        seen.errors.append(f"page stream: HTTP {response.status}")
                        if response.status in (400, 401, 404):
                            return
                    else:
                        seen.streams += 1
                        delay = RECONNECT_SECONDS
                        event = "message"
                        async for line in response.content:
                            if line.startswith(b"event: "):
                                event = line[len(b"event: ") :].strip().decode()
                            elif line.startswith(b"data: ") and event == "job":
                                state = orjson.loads(line[len(b"data: ") :])
                                news = time.monotonic()
                                seen.events += 1
                                seen.last_status = str(state.get("status", "?"))
                                show(state, "first" if first else "stream")
                                first = False
                                if state.get("status") != "in_progress":
                                    return
                            elif line.strip() == b"":
                                event = "message"
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                seen.errors.append(f"page stream: {type(exc).__name__}: {exc}"[:200])
            await asyncio.sleep(delay)
            delay = min(delay * 2, 15.0)

    poller = asyncio.create_task(poll())
    try:
        await asyncio.gather(operations(), follow())
        if reloads:
            await asyncio.gather(*reloads)
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller


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


def requests_to(counters: dict[str, dict[str, float]], route: str, method: str = "GET") -> float:
    """From counter deltas: requests the workers served on one route (their HTTP metrics)."""
    key = f"{REQUESTS}{{method={method},route={route}}}"
    return sum(values.get(key, 0.0) for values in counters.values())


def read_commands(counters: dict[str, dict[str, float]]) -> float:
    """From counter deltas: database commands of the API's GET requests (origin=api-read)."""
    return sum(
        value
        for values in counters.values()
        for key, value in values.items()
        if key.startswith(COMMANDS + "{") and f"origin={READ_ORIGIN}" in key
    )


async def half(
    stack: Stack,
    phases: Phases,
    name: str,
    *,
    run: int,
    clients: int,
    operations_per_job: int,
    jobs_per_second: float,
    seconds: float,
    watched_operations: int,
    drain_timeout: float,
) -> dict[str, Any]:
    """One run of the load beside a watched job, with `clients` watchers, the `/api/events`
    follower and the job page (0: nobody watches)."""
    seen = WatchLog()
    page = PageLog()
    watched = Submission(-1, watched_operations, scheduled=time.time())
    tasks: list[asyncio.Task[None]] = []
    others: list[asyncio.Task[None]] = []  # the follower (runs until cancelled) and the page
    if phases.lag_probe is not None:
        await settle(phases.lag_probe, below=SETTLED_BELOW, timeout=30.0)
    async with phases.phase(name) as record:
        await submit(stack, watched, body_for(watched_operations, seed=7), stack.base(0))
        if watched.job_id is None:
            return {
                "phase": name,
                "run": run,
                "watchers": clients,
                "error": f"watched job: {watched.error}",
            }
        # under load the watched job can outlast the small jobs by far (100,000 operations:
        # ~6 s alone, 58-84 s beside the load in a trial run)
        watch_deadline = time.monotonic() + seconds + max(drain_timeout, WATCHED_TIMEOUT)
        try:
            if clients:
                others.append(
                    asyncio.create_task(
                        follow_everything(stack.session, f"{stack.base(0)}/api/events", seen)
                    )
                )
                others.append(
                    asyncio.create_task(
                        dashboard_job_page(
                            stack.session, stack.base(2), watched.job_id, page, watch_deadline
                        )
                    )
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
            waited = [*tasks, *others[1:]]  # not the follower: it runs until cancelled
            if waited:
                _, late = await asyncio.wait(waited, timeout=GRACE_SECONDS)
                if late:
                    seen.errors.append(f"{len(late)} watchers had not seen the job complete")
        finally:
            for task in [*tasks, *others]:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        tag(record, subs, operations_per_job, drained)
        record["watchers"] = clients
    summary = summarize_load(subs, jobs_per_second, operations_per_job)
    counters = record.get("counters") or {}
    reads = watcher_db_reads(counters)
    watches = seen.watches + page.streams
    beyond = None if not clients else max(reads["job_reads"] - watches, 0.0)
    out = {
        "phase": name,
        "run": run,
        "watchers": clients,
        "watched_job_id": watched.job_id,
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
        "dashboard": page.to_json()
        | {"operations_requests_served": requests_to(counters, OPERATIONS_ROUTE)}
        if clients
        else None,
        "db": reads
        | {
            "watches_with_dashboard": watches if clients else 0,
            "job_reads_beyond_first_state": beyond,
        },
    }
    log.info(
        "%s: %s ops/s completed, watchers %d, watches %d (+%d job page), their database "
        "commands %.0f (jobs read %.0f); job page read %d operations pages, %d jobs",
        name,
        summary["completed_ops_per_s"],
        clients,
        seen.watches,
        page.streams,
        reads["commands"],
        reads["job_reads"],
        page.operations_pages,
        page.job_reads,
    )
    return out


def run_order(clients: int, pairs: int) -> list[int]:
    """Watchers per run: pairs alternating which goes first (0, c, c, 0, 0, c, ...)."""
    order: list[int] = []
    for k in range(pairs):
        order += [0, clients] if k % 2 == 0 else [clients, 0]
    return order


async def page_read_cost(stack: Stack, job_id: str) -> dict[str, Any]:
    """Database commands (origin=api-read) of one operations page and one job read, measured
    alone (nothing else reads the API meanwhile): what the job page's reads cost."""
    out: dict[str, Any] = {}
    for what, path in (
        ("operations_page", f"/operations?page=1&size={OPERATIONS_PAGE_SIZE}"),
        ("job", ""),
    ):
        before = await scrape(stack.session)
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            url = f"{stack.base(2)}/api/jobs/{job_id}{path}"
            async with stack.session.get(url, timeout=aiohttp.ClientTimeout(total=30)) as resp:
                await resp.read()
                if resp.status != 200:
                    out[what] = None
                    continue
        out[what] = read_commands(counter_delta(before, await scrape(stack.session)))
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
    pairs: int = 2,
    offered_share: float | None = None,
) -> dict[str, Any]:
    """The load without watchers and with them, in `pairs` pairs of alternating order; every
    run's throughput, the per-pair ratios and the overall one (see report.watcher_comparison).

    `offered_share`: the offered load as a share of the sustained throughput, when known."""
    jobs_per_second = offered_ops_per_second / operations_per_job
    order = run_order(clients, pairs)
    phases.labels["run"] = "watchers"  # kept out of the per-job database cost of the sweep
    halves: list[dict[str, Any]] = []
    try:
        for run, n in enumerate(order, start=1):
            halves.append(
                await half(
                    stack,
                    phases,
                    f"watchers: {n} during {offered_ops_per_second:.0f} ops/s "
                    f"(run {run}/{len(order)})",
                    run=run,
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
    watched_ids = [h["watched_job_id"] for h in halves if h.get("watched_job_id")]
    cost = await page_read_cost(stack, watched_ids[-1]) if watched_ids else {}
    await delete_jobs(stack, watched_ids)  # a few 100,000-op jobs would weigh on later sections
    section = {
        "clients": clients,
        "operations_per_job": operations_per_job,
        "offered_ops_per_s": offered_ops_per_second,
        "offered_share": offered_share,
        "seconds": seconds,
        "watched_operations": watched_operations,
        "order": order,
        "halves": halves,
        "page_read_commands": cost,
    }
    comparison = watcher_comparison(section)
    section["ratio"] = comparison["ratio"] if comparison else None
    section["comparison"] = comparison
    return section
