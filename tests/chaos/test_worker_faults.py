"""Workers killed without warning (SIGKILL) in the middle of a load: nothing accepted is lost."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from chaoslib import (
    REQUEST_TOPIC,
    RESPONSE_TOPIC,
    Load,
    System,
    assert_passed,
    busy,
    generate_load,
    kill_and_restart,
    now,
    run_scenario,
    url_of,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

#: How long a killed worker stays down before it is started again.
DOWNTIME = 3.0


async def test_sigkill_one_server_worker_mid_load(system: System) -> None:
    async def fault(load: Load) -> dict[str, Any]:
        return await kill_and_restart(
            system, load, "server-2", busy_worker="server-2", topic=REQUEST_TOPIC, at_least=200
        )

    record = await run_scenario(
        system,
        "server-sigkill-one",
        "SIGKILL one server worker mid-load, restart it",
        fault,
        specs=generate_load(30, seed=101),
    )
    assert_passed(record)


async def test_sigkill_two_server_workers_at_once_mid_load(system: System) -> None:
    async def fault(load: Load) -> dict[str, Any]:
        return await kill_and_restart(
            system,
            load,
            "server-1",
            "server-3",
            busy_worker="server-3",
            topic=REQUEST_TOPIC,
            at_least=200,
        )

    record = await run_scenario(
        system,
        "server-sigkill-two",
        "SIGKILL two of the three server workers at once mid-load, restart them",
        fault,
        specs=generate_load(30, seed=102),
    )
    assert_passed(record)


async def test_sigkill_the_client_worker_receiving_the_load(system: System) -> None:
    # Every job goes to client-2 alone (no retry elsewhere): requests that break with it are not
    # accepted, but any job it stored before dying must still complete.
    async def fault(load: Load) -> dict[str, Any]:
        await busy(system, load, accepted=8, worker="client-2", topic=RESPONSE_TOPIC, at_least=0)
        in_flight = sum(1 for s in load.submissions if s.outcome == "pending")
        injected = now()
        await system.kill_workers("client-2")
        await asyncio.sleep(DOWNTIME)
        await system.start_workers("client-2")
        return {
            "injected_at": injected,
            "restored_at": now(),
            "victims": ["client-2"],
            "requests_in_flight_at_kill": in_flight,
        }

    record = await run_scenario(
        system,
        "client-sigkill-receiving",
        "SIGKILL the client worker receiving every request, mid-load; restart it",
        fault,
        specs=generate_load(30, seed=103),
        targets=[url_of("client-2")],
        retry_refused=False,
    )
    assert_passed(record)


async def test_sigkill_a_client_worker_persisting_results(system: System) -> None:
    # The load goes to client-1 and client-2; client-3 is killed while it persists its share of
    # the responses (its partitions, and possibly the reconciliation leadership, move elsewhere).
    async def fault(load: Load) -> dict[str, Any]:
        return await kill_and_restart(
            system, load, "client-3", busy_worker="client-3", topic=RESPONSE_TOPIC, at_least=300
        )

    record = await run_scenario(
        system,
        "client-sigkill-persisting",
        "SIGKILL a client worker while it persists results, mid-load; restart it",
        fault,
        specs=generate_load(30, seed=104),
        targets=[url_of("client-1"), url_of("client-2")],
    )
    assert_passed(record)
