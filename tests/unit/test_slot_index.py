"""The FerretDB listing index inserts a new slot's entries once per worker, however many POSTs of
that slot arrive together, and never leaves a job's slot unrecorded when an insert fails; its walk
gives slots in order whatever the index's layout, and reads the current time's path at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from jobstream.storage import SLOTS_PER_MINUTE, SlotIndex, slot_of, slot_path


class Cursor:
    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs

    def __aiter__(self) -> Any:
        async def each() -> Any:
            for doc in self.docs:
                yield doc

        return each()


class Collection:
    """The listing collection's commands, slow enough for concurrent callers to overlap; its
    first insert may fail."""

    def __init__(self, fail_first: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.stored: dict[str, str] = {}
        self.fail_first = fail_first
        #: parents whose children were read, in order
        self.reads: list[str] = []

    def find(self, query: dict[str, str], projection: Any = None, **_: Any) -> Cursor:
        self.reads.append(query["parent"])
        return Cursor([{"_id": k} for k, p in self.stored.items() if p == query["parent"]])

    async def find_one(self, query: dict[str, str], projection: Any = None) -> Any:
        for key, parent in self.stored.items():
            if query.get("_id", key) == key and query.get("parent", parent) == parent:
                return {"_id": key, "parent": parent}
        return None

    async def delete_one(self, query: dict[str, str]) -> None:
        self.stored.pop(query["_id"], None)

    async def insert_many(self, docs: list[dict[str, Any]], ordered: bool = True) -> Any:
        self.calls.append([d["_id"] for d in docs])
        for _ in range(5):
            await asyncio.sleep(0)
        if self.fail_first:
            self.fail_first = False
            raise ConnectionError("the database went away")
        for doc in docs:
            self.stored[doc["_id"]] = doc["parent"]
        return type("Outcome", (), {"inserted_ids": [d["_id"] for d in docs]})()


SLOT = 1_000 * SLOTS_PER_MINUTE * 60 + 7  # some slot of hour 1000


def entries(slot: int) -> dict[str, str]:
    return dict(slot_path(slot))


async def test_concurrent_registrations_of_a_new_slot_insert_its_entries_once() -> None:
    collection = Collection()
    index = SlotIndex(collection)  # type: ignore[arg-type]
    await asyncio.gather(*(index.register([SLOT]) for _ in range(20)))
    assert collection.calls == [[key] for key in entries(SLOT)]  # one insert per level
    assert collection.stored == entries(SLOT)
    await index.register([SLOT])  # remembered: nothing more
    assert len(collection.calls) == 5


async def test_a_failed_insert_is_retried_by_those_who_waited_for_it() -> None:
    collection = Collection(fail_first=True)
    index = SlotIndex(collection)  # type: ignore[arg-type]
    outcomes = await asyncio.gather(
        *(index.register([SLOT]) for _ in range(5)), return_exceptions=True
    )
    assert isinstance(outcomes[0], ConnectionError)  # the first caller's insert failed: it raises
    assert outcomes[1:] == [None] * 4  # the others recorded the slot themselves
    assert collection.stored == entries(SLOT)


@pytest.mark.parametrize("count", [1, 3])
async def test_every_level_is_recorded_before_the_next(count: int) -> None:
    collection = Collection()
    index = SlotIndex(collection)  # type: ignore[arg-type]
    slots = [SLOT + i for i in range(count)]
    await index.register(slots)
    order = [key for call in collection.calls for key in call]
    assert [key[0] for key in order] == ["d", "h", "m", "g"] + ["s"] * count


async def walk(index: SlotIndex, **bounds: Any) -> list[int]:
    return [slot async for slot in index.slots(**bounds)]


# slots spread over two days, hours, minutes and six-second groups
SLOTS = [SLOT + d for d in (0, 1, 59, 60, 599, 600, 36_000, 864_000, 864_001, 2 * 864_000 + 5)]


async def test_the_walk_gives_every_slot_newest_first_or_oldest_first_within_bounds() -> None:
    index = SlotIndex(Collection())  # type: ignore[arg-type]
    await index.register(SLOTS[::-1])
    assert await walk(index, before=1 << 62) == sorted(SLOTS, reverse=True)
    assert await walk(index, after=0) == sorted(SLOTS)
    assert await walk(index, before=SLOTS[5]) == sorted(SLOTS[:6], reverse=True)
    assert await walk(index, after=SLOTS[3]) == sorted(SLOTS[3:])


async def test_an_index_of_the_earlier_three_levels_is_walked_in_order_beside_the_new() -> None:
    # Given slots recorded by an earlier version (root > h > m > s) between newer ones
    collection = Collection()
    index = SlotIndex(collection)  # type: ignore[arg-type]
    legacy = [SLOT + 300, SLOT + 36_000 + 1, SLOT + 864_000 + 2]
    for slot in legacy:
        minute = slot // SLOTS_PER_MINUTE
        collection.stored.setdefault(f"h:{minute // 60}", "root")
        collection.stored.setdefault(f"m:{minute}", f"h:{minute // 60}")
        collection.stored[f"s:{slot}"] = f"m:{minute}"
    await index.register(SLOTS)
    # Then the walk merges both layouts in order, each slot once
    assert await walk(index, before=1 << 62) == sorted(SLOTS + legacy, reverse=True)
    assert await walk(index, after=0) == sorted(SLOTS + legacy)


async def test_the_path_to_a_near_slot_is_read_in_the_first_round_trip() -> None:
    collection = Collection()
    index = SlotIndex(collection)  # type: ignore[arg-type]
    await index.register(SLOTS)
    newest = max(SLOTS)
    async for slot in index.slots(before=newest, near=[newest]):
        assert slot == newest
        break
    # root and the four entries above the newest slot, read at once; nothing read after
    assert sorted(collection.reads) == sorted(["root", *[k for k, _ in slot_path(newest)[:-1]]])


async def test_forgetting_a_slot_drops_the_parents_it_leaves_childless() -> None:
    collection = Collection()
    index = SlotIndex(collection)  # type: ignore[arg-type]
    await index.register([SLOT, SLOT + 1])
    await index.forget(SLOT)
    assert collection.stored == entries(SLOT + 1)
    await index.forget(SLOT + 1)
    assert collection.stored == {}
    await index.register([SLOT + 1])  # forgotten entries are inserted again
    assert collection.stored == entries(SLOT + 1)


async def test_forgetting_many_slots_drops_every_parent_they_leave_childless() -> None:
    # Given slots under two minutes, and one more slot that keeps the second minute
    collection = Collection()
    index = SlotIndex(collection)  # type: ignore[arg-type]
    first = [SLOT, SLOT + 1, SLOT + 70]  # two six-second groups of one minute
    later = SLOT + 6 * SLOTS_PER_MINUTE
    await index.register([*first, later, later + 1])

    # When all of the first minute's slots and one of the other's are forgotten at once
    await index.forget_many([*first, later])

    # Then what is left is exactly the index of the one remaining slot
    assert collection.stored == entries(later + 1)
    assert await walk(index, after=0) == [later + 1]


async def test_closed_entries_are_read_once_a_minute_open_ones_every_time() -> None:
    # Given slots of long ago (closed) and of now (open), and a clock the test moves
    collection = Collection()
    clock = [0.0]
    index = SlotIndex(collection, clock=lambda: clock[0])  # type: ignore[arg-type]
    now = slot_of(datetime.now(UTC))
    await index.register([SLOT, now])
    assert await walk(index, before=now) == [now, SLOT]

    # When the walk runs again within CLOSED_SECONDS
    collection.reads.clear()
    assert await walk(index, before=now) == [now, SLOT]
    # Then the entries above the old slot are not read again; root and those of now are
    old_path = {key for key, _ in slot_path(SLOT)[:-1]}
    assert not old_path & set(collection.reads)
    assert {"root", *[k for k, _ in slot_path(now)[:-1]]} <= set(collection.reads)

    # And a slot added under a closed entry (the benchmark's prefill) is listed once that passed
    await SlotIndex(collection).register([SLOT + 1])  # type: ignore[arg-type]
    assert await walk(index, before=now) == [now, SLOT]
    clock[0] += SlotIndex.CLOSED_SECONDS + 1
    assert await walk(index, before=now) == [now, SLOT + 1, SLOT]
