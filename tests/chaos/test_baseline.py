"""The same load with no fault: the reference the fault scenarios' figures are read against."""

from __future__ import annotations

from typing import Any

import pytest
from chaoslib import Load, System, assert_passed, generate_load, now, run_scenario

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]


async def test_baseline_load_without_fault(system: System) -> None:
    async def no_fault(load: Load) -> dict[str, Any]:
        return {"injected_at": now()}

    record = await run_scenario(
        system,
        "baseline-no-fault",
        "the scenarios' load (30 jobs, 1..500 operations) with no fault",
        no_fault,
        specs=generate_load(30, seed=100),
    )
    assert_passed(record)
