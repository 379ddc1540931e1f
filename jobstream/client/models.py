"""What the client returns: the API's documents as frozen dataclasses.

Each keeps the document it was read from in `raw`, so fields a newer API adds are not lost (the
command line prints `raw` for `--json`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobstream.client.errors import ProtocolError

#: Job statuses after which nothing changes any more.
FINISHED = frozenset({"completed", "cancelled"})


@dataclass(frozen=True)
class Submission:
    """The API's answer to a new job."""

    #: The job's id (32 hexadecimal digits).
    id: str
    #: How many operations the job has.
    created_operations: int
    #: "in_progress" when accepted.
    status: str
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> Submission:
        """Read the API's `201` body."""
        doc = _object(data, "submission")
        return cls(
            id=_get(doc, "id", str),
            created_operations=_get(doc, "created_operations", int),
            status=_get(doc, "status", str),
            raw=doc,
        )


@dataclass(frozen=True)
class Job:
    """A job and its counters."""

    id: str
    #: "in_progress", "completed" (or "cancelled").
    status: str
    total: int
    succeeded: int
    failed: int
    pending: int
    created_at: datetime
    finished_at: datetime | None
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def finished(self) -> bool:
        """Whether the job has reached a status it will not leave."""
        return self.status in FINISHED

    @property
    def done(self) -> int:
        """Operations with a result or an error."""
        return self.succeeded + self.failed

    @classmethod
    def from_json(cls, data: Any) -> Job:
        """Read the API's job document."""
        doc = _object(data, "job")
        counts = _object(doc.get("operations"), "job.operations")
        finished_at = doc.get("finished_at")
        return cls(
            id=_get(doc, "id", str),
            status=_get(doc, "status", str),
            total=_get(counts, "total", int),
            succeeded=_get(counts, "succeeded", int),
            failed=_get(counts, "failed", int),
            pending=_get(counts, "pending", int),
            created_at=_time(_get(doc, "created_at", str)),
            finished_at=None if finished_at is None else _time(finished_at),
            raw=doc,
        )


@dataclass(frozen=True)
class Operation:
    """One operation of a job, with its result or error once it has one."""

    #: "<job_id>-<index>".
    id: str
    job_id: str
    #: 1-based position in the job.
    index: int
    expression: str
    #: "pending", "succeeded" or "failed".
    status: str
    #: The exact decimal result when succeeded.
    result: str | None
    #: What went wrong, and where, when failed.
    error: str | None
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> Operation:
        """Read the API's operation document."""
        doc = _object(data, "operation")
        return cls(
            id=_get(doc, "id", str),
            job_id=_get(doc, "job_id", str),
            index=_get(doc, "index", int),
            expression=_get(doc, "expression", str),
            status=_get(doc, "status", str),
            result=_optional(doc, "result"),
            error=_optional(doc, "error"),
            raw=doc,
        )


def _object(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ProtocolError(f"expected a JSON object for the {what}, got {type(data).__name__}")
    return data


def _get(doc: dict[str, Any], name: str, kind: type) -> Any:
    value = doc.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError(f"field {name!r} should be {kind.__name__}, got {value!r:.60}")
    return value


def _optional(doc: dict[str, Any], name: str) -> str | None:
    value = doc.get(name)
    if value is not None and not isinstance(value, str):
        raise ProtocolError(f"field {name!r} should be a string or null, got {value!r:.60}")
    return value


def _time(text: Any) -> datetime:
    if not isinstance(text, str):
        raise ProtocolError(f"expected a timestamp, got {text!r:.60}")
    try:
        return datetime.fromisoformat(text)  # Python 3.11 reads the trailing "Z"
    except ValueError:
        raise ProtocolError(f"malformed timestamp {text!r:.60}") from None
