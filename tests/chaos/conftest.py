"""The fault suite's fixture: the six workers, started and stopped around every scenario.

Each scenario gets the workers fresh (`scripts/dev.sh start`, with reconciliation after 6 s, every
2 s), warmed up by one job per client. Whatever happens in the test, teardown starts again every
infrastructure service that is not running (the scenario's faults), waits until all of them answer,
and stops the workers: the infrastructure is left running and the workers stopped.

The suite is long and disruptive, so it runs only when asked for: `pytest -m chaos tests/chaos`
(or naming tests/chaos on the command line). A plain `pytest` deselects it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from chaoslib import (
    DEV,
    RECORDS,
    MetricsSampler,
    System,
    log,
    pipeline_ready,
    run_script,
    wait_settled,
    write_report,
)
from pymongo import AsyncMongoClient

HERE = Path(__file__).resolve().parent


def _asked_for(config: pytest.Config) -> bool:
    if "chaos" in (config.getoption("markexpr") or ""):
        return True
    for arg in config.args:
        path = Path(arg.split("::")[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the fault suite unless it was asked for (by marker or by path)."""
    if _asked_for(config):
        return
    chaos = [item for item in items if HERE in item.path.parents]
    if chaos:
        config.hook.pytest_deselected(items=chaos)
        items[:] = [item for item in items if HERE not in item.path.parents]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write this session's figures into tests/chaos/report/."""
    if RECORDS:
        write_report(RECORDS)


@pytest_asyncio.fixture(loop_scope="session")
async def system(
    request: pytest.FixtureRequest, service_checker: Any, mongo_url: str
) -> AsyncIterator[System]:
    """The 3 + 3 workers, ready; restores the infrastructure and stops the workers afterwards.

    Scenarios marked `default_settings` get workers with jobstream's default settings (the
    reconciliation timer at 120 s); the others get the tight chaos reconciliation.
    """
    await service_checker.require("kafka", "ferretdb")
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
    mongo: AsyncMongoClient = AsyncMongoClient(
        mongo_url, tz_aware=True, serverSelectionTimeoutMS=5000, socketTimeoutMS=30_000
    )
    s = System(session, mongo, MetricsSampler(session))
    if request.node.get_closest_marker("default_settings"):
        s.worker_env = {}
    status = await run_script(DEV, "status", check=False)
    running = [line.split()[0] for line in status.splitlines() if "running" in line]
    if running:
        await session.close()
        await mongo.close()
        pytest.fail(
            f"workers already running ({', '.join(running)}): the chaos suite starts its own, "
            "with tight reconciliation; stop them first (`scripts/dev.sh stop`)",
            pytrace=False,
        )
    try:
        log("starting the six workers")
        await run_script(DEV, "start", timeout=240, worker_env=s.worker_env)
        await pipeline_ready(s)
        await s.sampler.start()
        await wait_settled(s, timeout=90)  # what an earlier run left in the topics is consumed
        yield s
    finally:
        await s.sampler.stop()
        try:
            await s.restore()
        finally:
            log("stopping the workers")
            await run_script(DEV, "stop", timeout=180, check=False, worker_env=s.worker_env)
            await session.close()
            await mongo.close()
