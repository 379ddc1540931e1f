"""Recovery without the reconcile timer: faults under load with jobstream's default settings.

The other scenarios tighten reconciliation (6 s) so that whatever a fault loses is found quickly.
These run the workers as shipped (reconciliation after 120 s): recovery must come from Kafka
redelivering what was not acknowledged, so every job completes well before the timer could have
helped, and `reconciliation_republished_total` stays 0.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from chaoslib import (
    CLIENTS,
    REQUEST_TOPIC,
    RESPONSE_TOPIC,
    SERVERS,
    Load,
    System,
    assert_passed,
    big_job,
    busy,
    delta,
    generate_load,
    kill_and_restart,
    now,
    run_scenario,
    until,
    url_of,
)

pytestmark = [pytest.mark.chaos, pytest.mark.default_settings, pytest.mark.timeout(900)]

#: Every job completes within this long after the last fault (the reconcile timer is 120 s).
RECOVERY_LIMIT = 60.0
SETTLE = 2.0


def within_recovery_limit_and_nothing_republished(limit: float) -> Any:
    async def check(record: dict[str, Any]) -> list[str]:
        problems = []
        if record["recovery_seconds"] is not None and record["recovery_seconds"] > limit:
            problems.append(
                f"last job completed {record['recovery_seconds']} s after the last fault "
                f"(limit {limit:.0f} s)"
            )
        if record["republished"]:
            problems.append(f"reconciliation re-published {record['republished']} operations")
        return problems

    return check


async def test_rolling_sigterm_restart_recovers_without_reconciliation(system: System) -> None:
    async def fault(load: Load) -> dict[str, Any]:
        await busy(system, load, accepted=5, worker="server-1", topic=REQUEST_TOPIC, at_least=100)
        injected = now()
        for worker in SERVERS + CLIENTS:
            await system.stop_worker(worker)
            await system.start_workers(worker)
            await asyncio.sleep(SETTLE)
        restored = now()
        await asyncio.sleep(5)
        load.stop.set()
        return {"injected_at": injected, "restored_at": restored}

    record = await run_scenario(
        system,
        "rolling-restart-sigterm-default",
        "rolling SIGTERM restart of all six workers, default settings (reconcile after 120 s)",
        fault,
        specs=generate_load(240, seed=501, max_ops=200),
        spacing=1.0,
        concurrency=3,
        extra=within_recovery_limit_and_nothing_republished(RECOVERY_LIMIT),
    )
    assert_passed(record)


async def test_sigkill_one_server_recovers_without_reconciliation(system: System) -> None:
    async def fault(load: Load) -> dict[str, Any]:
        return await kill_and_restart(
            system, load, "server-2", busy_worker="server-2", topic=REQUEST_TOPIC, at_least=200
        )

    record = await run_scenario(
        system,
        "server-sigkill-one-default",
        "SIGKILL one server worker mid-load, default settings (reconcile after 120 s)",
        fault,
        specs=generate_load(30, seed=502),
        extra=within_recovery_limit_and_nothing_republished(RECOVERY_LIMIT),
    )
    assert_passed(record)


async def test_sigkill_a_persisting_client_recovers_without_reconciliation(
    system: System,
) -> None:
    async def fault(load: Load) -> dict[str, Any]:
        return await kill_and_restart(
            system, load, "client-3", busy_worker="client-3", topic=RESPONSE_TOPIC, at_least=200
        )

    record = await run_scenario(
        system,
        "client-sigkill-persisting-default",
        "SIGKILL a client worker while it persists results, default settings",
        fault,
        specs=generate_load(30, seed=503),
        targets=(url_of("client-1"), url_of("client-2")),  # not the victim's API
        extra=within_recovery_limit_and_nothing_republished(RECOVERY_LIMIT),
    )
    assert_passed(record)


def waited_out(limit: float) -> Any:
    """The default-settings checks, and nothing parked on the dead-letter topic: an outage of the
    database is waited out, not taken for a refusal."""
    recovered = within_recovery_limit_and_nothing_republished(limit)

    async def check(record: dict[str, Any]) -> list[str]:
        problems = await recovered(record)
        if record["dead_letters"]:
            problems.append(f"{record['dead_letters']} events parked on the dead-letter topic")
        return problems

    return check


async def big_job_storing(system: System, load: Load, results: int = 500) -> None:
    """Wait until the load's first job (a big one) is accepted and its results are being stored:
    a fault then strikes while most of them are still to come."""
    await until(lambda: bool(load.accepted), 120, "the big job accepted")
    start = system.sampler.snapshot()

    async def storing() -> bool:
        await system.sampler.sample()
        stored = delta(start, system.sampler.snapshot(), "results_stored_total", CLIENTS)
        return stored >= results

    await until(storing, 120, "the big job's results being stored")


#: How long the database stays full in the full-database scenario.
FULL_SECONDS = 15.0
#: The job whose results arrive while the database is full (several seconds of computing).
FULL_BIG_JOB = 20_000


async def test_a_full_database_is_waited_out_nothing_parked_or_republished(
    system: System,
) -> None:
    """A full disk is an outage of writes: POSTs answer 503 saying so, results wait unacknowledged
    and are stored once there is space again; nothing is parked on the dead-letter topic, and
    nothing waits for reconciliation (a first version parked every batch it could not store)."""
    seen: dict[str, Any] = {}

    async def fault(load: Load) -> dict[str, Any]:
        await big_job_storing(system, load)
        seen["before"] = system.sampler.snapshot()
        injected = now()
        await system.fill_database()
        await asyncio.sleep(FULL_SECONDS)
        await system.sampler.sample()
        seen["during"] = system.sampler.snapshot()
        await system.fill_database(False)
        seen["refusals"] = [s.detail for s in load.submissions if s.outcome == "http-503"]
        return {"injected_at": injected, "restored_at": now()}

    async def checks(record: dict[str, Any]) -> list[str]:
        problems = await waited_out(RECOVERY_LIMIT)(record)
        persisting = {"command": "update", "outcome": "failed", "origin": "worker"}
        failed = delta(
            seen["before"], seen["during"], "mongo_commands_total", CLIENTS, **persisting
        )
        record["persist_writes_failed_while_full"] = int(failed)
        if not failed:
            problems.append("no result met the full database: the scenario proved nothing")
        refusals = seen.get("refusals", [])
        record["posts_refused_while_full"] = len(refusals)
        if refusals and not all("the database is full" in r for r in refusals):
            problems.append(f"a 503 did not say the database is full: {refusals[0]}")
        return problems

    record = await run_scenario(
        system,
        "database-full-default",
        f"the database refuses every write as on a full disk ({FULL_SECONDS:.0f} s) while a "
        f"{FULL_BIG_JOB:,}-operation job computes, under load, default settings",
        fault,
        specs=[big_job(FULL_BIG_JOB, seed=505), *generate_load(50, seed=504, max_ops=200)],
        spacing=0.5,
        request_timeout=120,
        extra=checks,
    )
    assert_passed(record)


async def test_postgresql_restarted_behind_ferretdb_is_waited_out(system: System) -> None:
    """FerretDB stays up while its PostgreSQL restarts: its commands fail with a dial error or
    SQLSTATE 57P01, which is an outage, not a refusal (before, the persisting agent parked 79
    batches of a 30,000-operation job and left it to reconciliation)."""

    async def fault(load: Load) -> dict[str, Any]:
        await big_job_storing(system, load)
        injected = now()
        await system.stop_service("postgres")
        await asyncio.sleep(10)
        await system.start_service("postgres")
        return {"injected_at": injected, "restored_at": now()}

    record = await run_scenario(
        system,
        "postgres-restart-default",
        f"restart FerretDB's PostgreSQL (10 s down) while a {FULL_BIG_JOB:,}-operation job "
        "computes, under load, default settings",
        fault,
        specs=[big_job(FULL_BIG_JOB, seed=507), *generate_load(40, seed=506, max_ops=200)],
        spacing=0.5,
        request_timeout=120,
        extra=waited_out(RECOVERY_LIMIT),
    )
    assert_passed(record)
