"""The stall detector: lag that is not fetched, with nothing in flight, for long enough."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError
from faust.types import TP

from jobstream.agents.watchdog import (
    RESTARTS_ENV,
    Position,
    StallDetector,
    register_watchdog,
)
from jobstream.telemetry import Metrics


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


# --- the watchdog as registered on a worker, and its restart --------------------------------------


class StalledConsumer:
    """A consumer holding one partition whose log end moves on while it reads nothing."""

    def __init__(self) -> None:
        self.tp = TP("application.operation.request", 7)
        self._read_offset = {self.tp: 41}  # last read: 41, so the next is 42
        self._committed_offset: dict[TP, int] = {}
        self._unacked_messages: set[object] = set()
        self.end = 50

    def assignment(self) -> set[TP]:
        return {self.tp}

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        self.end += 10
        return dict.fromkeys(tps, self.end)


class WorkerStandIn:
    """What register_watchdog uses of a Faust app: its consumer, timers and clock."""

    def __init__(self) -> None:
        self.consumer = StalledConsumer()
        self.now = 0.0
        self.loop = SimpleNamespace(time=lambda: self.now)
        self.timers: list[Callable[[], Awaitable[None]]] = []

    def timer(self, interval: float, name: str) -> Callable[[Any], Any]:
        def register(fn: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
            self.timers.append(fn)
            return fn

        return register


async def test_a_worker_whose_consumer_stalls_says_so_and_restarts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = WorkerStandIn()
    metrics = Metrics.create()
    restarts: list[float] = []
    register_watchdog(
        worker,  # type: ignore[arg-type]
        "application.operation.request",
        metrics,
        stall_after=60,
        restart=lambda: restarts.append(worker.now),
    )
    (watch,) = worker.timers

    with caplog.at_level(logging.ERROR, logger="jobstream.agents.watchdog"):
        for second in range(0, 61, 15):  # the timer's interval: a restart at 60 s, none before
            worker.now = second
            await watch()

    assert restarts == [60]
    assert metrics.registry.get_sample_value("consumer_stalls_total") == 1
    assert "consumer stalled: 1 partitions of application.operation.request" in caplog.text
    assert "7@42" in caplog.text


RESTARTING = """
import os, sys
from jobstream.agents.watchdog import RESTARTS_ENV, restart_in_place
restarts = int(os.environ.get(RESTARTS_ENV, "0"))
print(os.getpid(), restarts, sys.argv[1:], flush=True)
if restarts < 2:
    restart_in_place()
"""


def test_restart_in_place_runs_the_same_command_again_in_the_same_process(
    tmp_path: Path,
) -> None:
    script = tmp_path / "worker.py"
    script.write_text(RESTARTING)
    env = {k: v for k, v in os.environ.items() if k != RESTARTS_ENV}

    ran = subprocess.run(
        [sys.executable, str(script), "worker", "--loglevel", "info"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )

    runs = [line.split(" ", 2) for line in ran.stdout.splitlines()]
    assert [restarts for _, restarts, _ in runs] == ["0", "1", "2"]
    assert len({pid for pid, _, _ in runs}) == 1  # replaced in place: a supervisor sees no exit
    assert {argv for _, _, argv in runs} == {"['worker', '--loglevel', 'info']"}


class UnreachableBrokers(StalledConsumer):
    """A consumer whose brokers do not answer: aiokafka's offsets request times out."""

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        raise KafkaTimeoutError("Failed to get offsets by times in 90000 ms")


async def test_brokers_that_do_not_answer_skip_a_check_instead_of_crashing_the_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = WorkerStandIn()
    worker.consumer = UnreachableBrokers()
    restarts: list[float] = []
    register_watchdog(
        worker,  # type: ignore[arg-type]
        "application.operation.request",
        Metrics.create(),
        stall_after=60,
        restart=lambda: restarts.append(worker.now),
    )
    (watch,) = worker.timers

    with caplog.at_level(logging.WARNING, logger="jobstream.agents.watchdog"):
        for second in range(0, 121, 15):
            worker.now = second
            await watch()  # raising here is what crashed the Faust app

    assert restarts == []  # no answer is no evidence of a stall
    assert "no log end offsets from the brokers" in caplog.text
