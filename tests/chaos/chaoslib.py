"""The fault suite's machinery: the running system, a bounded load, the checks and the report.

A scenario (`run_scenario`) submits a bounded load of jobs with known results through the HTTP API,
injects its fault in the middle of it, waits (against a deadline) until every job it knows of is
completed, and then checks straight from MongoDB and through the API:

- every accepted operation has exactly one result document, and the result is the expected one;
- every job is `completed`, and its counters equal the results it has (and never exceed its total,
  which is also watched while the load runs);
- a job that was stored but never acknowledged (its request broke with the worker) completes too.

The figures of each scenario are collected in `RECORDS`; the conftest writes them to
`tests/chaos/report/chaos-report.{json,md}` when the session ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import random
import re
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2
from helpers import eventually
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from jobstream.settings import Settings
from jobstream.storage import BUCKET

ROOT = Path(__file__).resolve().parents[2]
DEV = str(ROOT / "scripts" / "dev.sh")
INFRA = str(ROOT / "scripts" / "infra" / "infra.sh")
WAIT_READY = str(ROOT / "scripts" / "infra" / "wait_ready.py")
STATE_DIR = Path(os.environ.get("JOBSTREAM_STATE_DIR", ROOT / ".infra"))
PID_DIR = STATE_DIR / "pids"
LOG_DIR = Path(os.environ.get("JOBSTREAM_LOG_DIR", STATE_DIR / "logs"))
REPORT_DIR = Path(__file__).resolve().parent / "report"

CLIENTS = ("client-1", "client-2", "client-3")
SERVERS = ("server-1", "server-2", "server-3")
WORKERS = CLIENTS + SERVERS
PORTS = {
    **{f"client-{n}": 8079 + n for n in (1, 2, 3)},
    **{f"server-{n}": 8089 + n for n in (1, 2, 3)},
}
#: The infrastructure services the scenarios may stop (and must leave running).
RESTORABLE = ("kafka-1", "kafka-2", "kafka-3", "postgres", "ferretdb")

#: Tight reconciliation, as in the e2e suite: a lost operation is re-published after a few seconds.
CHAOS_ENV = {"JOBSTREAM_RECONCILE_AFTER": "6", "JOBSTREAM_RECONCILE_INTERVAL": "2"}
#: What the workers read from this same environment (their brokers, topics, database, groups).
SETTINGS = Settings.from_env()
BROKERS = SETTINGS.bootstrap_servers
REQUEST_TOPIC = SETTINGS.request_topic
RESPONSE_TOPIC = SETTINGS.response_topic
BULK_REQUEST_TOPIC = SETTINGS.bulk_request_topic
BULK_RESPONSE_TOPIC = SETTINGS.bulk_response_topic
DEAD_LETTER_TOPIC = SETTINGS.dead_letter_topic
DATABASE = SETTINGS.mongo_database

#: Every record of this session, in the order the scenarios ran (written out by the conftest).
RECORDS: list[dict[str, Any]] = []


def url_of(worker: str) -> str:
    """Base URL of a worker's web server."""
    return f"http://127.0.0.1:{PORTS[worker]}"


def now() -> float:
    return time.monotonic()


