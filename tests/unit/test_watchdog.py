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
    Commit,
    HeldCommitDetector,
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


# --- held-back commits ----------------------------------------------------------------------------


def test_a_commit_held_behind_the_log_end_with_nothing_in_flight_is_named_after_the_limit() -> None:
    detector = HeldCommitDetector(rewind_after=30)
    held = {"p0": Commit(base=40, end=41, busy=False)}

    assert detector.observe(0, held) == []
    assert detector.observe(29, held) == []
    assert detector.observe(30, held) == ["p0"]
    # named once, then timed again: the rewind has time to work before the next one
    assert detector.observe(35, held) == []
    assert detector.observe(60, held) == ["p0"]


def test_a_commit_that_moves_or_is_at_the_log_end_is_never_held() -> None:
    detector = HeldCommitDetector(rewind_after=30)

    for second, base in enumerate(range(0, 400, 4)):  # a busy partition, committed as it goes
        assert detector.observe(second * 20, {"p0": Commit(base, 10_000, False)}) == []
    for now in (0, 100, 1000):  # everything committed
        assert detector.observe(now, {"p1": Commit(25, 25, False)}) == []


def test_a_worker_handling_a_message_is_slow_not_held() -> None:
    # Given a batch that waits out a database outage: its messages are delivered, not acknowledged
    detector = HeldCommitDetector(rewind_after=30)
    waiting = {"p0": Commit(base=10, end=25, busy=True)}

    for now in (0, 100, 200):
        assert detector.observe(now, waiting) == []
    assert detector.observe(210, {"p0": Commit(10, 25, False)}) == []  # the clock starts now
    assert detector.observe(240, {"p0": Commit(10, 25, False)}) == ["p0"]


def test_an_unknown_base_or_end_is_never_held_and_forget_restarts_every_clock() -> None:
    detector = HeldCommitDetector(rewind_after=10)
    for now in (0, 10, 100):
        assert (
            detector.observe(now, {"a": Commit(None, 5, False), "b": Commit(3, None, False)}) == []
        )

    detector.observe(0, {"c": Commit(1, 5, False)})
    detector.forget()  # a rebalance: it seeks every partition itself
    assert detector.observe(10, {"c": Commit(1, 5, False)}) == []
    assert detector.observe(20, {"c": Commit(1, 5, False)}) == ["c"]


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
        self.consumer: Any = StalledConsumer()
        self.now = 0.0
        self.rebalancing = False
        self.in_recovery = False
        self.loop = SimpleNamespace(time=lambda: self.now)
        self.timers: list[Callable[[], Awaitable[None]]] = []
        self.restarts: list[float] = []

    def timer(self, interval: float, name: str) -> Callable[[Any], Any]:
        def register(fn: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
            self.timers.append(fn)
            return fn

        return register

    def watchdog(
        self, topic: str | tuple[str, ...], metrics: Metrics | None = None, **options: float
    ) -> Callable[[], Awaitable[None]]:
        """Register the watchdog on this worker (restarts recorded in `restarts`); its timer."""
        register_watchdog(
            self,  # type: ignore[arg-type]
            topic,
            metrics or Metrics.create(),
            restart=lambda: self.restarts.append(self.now),
            **options,  # type: ignore[arg-type]
        )
        (watch,) = self.timers
        return watch


async def test_a_worker_whose_consumer_stalls_says_so_and_restarts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = WorkerStandIn()
    metrics = Metrics.create()
    watch = worker.watchdog("application.operation.request", metrics, stall_after=60)

    with caplog.at_level(logging.ERROR, logger="jobstream.agents.watchdog"):
        for second in range(0, 61, 15):  # the timer's interval: a restart at 60 s, none before
            worker.now = second
            await watch()

    assert worker.restarts == [60]
    assert metrics.registry.get_sample_value("consumer_stalls_total") == 1
    assert "consumer stalled: 1 partitions have lag" in caplog.text
    assert "application.operation.request[7]@42" in caplog.text


async def test_the_watchdog_watches_every_lane_it_is_given_and_no_other_topic() -> None:
    # Given a consumer whose stalled partition is of the bulk request topic
    bulk = "application.operation.request.bulk"
    watched, unwatched = WorkerStandIn(), WorkerStandIn()
    for worker in (watched, unwatched):
        worker.consumer.tp = TP(bulk, 7)
        worker.consumer._read_offset = {worker.consumer.tp: 41}
    watch = watched.watchdog(("application.operation.request", bulk), stall_after=60)
    ignore = unwatched.watchdog("application.operation.request", stall_after=60)

    for second in range(0, 61, 15):
        watched.now = unwatched.now = second
        await watch()
        await ignore()

    # Then a watchdog given both lanes restarts its worker; one given only the first does not
    assert (watched.restarts, unwatched.restarts) == ([60], [])


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
    watch = worker.watchdog("application.operation.request", stall_after=60)

    with caplog.at_level(logging.WARNING, logger="jobstream.agents.watchdog"):
        for second in range(0, 121, 15):
            worker.now = second
            await watch()  # raising here is what crashed the Faust app

    assert worker.restarts == []  # no answer is no evidence of a stall
    assert "no log end offsets from the brokers" in caplog.text


class HoleyConsumer:
    """A consumer that read past a message nobody handled: its commit stays at 42 while the later
    messages of the partition were handled (its position moves on: no stall)."""

    def __init__(self) -> None:
        self.tp = TP("application.operation.response", 3)
        self.commit_bases = {self.tp: 42}
        self._read_offset = {self.tp: 47}
        self._committed_offset = {self.tp: 42}
        self._unacked_messages: list[Any] = []
        self.seeks: list[dict[TP, int]] = []

    def assignment(self) -> set[TP]:
        return {self.tp}

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        return dict.fromkeys(tps, 48)

    async def seek_wait(self, offsets: dict[TP, int]) -> None:
        self.seeks.append(dict(offsets))


async def test_a_partition_whose_commit_is_held_back_is_read_again_from_its_commit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = WorkerStandIn()
    consumer = worker.consumer = HoleyConsumer()
    metrics = Metrics.create()
    watch = worker.watchdog(
        "application.operation.response", metrics, stall_after=60, rewind_after=30
    )

    # While the worker handles a message (of any partition: a backlog keeps bases still too),
    # the held commit is only slowness
    other = TP("application.operation.response", 9)
    consumer._unacked_messages = [SimpleNamespace(tp=other, acked=False)]
    for second in (0, 15, 30, 45):
        worker.now = second
        await watch()
    assert consumer.seeks == []

    consumer._unacked_messages = [SimpleNamespace(tp=other, acked=True)]  # handled: done
    with caplog.at_level(logging.WARNING, logger="jobstream.agents.watchdog"):
        for second in (50, 65, 80):
            worker.now = second
            await watch()

    assert consumer.seeks == [{consumer.tp: 42}]
    assert consumer._read_offset[consumer.tp] == 42
    assert metrics.registry.get_sample_value("consumer_rewinds_total") == 1
    assert "application.operation.response[3]@42->48" in caplog.text
    assert worker.restarts == []  # its position moved: repaired in place, not a stall


async def test_no_partition_is_read_again_while_the_worker_rebalances() -> None:
    worker = WorkerStandIn()
    consumer = worker.consumer = HoleyConsumer()
    watch = worker.watchdog("application.operation.response", rewind_after=30)

    worker.rebalancing = True
    for second in (0, 30, 60):
        worker.now = second
        await watch()
    worker.rebalancing = False
    worker.now = 61
    await watch()  # the clock starts after the rebalance

    assert consumer.seeks == []
