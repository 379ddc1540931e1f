"""The consumer commits only runs of acknowledged offsets that start where the last commit ended.

Faust's own rule (faust/transport/consumer.py `Consumer._new_offset`) commits over a message that
was delivered but never acknowledged when it knows no committed offset, or when that message is the
first one after it; jobstream's default-settings fault scenarios lost whole jobs that way.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from intervaltree import IntervalTree

from jobstream.app import create_app
from jobstream.consumer import SafeConsumer, TunedConsumerThread, committable_run
from jobstream.memory import MemoryRepository
from jobstream.settings import Settings

TOPIC = "application.operation.request"
P3 = TP(TOPIC, 3)
P4 = TP(TOPIC, 4)


def test_the_run_starts_at_the_base_and_ends_at_the_first_hole() -> None:
    assert committable_run([10, 11, 12, 14], base=10) == [10, 11, 12]


def test_nothing_is_committable_while_the_base_is_not_acknowledged() -> None:
    assert committable_run([11, 12, 13], base=10) == []


def test_offsets_below_the_base_are_not_part_of_the_run() -> None:
    assert committable_run([3, 4, 10, 11], base=10) == [10, 11]


@pytest.mark.parametrize("role", ["client", "server"])
def test_both_roles_consume_with_the_safe_consumer(role: str) -> None:
    app = create_app(Settings(role=role), repository=MemoryRepository())  # type: ignore[arg-type]
    assert issubclass(app.transport.Consumer, SafeConsumer)


async def test_the_worker_consumer_fetches_with_the_settings_fetch_wait() -> None:
    """Faust builds its aiokafka consumer with fetch_max_wait_ms=1500 and fetch_min_bytes=1 and no
    setting to change them; the aiokafka consumer it builds here carries the settings' values."""
    settings = Settings(role="server", fetch_min_bytes=4096, fetch_max_wait_ms=7)
    app = create_app(settings)
    consumer = bare(app.transport.Consumer)
    consumer.in_transaction = False
    thread = TunedConsumerThread.__new__(TunedConsumerThread)
    thread.consumer = consumer
    thread.app = app
    client = thread._create_worker_consumer(app.transport)
    try:
        assert (client._fetch_min_bytes, client._fetch_max_wait_ms) == (4096, 7)
    finally:
        await client.stop()  # never started: releases the client's resources only


def bare(cls: type) -> Any:
    """A consumer of `cls` with only the bookkeeping the commit rule reads (building a real one
    starts its thread's event loop)."""
    consumer = cls.__new__(cls)
    consumer._acked = defaultdict(list)
    consumer._acked_index = defaultdict(set)
    consumer._gap = defaultdict(IntervalTree)
    consumer._committed_offset = defaultdict(lambda: None)
    consumer._read_offset = defaultdict(lambda: None)
    consumer.commit_bases = {}
    consumer._is_changelog_tp = lambda tp: False
    return consumer


def safe_consumer() -> Any:
    return bare(SafeConsumer)


def acknowledge(consumer: Any, tp: TP, *offsets: int) -> None:
    """What Faust's Consumer.ack records for each acknowledged message."""
    for offset in offsets:
        consumer._acked[tp].append(offset)
        consumer._acked_index[tp].add(offset)


def test_faust_alone_commits_over_an_unacknowledged_message() -> None:
    """The upstream behaviour worked around; if this fails, Faust changed and the work-around
    in jobstream/consumer.py may be unnecessary."""
    upstream = bare(faust_aiokafka.Consumer)
    # Nothing committed yet (a fresh partition, or one being revoked): 10 was delivered and is
    # still being processed, 11 and 12 are done.
    acknowledge(upstream, P3, 11, 12)
    assert upstream._new_offset(P3) == 13
    # Committed at 20: 20 is still being processed, 21 is done.
    upstream._committed_offset[P4] = 20
    acknowledge(upstream, P4, 21)
    assert upstream._new_offset(P4) == 22


def test_a_message_not_acknowledged_at_the_base_holds_the_commit() -> None:
    consumer = safe_consumer()
    consumer.commit_bases[P3] = 10
    acknowledge(consumer, P3, 11, 12)
    assert consumer._new_offset(P3) is None

    acknowledge(consumer, P3, 10)
    assert consumer._new_offset(P3) == 13
    assert consumer.commit_bases[P3] == 13
    assert consumer._acked[P3] == []


def test_the_first_message_after_the_base_is_not_skipped() -> None:
    consumer = safe_consumer()
    consumer.commit_bases[P3] = 20
    acknowledge(consumer, P3, 21, 22)
    assert consumer._new_offset(P3) is None


def test_nothing_is_committed_for_a_partition_without_a_base() -> None:
    consumer = safe_consumer()
    acknowledge(consumer, P3, 0, 1, 2)
    assert consumer._new_offset(P3) is None


def test_acknowledgements_below_the_base_are_dropped() -> None:
    consumer = safe_consumer()
    consumer.commit_bases[P3] = 10
    acknowledge(consumer, P3, 5, 6, 10)
    assert consumer._new_offset(P3) == 11
    assert consumer._acked[P3] == []
    assert not consumer._acked_index[P3]


async def test_partitions_without_a_commit_are_sought_to_their_first_offset() -> None:
    """Faust seeks only partitions with a commit above 0, so what was fetched and dropped on the
    others (see jobstream/consumer.py) would never be read again."""
    consumer = safe_consumer()
    sought: list[dict[TP, int]] = []

    async def seek_to_committed() -> dict[TP, int | None]:
        return {P3: 42, P4: None}  # nothing committed on P4 yet

    async def earliest_offsets(*tps: TP) -> dict[TP, int]:
        assert tps == (P4,)
        return {P4: 0}

    async def seek_wait(partitions: dict[TP, int]) -> None:
        sought.append(dict(partitions))

    consumer.seek_to_committed = seek_to_committed
    consumer.earliest_offsets = earliest_offsets
    consumer.seek_wait = seek_wait
    consumer.assignment = lambda: {P3, P4}
    await consumer.perform_seek()
    assert sought == [{P4: 0}]
    assert consumer.commit_bases == {P3: 42, P4: 0}

    # Where Faust knows no committed offset, the first message must be acknowledged first.
    acknowledge(consumer, P4, 1, 2)
    assert consumer._new_offset(P4) is None
    acknowledge(consumer, P4, 0)
    assert consumer._new_offset(P4) == 3


async def test_a_partition_that_could_not_be_sought_commits_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer = safe_consumer()
    consumer.commit_bases[P4] = 7  # from an earlier assignment

    async def seek_to_committed() -> dict[TP, int | None]:
        return {P3: 42, P4: None}

    async def earliest_offsets(*tps: TP) -> dict[TP, int]:
        raise TimeoutError("no answer")

    consumer.seek_to_committed = seek_to_committed
    consumer.earliest_offsets = earliest_offsets
    consumer.assignment = lambda: {P3, P4}
    await consumer.perform_seek()

    assert consumer.commit_bases == {P3: 42}
    assert "could not seek 1 partitions without a commit" in caplog.text
