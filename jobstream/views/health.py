"""`GET /health` (liveness) and `GET /ready` (readiness) on every worker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping

import faust
from aiohttp import web as aioweb

from jobstream.settings import Settings
from jobstream.telemetry import Metrics, worker_name
from jobstream.views.base import JsonView

#: A readiness check: returns when what it checks is usable, raises (with why) when it is not.
Check = Callable[[], Awaitable[None]]

#: Longest one readiness check may take; a check still running then counts as failed.
CHECK_TIMEOUT = 2.0


class NotReady(Exception):
    """What a readiness check found missing."""


def broker_check(app: faust.App, topics: Iterable[str]) -> Check:
    """A broker answers a metadata request now, and every partition of `topics` has a leader."""
    names = tuple(topics)

    async def check() -> None:
        # Faust keeps its aiokafka producer private; `_ensure_producer` raises until it started.
        producer = app.producer._ensure_producer()
        cluster = await producer.client.fetch_all_metadata()
        for name in names:
            partitions = cluster.partitions_for_topic(name)
            if not partitions:
                raise NotReady(f"topic {name} is unknown to the brokers")
            leaderless = len(partitions) - len(cluster.available_partitions_for_topic(name))
            if leaderless:
                raise NotReady(
                    f"{leaderless} of {len(partitions)} partitions of {name} lack a leader"
                )

    return check


def assignment_check(app: faust.App, topic: str) -> Check:
    """The consumer group is stable and this worker holds partitions of `topic`."""

    async def check() -> None:
        if app.rebalancing:
            raise NotReady("the consumer group is rebalancing")
        if app.in_recovery:
            raise NotReady("tables are recovering")
        if not any(tp.topic == topic for tp in app.consumer.assignment()):
            raise NotReady(f"no partition of {topic} is assigned to this worker")

    return check


async def _outcome(check: Check) -> str:
    """`ok`, or why the check failed (a timeout included)."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await check()
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT:g} s"
    except Exception as exc:
        return str(exc) if isinstance(exc, NotReady) else f"{type(exc).__name__}: {exc}"
    return "ok"


def register_health(
    app: faust.App, settings: Settings, metrics: Metrics, checks: Mapping[str, Check]
) -> None:
    """Register liveness (`/health`: the event loop answers) and readiness (`/ready`: `checks`)."""
    identity = {"role": settings.role, "worker": worker_name(settings)}

    @app.page("/health")
    class Health(JsonView):
        route = "/health"

        async def get(self, request: aioweb.Request) -> aioweb.Response:
            return aioweb.json_response({"status": "ok", **identity})

    @app.page("/ready")
    class Ready(JsonView):
        route = "/ready"

        async def get(self, request: aioweb.Request) -> aioweb.Response:
            outcomes = await asyncio.gather(*(_outcome(check) for check in checks.values()))
            results = dict(zip(checks, outcomes, strict=True))
            failed = {name: why for name, why in results.items() if why != "ok"}
            if not failed:
                return aioweb.json_response({"status": "ready", **identity, "checks": results})
            message = "not ready: " + "; ".join(f"{name}: {why}" for name, why in failed.items())
            body = {
                "status": "not_ready",
                "error": "not_ready",
                "message": message,
                **identity,
                "checks": results,
            }
            return aioweb.json_response(body, status=503)

    Health.metrics = metrics
    Ready.metrics = metrics
