"""A Kafka broker stopped or killed, or FerretDB restarted, under load: nothing accepted is lost."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from chaoslib import (
    RESPONSE_TOPIC,
    Load,
    System,
    assert_passed,
    busy,
    generate_load,
    now,
    run_scenario,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

#: How long a stopped service stays down.
DOWNTIME = 10.0


async def _outage(system: System, load: Load, service: str, kill: bool) -> dict[str, Any]:
    await busy(system, load, accepted=6, worker="client-1", topic=RESPONSE_TOPIC, at_least=50)
    injected = now()
    await system.stop_service(service, kill=kill)
    stopped = now()
    await asyncio.sleep(DOWNTIME)
    await system.start_service(service)
    return {
        "injected_at": injected,
        "restored_at": now(),
        "victims": [service],
        "stop_seconds": round(stopped - injected, 1),
    }


async def test_one_kafka_broker_stopped_under_load(system: System) -> None:
    async def fault(load: Load) -> dict[str, Any]:
        return await _outage(system, load, "kafka-2", kill=False)

    record = await run_scenario(
        system,
        "kafka-broker-sigterm",
        "stop one Kafka broker of three (SIGTERM) under load, restart it",
        fault,
        specs=generate_load(30, seed=201),
        spacing=0.6,
    )
    assert_passed(record)


async def test_one_kafka_broker_sigkilled_under_load(system: System) -> None:
    async def fault(load: Load) -> dict[str, Any]:
        return await _outage(system, load, "kafka-3", kill=True)

    record = await run_scenario(
        system,
        "kafka-broker-sigkill",
        "SIGKILL one Kafka broker of three under load, restart it",
        fault,
        specs=generate_load(30, seed=202),
        spacing=0.6,
    )
    assert_passed(record)


async def test_ferretdb_restarted_under_load(system: System) -> None:
    async def fault(load: Load) -> dict[str, Any]:
        return await _outage(system, load, "ferretdb", kill=False)

    record = await run_scenario(
        system,
        "ferretdb-restart",
        "restart FerretDB (SIGTERM, 10 s down) under load",
        fault,
        specs=generate_load(30, seed=301),
        spacing=0.6,
    )
    assert_passed(record)
