"""Behaviour of the MongoDB command listener: counts, outcomes, origins, documents written.

PyMongo's own event objects are fed to the listener directly: no database, no network.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from pymongo import AsyncMongoClient
from pymongo.monitoring import CommandFailedEvent, CommandStartedEvent, CommandSucceededEvent

from jobstream import dbmetrics
from jobstream.dbmetrics import API_READ, command_listener, documents_written, origin

ADDRESS = ("127.0.0.1", 27017)
_request_ids = itertools.count(1)


def started(command: dict[str, Any]) -> CommandStartedEvent:
    return CommandStartedEvent(command, "db", next(_request_ids), ADDRESS, None)


def succeeded(name: str, reply: dict[str, Any], ms: float = 2.0) -> CommandSucceededEvent:
    return CommandSucceededEvent(
        timedelta(milliseconds=ms), reply, name, next(_request_ids), ADDRESS, None
    )


def failed(name: str, ms: float = 2.0, errmsg: str = "boom", code: int = 2) -> CommandFailedEvent:
    failure = {"ok": 0, "errmsg": errmsg, "code": code}
    return CommandFailedEvent(
        timedelta(milliseconds=ms), failure, name, next(_request_ids), ADDRESS, None
    )


def commands(
    registry: CollectorRegistry,
    name: str,
    outcome: str = "succeeded",
    origin: str = dbmetrics.DEFAULT_ORIGIN,
) -> float:
    labels = {"command": name, "outcome": outcome, "origin": origin}
    return registry.get_sample_value("mongo_commands_total", labels) or 0.0


def written(registry: CollectorRegistry, name: str) -> float:
    return registry.get_sample_value("mongo_documents_written_total", {"command": name}) or 0.0


# --- counting commands -------------------------------------------------------------------------


def test_each_command_is_counted_once_under_its_name() -> None:
    # Given a listener on a fresh registry
    registry = CollectorRegistry()
    listener = command_listener(registry)

    # When two finds and an insert are sent and answered
    sent = [
        ("find", {"find": "jobs"}, {"ok": 1}),
        ("find", {"find": "jobs"}, {"ok": 1}),
        ("insert", {"insert": "jobs", "documents": [{}]}, {"ok": 1, "n": 1}),
    ]
    for name, command, reply in sent:
        listener.started(started(command))
        listener.succeeded(succeeded(name, reply))

    # Then each is counted once, under its own name, and a start alone counts nothing
    assert commands(registry, "find") == 2
    assert commands(registry, "insert") == 1
    listener.started(started({"update": "jobs"}))
    assert commands(registry, "update") == 0


def test_a_failed_command_is_counted_as_failed_and_timed() -> None:
    # Given a listener
    registry = CollectorRegistry()
    listener = command_listener(registry)

    # When an update fails after 40 ms
    listener.failed(failed("update", ms=40.0))

    # Then it is a failed command, not a succeeded one, and its time is in the histogram
    assert commands(registry, "update", outcome="failed") == 1
    assert commands(registry, "update") == 0
    labels = {"command": "update"}
    assert registry.get_sample_value("mongo_command_duration_seconds_count", labels) == 1
    assert registry.get_sample_value("mongo_command_duration_seconds_sum", labels) == pytest.approx(
        0.040
    )
    assert written(registry, "update") == 0


def test_failures_say_whether_the_database_is_full_or_locked() -> None:
    registry = CollectorRegistry()
    listener = command_listener(registry)

    # FerretDB's forms (PostgreSQL's SQLSTATE in the message) and MongoDB's codes
    listener.failed(failed("update", errmsg="No space left on device (SQLSTATE 53100)", code=1))
    listener.failed(
        failed("insert", errmsg="Can't take a write lock while out of disk space", code=14031)
    )
    listener.failed(
        failed("update", errmsg="canceling statement due to lock timeout (SQLSTATE 55P03)", code=1)
    )
    listener.failed(failed("find", errmsg="Unable to acquire lock", code=24))
    listener.failed(failed("find", errmsg="failed to connect to `user=ferretdb`", code=1))
    listener.failed(failed("find"))

    def failures(command: str, reason: str) -> float:
        labels = {"command": command, "reason": reason}
        return registry.get_sample_value("mongo_command_failures_total", labels) or 0.0

    assert failures("update", "out_of_space") == 1
    assert failures("insert", "out_of_space") == 1
    assert failures("update", "lock_timeout") == 1
    assert failures("find", "lock_timeout") == 1
    assert failures("find", "unavailable") == 1
    assert failures("find", "other") == 1


def test_durations_fall_into_their_buckets() -> None:
    # Given a listener
    registry = CollectorRegistry()
    listener = command_listener(registry)

    # When a find takes 0.3 ms and another 30 ms
    listener.succeeded(succeeded("find", {"ok": 1}, ms=0.3))
    listener.succeeded(succeeded("find", {"ok": 1}, ms=30.0))

    # Then one is under 1 ms, both are under 50 ms, and the sum is theirs
    def bucket(le: str) -> float | None:
        labels = {"command": "find", "le": le}
        return registry.get_sample_value("mongo_command_duration_seconds_bucket", labels)

    assert bucket("0.001") == 1
    assert bucket("0.05") == 2
    assert registry.get_sample_value(
        "mongo_command_duration_seconds_sum", {"command": "find"}
    ) == pytest.approx(0.0303)


# --- documents written -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "reply", "expected"),
    [
        # insert: what the server inserted, not what was sent (two duplicates refused)
        ("insert", {"ok": 1, "n": 3, "writeErrors": [{"code": 11000}, {"code": 11000}]}, 3),
        # update: modified plus upserted; matched-but-unchanged documents are not writes
        ("update", {"ok": 1, "n": 5, "nModified": 2}, 2),
        ("update", {"ok": 1, "n": 2, "nModified": 1, "upserted": [{"index": 1, "_id": "x"}]}, 2),
        ("update", {"ok": 1, "n": 4, "nModified": 0}, 0),
        ("delete", {"ok": 1, "n": 20}, 20),
        ("findAndModify", {"ok": 1, "lastErrorObject": {"n": 1, "updatedExisting": True}}, 1),
        ("findAndModify", {"ok": 1, "lastErrorObject": {"n": 0}, "value": None}, 0),
        (
            "bulkWrite",
            {"ok": 1, "nInserted": 2, "nModified": 3, "nUpserted": 1, "nDeleted": 4},
            10,
        ),
        ("find", {"ok": 1, "cursor": {"firstBatch": [{}, {}], "id": 0}}, 0),
        ("count", {"ok": 1, "n": 50_000}, 0),  # a read's `n` is not a write
    ],
)
def test_documents_written_follow_the_servers_reply(
    command: str, reply: dict[str, Any], expected: int
) -> None:
    # Given / When / Then the reply of a successful command tells how many documents it wrote
    assert documents_written(command, reply) == expected


@pytest.mark.parametrize(
    "reply",
    [
        {"ok": 1},
        {"ok": 1, "n": "3"},
        {"ok": 1, "n": None},
        {"ok": 1, "n": -1},
        {"ok": 1, "n": True},
    ],
)
def test_a_reply_without_a_usable_count_writes_nothing(reply: dict[str, Any]) -> None:
    # Given a reply that lacks a count, or holds something that is not one: nothing is claimed
    assert documents_written("insert", reply) == 0


def test_the_listener_adds_up_documents_and_refusals_per_command() -> None:
    # Given a listener
    registry = CollectorRegistry()
    listener = command_listener(registry)

    # When an insert stores 10 documents and refuses 2 duplicates, and an update modifies 3
    listener.succeeded(succeeded("insert", {"ok": 1, "n": 10, "writeErrors": [{}, {}]}))
    listener.succeeded(succeeded("update", {"ok": 1, "n": 3, "nModified": 3}))
    listener.succeeded(succeeded("update", {"ok": 1, "n": 1, "nModified": 0}))

    # Then 13 documents were written, and the 2 refusals are counted apart
    assert written(registry, "insert") == 10
    assert written(registry, "update") == 3
    refused = registry.get_sample_value("mongo_write_errors_total", {"command": "insert"})
    assert refused == 2


# --- origin ------------------------------------------------------------------------------------


def test_commands_sent_inside_an_origin_block_carry_its_label() -> None:
    # Given a listener
    registry = CollectorRegistry()
    listener = command_listener(registry)

    # When a find is answered inside an API-read block, and another outside it
    with origin(API_READ):
        listener.succeeded(succeeded("find", {"ok": 1}))
    listener.succeeded(succeeded("find", {"ok": 1}))

    # Then one carries the API-read origin and the other the default
    assert commands(registry, "find", origin=API_READ) == 1
    assert commands(registry, "find") == 1


async def test_the_origin_reaches_tasks_started_inside_the_block() -> None:
    # Given a listener, and a command answered in a task started inside an origin block
    registry = CollectorRegistry()
    listener = command_listener(registry)

    async def answer() -> None:
        await asyncio.sleep(0)
        listener.succeeded(succeeded("find", {"ok": 1}))

    with origin(API_READ):
        task = asyncio.create_task(answer())
    await task

    # Then the task's command carries the block's origin, though the block ended before
    assert commands(registry, "find", origin=API_READ) == 1
    assert dbmetrics.current_origin() == dbmetrics.DEFAULT_ORIGIN


# --- the registry and the client ---------------------------------------------------------------


def test_one_listener_per_registry_and_registries_stay_apart() -> None:
    # Given two workers' registries
    first, second = CollectorRegistry(), CollectorRegistry()

    # When the listener is asked for twice on the first and once on the second
    a, b, c = command_listener(first), command_listener(first), command_listener(second)
    a.succeeded(succeeded("insert", {"ok": 1, "n": 1}))

    # Then the first registry has one listener (no duplicate metrics), the second its own
    assert a is b and a is not c
    assert commands(first, "insert") == 1
    assert commands(second, "insert") == 0
    assert b"mongo_commands_total" in generate_latest(second)


async def test_the_driver_accepts_the_listener() -> None:
    # Given a listener
    listener = command_listener(CollectorRegistry())

    # When a client is created with it (no command sent, so no connection is made)
    client: AsyncMongoClient = AsyncMongoClient(
        "mongodb://127.0.0.1:1/", connect=False, event_listeners=[listener]
    )

    # Then the driver registered it as a command listener
    try:
        assert listener in client.options.event_listeners
    finally:
        await client.close()


def test_the_module_imports_neither_faust_nor_aiohttp() -> None:
    # Given a fresh interpreter, when only jobstream.dbmetrics is imported
    code = (
        "import sys, jobstream.dbmetrics; "
        "print(sorted(m for m in ('faust', 'aiohttp', 'mode') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout

    # Then neither Faust nor aiohttp was loaded
    assert out.strip() == "[]"
