"""Which database errors are worth retrying (an outage) and which are a refusal."""

from __future__ import annotations

import pytest
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
)

from jobstream.storage import is_transient


@pytest.mark.parametrize(
    "error",
    [
        AutoReconnect("connection closed"),
        NetworkTimeout("timed out"),
        ServerSelectionTimeoutError("no primary"),
        OperationFailure("not primary", code=10107),
        OperationFailure("interrupted at shutdown", code=11600),
        OperationFailure("[collection.go:291] ERROR: deadlock detected (SQLSTATE 40P01)", code=1),
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
