"""The Faust consumer of both roles: every partition is read again from its committed offset after
a rebalance, and no offset is committed past a message that was not acknowledged.

Two faust-streaming 0.15.3 behaviours (installed copy; aiokafka 0.14.0) combine to lose messages
on partitions nobody has committed yet, which on a fresh stack is every partition:

1. **Fetched records are thrown away with the position past them.** The fetcher hands aiokafka its
   live set of active partitions (faust/transport/consumer.py `_wait_next_records`, lines 797-805,
   through faust/transport/drivers/aiokafka.py `_fetch_records`, lines 1088-1108), and aiokafka
   reads an *empty* set as "every partition" (aiokafka/consumer/fetcher.py `fetched_records`,
   line 1221). While a table is recovered every stream partition is paused; when the changelog
   partitions are paused too ("Done reading from changelog topics", faust/tables/recovery.py
   lines 474-475) during a fetch's one-second wait, aiokafka returns the buffered records of the
   paused stream partitions, and Faust drops them because they are not active
   (faust/transport/consumer.py `getmany`, lines 758-765), although aiokafka already counts them
   as consumed.
2. **The rewind after recovery skips partitions without a commit.** `perform_seek` (lines 565-580)
   seeks to the committed offsets through aiokafka's `seek_to_committed`, which seeks only when a
   commit exists and is above 0 (aiokafka/consumer/consumer.py line 901), so on the others the
   dropped messages are never read again.

Later messages of such a partition are acknowledged, and Faust then commits past the hole: it
checks that an acknowledged run starts where the last commit ended only when it knows a committed
offset, and then loosely (`Consumer._new_offset`, lines 1097-1150: nothing is checked while the
committed offset is None or 0, and the run may start one offset late). In the default-settings
fault scenarios whole jobs were lost that way on the client role (whose `job-progress` table goes
through that recovery at every rebalance) and waited for the 120 s reconcile timer.

`SafeConsumer` closes both holes:
- `perform_seek` also seeks every partition without a commit to its first offset (where
  `auto_offset_reset="earliest"` starts), so whatever was fetched and dropped before is read again;
- `_new_offset` commits only the run of acknowledged offsets that starts exactly at the partition's
  *commit base*: its committed offset when the assignment was sought (its first offset when nothing
  is committed), then the end of each run committed. A message not acknowledged holds the commit
  where it is, and is read again by the partition's next owner. Bases survive a revocation, so work
  that finishes while the partition is being revoked (Faust's `wait_empty`) is still committed.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

log = logging.getLogger(__name__)


def committable_run(acked: list[int], base: int) -> list[int]:
    """The offsets of `acked` (sorted) that may be committed: the consecutive run from `base`.

    Offsets below `base` (acknowledged again after their commit) are not part of it; an empty
    list means the message at `base` has not been acknowledged.
    """
    start = bisect.bisect_left(acked, base)
    run: list[int] = []
    expected = base
    for offset in acked[start:]:
        if offset != expected:
            break
        run.append(offset)
        expected += 1
    return run


class TunedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, with the fetch wait of jobstream's settings.

    faust/transport/drivers/aiokafka.py `_create_worker_consumer` (lines 568-627 of the installed
    copy) creates the aiokafka consumer with `fetch_max_wait_ms=1500` and aiokafka's default
    `fetch_min_bytes=1`, and no setting reaches either: under load every fetch then returns as soon
    as one message arrived on any of the worker's partitions, and aiokafka 0.14 has no incremental
    fetch sessions, so each of those fetches names every assigned partition, both ways. The values
    are set on the consumer before it starts, which is when aiokafka hands them to its `Fetcher`
    (aiokafka/consumer/consumer.py `start`, lines 383-398).
    """

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        owner = self.consumer
        consumer._fetch_min_bytes = owner.fetch_min_bytes
        consumer._fetch_max_wait_ms = owner.fetch_max_wait_ms
        return consumer


class SafeConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, rewinding every partition and committing only from its base."""

    #: The fetch wait (see TunedConsumerThread); `tuned` makes a class with other values.
    fetch_min_bytes: int = 1
    fetch_max_wait_ms: int = 1500

    @classmethod
    def tuned(cls, fetch_min_bytes: int, fetch_max_wait_ms: int) -> type[SafeConsumer]:
        """This consumer class, fetching with these values."""
        return type(
            cls.__name__,
            (cls,),
            {"fetch_min_bytes": fetch_min_bytes, "fetch_max_wait_ms": fetch_max_wait_ms},
        )

    def _new_consumer_thread(self) -> TunedConsumerThread:
        return TunedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Per partition: the offset the next commit must start from (see the module docstring).
        self.commit_bases: dict[TP, int] = {}

    async def perform_seek(self) -> None:
        """Seek to the committed offsets, and partitions without one to their first offset."""
        await super().perform_seek()
        assigned = [tp for tp in self.assignment() if not self._is_changelog_tp(tp)]
        # None: nothing committed (Faust also reads a commit at 0 as None).
        unknown = [tp for tp in assigned if self._committed_offset.get(tp) is None]
        firsts: Mapping[TP, int] = {}
        if unknown:
            try:
                firsts = await self.earliest_offsets(*unknown)
                await self.seek_wait(firsts)
            except Exception as exc:  # their commits wait for the next seek: replays, not losses
                firsts = {}
                log.warning(
                    "could not seek %d partitions without a commit to their first offset (%r): "
                    "nothing is committed on them until the next rebalance",
                    len(unknown),
                    exc,
                )
        for tp in assigned:
            committed = self._committed_offset.get(tp)
            base = committed if committed is not None else firsts.get(tp)
            if base is None:
                self.commit_bases.pop(tp, None)  # unknown: nothing is committed until it is
            else:
                self.commit_bases[tp] = base

    def _new_offset(self, tp: TP) -> int | None:
        """The offset to commit for `tp`: after the acknowledged run from its base, or None.

        Replaces faust/transport/consumer.py `Consumer._new_offset` (lines 1097-1150), keeping its
        treatment of known gaps (offsets that do not exist, recorded in `_gap`).
        """
        acked = self._acked[tp]
        base = self.commit_bases.get(tp)
        if not acked or base is None:
            return None
        gaps = self._gap.get(tp)
        if gaps:
            top = max(acked)
            missing = sorted(gaps.overlap(0, top + 1), key=lambda interval: interval.begin)
            if missing:
                acked.extend(
                    offset
                    for interval in missing
                    for offset in range(interval.begin, interval.end)
                    if offset not in self._acked_index[tp]
                )
                gaps.chop(0, max(top + 1, missing[-1].end))
        acked.sort()
        stale = bisect.bisect_left(acked, base)
        if stale:  # acknowledged again after an earlier commit covered them
            self._forget(tp, acked[:stale])
            del acked[:stale]
        run = committable_run(acked, base)
        if not run:
            return None
        del acked[: len(run)]
        self._forget(tp, run)
        self.commit_bases[tp] = run[-1] + 1
        return run[-1] + 1

    def _forget(self, tp: TP, offsets: Iterable[int]) -> None:
        self._acked_index[tp].difference_update(offsets)
