"""The FerretDB listing index inserts a new slot's entries once per worker, however many POSTs of
that slot arrive together, and never leaves a job's slot unrecorded when an insert fails."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from jobstream.storage import SLOTS_PER_MINUTE, SlotIndex


class Collection:
    """insert_many only, slow enough for concurrent callers to overlap; may fail once."""

    def __init__(self, fail_first: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.stored: dict[str, str] = {}
        self.fail_first = fail_first

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
    minute = slot // SLOTS_PER_MINUTE
    return {
        f"h:{minute // 60}": "root",
        f"m:{minute}": f"h:{minute // 60}",
        f"s:{slot}": f"m:{minute}",
    }


async def test_concurrent_registrations_of_a_new_slot_insert_its_entries_once() -> None:
    collection = Collection()
    index = SlotIndex(collection)  # type: ignore[arg-type]
    await asyncio.gather(*(index.register([SLOT]) for _ in range(20)))
    assert collection.calls == [[key] for key in entries(SLOT)]  # one insert per level
    assert collection.stored == entries(SLOT)
    await index.register([SLOT])  # remembered: nothing more
    assert len(collection.calls) == 3


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
    assert [key[0] for key in order] == ["h"] + ["m"] + ["s"] * count
