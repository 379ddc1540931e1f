"""No fault at all, only a backlog: small jobs submitted behind a 100,000-operation job.

Reconciliation cannot tell a lost operation from one that is queued: a job whose counters have not
moved for JOBSTREAM_RECONCILE_AFTER seconds is re-published, and after JOBSTREAM_MAX_ATTEMPTS rounds
its pending operations are *failed* ("no result after N delivery attempts") through the response
topic, which does not wait behind the request backlog. The checks are the same as under faults:
every operation ends with its expected result, nothing is given up.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from chaoslib import (
    CLIENTS,
    SERVERS,
    Load,
    System,
    assert_passed,
    big_job,
    check_jobs,
    delta,
    generate_load,
    now,
    response_partition,
    run_scenario,
    stall_diagnostics,
    until,
    url_of,
    wait_quiescent,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1200)]

BIG = 100_000  # the API's largest job (JOBSTREAM_MAX_OPERATIONS)
BIG_BACKLOG = 10_000


async def test_small_jobs_behind_a_big_job_are_not_given_up(system: System) -> None:
    # One job at a time (concurrency 1): the big job's requests are all published before the
    # small jobs arrive behind them.
    specs = [big_job(BIG, seed=601), *generate_load(30, seed=602, max_ops=20)]

    async def no_fault(load: Load) -> dict[str, Any]:
        return {"injected_at": now(), "big_job_operations": BIG}

    record = await run_scenario(
        system,
        "backlog-big-job",
        f"no fault: 30 small jobs submitted right behind one {BIG:,}-operation job",
        no_fault,
        specs=specs,
        spacing=0.5,
        concurrency=1,
        request_timeout=300,
        quiesce_timeout=600,
    )
    assert_passed(record)


async def test_client_restarts_while_a_response_partition_has_a_backlog(system: System) -> None:
    """A big job's results all go to one response partition (keyed by job id). With the clients
    down while the servers compute it, that partition builds a backlog; the clients then come back
    and are restarted one by one (rebalances while one partition is far behind). Every job, the
    big one and small ones submitted meanwhile, must complete."""
    big = big_job(BIG_BACKLOG, seed=611)
    setup_from = system.sampler.snapshot()
    await asyncio.gather(*(system.stop_worker(s) for s in SERVERS))
    load = Load(system.session, [big], [url_of("client-1")], request_timeout=300)
    await load.run()  # published while no server computes: the requests wait
    [submission] = load.submissions
    assert submission.outcome == "accepted", submission.detail
    big_id = submission.job_id
    assert big_id is not None
    for client in CLIENTS:  # no client persists while the results are computed
        await system.stop_worker(client)
    computed_from = system.sampler.snapshot()
    await system.start_workers(*SERVERS)

    async def computed() -> bool:
        await system.sampler.sample()
        done = delta(
            computed_from, system.sampler.snapshot(), "operations_evaluated_total", SERVERS
        )
        return done >= BIG_BACKLOG

    await until(computed, 300, f"the servers to compute the {BIG_BACKLOG:,} operations")
    await system.start_workers(*CLIENTS)
    backlog_partition = response_partition(big_id)
    setup = system.sampler.snapshot()
    # With no server running, the big job looks stalled while it is still being published:
    # reconciliation publishes it again (counted here, before the scenario's own figures).
    setup_figures = {
        "setup_republished": int(
            delta(setup_from, setup, "reconciliation_republished_total", CLIENTS)
        ),
        "setup_evaluations": int(delta(setup_from, setup, "operations_evaluated_total", SERVERS)),
    }

    async def fault(load: Load) -> dict[str, Any]:
        injected = now()
        for client in CLIENTS:
            await system.stop_worker(client)
            await system.start_workers(client)
            await asyncio.sleep(2)
        return {
            "injected_at": injected,
            "restored_at": now(),
            "big_job_operations": BIG_BACKLOG,
            "backlog_partition": backlog_partition,
            **setup_figures,
        }

    async def extra(record: dict[str, Any]) -> list[str]:
        done = await wait_quiescent(system.db, [big_id], 300)
        record["big_job_completed_after_seconds"] = (
            None if done is None else round(done - started, 1)
        )
        findings = await check_jobs(system, {big_id: big})
        record["big_job_lost"] = findings.lost
        record["big_job_wrong"] = findings.wrong + findings.given_up
        problems = [f"big job: {p}" for p in findings.problems]
        if done is None:
            problems.append(f"big job {big_id} not completed within 300 s")
            record["stall_diagnostics_big"] = await stall_diagnostics([big_id], system.db)
        return problems

    started = now()
    record = await run_scenario(
        system,
        "backlog-partition-rolling-clients",
        f"clients restarted one by one while one response partition holds a {BIG_BACKLOG:,}-result "
        "backlog",
        fault,
        specs=generate_load(30, seed=612, max_ops=100),
        spacing=0.8,
        quiesce_timeout=300,
        extra=extra,
    )
    assert_passed(record)
