"""Where a single-operation job's time goes, from its own trace in Jaeger.

jobstream's sampler is parent-based: a POST carrying a sampled W3C `traceparent` is traced across
both Kafka hops even with sampling off. The benchmark sends one on a fraction of its jobs and reads
the traces back (`GET /api/traces/{id}` on Jaeger's query API), then splits each job's life into
consecutive stages between these checkpoints (all relative to the POST span's start):

  stored      `mongodb create_job` ended (operation and job documents inserted)
  published   `publish application.operation.request` ended (acks=all received)
  responded   the `POST /api/jobs` span ended (201 sent)
  computing   `process application.operation.request` started on a server worker
  computed    it ended (result published and acknowledged)
  persisting  `persist application.operation.response` started (batch taken by the persist agent)
  persisted   it ended (results, counters and table written)
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import aiohttp

from bench.stats import summarize

JAEGER = "http://127.0.0.1:16686"
REQUEST_TOPIC = "application.operation.request"
RESPONSE_TOPIC = "application.operation.response"

#: (stage, from checkpoint, to checkpoint)
STAGES = (
    ("store (MongoDB insert)", "start", "stored"),
    ("publish request (acks=all)", "stored", "published"),
    ("request hop (Kafka to compute)", "published", "computing"),
    ("compute + publish result (acks=all)", "computing", "computed"),
    ("response hop (Kafka to persist batch)", "computed", "persisting"),
    ("persist batch", "persisting", "persisted"),
    ("total (POST start to persisted)", "start", "persisted"),
)


def new_traceparent() -> tuple[str, str]:
    """(trace id, a sampled W3C traceparent header in that trace)."""
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


def checkpoints(trace: dict[str, Any]) -> dict[str, float] | None:
    """A single-op job's checkpoints in ms after its POST started; None if a span is missing.

    With redelivery a job can have several process/persist spans: the first of each counts.
    """
    first: dict[str, dict[str, Any]] = {}
    for span in sorted(trace.get("spans", []), key=lambda s: s["startTime"]):
        first.setdefault(span["operationName"], span)
    names = {
        "post": "POST /api/jobs",
        "store": "mongodb create_job",
        "publish": f"publish {REQUEST_TOPIC}",
        "process": f"process {REQUEST_TOPIC}",
        "persist": f"persist {RESPONSE_TOPIC}",
    }
    if any(name not in first for name in names.values()):
        return None
    spans = {key: first[name] for key, name in names.items()}
    t0 = spans["post"]["startTime"]

    def at(key: str, end: bool) -> float:
        span = spans[key]
        return (span["startTime"] + (span["duration"] if end else 0) - t0) / 1000.0

    return {
        "start": 0.0,
        "stored": at("store", True),
        "published": at("publish", True),
        "responded": at("post", True),
        "computing": at("process", False),
        "computed": at("process", True),
        "persisting": at("persist", False),
        "persisted": at("persist", True),
    }


def breakdown(points: list[dict[str, float]]) -> list[dict[str, Any]]:
    """Per stage: summary (ms) over the jobs' checkpoints."""
    return [{"stage": stage, **summarize(p[b] - p[a] for p in points)} for stage, a, b in STAGES]


async def fetch(
    session: aiohttp.ClientSession, trace_ids: list[str], wait: float = 3.0
) -> list[dict[str, float]]:
    """Checkpoints of every trace that Jaeger has complete (after letting exporters flush)."""
    await asyncio.sleep(wait)
    semaphore = asyncio.Semaphore(8)

    async def one(trace_id: str) -> dict[str, float] | None:
        async with semaphore:
            try:
                async with session.get(
                    f"{JAEGER}/api/traces/{trace_id}", timeout=aiohttp.ClientTimeout(total=10)
                ) as response:
                    if response.status != 200:
                        return None
                    data = (await response.json()).get("data") or []
            except (aiohttp.ClientError, TimeoutError, ValueError):
                return None
        return checkpoints(data[0]) if data else None

    found = await asyncio.gather(*(one(t) for t in trace_ids))
    return [p for p in found if p is not None]
