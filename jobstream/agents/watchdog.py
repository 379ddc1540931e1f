"""Every role: notice a consumer that holds partitions with lag but stopped fetching them.

faust-streaming can leave a consumer assigned to partitions it never fetches again after a
rebalance (faust-streaming #629, open): their messages wait for good, and reconciliation cannot help
because the requests or results are in Kafka, not lost. Faust itself only logs warnings for it
(faust/transport/drivers/aiokafka.py, `verify_event_path`).

The watchdog compares, for each assigned partition of the role's source topic, the consumer's
position (last offset read, else the committed one) with the log end offset asked from the brokers.
A partition is stalled when it has lag, its position has not moved for `stall_after` seconds, and
the worker has nothing in flight (no delivered message awaits its acknowledgement: a worker busy
with a long batch, or waiting out a database outage, is slow, not stalled). Then the worker says so
(log and `consumer_stalls_total`) and restarts itself in place (same pid, same command line); its
unacknowledged messages are consumed again by whoever owns their partitions next.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import faust

from jobstream.telemetry import Metrics

log = logging.getLogger(__name__)

#: Carried across an in-place restart, so `consumer_stalls_total` keeps counting.
RESTARTS_ENV = "JOBSTREAM_STALL_RESTARTS"
CHECK_INTERVAL = 15.0
#: How long a lagging partition may go unfetched, with nothing in flight, before a restart.
STALL_AFTER = 60.0


@dataclass(frozen=True)
class Position:
    """Where a consumer is in one partition, and where the partition ends."""

    position: int | None  # next offset the consumer will read; None when unknown (never a stall)
    end: int | None  # the log end offset; None when unknown


@dataclass
class StallDetector:
    """Decides which partitions are stalled from successive observations (pure, no I/O)."""

    stall_after: float
    _since: dict[Hashable, tuple[int | None, float]] = field(default_factory=dict)

    def observe(
        self, now: float, positions: Mapping[Hashable, Position], in_flight: bool
    ) -> list[Hashable]:
        """Record one observation; the partitions stalled for at least `stall_after` seconds."""
        for tp in list(self._since):
            if tp not in positions:
                del self._since[tp]  # no longer assigned
        stalled = []
        for tp, seen in positions.items():
            # An unknown position (nothing read since the assignment, no commit seen yet) says
            # nothing about lag: counting it as 0 made every quiet partition look stalled.
            lagging = (
                seen.position is not None and seen.end is not None and seen.end > seen.position
            )
            last = self._since.get(tp)
            if not lagging or in_flight or last is None or last[0] != seen.position:
                self._since[tp] = (seen.position, now)
                continue
            if now - last[1] >= self.stall_after:
                stalled.append(tp)
        return stalled


def restart_in_place() -> None:
    """Replace this process with a fresh run of the same command line (same pid)."""
    os.environ[RESTARTS_ENV] = str(int(os.environ.get(RESTARTS_ENV, "0")) + 1)
    logging.shutdown()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def register_watchdog(
    app: faust.App,
    topic: str,
    metrics: Metrics,
    stall_after: float = STALL_AFTER,
    restart: Callable[[], None] = restart_in_place,
) -> StallDetector:
    """Check the consumer every CHECK_INTERVAL seconds; restart the worker when it stalls."""
    metrics.consumer_stalls.inc(int(os.environ.get(RESTARTS_ENV, "0")))
    detector = StallDetector(stall_after)

    @app.timer(interval=CHECK_INTERVAL, name="consumer-watchdog")
    async def watch() -> None:
        consumer: Any = app.consumer
        assigned = [tp for tp in consumer.assignment() if tp.topic == topic]
        if not assigned:
            return
        try:
            ends = await consumer.highwaters(*assigned)  # asked from the brokers, not cached
        except Exception as exc:  # a Faust timer that raises crashes the whole app
            # With the brokers down, aiokafka gives up after request_timeout_ms (90 s) with
            # KafkaTimeoutError; raised from a Faust timer it crashed a client's app (its API went
            # dark) in the fault suite's all-brokers-down scenario. No answer is no observation.
            log.warning("consumer watchdog: no log end offsets from the brokers (%r)", exc)
            return
        positions = {tp: Position(_position(consumer, tp), ends.get(tp)) for tp in assigned}
        in_flight = bool(consumer._unacked_messages)
        stalled = detector.observe(app.loop.time(), positions, in_flight)
        if stalled:
            log.error(
                "consumer stalled: %d partitions of %s have lag and were not fetched for %.0fs "
                "(%s); restarting the worker",
                len(stalled),
                topic,
                stall_after,
                ", ".join(f"{tp.partition}@{positions[tp].position}" for tp in stalled[:10]),
            )
            metrics.consumer_stalls.inc()
            restart()

    return detector


def _position(consumer: Any, tp: Any) -> int | None:
    """The next offset the consumer reads: after its last read, else its committed offset."""
    read = consumer._read_offset.get(tp)
    if read is not None:
        return read + 1
    committed: int | None = consumer._committed_offset.get(tp)
    return committed
