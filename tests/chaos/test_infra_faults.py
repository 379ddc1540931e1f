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

from jobstream.settings import Settings

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


#: How long every broker stays down in the brokers-down scenario.
ALL_BROKERS_DOWNTIME = 20.0
#: Most an answer may take beyond the workers' publish deadline (storing the job, the network).
ANSWER_MARGIN = 3.0


async def test_all_brokers_stopped_under_load_every_request_answers_in_time(
    system: System,
) -> None:
    deadline = Settings.from_env({}).publish_deadline

    async def fault(load: Load) -> dict[str, Any]:
        await busy(system, load, accepted=6, worker="client-1", topic=RESPONSE_TOPIC, at_least=50)
        injected = now()
        brokers = ("kafka-1", "kafka-2", "kafka-3")
        # SIGKILL: with every controller going, a SIGTERMed node waits for a quorum that is gone
        await asyncio.gather(*(system.stop_service(b, kill=True) for b in brokers))
        await asyncio.sleep(ALL_BROKERS_DOWNTIME)
        await asyncio.gather(*(system.start_service(b) for b in brokers))
        return {"injected_at": injected, "restored_at": now(), "victims": list(brokers)}

    async def answered_in_time(record: dict[str, Any]) -> list[str]:
        limit = deadline + ANSWER_MARGIN
        record["answer_limit_seconds"] = limit
        if record["slowest_answer_seconds"] > limit:
            return [f"a request waited {record['slowest_answer_seconds']} s (limit {limit} s)"]
        return []

    record = await run_scenario(
        system,
        "kafka-all-brokers-down",
        f"stop all three Kafka brokers for {ALL_BROKERS_DOWNTIME:.0f} s under load",
        fault,
        specs=generate_load(50, seed=203, max_ops=100),
        spacing=1.0,
        request_timeout=60.0,
        extra=answered_in_time,
    )
    assert_passed(record)
