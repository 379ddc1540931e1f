"""Every role: notice a consumer that holds partitions with lag but stopped fetching them.

faust-streaming can leave a consumer assigned to partitions it never fetches again after a
rebalance (faust-streaming #629, open): their messages wait for good, and reconciliation cannot help
because the requests or results are in Kafka, not lost. Faust itself only logs warnings for it
(faust/transport/drivers/aiokafka.py, `verify_event_path`).

The watchdog compares, for each assigned partition of the role's source topics, the consumer's
position (last offset read, else the committed one) with the log end offset asked from the brokers.
A partition is stalled when it has lag, its position has not moved for `stall_after` seconds, and
the worker has nothing in flight (no delivered message awaits its acknowledgement: a worker busy
with a long batch, or waiting out a database outage, is slow, not stalled). Then the worker says so
(log and `consumer_stalls_total`) and restarts itself in place (same pid, same command line); its
unacknowledged messages are consumed again by whoever owns their partitions next.

It also repairs a subtler hole. jobstream's consumer (jobstream/consumer.py) commits a partition
only up to its first message not acknowledged, so a message that was fetched but never handled
(Faust drops records of partitions paused during a rebalance's table recovery, aiokafka has already
moved past them: see that module) holds the commit back instead of being lost; but nothing reads
it again until the next rebalance. In the default-settings fault scenarios (a rolling restart, a
SIGKILLed client, on a fresh stack, one pass in three) whole jobs waited for the 120 s reconcile
timer with no stall seen and nothing lost; a message held that way is the likely cause (the logs do
not say which message it was). A partition whose commit base has not moved for `rewind_after`
seconds while its log goes on past it, with nothing delivered and unacknowledged on the worker, is
therefore read again from its base (`consumer_rewinds_total`): the messages after it come again
and are recognised as duplicates. The whole worker must be idle, not only the partition: under a
backlog, partitions whose messages were not fetched yet also keep their base for long, and a first
version that looked at the partition alone rewound a dozen of them at a time in the benchmark's
overload phases (more work for a worker already behind). A real hole shows once the load eases
(the benchmark's drain after a watchers run waited on one until its rewind; then it drained in 4 s).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import faust

from jobstream.telemetry import Metrics

log = logging.getLogger(__name__)

#: Carried across an in-place restart, so `consumer_stalls_total` keeps counting.
RESTARTS_ENV = "JOBSTREAM_STALL_RESTARTS"
CHECK_INTERVAL = 5.0
#: How long a lagging partition may go unfetched, with nothing in flight, before a restart.
STALL_AFTER = 60.0
#: How long a partition's commit may stay behind its log end, with nothing in flight on the worker,
#: before it is read again from the commit (commits happen every few seconds when work is done).
REWIND_AFTER = 30.0


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


@dataclass(frozen=True)
class Commit:
    """Where a partition's next commit starts, where its log ends, and whether the worker is
    handling any message."""

    base: int | None  # the commit base (jobstream/consumer.py); None when unknown
    end: int | None  # the log end offset; None when unknown
    busy: bool  # a message of the worker was delivered and is not acknowledged yet


@dataclass
class HeldCommitDetector:
    """Decides which partitions to read again from their commit base (pure, no I/O)."""

    rewind_after: float
    _since: dict[Hashable, tuple[int | None, float]] = field(default_factory=dict)

    def observe(self, now: float, commits: Mapping[Hashable, Commit]) -> list[Hashable]:
        """Record one observation; the partitions held back for `rewind_after` seconds.

        A partition named is timed again from now, so a rewind has time to work before the next.
        """
        for tp in list(self._since):
            if tp not in commits:
                del self._since[tp]
        held = []
        for tp, seen in commits.items():
            behind = seen.base is not None and seen.end is not None and seen.end > seen.base
            last = self._since.get(tp)
            if not behind or seen.busy or last is None or last[0] != seen.base:
                self._since[tp] = (seen.base, now)
                continue
            if now - last[1] >= self.rewind_after:
                held.append(tp)
                self._since[tp] = (seen.base, now)
        return held

    def forget(self) -> None:
        """Start every partition's clock again (after a rebalance, which seeks them anyway)."""
        self._since.clear()