def log(message: str) -> None:
    """Progress on stderr (visible with `pytest -s`, kept in the captured output otherwise)."""
    print(f"[chaos {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# --- the load ------------------------------------------------------------------------------------


def _canonical(value: Fraction) -> str:
    """The canonical decimal of a value whose denominator divides 10**6 (what the tests use)."""
    if value.denominator == 1:
        return str(value.numerator)
    whole = abs(value.numerator) * 10**6 // value.denominator
    sign = "-" if value < 0 else ""
    return sign + f"{whole // 10**6}.{whole % 10**6:06d}".rstrip("0")


def _operation(rng: random.Random) -> tuple[str, tuple[str, str]]:
    """One expression and its expected outcome, computed independently with Fraction."""
    kind = rng.random()
    a, b, c = rng.randint(-99, 99), rng.randint(0, 99), rng.randint(-9, 9)
    if kind < 0.04:  # a runtime error: the operation fails, the job still completes
        return f"{a} / (3 - 3)", ("failed", "division by zero")
    if kind < 0.10:  # floor modulo takes the divisor's sign
        m = rng.choice([-7, -3, 3, 5, 7])
        return f"({a}) % ({m})", ("succeeded", str(a % m))
    if kind < 0.16:  # exact division: never 0.999...
        return f"{a} / 3 * 3", ("succeeded", str(a))
    d = rng.choice([4, 8])
    return f"{a} * {b} + {c} / {d}", ("succeeded", _canonical(Fraction(a) * b + Fraction(c, d)))


@dataclass(frozen=True)
class JobSpec:
    """One job of a load: its expressions and their expected outcomes."""

    tag: str
    expressions: tuple[str, ...]
    expected: tuple[tuple[str, str], ...]  # (status, result) or ("failed", error fragment)

    @property
    def body(self) -> str:
        return "\n".join(self.expressions) + "\n"

    @property
    def size(self) -> int:
        return len(self.expressions)


def generate_load(count: int, seed: int, max_ops: int = 500) -> list[JobSpec]:
    """`count` jobs of 1..max_ops operations (one of each extreme), reproducible from `seed`.

    The first expression of each job is unique to it (`<seed> * 1000 + <n>`), which is how a job
    stored by a request that never got its answer is matched back to what was sent.
    """
    rng = random.Random(seed)
    sizes = [1, max_ops] + [rng.randint(1, max_ops) for _ in range(count - 2)]
    rng.shuffle(sizes)
    specs = []
    for n, size in enumerate(sizes[:count], start=1):
        first = f"{seed} * 1000 + {n}"
        pairs = [(first, ("succeeded", str(seed * 1000 + n)))]
        pairs += [_operation(rng) for _ in range(size - 1)]
        specs.append(
            JobSpec(
                tag=f"{seed}/{n}",
                expressions=tuple(p[0] for p in pairs),
                expected=tuple(p[1] for p in pairs),
            )
        )
    return specs


def big_job(size: int, seed: int) -> JobSpec:
    """One job of `size` operations with known results (its first expression unique to `seed`)."""
    rng = random.Random(seed)
    pairs = [(f"{seed} * 1000 + 0", ("succeeded", str(seed * 1000)))]
    pairs += [_operation(rng) for _ in range(size - 1)]
    return JobSpec(
        tag=f"{seed}/big",
        expressions=tuple(p[0] for p in pairs),
        expected=tuple(p[1] for p in pairs),
    )


@dataclass
class Submission:
    """What became of one attempt to submit a job."""

    spec: JobSpec
    targets: list[str]
    outcome: str = "pending"  # accepted, refused, broken, timeout, http-<status>
    job_id: str | None = None
    detail: str = ""
    seconds: float = 0.0


class Load:
    """Submits jobs spaced in time, `concurrency` at a time, round-robin over the targets.

    A connection refused means nothing reached the worker: with `retry_refused` the job is sent to
    the next target instead (what a load balancer does). Any other failure (the connection broke,
    the request timed out, an error status) makes the job "not accepted"; it is not retried, since
    the worker may have stored it (it is then found in MongoDB and checked like the others).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        specs: Sequence[JobSpec],
        targets: Sequence[str],
        *,
        spacing: float = 0.4,
        concurrency: int = 4,
        retry_refused: bool = True,
        request_timeout: float = 90.0,
    ) -> None:
        self.session = session
        self.specs = list(specs)
        self.targets = list(targets)
        self.spacing = spacing
        self.concurrency = concurrency
        self.retry_refused = retry_refused
        self.request_timeout = request_timeout
        self.submissions: list[Submission] = []
        self.stop = asyncio.Event()  # set it to stop launching new submissions
        self.started_at = 0.0
        self.finished_at = 0.0

    @property
    def accepted(self) -> list[Submission]:
        return [s for s in self.submissions if s.outcome == "accepted"]

    def outcomes(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for s in self.submissions:
            counts[s.outcome] += 1
        return dict(counts)

    async def run(self) -> None:
        self.started_at = now()
        gate = asyncio.Semaphore(self.concurrency)
        tasks = []
        for n, spec in enumerate(self.specs):
            if self.stop.is_set():
                break
            order = [self.targets[(n + k) % len(self.targets)] for k in range(len(self.targets))]
            submission = Submission(spec, order if self.retry_refused else order[:1])
            self.submissions.append(submission)
            await gate.acquire()
            tasks.append(asyncio.create_task(self._submit(submission, gate)))
            await asyncio.sleep(self.spacing)
        await asyncio.gather(*tasks)
        self.finished_at = now()

    async def _submit(self, submission: Submission, gate: asyncio.Semaphore) -> None:
        started = now()
        try:
            for target in submission.targets:
                outcome, job_id, detail = await self._post(target, submission.spec.body)
                submission.outcome, submission.job_id, submission.detail = outcome, job_id, detail
                if outcome != "refused":
                    break
        finally:
            submission.seconds = now() - started
            gate.release()

    async def _post(self, target: str, body: str) -> tuple[str, str | None, str]:
        try:
            async with self.session.post(
                f"{target}/api/jobs",
                data=io.BytesIO(body.encode()),  # raw bytes of a big job would warn (and block)
                headers={"Content-Type": "text/plain"},
                timeout=aiohttp.ClientTimeout(total=self.request_timeout),
            ) as response:
                raw = await response.read()
                if response.status == 201:
                    return "accepted", json.loads(raw)["id"], target
                return f"http-{response.status}", None, f"{target}: {raw[:200]!r}"
        except aiohttp.ClientConnectorError as exc:
            return "refused", None, f"{target}: {exc}"
        except (aiohttp.ClientError, ConnectionError) as exc:
            return "broken", None, f"{target}: {type(exc).__name__}: {exc}"
        except TimeoutError:
            return "timeout", None, f"{target}: no answer within {self.request_timeout} s"


# --- metrics -------------------------------------------------------------------------------------


def _pid(worker: str) -> str | None:
    try:
        return (PID_DIR / f"{worker}.pid").read_text().strip() or None
    except OSError:
        return None


class MetricsSampler:
    """Scrapes every worker's /metrics each `interval` seconds and accumulates counter increases.

    Reset-aware like Prometheus' `increase()`: a worker whose pid changed (restarted) starts again
    from zero, and a counter that went down was reset. What a SIGKILLed worker counted after its
    last scrape is lost, so the figures are lower bounds (at most `interval` seconds short).
    """

    def __init__(self, session: aiohttp.ClientSession, interval: float = 1.0) -> None:
        self.session = session
        self.interval = interval
        self.increase: dict[tuple[str, str, tuple[tuple[str, str], ...]], float] = defaultdict(
            float
        )
        self._last: dict[tuple[str, str, tuple[tuple[str, str], ...]], float] = {}
        self._pids: dict[str, str | None] = {}
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def _scrape(self, worker: str) -> str | None:
        try:
            async with self.session.get(
                f"{url_of(worker)}/metrics", timeout=aiohttp.ClientTimeout(total=3)
            ) as response:
                return await response.text() if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None

    async def sample(self) -> None:
        """One scrape of every worker."""
        async with self._lock:
            pids = {w: _pid(w) for w in WORKERS}
            pages = await asyncio.gather(*(self._scrape(w) for w in WORKERS))
            for worker, page in zip(WORKERS, pages, strict=True):
                if page is None:
                    continue
                first_time = worker not in self._pids
                if not first_time and pids[worker] != self._pids[worker]:
                    for key in [k for k in self._last if k[0] == worker]:
                        self._last[key] = 0.0  # a new process counts from zero
                self._pids[worker] = pids[worker]
                for family in text_string_to_metric_families(page):
                    for sample in family.samples:
                        if not sample.name.endswith("_total"):
                            continue
                        key = (worker, sample.name, tuple(sorted(sample.labels.items())))
                        value = float(sample.value)
                        if first_time:
                            self._last[key] = value
                            continue
                        last = self._last.get(key, 0.0)
                        self.increase[key] += value - last if value >= last else value
                        self._last[key] = value

    async def _loop(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(self.interval)

    async def start(self) -> None:
        await self.sample()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def snapshot(self) -> dict[tuple[str, str, tuple[tuple[str, str], ...]], float]:
        return dict(self.increase)

    @staticmethod
    def total(
        snapshot: dict[tuple[str, str, tuple[tuple[str, str], ...]], float],
        name: str,
        workers: Iterable[str] = WORKERS,
        **labels: str,
    ) -> float:
        """Sum of a counter's increase over the given workers and matching labels."""
        chosen = set(workers)
        return sum(
            value
            for (worker, sample, sample_labels), value in snapshot.items()
            if sample == name
            and worker in chosen
            and all(dict(sample_labels).get(k) == v for k, v in labels.items())
        )


def delta(
    before: dict[Any, float],
    after: dict[Any, float],
    name: str,
    workers: Iterable[str] = WORKERS,
    **labels: str,
) -> float:
    """How much a counter grew between two snapshots of the sampler."""
    return MetricsSampler.total(after, name, workers, **labels) - MetricsSampler.total(
        before, name, workers, **labels
    )


# --- the system under test -----------------------------------------------------------------------


async def run_script(
    *command: str,
    timeout: float = 180.0,
    check: bool = True,
    worker_env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> str:
    """Run a script of the project; returns its output.

    Workers it starts get `worker_env` (the chaos environment unless told otherwise).
    """
    env = {**os.environ, **(CHAOS_ENV if worker_env is None else worker_env)}
    done = await asyncio.to_thread(
        subprocess.run,
        list(command),
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited {done.returncode}: "
            f"{done.stderr[-2000:]}{done.stdout[-500:]}"
        )
    return done.stdout + done.stderr


#: Longest the stack may take to answer again after a service restart. Three KRaft brokers
#: SIGKILLed together replay their metadata and recover ~300 logs each on start: 45-50 s on a day
#: this machine ran two to three times slower. (A broker that never came back within 120 s, then
#: 300 s, had in fact died at start: its port was taken, see scripts/infra/infra.sh.)
SERVICE_READY_SECONDS = 300


async def service_diagnosis(name: str, lines: int = 8) -> str:
    """`infra.sh status` and the last errors in a service's log, for a failure message."""
    status = await run_script(INFRA, "status", check=False)
    path = LOG_DIR / f"{name}.log"
    text = path.read_text(errors="replace") if path.exists() else ""
    marks = ("ERROR", "FATAL", "Caused by")
    errors = [line[:400] for line in text.splitlines() if any(m in line for m in marks)]
    return f"infra status:\n{status}last errors in {path}:\n" + "\n".join(errors[-lines:])


async def wait_ready() -> None:
    """Wait until every infrastructure service answers (scripts/infra/wait_ready.py)."""
    await run_script(
        sys.executable,
        WAIT_READY,
        "--timeout",
        str(SERVICE_READY_SECONDS),
        timeout=SERVICE_READY_SECONDS + 30,
    )


def _disk_full_sql(full: bool) -> str:
    """SQL that makes every write to the database under test fail as on a full disk, or stops it.

    A trigger on each of FerretDB's tables of that database (its PostgreSQL schema has the
    database's name) raises PostgreSQL's own disk_full error (SQLSTATE 53100), which reaches the
    workers exactly as a full tablespace's did when tried on a 16 MB tmpfs. Reads and deletions
    still work, as they did there.
    """
    schema = DATABASE.replace("'", "''")
    action = (
        "CREATE TRIGGER jobstream_chaos_disk_full BEFORE INSERT OR UPDATE ON %I.%I "
        "FOR EACH ROW EXECUTE FUNCTION public.jobstream_chaos_disk_full()"
        if full
        else "DROP TRIGGER IF EXISTS jobstream_chaos_disk_full ON %I.%I"
    )
    return f"""
SET client_min_messages = warning;
CREATE OR REPLACE FUNCTION public.jobstream_chaos_disk_full() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'could not extend file: No space left on device (the fault suite''s full disk)'
    USING ERRCODE = 'disk_full';
END;
$$;
DO $$
DECLARE t record;
BEGIN
  FOR t IN SELECT schemaname, tablename FROM pg_tables
           WHERE schemaname = '{schema}' AND tablename NOT LIKE '\\_ferretdb\\_%' LOOP
    EXECUTE format('DROP TRIGGER IF EXISTS jobstream_chaos_disk_full ON %I.%I',
                   t.schemaname, t.tablename);
    EXECUTE format('{action}', t.schemaname, t.tablename);
  END LOOP;
END;
$$;
"""


@dataclass
class System:
    """The six workers on the local services, and the fault-injection commands."""

    session: aiohttp.ClientSession
    mongo: AsyncMongoClient
    sampler: MetricsSampler
    stopped: set[str] = field(default_factory=set)  # infrastructure services this test stopped
    database_full: bool = False  # this test made the database refuse writes (`fill_database`)
    #: What the workers are started with: tight reconciliation, or {} for the defaults.
    worker_env: dict[str, str] = field(default_factory=lambda: dict(CHAOS_ENV))

    @property
    def db(self) -> AsyncDatabase:
        return self.mongo[DATABASE]

    async def kill_workers(self, *names: str) -> None:
        """SIGKILL workers at once (`dev.sh stop-one NAME --kill`)."""
        await self.sampler.sample()  # the victims' last counts
        log(f"SIGKILL {' '.join(names)}")
        await asyncio.gather(
            *(run_script(DEV, "stop-one", n, "--kill", worker_env=self.worker_env) for n in names)
        )

    async def stop_worker(self, name: str) -> None:
        """SIGTERM one worker and wait for it to exit (`dev.sh stop-one NAME`)."""
        await self.sampler.sample()
        log(f"SIGTERM {name}")
        await run_script(DEV, "stop-one", name, timeout=60, worker_env=self.worker_env)

    async def start_workers(self, *names: str) -> None:
        """Start workers again and wait for their health checks."""
        log(f"start {' '.join(names)}")
        await asyncio.gather(
            *(
                run_script(DEV, "start-one", n, timeout=180, worker_env=self.worker_env)
                for n in names
            )
        )

    async def stop_service(self, name: str, kill: bool = False) -> None:
        """Stop one infrastructure service (`infra.sh stop NAME [--kill]`); restored at teardown."""
        log(f"{'SIGKILL' if kill else 'SIGTERM'} {name}")
        self.stopped.add(name)
        await run_script(INFRA, "stop", name, *(["--kill"] if kill else []), timeout=60)

    async def start_service(self, name: str) -> None:
        """Start one infrastructure service and wait until every service answers again."""
        log(f"start {name}")
        await run_script(INFRA, "start", name, timeout=120)
        try:
            await wait_ready()
        except RuntimeError as exc:  # say why: a service that died at start, or a slow one
            raise RuntimeError(f"{exc}\n{await service_diagnosis(name)}") from None
        self.stopped.discard(name)

    async def fill_database(self, full: bool = True) -> None:
        """Make the database refuse every write as on a full disk (or, with False, stop that)."""
        log("database full" if full else "database has space again")
        if full:
            self.database_full = True
        await run_script(INFRA, "sql", stdin=_disk_full_sql(full), timeout=60)
        self.database_full = full

    async def restore(self) -> None:
        """Start whatever infrastructure is not running (this test's faults, or any other), and
        give the database its space back if this test filled it (once PostgreSQL runs)."""
        status = await run_script(INFRA, "status", check=False)
        down = {
            line.split()[0]
            for line in status.splitlines()
            if line.split() and line.split()[0] in RESTORABLE and "stopped" in line
        }
        for name in [s for s in RESTORABLE if s in down | self.stopped]:
            log(f"restoring {name}")
            await run_script(INFRA, "start", name, timeout=120)
        if down or self.stopped:
            await wait_ready()
        self.stopped.clear()
        if self.database_full:
            await self.fill_database(False)

    async def job_via_api(self, job_id: str, base: str | None = None) -> dict[str, Any]:
        async with self.session.get(f"{base or url_of('client-1')}/api/jobs/{job_id}") as response:
            assert response.status == 200, (response.status, await response.text())
            return await response.json()


async def pipeline_ready(system: System) -> None:
    """Every client answers and a job submitted to each completes (consumer groups assigned)."""
    for client in CLIENTS:
        async with system.session.post(
            f"{url_of(client)}/api/jobs",
            data=b"1 + 1\n2 * 3\n",
            headers={"Content-Type": "text/plain"},
        ) as response:
            assert response.status == 201, await response.text()
            job_id = (await response.json())["id"]

        async def completed(job_id: str = job_id, client: str = client) -> bool:
            job = await system.job_via_api(job_id, url_of(client))
            return job["status"] == "completed"

        await eventually(completed, timeout=120, interval=0.3, description=f"warm-up on {client}")


# --- watching and checking -----------------------------------------------------------------------


class CounterWatch:
    """Polls the load's jobs in MongoDB while the scenario runs: counters over the total, or
    counters that went backwards (a progress update computed from stale state)."""

    def __init__(self, db: AsyncDatabase, load: Load, interval: float = 1.0) -> None:
        self.db = db
        self.load = load
        self.interval = interval
        self.over_total: dict[str, str] = {}
        self.regressions: dict[str, str] = {}
        self._seen: dict[str, tuple[int, int]] = {}
        self._task: asyncio.Task[None] | None = None

    async def poll(self) -> None:
        ids = [s.job_id for s in self.load.accepted]
        if not ids:
            return
        try:
            docs = [d async for d in self.db["jobs"].find({"_id": {"$in": ids}})]
        except PyMongoError:
            return  # the database may be the fault
        for d in docs:
            done = (d["succeeded"], d["failed"])
            if sum(done) > d["total"]:
                self.over_total.setdefault(d["_id"], f"{done} of {d['total']}")
            last = self._seen.get(d["_id"])
            if last and (done[0] < last[0] or done[1] < last[1]):
                self.regressions.setdefault(d["_id"], f"{last} -> {done} of {d['total']}")
            self._seen[d["_id"]] = done

    async def _loop(self) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.poll()


async def stored_but_unacknowledged(
    db: AsyncDatabase, load: Load, since: datetime
) -> dict[str, JobSpec]:
    """Jobs stored by submissions that did not get their 201, matched by their first expression."""
    unanswered = {
        s.spec.expressions[0]: s.spec for s in load.submissions if s.outcome != "accepted"
    }
    if not unanswered:
        return {}
    accepted = {s.job_id for s in load.accepted}
    found: dict[str, JobSpec] = {}
    async for job in db["jobs"].find({"created_at": {"$gte": since}}, {"_id": 1, "ops": 1}):
        if job["_id"] in accepted:
            continue
        first = (job.get("ops") or [None])[0]  # the job document holds its first operations
        if first in unanswered:
            found[job["_id"]] = unanswered[first]
    return found


async def stored_results(db: AsyncDatabase, doc: dict[str, Any]) -> tuple[dict[int, Any], int]:
    """A job's stored results by operation index, read from its job document and chunk
    documents (see jobstream.storage), and how far the documents' outcome counters (`ok`, `ko`)
    exceed the results they hold (a result counted twice)."""
    docs = [doc]
    if doc["total"] > BUCKET:
        docs += [c async for c in db["chunks"].find({"job_id": doc["_id"]})]
    by_index: dict[int, Any] = {}
    excess = 0
    for d in docs:
        first = d.get("bucket", 0) * BUCKET + 1
        held = [r for r in d.get("res", []) if r is not None]
        excess += max(d.get("ok", 0) + d.get("ko", 0) - len(held), 0)
        for i, r in enumerate(d.get("res", [])):
            if r is not None:
                by_index[first + i] = r
    return by_index, excess


async def wait_quiescent(db: AsyncDatabase, job_ids: Sequence[str], timeout: float) -> float | None:
    """Wait until every job is completed; returns when (monotonic), or None at the deadline."""
    deadline = now() + timeout
    while now() < deadline:
        try:
            pending = await db["jobs"].count_documents(
                {"_id": {"$in": list(job_ids)}, "status": {"$ne": "completed"}}
            )
            if pending == 0:
                return now()
        except PyMongoError:
            pass
        await asyncio.sleep(0.5)
    return None


async def wait_settled(system: System, timeout: float = 30.0, quiet: float = 4.0) -> None:
    """Wait until no worker consumes anything for `quiet` seconds (late duplicates have landed)."""
    deadline = now() + timeout
    last, since = -1.0, now()
    while now() < deadline:
        await system.sampler.sample()
        snap = system.sampler.snapshot()
        seen = MetricsSampler.total(snap, "consumer_messages_received_total")
        if seen != last:
            last, since = seen, now()
        elif now() - since >= quiet:
            return
        await asyncio.sleep(0.5)


@dataclass
class Findings:
    """What the checks found over a set of jobs."""

    jobs: int = 0
    operations: int = 0
    lost: int = 0  # operations without a stored result
    extra_results: int = 0  # results counted beyond those stored (outcome counters)
    wrong: int = 0  # results that differ from the expected ones
    given_up: int = 0  # operations failed by reconciliation ("no result after N attempts")
    not_completed: int = 0
    counted_twice: int = 0  # counters above the job's stored results
    undercounted: int = 0  # counters below the job's stored results
    over_total: int = 0
    api_mismatch: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < 40:
            self.problems.append(text)


async def check_jobs(system: System, jobs: dict[str, JobSpec]) -> Findings:
    """Every check of the module docstring, over these jobs, from MongoDB and from the API."""
    f = Findings(jobs=len(jobs), operations=sum(s.size for s in jobs.values()))
    db = system.db
    docs = {d["_id"]: d async for d in db["jobs"].find({"_id": {"$in": list(jobs)}})}
    for job_id, spec in jobs.items():
        doc = docs.get(job_id)
        if doc is None:
            f.lost += spec.size
            f.not_completed += 1
            f.problem(f"job {job_id} ({spec.tag}) is not in MongoDB")
            continue
        stored, excess = await stored_results(db, doc)
        by_index: dict[int, list[dict[str, Any]]] = {i: [r] for i, r in stored.items()}
        missing = [i for i in range(1, spec.size + 1) if i not in by_index]
        f.lost += len(missing)
        if missing:
            f.problem(f"job {job_id} ({spec.tag}): no result for operations {missing[:10]}")
        extra = excess + sum(len(v) for i, v in by_index.items() if not 1 <= i <= spec.size)
        f.extra_results += extra
        if extra:
            f.problem(f"job {job_id} ({spec.tag}): {extra} results counted beyond those stored")
        for index, (status, value) in enumerate(spec.expected, start=1):
            got = by_index.get(index)
            if not got:
                continue
            r = got[0]
            if r["status"] == "failed" and "delivery attempts" in (r.get("error") or ""):
                f.given_up += 1
                f.problem(f"job {job_id} op {index}: given up: {r.get('error')}")
            elif r["status"] != status or (
                r.get("result") != value
                if status == "succeeded"
                else value not in (r.get("error") or "")
            ):
                f.wrong += 1
                f.problem(
                    f"job {job_id} op {index} {spec.expressions[index - 1]!r}: expected "
                    f"{status} {value!r}, got {r['status']} {r.get('result') or r.get('error')!r}"
                )
        succeeded = sum(1 for v in by_index.values() if v[0]["status"] == "succeeded")
        failed = sum(1 for v in by_index.values() if v[0]["status"] == "failed")
        if doc["status"] != "completed" or doc.get("finished_at") is None:
            f.not_completed += 1
            f.problem(f"job {job_id} ({spec.tag}) is {doc['status']}: {_counters(doc)}")
        if doc["succeeded"] + doc["failed"] > doc["total"] or doc["total"] != spec.size:
            f.over_total += 1
            f.problem(f"job {job_id}: counters {_counters(doc)}, {spec.size} submitted")
        if (doc["succeeded"], doc["failed"]) != (succeeded, failed):
            more = doc["succeeded"] + doc["failed"] - succeeded - failed
            if more > 0 or doc["succeeded"] > succeeded or doc["failed"] > failed:
                f.counted_twice += max(more, 1)
            else:
                f.undercounted += -more
            f.problem(
                f"job {job_id}: counters {_counters(doc)} but results say "
                f"succeeded={succeeded} failed={failed}"
            )
        api = await system.job_via_api(job_id)
        expected_api = {
            "total": doc["total"],
            "succeeded": doc["succeeded"],
            "failed": doc["failed"],
            "pending": max(doc["total"] - doc["succeeded"] - doc["failed"], 0),
        }
        if api["status"] != doc["status"] or api["operations"] != expected_api:
            f.api_mismatch += 1
            f.problem(f"job {job_id}: API shows {api} but MongoDB {_counters(doc)}")
        elif api["operations"]["pending"] != 0:
            f.problem(f"job {job_id}: API shows {api['operations']['pending']} pending")
    return f


def _counters(doc: dict[str, Any]) -> str:
    return f"total={doc['total']} succeeded={doc['succeeded']} failed={doc['failed']}"


# --- diagnostics when a scenario does not settle --------------------------------------------------

CLIENT_GROUP = SETTINGS.client_group
SERVER_GROUP = SETTINGS.server_group


def response_partition(job_id: str, partitions: int = 60) -> int:
    """The response-topic partition of a job (key = job id, Kafka's default murmur2 partitioner)."""
    return (murmur2(job_id.encode()) & 0x7FFFFFFF) % partitions


async def group_lag(group: str, topic: str) -> dict[int, tuple[int, int]]:
    """partition -> (committed offset, end offset) of a consumer group on a topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=BROKERS, request_timeout_ms=10_000)
    consumer = AIOKafkaConsumer(bootstrap_servers=BROKERS, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not tps:
            await consumer.topics()
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        ends = await consumer.end_offsets(tps)
        return {
            tp.partition: (
                committed[tp].offset if tp in committed else -1,
                ends[tp],
            )
            for tp in tps
        }
    finally:
        await consumer.stop()
        await admin.close()


def last_assignments(topic: str) -> dict[str, list[int]]:
    """Each client's latest assignment of `topic`, from its log ("Setting newly assigned ...")."""
    owners: dict[str, list[int]] = {}
    pattern = re.compile(rf"topic='{re.escape(topic)}', partition=(\d+)")
    for worker in CLIENTS:
        path = LOG_DIR / f"{worker}.log"
        if not path.exists():
            continue
        last = None
        with path.open(errors="replace") as handle:
            for line in handle:
                if "Setting newly assigned partitions" in line:
                    last = line
        if last is not None:
            owners[worker] = sorted(int(p) for p in pattern.findall(last))
    return owners


async def stall_diagnostics(jobs: Iterable[str], db: AsyncDatabase) -> dict[str, Any]:
    """Where the unfinished jobs' results are stuck: their response partitions, who owns them,
    and the client group's committed offset against the end offset, twice, 10 s apart."""
    unfinished = [
        d["_id"]
        async for d in db["jobs"].find(
            {"_id": {"$in": list(jobs)}, "status": {"$ne": "completed"}}, {"_id": 1}
        )
    ]
    partitions = sorted({response_partition(j) for j in unfinished})
    lanes = (RESPONSE_TOPIC, BULK_RESPONSE_TOPIC)  # a big job's results travel in the bulk lane
    first = {topic: await group_lag(CLIENT_GROUP, topic) for topic in lanes}
    await asyncio.sleep(10)
    second = {topic: await group_lag(CLIENT_GROUP, topic) for topic in lanes}
    owners = last_assignments(RESPONSE_TOPIC)
    lagging = {
        f"{topic}[{p}]": {
            "committed": ends[p][0],
            "end": ends[p][1],
            "committed_10s_before": first[topic][p][0],
        }
        for topic, ends in second.items()
        for p in sorted(ends)
        if ends[p][1] - ends[p][0] > 0
    }
    request_lag = 0
    for topic in (REQUEST_TOPIC, BULK_REQUEST_TOPIC):
        for committed, end in (await group_lag(SERVER_GROUP, topic)).values():
            request_lag += max(end - committed, 0)
    return {
        "unfinished_jobs": unfinished[:10],
        "their_response_partitions": partitions,
        "owners": {p: [w for w, parts in owners.items() if p in parts] for p in partitions},
        "response_partitions_with_lag": lagging,
        "request_lag_total": request_lag,
    }


# --- a scenario ----------------------------------------------------------------------------------

Fault = Callable[[Load], Awaitable[dict[str, Any]]]


async def run_scenario(
    system: System,
    name: str,
    title: str,
    fault: Fault,
    *,
    specs: Sequence[JobSpec],
    targets: Sequence[str] = tuple(url_of(c) for c in CLIENTS),
    spacing: float = 0.4,
    concurrency: int = 4,
    retry_refused: bool = True,
    quiesce_timeout: float = 240.0,
    request_timeout: float = 90.0,
    extra: Callable[[dict[str, Any]], Awaitable[list[str]]] | None = None,
) -> dict[str, Any]:
    """Load, fault, quiescence, checks; records the figures and returns the record.

    `fault(load)` runs while the load is being submitted; it decides when to strike (usually once
    some jobs are accepted and the victim is busy), and returns what it wants recorded, with
    `injected_at` and `restored_at` (monotonic times). `extra(record)` may add checks of its own
    (returning problems).
    """
    log(f"scenario {name}: {title}")
    since = datetime.now(UTC).replace(microsecond=0)
    before = system.sampler.snapshot()
    load = Load(
        system.session,
        specs,
        targets,
        spacing=spacing,
        concurrency=concurrency,
        retry_refused=retry_refused,
        request_timeout=request_timeout,
    )
    watch = CounterWatch(system.db, load)
    watch.start()
    load_task = asyncio.create_task(load.run())
    try:
        timeline = await fault(load)
        await load_task
    finally:
        if not load_task.done():
            load.stop.set()
            await asyncio.wait([load_task], timeout=120)
    log(f"load done: {load.outcomes()}")
    injected = timeline.pop("injected_at", load.started_at)
    restored = timeline.pop("restored_at", injected)

    orphans = await stored_but_unacknowledged(system.db, load, since)
    jobs = {s.job_id: s.spec for s in load.accepted if s.job_id}
    in_scope = {**jobs, **orphans}
    quiesced = await wait_quiescent(system.db, list(in_scope), quiesce_timeout)
    log(
        "quiescent"
        if quiesced
        else f"NOT quiescent after {quiesce_timeout:.0f} s; checking what there is"
    )
    await watch.stop()
    diagnostics = None
    if quiesced is None:
        try:
            diagnostics = await stall_diagnostics(in_scope, system.db)
        except Exception as exc:  # diagnostics must not hide the failure itself
            diagnostics = {"error": f"{type(exc).__name__}: {exc}"}
        log(f"diagnostics: {json.dumps(diagnostics)}")
    await wait_settled(system)
    after = system.sampler.snapshot()

    findings = await check_jobs(system, jobs)
    orphan_findings = await check_jobs(system, orphans) if orphans else Findings()
    clients = CLIENTS
    record: dict[str, Any] = {
        "scenario": name,
        "title": title,
        "when": since.isoformat().replace("+00:00", "Z"),
        "jobs_submitted": len(load.submissions),
        "jobs_accepted": len(jobs),
        "submission_outcomes": load.outcomes(),
        "jobs_stored_unacknowledged": len(orphans),
        "operations_submitted": findings.operations,
        "operations_unacknowledged_stored": orphan_findings.operations,
        "lost": findings.lost,
        "lost_unacknowledged": orphan_findings.lost,
        "extra_result_documents": findings.extra_results + orphan_findings.extra_results,
        "wrong_results": findings.wrong + orphan_findings.wrong,
        "given_up": findings.given_up + orphan_findings.given_up,
        "jobs_not_completed": findings.not_completed + orphan_findings.not_completed,
        "duplicates_recognised": int(delta(before, after, "results_duplicated_total", clients)),
        "late_results_dropped": int(delta(before, after, "results_ignored_total", clients)),
        "duplicates_counted": findings.counted_twice + orphan_findings.counted_twice,
        "undercounted": findings.undercounted + orphan_findings.undercounted,
        "counters_over_total": findings.over_total
        + orphan_findings.over_total
        + len(watch.over_total),
        "counter_regressions_seen": len(watch.regressions),
        "api_mismatches": findings.api_mismatch + orphan_findings.api_mismatch,
        "evaluations": int(delta(before, after, "operations_evaluated_total", SERVERS)),
        "evaluations_per_operation": round(
            delta(before, after, "operations_evaluated_total", SERVERS)
            / max(findings.operations + orphan_findings.operations, 1),
            2,
        ),
        "republished": int(delta(before, after, "reconciliation_republished_total", clients)),
        "rewinds": int(delta(before, after, "consumer_rewinds_total")),
        "producer_errors": int(delta(before, after, "producer_errors_total")),
        "dead_letters": int(delta(before, after, "dead_letters_total")),
        "load_seconds": round(load.finished_at - load.started_at, 1),
        "slowest_answer_seconds": round(max((s.seconds for s in load.submissions), default=0), 1),
        "fault_seconds": round(restored - injected, 1),
        "quiescence_seconds": round(quiesced - injected, 1) if quiesced else None,
        "recovery_seconds": round(max(quiesced - restored, 0.0), 1) if quiesced else None,
        "quiescence_after_load_seconds": round(quiesced - load.finished_at, 1)
        if quiesced
        else None,
        **timeline,
    }
    problems = findings.problems + [f"unacknowledged: {p}" for p in orphan_findings.problems]
    problems += [f"counters over total seen: {k} {v}" for k, v in watch.over_total.items()]
    if not jobs:
        problems.append("no job was accepted: the scenario proved nothing")
    if quiesced is None:
        problems.append(f"not quiescent within {quiesce_timeout:.0f} s")
    if extra is not None:
        problems += await extra(record)
    record["passed"] = not problems
    record["problems"] = problems[:40]
    if diagnostics is not None:
        record["stall_diagnostics"] = diagnostics
    if watch.regressions:
        record["counter_regression_examples"] = dict(list(watch.regressions.items())[:5])
    RECORDS.append(record)
    log(json.dumps({k: v for k, v in record.items() if k != "problems"}))
    return record


def assert_passed(record: dict[str, Any]) -> None:
    """Fail with the problems found, if any."""
    assert record["passed"], f"{record['scenario']}:\n" + "\n".join(record["problems"])


async def until(predicate: Callable[[], Awaitable[bool] | bool], timeout: float, what: str) -> None:
    """Wait for a condition before striking (a deadline that fails the test when missed)."""
    await eventually(predicate, timeout=timeout, interval=0.2, description=what)


#: Per-operation counters of each topic's consumers: operations evaluated by a server (requests),
#: results persisted by a client (responses). Messages carry up to 100 operations each, so
#: operations, not messages, tell how busy a worker is.
WORK_DONE = {REQUEST_TOPIC: "operations_evaluated_total", RESPONSE_TOPIC: "results_stored_total"}


async def busy(
    system: System, load: Load, *, accepted: int, worker: str, topic: str, at_least: int
) -> None:
    """Wait until `accepted` jobs are in and `worker` handled `at_least` operations from `topic`
    since now: the victim is busy, mid-load."""
    await system.sampler.sample()
    start = system.sampler.snapshot()

    async def ready() -> bool:
        await system.sampler.sample()
        grown = delta(start, system.sampler.snapshot(), WORK_DONE[topic], [worker])
        return len(load.accepted) >= accepted and grown >= at_least

    await until(ready, 120, f"{worker} busy on {topic} with {accepted} jobs accepted")


async def kill_and_restart(
    system: System,
    load: Load,
    *victims: str,
    busy_worker: str,
    topic: str,
    at_least: int,
    downtime: float = 3.0,
) -> dict[str, Any]:
    """Once `busy_worker` is busy on `topic` (8 jobs accepted), SIGKILL the victims, wait
    `downtime`, start them again; returns the fault's timeline for run_scenario."""
    await busy(system, load, accepted=8, worker=busy_worker, topic=topic, at_least=at_least)
    injected = now()
    await system.kill_workers(*victims)
    await asyncio.sleep(downtime)
    await system.start_workers(*victims)
    return {"injected_at": injected, "restored_at": now(), "victims": list(victims)}


# --- the report ----------------------------------------------------------------------------------

SCENARIO_ORDER = [
    "baseline-no-fault",
    "server-sigkill-one",
    "server-sigkill-two",
    "client-sigkill-receiving",
    "client-sigkill-persisting",
    "kafka-broker-sigterm",
    "kafka-broker-sigkill",
    "ferretdb-restart",
    "rolling-restart-sigterm",
    "poison-messages",
    "backlog-big-job",
    "backlog-partition-rolling-clients",
    "kafka-all-brokers-down",
    "delete-big-job-mid-flight",
    "ferretdb-restart-during-deletions",
    "rolling-restart-sigterm-default",
    "server-sigkill-one-default",
    "client-sigkill-persisting-default",
]


def write_report(records: list[dict[str, Any]], directory: Path = REPORT_DIR) -> None:
    """Merge this session's records into chaos-report.json (latest run of each scenario wins),
    append them to chaos-history.jsonl, and write chaos-report.md from the merged set."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "chaos-report.json"
    merged: dict[str, dict[str, Any]] = {}
    if path.exists():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            merged = {r["scenario"]: r for r in json.loads(path.read_text())["scenarios"]}
    with (directory / "chaos-history.jsonl").open("a") as history:  # every run, kept
        for r in records:
            merged[r["scenario"]] = r
            history.write(json.dumps(r) + "\n")
    order = {name: n for n, name in enumerate(SCENARIO_ORDER)}
    ordered = sorted(merged.values(), key=lambda r: (order.get(r["scenario"], 99), r["scenario"]))
    path.write_text(json.dumps({"scenarios": ordered}, indent=2, sort_keys=False) + "\n")
    (directory / "chaos-report.md").write_text(markdown(ordered))


def markdown(records: list[dict[str, Any]]) -> str:
    lines = [
        "# jobstream fault-injection report",
        "",
        "Generated by `pytest -m chaos tests/chaos` (3 client + 3 server workers on the local "
        "stack, reconciliation after 6 s, every 2 s, except the `-default` scenarios, which run "
        "jobstream's default settings: reconciliation after 120 s). *Submitted* counts "
        "operations of accepted jobs; *lost* are those without a result document; "
        "*duplicates recognised* are "
        "re-deliveries the progress table caught (`results_duplicated_total`) plus late results "
        "dropped (`results_ignored_total`); *counted twice* are job counters above their stored "
        "results. Quiescence is measured from the fault's injection (the load's start for the "
        "baseline) until every job is completed.",
        "",
        "| scenario | jobs accepted (not accepted) | ops submitted | lost "
        "| duplicates recognised | counted twice | republished | evaluations per op | quiescence "
        "| result |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in records:
        outcomes = r.get("submission_outcomes", {})
        failed = sum(v for k, v in outcomes.items() if k != "accepted")
        stored = r.get("jobs_stored_unacknowledged", 0)
        quiet = r.get("quiescence_seconds")
        lines.append(
            f"| {r['scenario']} | {r['jobs_accepted']} ({failed} not accepted"
            f"{f', {stored} of them stored and completed' if stored else ''}) "
            f"| {r['operations_submitted']:,} | {r['lost'] + r.get('lost_unacknowledged', 0)} "
            f"| {r['duplicates_recognised'] + r.get('late_results_dropped', 0):,} "
            f"| {r['duplicates_counted']} | {r.get('republished', 0):,} "
            f"| {r.get('evaluations_per_operation', '-')} "
            f"| {'-' if quiet is None else f'{quiet:.1f} s'} "
            f"| {'pass' if r['passed'] else 'FAIL'} |"
        )
    lines += ["", "## Details", ""]
    for r in records:
        lines += [f"### {r['scenario']}: {r['title']}", "", f"Run at {r['when']}.", ""]
        for key, value in r.items():
            if key in ("scenario", "title", "when", "problems"):
                continue
            lines.append(f"- `{key}`: {json.dumps(value)}")
        if r.get("problems"):
            lines += ["", "Problems:", ""] + [f"- {p}" for p in r["problems"]]
        lines.append("")
    return "\n".join(lines)
