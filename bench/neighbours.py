"""Small jobs beside a big one: does a big job hold other users' small jobs back?

The same open-loop load of single-operation jobs runs twice, alone and then starting as a job of
`big_operations` operations is submitted beside it (its POST, computing and persisting all overlap
the small jobs). jobstream sends big jobs on a lane of their own (`jobstream.topics`), so what the
small jobs should meet beside a big job is the CPU it takes, not a queue behind its messages.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from bench import load
from bench.stack import Stack

log = logging.getLogger("bench.neighbours")


async def alone_and_beside(
    stack: Stack,
    phases: load.Phases,
    *,
    jobs_per_second: float,
    seconds: float,
    big_operations: int,
    drain_timeout: float,
    big_timeout: float = 300.0,
) -> dict[str, Any]:
    """Run the small-job load alone, then beside a big job; the figures of both runs."""
    runs: list[dict[str, Any]] = []
    count = int(jobs_per_second * seconds) + 1
    for beside in (False, True):
        name = f"neighbours: single-op jobs at {jobs_per_second:g}/s " + (
            f"beside a {big_operations:,}-op job" if beside else "alone"
        )
        big = load.Submission(-1, big_operations, scheduled=time.time()) if beside else None
        async with phases.phase(name):
            posting = None
            if big is not None:
                body = load.body_for(big_operations, seed=7)
                posting = asyncio.create_task(
                    load.submit(stack, big, body, stack.base(0), timeout=big_timeout)
                )
            subs = await load.open_loop(
                stack, jobs_per_second, count, 1, duration=seconds, post_timeout=60
            )
            drained = await load.await_completion(stack, subs, drain_timeout)
            if posting is not None and big is not None:
                await posting
                if big.accepted:
                    await load.await_completion(stack, [big], big_timeout, stall_timeout=60)
        run = load.summarize_load(subs, jobs_per_second, 1) | {
            "name": name,
            "beside_big_job": beside,
            "drained": drained,
        }
        if big is not None:
            run["big_job"] = {
                "operations": big_operations,
                "accepted": big.accepted,
                "completed": big.completed,
                "error": big.error,
                "post_seconds": None if big.answered is None else big.answered - big.scheduled,
                "total_seconds": None
                if big.finished_at is None
                else big.finished_at - big.scheduled,
            }
            await load.delete_jobs(stack, [big.job_id] if big.job_id else [])
        latency = run["latency_ms"]
        log.info(
            "%s: p50 %s p99 %s max %s ms",
            name,
            _ms(latency["p50"]),
            _ms(latency["p99"]),
            _ms(latency["max"]),
        )
        runs.append(run)
    return {
        "jobs_per_second": jobs_per_second,
        "seconds": seconds,
        "big_operations": big_operations,
        "runs": runs,
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
