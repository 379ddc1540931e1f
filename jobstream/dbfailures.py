"""What a failed database command says about the database: full, locked, down, or else.

Shared by the storage layer (a full database or a lock timeout is waited out, not taken for a
refusal of the command) and the command metrics (`mongo_command_failures_total{reason}`, which an
operator can alert on). Pure: codes and message fragments only.
"""

from __future__ import annotations

from typing import Literal

#: No space left to write: MongoDB's OutOfDiskSpace (src/mongo/base/error_codes.yml), and
#: PostgreSQL's disk_full behind FerretDB, which reports it as InternalError (code 1) with the
#: SQLSTATE in the message (`could not extend file ...: No space left on device (SQLSTATE 53100)`).
OUT_OF_SPACE_CODES = frozenset({14031})
OUT_OF_SPACE_SQLSTATES = ("SQLSTATE 53100",)
#: A lock held by someone else outlasted the command's wait: MongoDB's LockTimeout, and
#: PostgreSQL's lock_not_available behind FerretDB (its `lock_timeout`, 5 s on the local stack).
LOCK_TIMEOUT_CODES = frozenset({24})
LOCK_TIMEOUT_SQLSTATES = ("SQLSTATE 55P03",)

#: FerretDB lost (or cannot get) its connections to PostgreSQL, which is restarting or down: pgx's
#: dial error (`failed to connect to ...: connection refused`, no SQLSTATE), connection exceptions
#: (class 08), PostgreSQL shutting down or starting up (57P01-57P03), or out of connections
#: (53300). All reported as InternalError (code 1); MongoDB's own outages come as network errors.
BACKEND_UNAVAILABLE = (
    "failed to connect to",
    "SQLSTATE 08",
    "SQLSTATE 57P01",
    "SQLSTATE 57P02",
    "SQLSTATE 57P03",
    "SQLSTATE 53300",
)

Reason = Literal["out_of_space", "lock_timeout", "unavailable", "other"]


def backend_unavailable(message: str) -> bool:
    """Whether FerretDB says its PostgreSQL backend is unreachable (see BACKEND_UNAVAILABLE)."""
    return any(marker in message for marker in BACKEND_UNAVAILABLE)


def failure_reason(code: object, message: str) -> Reason:
    """Why a command failed, from its error code and message."""
    if code in OUT_OF_SPACE_CODES or any(s in message for s in OUT_OF_SPACE_SQLSTATES):
        return "out_of_space"
    if code in LOCK_TIMEOUT_CODES or any(s in message for s in LOCK_TIMEOUT_SQLSTATES):
        return "lock_timeout"
    if backend_unavailable(message):
        return "unavailable"
    return "other"
