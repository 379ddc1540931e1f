"""Load against the running local stack, spread over the three client APIs (loopback only).

Every job's completion time is the server's own `finished_at` (stamped by the persist agent when
it writes the batch holding the job's last result), so how often the benchmark polls does not
change what it measures: polling only has to learn each `finished_at` once. Polling is kept light:
one poller waits on the newest job of a batch (`GET /api/jobs/{id}`), then reads the jobs list
newest first, a hundred jobs per request (`GET /api/jobs?page=&size=100`).

Sections:
- `throughput_sweep`: open-loop arrivals of small jobs at several offered loads (ops/s).
- `latency_sweep`: single-operation jobs, first a saturation probe, then open-loop at fixed
  fractions of the rate it sustained; p50/p95/p99 of submitted -> completed.
- `big_jobs`: one job of 1, 100, 10,000, 100,000 operations at a time, with a stage timeline from
  the workers' counters (computed vs persisted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import pgstat, procstat, traces
from bench.lag import LagProbe
from bench.stack import PID_DIR, Stack, counter_delta, scrape, total
from bench.stats import rate, steady_rate, summarize

log = logging.getLogger("bench.load")


# --- bodies ----------------------------------------------------------------------------------


def expression(i: int) -> str:
    """A small arithmetic expression, like the sample files' (about 13 characters)."""
    return f"{i % 997} + {i % 13} * 2 - {i % 7}"


def body_for(operations: int, seed: int = 0) -> bytes:
    """A text/plain job body of that many expressions."""
    return "\n".join(expression(seed + i) for i in range(operations)).encode() + b"\n"


# --- one job ---------------------------------------------------------------------------------


