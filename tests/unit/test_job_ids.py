"""Job ids: 32 hex digits laid out as UUIDv7, so that their order is their creation order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from jobstream.models import job_created_at, new_job_id
from jobstream.views.jobs import JOB_ID

MOMENTS = st.datetimes(
    min_value=datetime(2020, 1, 2), max_value=datetime(2199, 12, 30), timezones=st.just(UTC)
)


@given(MOMENTS)
def test_an_id_tells_when_its_job_was_created_to_the_millisecond(at: datetime) -> None:
    job_id = new_job_id(at)
    assert JOB_ID.fullmatch(job_id)
    assert uuid.UUID(job_id).version == 7
    created = job_created_at(job_id)
    assert created is not None
    assert abs(created - at) < timedelta(milliseconds=1)


@given(MOMENTS, st.integers(min_value=1, max_value=10**9))
def test_ids_sort_in_creation_order(at: datetime, later_ms: int) -> None:
    later = at + timedelta(milliseconds=later_ms)
    if later.year < 2200:
        assert new_job_id(at) < new_job_id(later)


def test_ids_of_the_same_millisecond_differ() -> None:
    at = datetime.now(UTC)
    assert len({new_job_id(at) for _ in range(1000)}) == 1000


@given(st.uuids(version=4))
def test_other_ids_tell_no_creation_time(value: uuid.UUID) -> None:
    assert job_created_at(value.hex) is None


def test_malformed_ids_tell_no_creation_time() -> None:
    assert job_created_at("z" * 32) is None
    assert job_created_at("0" * 12 + "7" + "0" * 19) is None  # 1970: not one of ours
    assert job_created_at("abc") is None
