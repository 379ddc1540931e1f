"""The persisting agent's check of decoded results: the progress table trusts their total."""

from __future__ import annotations

import pytest

from jobstream.agents.persist import _checked
from jobstream.models import InvalidEvent, OperationResult

JOB_ID = "0123456789abcdef0123456789abcdef"


def results(total: int) -> list[OperationResult]:
    return [OperationResult(JOB_ID, 1, total, "succeeded", result="1")]


@pytest.mark.parametrize("total", [1, 7, 100_000])
def test_results_of_a_possible_job_size_pass(total: int) -> None:
    assert _checked(results(total), max_operations=100_000) == results(total)


@pytest.mark.parametrize("total", [0, -1, 100_001, 2**31])
def test_a_total_no_job_can_have_is_an_invalid_event(total: int) -> None:
    # a forged total would size the progress bitmap (2**31 operations is 256 MiB)
    with pytest.raises(InvalidEvent, match=r"total must be within 1\.\.100000"):
        _checked(results(total), max_operations=100_000)