@dataclass
class Submission:
    """One submitted job, with the client's and the server's timestamps (epoch seconds)."""

    index: int
    operations: int
    scheduled: float
    sent: float | None = None
    answered: float | None = None
    job_id: str | None = None
    http_status: int | None = None
    error: str | None = None
    created_at: float | None = None
    finished_at: float | None = None
    done: int = 0
    trace_id: str | None = None

    @property
    def accepted(self) -> bool:
        """The API answered 201 with an id."""
        return self.job_id is not None

    @property
    def completed(self) -> bool:
        """The job was seen completed, with its finished_at."""
        return self.finished_at is not None


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def submit(
    stack: Stack, sub: Submission, body: bytes, base: str, timeout: float = 60.0
) -> None:
    """POST one job; fills sent, answered, job_id or error (traced when sub.trace_id is set)."""
    headers = {"Content-Type": "text/plain"}
    if sub.trace_id:
        headers["traceparent"] = f"00-{sub.trace_id}-{secrets.token_hex(8)}-01"
    sub.sent = time.time()
    try:
        async with stack.session.post(
            f"{base}/api/jobs",
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            raw = await response.read()
            sub.answered = time.time()
            sub.http_status = response.status
            if response.status == 201:
                sub.job_id = orjson.loads(raw)["id"]
            else:
                sub.error = f"HTTP {response.status}: {raw[:200]!r}"
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
        sub.answered = time.time()
        sub.error = f"{type(exc).__name__}: {exc}"[:300]


async def read_job(stack: Stack, sub: Submission, timeout: float = 10.0) -> None:
    """GET the job once and record its progress and timestamps."""
    url = f"{stack.base(sub.index)}/api/jobs/{sub.job_id}"
    try:
        async with stack.session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            if resp.status != 200:
                return
            job = orjson.loads(await resp.read())
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return
    _record(sub, job)


def _record(sub: Submission, job: dict[str, Any]) -> None:
    """Take a job's progress and timestamps from its API representation."""
    sub.created_at = _epoch(job.get("created_at"))
    operations = job.get("operations", {})
    sub.done = int(operations.get("succeeded", 0)) + int(operations.get("failed", 0))
    if job.get("status") == "completed":
        sub.finished_at = _epoch(job.get("finished_at"))


PAGE_SIZE = 100


async def read_pages(stack: Stack, waiting: list[Submission], max_pages: int = 400) -> None:
    """Read the jobs list newest first, 100 a page, until every waiting job has been seen.

    One page costs the API two queries whatever its size, where reading jobs one by one costs
    one query each: on FerretDB every query on `jobs` reads the whole collection, so paging is
    about a hundred times lighter on the system under test. Stops at the first page older than
    the oldest waiting job.
    """
    by_id = {s.job_id: s for s in waiting if s.job_id}
    unseen = set(by_id)
    oldest = min((s.sent or s.scheduled for s in waiting), default=time.time()) - 5.0
    url = f"{stack.base(1)}/api/jobs?page=1&size={PAGE_SIZE}"
    for page in range(1, max_pages + 1):
        try:
            async with stack.session.get(url, timeout=aiohttp.ClientTimeout(total=30)) as resp:
                if resp.status != 200:
                    return
                body = orjson.loads(await resp.read())
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return
        items = body.get("items", [])
        url = next_page_url(stack.base(page + 1), body, page, PAGE_SIZE)
        for job in items:
            sub = by_id.get(job.get("id"))
            if sub is not None:
                _record(sub, job)
                unseen.discard(sub.job_id)
        created = [_epoch(job.get("created_at")) for job in items]
        if not unseen or len(items) < PAGE_SIZE or min(c or 0.0 for c in created) < oldest:
            return


def next_page_url(base: str, body: dict[str, Any], page: int, size: int) -> str:
    """The URL of the page after `page`: by the listing's `next` cursor (keyset pagination: no
    skip), or its `next` link, when it gives one, else by page number + 1."""
    link = body.get("next")
    if isinstance(link, str) and len(link) == 32 and link.isalnum():
        return f"{base}/api/jobs?cursor={link}&size={size}"
    if isinstance(link, str) and link.startswith("/"):
        return base + link
    if isinstance(link, str) and link.startswith(("http://", "https://")):
        return link
    return f"{base}/api/jobs?page={page + 1}&size={size}"


async def await_completion(
    stack: Stack,
    subs: list[Submission],
    timeout: float,
    stall_timeout: float = 20.0,
    interval: float = 0.25,
    sweep_every: float = 3.0,
) -> bool:
    """Learn every accepted job's finished_at; True when all completed.

    Polls the newest unfinished job (one GET per interval); once it has completed, and every
    `sweep_every` seconds meanwhile, reads the jobs list newest first (`read_pages`), which
    covers a hundred jobs per request. Gives up at `timeout`, or when no job has progressed for
    `stall_timeout` seconds: jobs stuck behind a consumer that does not fetch, or whose operations
    were lost and await reconciliation, are reported as not completed instead of holding the run.
    """
    started = time.monotonic()
    deadline = started + timeout
    progress, progressed_at, swept_at = -1, started, started

    while True:
        waiting = [s for s in subs if s.accepted and not s.completed]
        if not waiting:
            return True
        now = time.monotonic()
        if now > deadline or now - progressed_at > stall_timeout:
            return False
        newest = max(waiting, key=lambda s: s.index)
        await read_job(stack, newest)
        if newest.completed or now - swept_at >= sweep_every:
            swept_at = now
            await read_pages(stack, [s for s in waiting if s is not newest])
        done = sum(s.done for s in subs if s.accepted)
        if done != progress:
            progress, progressed_at = done, time.monotonic()
        if not newest.completed:
            await asyncio.sleep(interval)


# --- open-loop arrivals ----------------------------------------------------------------------


async def open_loop(
    stack: Stack,
    jobs_per_second: float,
    count: int,
    operations: int,
    max_in_flight: int = 256,
    post_timeout: float = 60.0,
    duration: float | None = None,
    trace_every: int = 0,
) -> list[Submission]:
    """Submit `count` jobs due at fixed intervals, never waiting for answers before the next one.

    At most `max_in_flight` POSTs are outstanding; past that the schedule slips, which shows as a
    submitted rate under the offered one (latency is still taken from the *scheduled* time, so a
    slipping client does not hide queueing: no coordinated omission). With `duration`, no job is
    started after that many seconds, whatever `count` says. With `trace_every` = n, every n-th
    job carries a sampled `traceparent` (jobstream then traces it end to end).
    """
    body = body_for(operations)
    loop = asyncio.get_running_loop()
    start_loop = loop.time() + 0.05
    start_wall = time.time() + 0.05
    semaphore = asyncio.Semaphore(max_in_flight)
    subs: list[Submission] = []
    tasks: list[asyncio.Task[None]] = []

    async def run(sub: Submission) -> None:
        try:
            await submit(stack, sub, body, stack.base(sub.index), post_timeout)
        finally:
            semaphore.release()

    stop_at = None if duration is None else start_loop + duration
    for i in range(count):
        if stop_at is not None and loop.time() > stop_at:
            break
        delay = start_loop + i / jobs_per_second - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        sub = Submission(i, operations, scheduled=start_wall + i / jobs_per_second)
        if trace_every and i % trace_every == trace_every // 2:
            sub.trace_id = secrets.token_hex(16)
        subs.append(sub)
        await semaphore.acquire()
        tasks.append(asyncio.create_task(run(sub)))
    await asyncio.gather(*tasks)
    return subs


def summarize_load(
    subs: list[Submission], offered_jobs_per_second: float, operations: int
) -> dict[str, Any]:
    """Throughput and latency figures of one open-loop run (pure: timestamps in, figures out).

    - offered: the schedule's rate, in jobs/s and ops/s;
    - submitted: accepted operations over first scheduled -> last 201;
    - completed: completed operations over first scheduled -> last finished_at (end to end,
      drain included: above capacity this is the capacity);
    - steady: operations finished inside the schedule's window after its first fifth;
    - latency: finished_at - scheduled (ms); post: 201 - scheduled (ms).
    """
    accepted = [s for s in subs if s.accepted]
    completed = [s for s in accepted if s.completed]
    first = min((s.scheduled for s in subs), default=None)
    last_scheduled = max((s.scheduled for s in subs), default=None)
    last_answer = max((s.answered for s in accepted if s.answered), default=None)
    last_finish = max((s.finished_at for s in completed if s.finished_at), default=None)
    completed_ops = sum(s.operations for s in completed)
    window = None if first is None or last_scheduled is None else last_scheduled - first
    steady = None
    if first is not None and window:
        steady = steady_rate(
            ((s.finished_at, s.operations) for s in completed if s.finished_at),
            first + window / 5,
            last_scheduled,
        )
    errors = [s.error for s in subs if s.error]
    return {
        "operations_per_job": operations,
        "jobs": len(subs),
        "accepted": len(accepted),
        "completed": len(completed),
        "errors": len(errors),
        "first_errors": errors[:3],
        "offered_jobs_per_s": offered_jobs_per_second,
        "offered_ops_per_s": offered_jobs_per_second * operations,
        "submitted_ops_per_s": rate(
            sum(s.operations for s in accepted),
            None if first is None or last_answer is None else last_answer - first,
        ),
        "completed_ops_per_s": rate(
            completed_ops, None if first is None or last_finish is None else last_finish - first
        ),
        "steady_ops_per_s": steady,
        "schedule_seconds": window,
        "end_to_end_seconds": None
        if first is None or last_finish is None
        else round(last_finish - first, 3),
        "latency_ms": summarize(
            (s.finished_at - s.scheduled) * 1000 for s in completed if s.finished_at
        ),
        "post_ms": summarize(
            (s.answered - s.scheduled) * 1000 for s in accepted if s.answered is not None
        ),
        "server_ms": summarize(
            (s.finished_at - s.created_at) * 1000
            for s in completed
            if s.finished_at and s.created_at
        ),
    }


# --- phases: CPU, memory, counters -----------------------------------------------------------


@dataclass
class Phases:
    """Per phase: wall time, CPU seconds per process, the workers' counter deltas, and Kafka lag
    (at the start, the end, and the most seen while it ran, sampled every `lag_every` seconds)."""

    session: aiohttp.ClientSession
    lag_probe: LagProbe | None = None
    database: str = "jobstream"
    pid_dir: Path = PID_DIR
    lag_every: float = 2.0
    records: list[dict[str, Any]] = field(default_factory=list)
    #: merged into every record from now on (e.g. {"run": "prefilled"})
    labels: dict[str, Any] = field(default_factory=dict)

    async def _lag(self) -> dict[str, Any]:
        return await self.lag_probe.lag() if self.lag_probe else {}

    async def _watch_lag(self, peaks: dict[str, int]) -> None:
        while True:
            await asyncio.sleep(self.lag_every)
            for hop, lag in (await self._lag()).items():
                peaks[hop] = max(peaks.get(hop, 0), lag["total"])

    @contextlib.asynccontextmanager
    async def phase(self, name: str):  # type: ignore[no-untyped-def]
        """Measure everything that runs inside the block as one phase."""
        counters_before = await scrape(self.session)
        tables_before = await pgstat.snapshot(self.database)
        lag_before = await self._lag()
        peaks = {hop: lag["total"] for hop, lag in lag_before.items()}
        watcher = asyncio.create_task(self._watch_lag(peaks))
        before = procstat.sample_all(self.pid_dir)
        started = time.monotonic()
        record: dict[str, Any] = {"name": name, **self.labels}
        try:
            yield record
        finally:
            wall = time.monotonic() - started
            after = procstat.sample_all(self.pid_dir)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            lag_after = await self._lag()
            counters_after = await scrape(self.session)
            tables_after = await pgstat.snapshot(self.database)
            cpu = procstat.cpu_delta(before, after)
            record.update(
                wall_seconds=round(wall, 3),
                cpu_seconds=cpu,
                cpu_percent={k: round(100 * v / wall, 1) for k, v in cpu.items()} if wall else {},
                counters=counter_delta(counters_before, counters_after),
                lag={"start": lag_before, "end": lag_after, "peak": peaks},
                postgres=pgstat.delta(tables_before, tables_after),
            )
            self.records.append(record)

    def processes(self) -> list[dict[str, Any]]:
        """Every watched process: pid, CPU seconds over all phases, RSS now and peak (MB)."""
        samples = procstat.sample_all(self.pid_dir)
        out = []
        for name, sample in samples.items():
            cpu = sum(r["cpu_seconds"].get(name, 0.0) for r in self.records)
            out.append(
                {
                    "name": name,
                    "pid": sample.pid,
                    "kind": _kind(name),
                    "cpu_seconds": round(cpu, 2),
                    "rss_mb": round(sample.rss_kb / 1024, 1),
                    "peak_rss_mb": round(sample.hwm_kb / 1024, 1),
                }
            )
        return out


def _kind(name: str) -> str:
    if name.startswith(("client-", "server-")):
        return "worker"
    return "bench" if name == "bench" else "service"


# --- sections --------------------------------------------------------------------------------


def tag(record: dict[str, Any], subs: list[Submission], operations: int, drained: bool) -> None:
    """Say in a phase's record how many jobs of what size it ran, for its per-job figures."""
    record.update(
        operations_per_job=operations,
        jobs=sum(1 for s in subs if s.accepted),
        drained=drained,
    )


class PipelineStuck(RuntimeError):
    """Operations do not come back: a consumer is not fetching, or results are being lost."""


async def check_pipeline(stack: Stack, operations: int = 300, timeout: float = 60.0) -> None:
    """A job per client, big enough to touch every request partition, must complete.

    Raises PipelineStuck with what is missing otherwise: measuring a pipeline that loses or
    parks operations would only measure timeouts.
    """
    subs = [Submission(n, operations, time.time()) for n in range(len(stack.bases))]
    for sub in subs:
        await submit(stack, sub, body_for(operations), stack.base(sub.index))
    if any(not s.accepted for s in subs):
        raise PipelineStuck(f"submitting failed: {[s.error for s in subs if s.error]}")
    if not await await_completion(stack, subs, timeout=timeout, stall_timeout=timeout):
        stuck = [f"{s.job_id} {s.done}/{s.operations}" for s in subs if not s.completed]
        raise PipelineStuck(
            f"jobs not completed within {timeout:g} s: {', '.join(stuck)}. A worker may not be "
            "fetching its partitions (grep 'has not sent fetch request' .infra/logs/*.log) or "
            "results may be lost; restart the workers (scripts/dev.sh stop && start)."
        )


async def warm_up(stack: Stack, seconds: float, ops_per_second: float) -> None:
    """Check the pipeline end to end, then a short open-loop load (not recorded)."""
    await check_pipeline(stack)
    if seconds > 0:
        jobs_per_second = ops_per_second / 10
        warm = await open_loop(stack, jobs_per_second, int(seconds * jobs_per_second) + 1, 10)
        await await_completion(stack, warm, timeout=60)


async def settle(lag_probe: LagProbe, below: int = 2000, timeout: float = 90.0) -> dict[str, Any]:
    """Wait until Kafka holds little unconsumed work (left by earlier runs); returns the lag."""
    deadline = time.monotonic() + timeout
    while True:
        lag = await lag_probe.lag()
        waiting = sum(hop["total"] for hop in lag.values())
        if waiting < below or time.monotonic() > deadline:
            return lag
        log.info("waiting for %d queued messages to drain before measuring", waiting)
        await asyncio.sleep(2.0)


async def probe(
    stack: Stack,
    phases: Phases,
    name: str,
    operations: int,
    jobs_per_second: float,
    seconds: float,
    drain_timeout: float,
    max_in_flight: int = 64,
) -> dict[str, Any]:
    """Saturation probe: arrivals far above capacity for `seconds`, at most `max_in_flight`
    POSTs outstanding; what completes per second is the sustained throughput of that job size."""
    count = max(int(jobs_per_second * seconds), 1)
    async with phases.phase(name) as record:
        subs = await open_loop(
            stack, jobs_per_second, count, operations, max_in_flight, duration=seconds
        )
        drained = await await_completion(stack, subs, timeout=drain_timeout)
        tag(record, subs, operations, drained)
    summary = summarize_load(subs, jobs_per_second, operations)
    summary.update(drained=drained, phase=name)
    return summary


async def throughput_sweep(
    stack: Stack,
    phases: Phases,
    operations_per_job: int,
    probe_ops_per_second: float,
    probe_seconds: float,
    fractions: list[float],
    seconds: float,
    drain_timeout: float,
    prefix: str = "",
) -> dict[str, Any]:
    """Small jobs: a saturation probe, then open-loop arrivals at fractions of what it sustained.

    The sustained throughput is the best completed rate of the probe and of every load that kept
    up (all its jobs completed). `prefix` starts every phase's name."""
    saturation = await probe(
        stack,
        phases,
        f"{prefix}{operations_per_job}-op saturation probe",
        operations_per_job,
        probe_ops_per_second / operations_per_job,
        probe_seconds,
        drain_timeout,
    )
    capacity = saturation["completed_ops_per_s"] or 0.0
    log.info(
        "throughput: %d-op jobs sustained %.0f ops/s in the probe", operations_per_job, capacity
    )
    results = []
    for fraction in fractions:
        load = max(capacity * fraction, float(operations_per_job))
        jobs_per_second = load / operations_per_job
        count = max(int(jobs_per_second * seconds), 1)
        name = f"{prefix}throughput {fraction:.0%} ({load:.0f} ops/s)"
        async with phases.phase(name) as record:
            subs = await open_loop(stack, jobs_per_second, count, operations_per_job)
            drained = await await_completion(stack, subs, timeout=drain_timeout)
            tag(record, subs, operations_per_job, drained)
        summary = summarize_load(subs, jobs_per_second, operations_per_job)
        summary.update(drained=drained, phase=name, fraction=fraction)
        results.append(summary)
        log.info(
            "throughput: offered %.0f ops/s -> completed %s ops/s (p99 %s ms, %d/%d jobs)",
            load,
            _fmt(summary["completed_ops_per_s"]),
            _fmt(summary["latency_ms"]["p99"]),
            summary["completed"],
            summary["jobs"],
        )
    kept_up = [r["completed_ops_per_s"] or 0.0 for r in results if r["drained"]]
    if saturation["drained"]:
        kept_up.append(capacity)
    return {
        "operations_per_job": operations_per_job,
        "probe": saturation,
        "loads": results,
        "sustained": max(kept_up, default=None),
    }


async def latency_sweep(
    stack: Stack,
    phases: Phases,
    probe_jobs_per_second: float,
    probe_seconds: float,
    fractions: list[float],
    seconds: float,
    drain_timeout: float,
    trace_every: int = 10,
) -> dict[str, Any]:
    """Single-op jobs: a saturation probe, then open loop at fractions of what it sustained.

    Every `trace_every`-th job of the open-loop points is traced; the traces split its latency
    into stages (bench.traces)."""
    saturation = await probe(
        stack,
        phases,
        "1-op saturation probe",
        1,
        probe_jobs_per_second,
        probe_seconds,
        drain_timeout,
    )
    capacity = saturation["completed_ops_per_s"] or 0.0
    log.info("latency: single-op jobs sustained %.1f jobs/s in the probe", capacity)
    points = []
    for fraction in fractions:
        jobs_per_second = max(capacity * fraction, 1.0)
        count = max(int(jobs_per_second * seconds), 1)
        name = f"latency {fraction:.0%} ({jobs_per_second:.0f} jobs/s)"
        async with phases.phase(name) as record:
            subs = await open_loop(stack, jobs_per_second, count, 1, trace_every=trace_every)
            drained = await await_completion(stack, subs, timeout=drain_timeout)
            tag(record, subs, 1, drained)
        point = summarize_load(subs, jobs_per_second, 1)
        traced = [s.trace_id for s in subs if s.trace_id and s.completed]
        found = await traces.fetch(stack.session, traced[:60])
        point["stages"] = {"traced": len(traced), "read": len(found), **_stages(found)}
        point.update(fraction=fraction, drained=drained, phase=name)
        points.append(point)
        log.info(
            "latency: %.0f%% (%.1f jobs/s): p50 %s p95 %s p99 %s ms, %d/%d jobs",
            100 * fraction,
            jobs_per_second,
            _fmt(point["latency_ms"]["p50"]),
            _fmt(point["latency_ms"]["p95"]),
            _fmt(point["latency_ms"]["p99"]),
            point["completed"],
            point["jobs"],
        )
    return {"capacity_jobs_per_s": capacity, "probe": saturation, "points": points}


async def profiled_load(
    stack: Stack,
    phases: Phases,
    record_profile: Callable[[float], Awaitable[dict[str, Any]]],
    jobs_per_second: float,
    operations: int,
    seconds: float,
    drain_timeout: float,
) -> dict[str, Any]:
    """Open-loop load with the profiler attached (a phase of its own, kept out of the figures)."""
    count = max(int(jobs_per_second * seconds), 1)
    name = f"profile: {operations}-op jobs at {jobs_per_second * operations:.0f} ops/s"
    async with phases.phase(name) as record:
        profiling = asyncio.create_task(record_profile(seconds))
        subs = await open_loop(stack, jobs_per_second, count, operations)
        profiles = await profiling
        tag(record, subs, operations, await await_completion(stack, subs, timeout=drain_timeout))
    summary = summarize_load(subs, jobs_per_second, operations)
    return {"phase": name, "load": summary, "workers": profiles}


# prefixes of both lanes' counters (`...request}` and `...request.bulk}`)
PUBLISHED = "producer_messages_sent_total{topic=application.operation.request"
RESPONSES = "consumer_messages_received_total{topic=application.operation.response"


def first_at(timeline: list[dict[str, float]], key: str, reached: float) -> float | None:
    """When a timeline's `key` first reached `reached` (None if it never did)."""
    return next((p["t"] for p in timeline if p[key] >= reached), None)


async def big_job(
    stack: Stack,
    phases: Phases,
    operations: int,
    timeout: float,
    n: int,
    stall_timeout: float = 60.0,
) -> dict[str, Any]:
    """One job of `operations` operations, alone, with a timeline of its stages.

    Every `sample_every` seconds (from the POST on, for jobs of 10,000 operations or more) the
    workers' counters give how many requests were published, computed and how many responses
    reached the persist agents, and the job how many results are stored; so the POST splits into
    storing the operations (until the first request is published) and publishing them.
    """
    body = body_for(operations)
    sub = Submission(n, operations, scheduled=time.time())
    timeline: list[dict[str, float]] = []
    deadline = time.monotonic() + timeout
    sample_every = 0.5
    async with phases.phase(f"job of {operations:,} operations") as record:
        base_counters = await scrape(stack.session)

        async def sample() -> None:
            grown = counter_delta(base_counters, await scrape(stack.session))
            timeline.append(
                {
                    "t": round(time.time() - sub.scheduled, 2),
                    "published": total(grown, PUBLISHED, "client"),
                    "computed": total(grown, "operations_evaluated_total", "server"),
                    "responses_consumed": total(grown, RESPONSES, "client"),
                    "persisted": sub.done,
                }
            )

        sub.scheduled = time.time()
        posting = asyncio.create_task(submit(stack, sub, body, stack.base(n), timeout=timeout))
        while not posting.done():
            if operations >= 10_000:
                await sample()
            await asyncio.wait({posting}, timeout=sample_every)
        interval = 0.05 if operations <= 100 else sample_every
        seen, moved_at = -1, time.monotonic()
        while sub.accepted and not sub.completed and time.monotonic() < deadline:
            await read_job(stack, sub)
            now = time.monotonic()
            if sub.done != seen:
                seen, moved_at = sub.done, now
            elif now - moved_at > stall_timeout:
                break  # no operation stored for that long: stuck, not slow
            if operations >= 10_000:
                await sample()
            if not sub.completed:
                await asyncio.sleep(interval)
        record["operations"] = operations
        tag(record, [sub], operations, sub.completed)
    total_seconds = sub.finished_at - sub.scheduled if sub.finished_at else None
    result = {
        "operations": operations,
        "accepted": sub.accepted,
        "completed": sub.completed,
        "error": sub.error,
        "post_seconds": None if sub.answered is None else round(sub.answered - sub.scheduled, 3),
        "total_seconds": None if total_seconds is None else round(total_seconds, 3),
        "ops_per_s": rate(operations, total_seconds),
        "done_operations": sub.done if not sub.completed else operations,
        "first_computed_by_seconds": first_at(timeline, "computed", 1),
        "first_published_by_seconds": first_at(timeline, "published", 1),
        "computed_by_seconds": first_at(timeline, "computed", operations),
        "responses_consumed_by_seconds": first_at(timeline, "responses_consumed", operations),
        "timeline": timeline,
        "job_id": sub.job_id,
        "timeout_seconds": timeout,
    }
    log.info(
        "big job: %d operations: POST %s s, completed %s in %s s",
        operations,
        result["post_seconds"],
        sub.completed,
        result["total_seconds"],
    )
    return result


async def time_pages(
    stack: Stack, pages: int, size: int, timeout: float = 30.0
) -> list[float | None]:
    """Milliseconds each of the first `pages` pages of the jobs list took, read as the poller
    reads them (`next` links when given); None for a page that failed or timed out (and the
    walk stops there)."""
    times: list[float | None] = []
    url = f"{stack.base(0)}/api/jobs?page=1&size={size}"
    for page in range(1, pages + 1):
        started = time.perf_counter()
        try:
            async with stack.session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                body = orjson.loads(await r.read()) if r.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError):
            body = None
        if body is None:
            times.append(None)
            break
        times.append((time.perf_counter() - started) * 1000)
        url = next_page_url(stack.base(page), body, page, size)
    return times


