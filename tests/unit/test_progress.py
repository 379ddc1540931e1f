"""Behaviour of JobProgress: counting each operation's end exactly once, and its binary form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobstream.tables.progress import JobProgress

HEADER_BYTES = 12  # three big-endian unsigned 32-bit counters


def counts(progress: JobProgress) -> tuple[int, int, int]:
    return progress.total, progress.succeeded, progress.failed


# --- new ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "bitmap_bytes"),
    [(1, 1), (7, 1), (8, 1), (9, 2), (15, 2), (16, 2), (17, 3), (100_000, 12_500)],
)
def test_new_progress_has_no_ended_operations_and_one_bit_per_operation(
    total: int, bitmap_bytes: int
) -> None:
    # Given / When the progress of a new job is created
    progress = JobProgress.new(total)

    # Then nothing has ended, and the bitmap has just enough bytes for `total` bits
    assert counts(progress) == (total, 0, 0)
    assert len(progress.ended) == bitmap_bytes
    assert not any(progress.ended)
    assert not progress.complete


# --- record -------------------------------------------------------------------------------------


def test_recording_a_success_counts_it_once() -> None:
    # Given a job of three operations
    progress = JobProgress.new(3)

    # When its second operation succeeds
    counted = progress.record(2, succeeded=True)

    # Then it is counted as one success
    assert counted is True
    assert counts(progress) == (3, 1, 0)


def test_recording_a_failure_counts_it_once() -> None:
    progress = JobProgress.new(3)

    assert progress.record(3, succeeded=False) is True

    assert counts(progress) == (3, 0, 1)


@pytest.mark.parametrize("first", [True, False])
@pytest.mark.parametrize("second", [True, False])
def test_duplicate_result_is_not_counted_twice(first: bool, second: bool) -> None:
    # Given an operation whose result was already recorded
    progress = JobProgress.new(5)
    progress.record(4, first)
    before = counts(progress), bytes(progress.ended)

    # When a result for the same operation arrives again (whatever its outcome)
    counted = progress.record(4, second)

    # Then it is refused and nothing changes: the first outcome stands
    assert counted is False
    assert (counts(progress), bytes(progress.ended)) == before


@pytest.mark.parametrize("index", [0, -1, -8, 6, 7, 8, 9, 1_000_000])
def test_index_out_of_range_is_refused_and_changes_nothing(index: int) -> None:
    # Given a job of five operations (indexes 1..5)
    progress = JobProgress.new(5)

    # When a result with an index outside 1..5 arrives
    counted = progress.record(index, succeeded=True)

    # Then it is refused and nothing is counted
    assert counted is False
    assert counts(progress) == (5, 0, 0)
    assert not any(progress.ended)


def test_first_and_last_indexes_are_in_range() -> None:
    progress = JobProgress.new(10)

    assert progress.record(1, True) is True
    assert progress.record(10, False) is True

    assert counts(progress) == (10, 1, 1)


def test_indexes_in_the_same_byte_are_counted_independently() -> None:
    # Given a job of 8 operations, all in one bitmap byte
    progress = JobProgress.new(8)

    # When every one of them ends
    results = [progress.record(index, index % 2 == 0) for index in range(1, 9)]

    # Then every record counted, the byte is full, and the job is complete
    assert results == [True] * 8
    assert progress.ended == bytearray(b"\xff")
    assert counts(progress) == (8, 4, 4)
    assert progress.complete


# --- complete -----------------------------------------------------------------------------------


@pytest.mark.parametrize("total", [1, 7, 8, 9, 13, 64, 65])
def test_job_is_complete_exactly_when_its_last_operation_ends(total: int) -> None:
    # Given a job whose operations end in reverse order, with a duplicate after each one
    progress = JobProgress.new(total)

    for index in range(total, 0, -1):
        # Then it is not complete before the last one...
        assert not progress.complete
        progress.record(index, succeeded=index % 3 != 0)
        progress.record(index, succeeded=True)  # duplicates never complete a job early

    # ... and is complete right after it
    assert progress.complete
    assert progress.succeeded + progress.failed == total


def test_out_of_range_results_never_complete_a_job() -> None:
    # Given a job of two operations, one of which ended
    progress = JobProgress.new(2)
    progress.record(1, True)

    # When results for indexes it does not have arrive
    for index in (0, 3, 4, -1):
        progress.record(index, True)

    # Then it is still waiting for operation 2
    assert not progress.complete
    assert progress.record(2, False) is True
    assert progress.complete


def test_job_of_100_000_operations_completes_after_each_is_recorded_once() -> None:
    # Given a job of 100,000 operations (the default maximum)
    total = 100_000
    progress = JobProgress.new(total)

    # When all of them but the last end, and every result is also delivered twice
    for index in range(1, total):
        assert progress.record(index, succeeded=index % 10 != 0)
    assert not any(progress.record(index, True) for index in range(1, total))

    # Then it is not complete until the last one ends
    assert not progress.complete
    assert progress.record(total, succeeded=False)
    assert progress.complete
    assert counts(progress) == (total, 90_000, 10_000)

    # And its binary form is 12 bytes of counters plus 12,500 bytes of bitmap
    raw = progress.encode()
    assert len(raw) == HEADER_BYTES + 12_500
    assert JobProgress.decode(raw) == progress


# --- encode / decode ----------------------------------------------------------------------------


def test_encoding_is_three_big_endian_counters_then_the_bitmap() -> None:
    # Given a job of 10 operations where operations 1 and 10 have ended
    progress = JobProgress.new(10)
    progress.record(1, succeeded=True)
    progress.record(10, succeeded=False)

    # When it is encoded
    raw = progress.encode()

    # Then the bytes are total, succeeded, failed (uint32, big-endian) then the bitmap,
    # least significant bit first within each byte
    assert raw == (
        (10).to_bytes(4, "big") + (1).to_bytes(4, "big") + (1).to_bytes(4, "big") + b"\x01\x02"
    )


def test_decoded_progress_keeps_refusing_what_was_recorded_before_encoding() -> None:
    # Given a job's progress that went through the table (encoded, then decoded)
    before = JobProgress.new(20)
    before.record(17, succeeded=True)
    after = JobProgress.decode(before.encode())

    # When the same result arrives again, and then a new one
    # Then the duplicate is still recognised and the new one is counted
    assert after.record(17, succeeded=False) is False
    assert after.record(18, succeeded=False) is True
    assert counts(after) == (20, 1, 1)


def test_decoded_bitmap_is_mutable() -> None:
    # The table hands decode() immutable bytes; record() must still be able to flip bits
    progress = JobProgress.decode(JobProgress.new(3).encode())
    assert isinstance(progress.ended, bytearray)
    assert progress.record(2, True)


records = st.lists(st.tuples(st.integers(min_value=-3, max_value=70), st.booleans()), max_size=200)


@given(total=st.integers(min_value=1, max_value=64), recorded=records)
def test_encoding_round_trips_and_counts_each_valid_index_once(
    total: int, recorded: list[tuple[int, bool]]
) -> None:
    # Given a job's progress after any sequence of results, in range or not, repeated or not
    progress = JobProgress.new(total)
    first_outcome: dict[int, bool] = {}
    for index, succeeded in recorded:
        counted = progress.record(index, succeeded)
        # (a record counts exactly when its index is valid and new)
        assert counted == (1 <= index <= total and index not in first_outcome)
        if counted:
            first_outcome[index] = succeeded

    # When it is encoded and decoded
    decoded = JobProgress.decode(progress.encode())

    # Then the state is unchanged
    assert decoded == progress
    # And the counters are the number of distinct valid indexes, split by their first outcome
    assert decoded.succeeded == sum(first_outcome.values())
    assert decoded.failed == len(first_outcome) - decoded.succeeded
    # And the job is complete exactly when every index has ended
    assert decoded.complete == (len(first_outcome) == total)
    # And the bitmap holds exactly the recorded indexes
    ended = {i for i in range(1, total + 1) if decoded.ended[(i - 1) // 8] >> ((i - 1) % 8) & 1}
    assert ended == set(first_outcome)
