"""The running local stack as the benchmark sees it: API bases, health, worker metrics."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
PID_DIR = Path(os.environ.get("JOBSTREAM_STATE_DIR", ROOT / ".infra")) / "pids"
CLIENT_PORTS = (8080, 8081, 8082)
SERVER_PORTS = (8090, 8091, 8092)
HOST = "127.0.0.1"

#: Counters read from every worker's /metrics: (metric sample name, label filter or None).
COUNTERS = (
    "operations_evaluated_total",
    "producer_messages_sent_total",
    "consumer_messages_received_total",
    "results_duplicated_total",
    "jobs_completed_total",
    "jobs_created_total",
    "http_request_duration_seconds_sum",
    "http_request_duration_seconds_count",
    "operation_evaluation_seconds_sum",
    "operation_evaluation_seconds_count",
    # jobstream.dbmetrics: the database work behind each job
    "mongo_commands_total",
    "mongo_documents_written_total",
    "mongo_write_errors_total",
    "mongo_command_duration_seconds_sum",
    "mongo_command_duration_seconds_count",
    # jobstream.jobfeed: jobs read by event streams and waits, and the job events themselves
    "job_watcher_reads_total",
    "job_events_published_total",
    "job_events_received_total",
)


def worker_names() -> list[str]:
    """client-1..3, server-1..3 in port order."""
    return [f"client-{n}" for n in (1, 2, 3)] + [f"server-{n}" for n in (1, 2, 3)]


def worker_port(name: str) -> int:
    """The web port of a worker (as scripts/dev.sh assigns them)."""
    role, n = name.rsplit("-", 1)
    return (CLIENT_PORTS if role == "client" else SERVER_PORTS)[int(n) - 1]


@dataclass
class Stack:
    """The API bases the load is spread over, and a shared HTTP session."""

    session: aiohttp.ClientSession
    bases: list[str] = field(
        default_factory=lambda: [f"http://{HOST}:{port}" for port in CLIENT_PORTS]
    )

    def base(self, n: int) -> str:
        """The n-th API base, round robin over the client workers."""
        return self.bases[n % len(self.bases)]


async def check_health(session: aiohttp.ClientSession, timeout: float = 5.0) -> list[str]:
    """Names of the workers that do not answer /health (empty when all six do)."""

    async def one(name: str) -> str | None:
        url = f"http://{HOST}:{worker_port(name)}/health"
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                return None if response.status == 200 else name
        except (aiohttp.ClientError, TimeoutError):
            return name

    answers = await asyncio.gather(*(one(name) for name in worker_names()))
    return [name for name in answers if name is not None]


def parse_counters(text: str, wanted: Iterable[str] = COUNTERS) -> dict[str, float]:
    """Sum the wanted samples of a Prometheus exposition, keyed `name{label=value,...}`."""
    names = set(wanted)
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name not in names:
                continue
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            key = f"{sample.name}{{{labels}}}" if labels else sample.name
            out[key] = out.get(key, 0.0) + float(sample.value)
    return out


async def scrape(session: aiohttp.ClientSession, timeout: float = 5.0) -> dict[str, dict]:
    """Every worker's counters (a worker that does not answer is left out)."""

    async def one(name: str) -> tuple[str, dict[str, float] | None]:
        url = f"http://{HOST}:{worker_port(name)}/metrics"
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                return name, parse_counters(await response.text())
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return name, None

    pairs = await asyncio.gather(*(one(name) for name in worker_names()))
    return {name: counters for name, counters in pairs if counters is not None}


def counter_delta(before: dict[str, dict], after: dict[str, dict]) -> dict[str, dict]:
    """Per worker, how much each counter grew between two scrapes (zero growth left out)."""
    out: dict[str, dict] = {}
    for name, counters in after.items():
        old = before.get(name, {})
        grown = {k: round(v - old.get(k, 0.0), 6) for k, v in counters.items()}
        out[name] = {k: v for k, v in grown.items() if v}
    return out


def total(counters: dict[str, dict], prefix: str, role: str | None = None) -> float:
    """Sum of counters whose key starts with prefix, over every (or one role's) worker."""
    return sum(
        value
        for name, values in counters.items()
        if role is None or name.startswith(role)
        for key, value in values.items()
        if key.startswith(prefix)
    )