def restart_in_place() -> None:
    """Replace this process with a fresh run of the same command line (same pid)."""
    os.environ[RESTARTS_ENV] = str(int(os.environ.get(RESTARTS_ENV, "0")) + 1)
    logging.shutdown()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def register_watchdog(
    app: faust.App,
    topics: str | Iterable[str],
    metrics: Metrics,
    stall_after: float = STALL_AFTER,
    restart: Callable[[], None] = restart_in_place,
    rewind_after: float = REWIND_AFTER,
) -> StallDetector:
    """Check the consumer every CHECK_INTERVAL seconds: read a partition whose commit is held back
    again from its commit; restart the worker when it stalls. `topics`: the role's source topics
    (both lanes')."""
    names = {topics} if isinstance(topics, str) else set(topics)
    metrics.consumer_stalls.inc(int(os.environ.get(RESTARTS_ENV, "0")))
    detector = StallDetector(stall_after)
    held_commits = HeldCommitDetector(rewind_after)

    @app.timer(interval=CHECK_INTERVAL, name="consumer-watchdog")
    async def watch() -> None:
        consumer: Any = app.consumer
        assigned = [tp for tp in consumer.assignment() if tp.topic in names]
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
        in_flight = any(not m.acked for m in list(consumer._unacked_messages))
        now = app.loop.time()
        await _rewind_held_commits(
            app, consumer, held_commits, now, assigned, ends, in_flight, metrics
        )
        stalled = detector.observe(now, positions, in_flight)
        if stalled:
            log.error(
                "consumer stalled: %d partitions have lag and were not fetched for %.0fs "
                "(%s); restarting the worker",
                len(stalled),
                stall_after,
                ", ".join(
                    f"{tp.topic}[{tp.partition}]@{positions[tp].position}" for tp in stalled[:10]
                ),
            )
            metrics.consumer_stalls.inc()
            restart()

    return detector


async def _rewind_held_commits(
    app: faust.App,
    consumer: Any,
    detector: HeldCommitDetector,
    now: float,
    assigned: list[Any],
    ends: Mapping[Any, int],
    in_flight: bool,
    metrics: Metrics,
) -> None:
    """Read again, from its commit base, every partition whose commit is held back."""
    if app.rebalancing or getattr(app, "in_recovery", False):
        detector.forget()  # the rebalance seeks every partition to its commit itself
        return
    bases: Mapping[Any, int] = getattr(consumer, "commit_bases", {})
    commits = {tp: Commit(bases.get(tp), ends.get(tp), in_flight) for tp in assigned}
    held = detector.observe(now, commits)
    if not held:
        return
    log.warning(
        "%d partitions had their commit held back for %.0fs with nothing being handled "
        "(%s); reading them again from there",
        len(held),
        detector.rewind_after,
        ", ".join(f"{tp.topic}[{tp.partition}]@{bases[tp]}->{ends.get(tp)}" for tp in held[:10]),
    )
    try:
        await consumer.seek_wait({tp: bases[tp] for tp in held})
    except Exception as exc:  # the next check tries again
        log.warning("could not seek the held-back partitions (%r)", exc)
        return
    for tp in held:
        consumer._read_offset[tp] = bases[tp]  # as Faust's own perform_seek leaves it
    metrics.consumer_rewinds.inc(len(held))


def _position(consumer: Any, tp: Any) -> int | None:
    """The next offset the consumer reads: after its last read, else its committed offset."""
    read = consumer._read_offset.get(tp)
    if read is not None:
        return read + 1
    committed: int | None = consumer._committed_offset.get(tp)
    return committed
