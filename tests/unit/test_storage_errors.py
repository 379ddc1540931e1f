"""Which database errors are worth retrying (an outage, a full disk) and which are a refusal."""

from __future__ import annotations

import pytest
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
)

from jobstream.errors import StorageError
from jobstream.storage import _converted, is_out_of_space, is_transient


@pytest.mark.parametrize(
    "error",
    [
        AutoReconnect("connection closed"),
        NetworkTimeout("timed out"),
        ServerSelectionTimeoutError("no primary"),
        OperationFailure("not primary", code=10107),
        OperationFailure("interrupted at shutdown", code=11600),
        OperationFailure("[collection.go:291] ERROR: deadlock detected (SQLSTATE 40P01)", code=1),
        OperationFailure(
            "[collection.go:163] ERROR: canceling statement due to lock timeout (SQLSTATE 55P03)",
            code=1,
        ),
        OperationFailure("Unable to acquire lock", code=24),
        OperationFailure(
            "failed to connect to `user=ferretdb database=ferretdb`: 127.0.0.1:15432: dial error: "
            "dial tcp 127.0.0.1:15432: connect: connection refused",
            code=1,
        ),
        OperationFailure(
            "FATAL: terminating connection due to administrator command (SQLSTATE 57P01)", code=1
        ),
        OperationFailure("FATAL: the database system is starting up (SQLSTATE 57P03)", code=1),
        BulkWriteError({"writeErrors": [{"code": 91, "errmsg": "shutdown in progress"}]}),
    ],
)
def test_outages_elections_and_backend_deadlocks_are_transient(error: Exception) -> None:
    assert is_transient(error)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error",
    [
        OperationFailure("extended protocol limited to 65535 parameters", code=1),
        OperationFailure("document too large", code=10334),
        OperationFailure("unknown operator: $foo", code=2),
        BulkWriteError({"writeErrors": [{"code": 11000}, {"code": 91}]}),
    ],
)
def test_refusals_of_the_command_itself_are_not(error: Exception) -> None:
    assert not is_transient(error)  # type: ignore[arg-type]


#: What PostgreSQL behind FerretDB answered when its tablespace filled up (tried on a 16 MB tmpfs).
FERRETDB_DISK_FULL = (
    "[msg_update.go:133 handler.(*Handler).updateDocument] [update.go:114 common.UpdateDocument] "
    'ERROR: could not extend file "pg_tblspc/16496/PG_15_202209061/16384/16512": '
    "No space left on device (SQLSTATE 53100)"
)


@pytest.mark.parametrize(
    "error",
    [
        OperationFailure(FERRETDB_DISK_FULL, code=1),
        OperationFailure("Can't take a write lock while out of disk space", code=14031),
        BulkWriteError({"writeErrors": [{"code": 14031}, {"code": 11000}]}),
        BulkWriteError({"writeErrors": [{"code": 1, "errmsg": FERRETDB_DISK_FULL}]}),
    ],
)
def test_a_full_database_is_an_outage_of_writes_not_a_refusal(error: Exception) -> None:
    assert is_out_of_space(error)  # type: ignore[arg-type]
    assert is_transient(error)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error",
    [
        AutoReconnect("connection closed"),
        OperationFailure("[collection.go:291] ERROR: deadlock detected (SQLSTATE 40P01)", code=1),
        OperationFailure("document too large", code=10334),
        BulkWriteError({"writeErrors": [{"code": 11000}]}),
    ],
)
def test_other_failures_are_not_called_full(error: Exception) -> None:
    assert not is_out_of_space(error)  # type: ignore[arg-type]


async def test_the_storage_error_says_the_database_is_full() -> None:
    async def store() -> None:
        raise OperationFailure(FERRETDB_DISK_FULL, code=1)

    async def lose_connection() -> None:
        raise AutoReconnect("connection closed")

    with pytest.raises(StorageError) as full:
        await _converted(store)()
    assert (full.value.full, full.value.transient) == (True, True)
    with pytest.raises(StorageError) as down:
        await _converted(lose_connection)()
    assert (down.value.full, down.value.transient) == (False, True)