async def listing(
    stack: Stack,
    phases: Phases,
    name: str,
    requests: int,
    size: int = 30,
    max_seconds: float = 60.0,
) -> dict[str, Any]:
    """The first page of the jobs list, `requests` times one after the other (no other load).

    Closed loop, one request at a time, round robin over the client APIs: the time of the
    listing query itself, which must not grow with the number of jobs stored. Stops early after
    `max_seconds` (a listing that scans a big collection can take seconds per page).
    """
    latencies: list[float] = []
    errors: list[str] = []
    total = items = None
    deadline = time.monotonic() + max_seconds
    async with phases.phase(name):
        for n in range(requests):
            if time.monotonic() > deadline:
                break
            url = f"{stack.base(n)}/api/jobs?page=1&size={size}"
            started = time.perf_counter()
            try:
                async with stack.session.get(url, timeout=aiohttp.ClientTimeout(total=30)) as resp:
                    raw = await resp.read()
                    elapsed = (time.perf_counter() - started) * 1000
                    if resp.status != 200:
                        errors.append(f"HTTP {resp.status}: {raw[:200]!r}")
                        continue
                    latencies.append(elapsed)
                    if total is None:
                        body = orjson.loads(raw)
                        total, items = body.get("total"), len(body.get("items", []))
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
    log.info(
        "listing: first page (size %d) p50 %s p99 %s ms over %d requests",
        size,
        _fmt(summarize(latencies)["p50"]),
        _fmt(summarize(latencies)["p99"]),
        requests,
    )
    return {
        "phase": name,
        "requests": len(latencies) + len(errors),
        "planned_requests": requests,
        "size": size,
        "latency_ms": summarize(latencies),
        "errors": len(errors),
        "first_errors": errors[:3],
        "total_reported": total,
        "items": items,
    }


async def delete_jobs(stack: Stack, job_ids: list[str], timeout: float = 60.0) -> None:
    """Best-effort removal of the big jobs (their late results are then dropped)."""
    for n, job_id in enumerate(job_ids):
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with stack.session.delete(
                f"{stack.base(n)}/api/jobs/{job_id}", timeout=aiohttp.ClientTimeout(total=timeout)
            ) as response:
                await response.read()


def _stages(found: list[dict[str, float]]) -> dict[str, Any]:
    return {"breakdown": traces.breakdown(found)} if found else {}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
