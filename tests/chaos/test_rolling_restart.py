"""A rolling restart of all six workers (SIGTERM, one at a time, each healthy before the next)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from chaoslib import (
    CLIENTS,
    REQUEST_TOPIC,
    SERVERS,
    Load,
    System,
    assert_passed,
    busy,
    generate_load,
    now,
    run_scenario,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]

#: Pause after each worker is healthy again, so its group settles before the next one goes.
SETTLE = 2.0


async def test_rolling_restart_of_every_worker_loses_nothing(system: System) -> None:
    async def fault(load: Load) -> dict[str, Any]:
        await busy(system, load, accepted=5, worker="server-1", topic=REQUEST_TOPIC, at_least=100)
        injected = now()
        steps = {}
        for worker in SERVERS + CLIENTS:
            started = now()
            await system.stop_worker(worker)
            await system.start_workers(worker)
            steps[worker] = round(now() - started, 1)
            await asyncio.sleep(SETTLE)
        restored = now()
        # a few more jobs after the last restart, then stop the load
        await asyncio.sleep(5)
        load.stop.set()
        return {"injected_at": injected, "restored_at": restored, "restart_seconds": steps}

    # The load keeps coming for the whole restart (a job every second, up to 200 operations).
    record = await run_scenario(
        system,
        "rolling-restart-sigterm",
        "rolling restart of all six workers with SIGTERM, one at a time, waiting for health",
        fault,
        specs=generate_load(240, seed=401, max_ops=200),
        spacing=1.0,
        concurrency=3,
    )
    assert_passed(record)
