"""The stall detector: lag that is not fetched, with nothing in flight, for long enough."""

from __future__ import annotations

from jobstream.agents.watchdog import Position, StallDetector


def test_a_partition_with_lag_whose_position_never_moves_is_stalled_after_the_limit() -> None:
    detector = StallDetector(stall_after=60)
    stuck = {"p0": Position(position=10, end=25)}

    assert detector.observe(0, stuck, in_flight=False) == []
    assert detector.observe(59, stuck, in_flight=False) == []
    assert detector.observe(60, stuck, in_flight=False) == ["p0"]


def test_a_moving_position_is_not_a_stall_however_large_the_lag() -> None:
    detector = StallDetector(stall_after=60)

    for second, position in enumerate(range(0, 500, 5)):
        assert detector.observe(second * 30, {"p0": Position(position, 10_000)}, False) == []


def test_a_partition_without_lag_is_never_stalled() -> None:
    detector = StallDetector(stall_after=60)
    idle = {"p0": Position(position=25, end=25)}

    for now in (0, 100, 1000):
        assert detector.observe(now, idle, in_flight=False) == []


def test_a_worker_with_messages_in_flight_is_busy_not_stalled() -> None:
    # Given a partition with lag whose position does not move (the worker waits out an outage)
    detector = StallDetector(stall_after=60)
    stuck = {"p0": Position(position=10, end=25)}

    # While a batch is in flight, the clock restarts; once nothing is, the limit applies again
    for now in (0, 100, 200):
        assert detector.observe(now, stuck, in_flight=True) == []
    assert detector.observe(230, stuck, in_flight=False) == []
    assert detector.observe(290, stuck, in_flight=False) == ["p0"]


def test_a_partition_whose_position_is_unknown_is_never_called_stalled() -> None:
    # Given a partition assigned but not read yet, whose committed offset the worker has not seen:
    # its lag is unknown (the fault suite saw such quiet partitions restart healthy workers)
    detector = StallDetector(stall_after=10)
    unknown = {"p0": Position(position=None, end=3)}

    for now in (0, 10, 100):
        assert detector.observe(now, unknown, in_flight=False) == []


def test_only_the_stalled_partitions_are_named_and_revoked_ones_are_forgotten() -> None:
    detector = StallDetector(stall_after=10)
    detector.observe(0, {"a": Position(1, 5), "b": Position(1, 5)}, False)

    assert detector.observe(10, {"a": Position(1, 5), "b": Position(3, 5)}, False) == ["a"]
    detector.observe(11, {"b": Position(3, 5)}, False)  # "a" revoked
    assert detector.observe(30, {"a": Position(1, 5), "b": Position(5, 5)}, False) == []
