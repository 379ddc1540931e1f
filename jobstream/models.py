"""The events that travel over Kafka and the documents the API returns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

import orjson

T = TypeVar("T")

JobStatus = Literal["in_progress", "completed", "cancelled"]
OperationStatus = Literal["pending", "succeeded", "failed"]


class InvalidEvent(ValueError):
    """An event from Kafka cannot be decoded or does not have the expected shape."""


@dataclass(frozen=True, slots=True)
class OperationRequest:
    """One operation to compute, sent by a client worker to `application.operation.request`."""

    #: The job the operation belongs to (also the message key).
    job_id: str
    #: 1-based position of the operation in its job; its id is "<job_id>-<index>".
    index: int
    #: How many operations the job has (lets the progress table know when it is done).
    total: int
    #: The expression text, as submitted.
    expression: str
    #: Delivery attempt: 1 when first published, +1 per reconciliation re-publish.
    attempt: int = 1

    def to_bytes(self) -> bytes:
        """The wire form (JSON)."""
        return orjson.dumps(
            {
                "job_id": self.job_id,
                "index": self.index,
                "total": self.total,
                "expression": self.expression,
                "attempt": self.attempt,
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> OperationRequest:
        """Decode and validate the wire form; raises InvalidEvent."""
        data = _decode(raw)
        return cls(
            job_id=_field(data, "job_id", str),
            index=_field(data, "index", int),
            total=_field(data, "total", int),
            expression=_field(data, "expression", str),
            attempt=_field(data, "attempt", int),
        )


@dataclass(frozen=True, slots=True)
class OperationResult:
    """The outcome of one operation, sent by a server worker to `application.operation.response`."""

    #: The job the operation belongs to (also the message key, so a job stays on one partition).
    job_id: str
    #: 1-based position of the operation in its job.
    index: int
    #: How many operations the job has.
    total: int
    #: "succeeded" or "failed".
    status: OperationStatus
    #: The canonical decimal result when succeeded, otherwise None.
    result: str | None = None
    #: What went wrong, and where, when failed, otherwise None.
    error: str | None = None

    @property
    def operation_id(self) -> str:
        """The id of the operation this result is for."""
        return operation_id(self.job_id, self.index)

    def to_bytes(self) -> bytes:
        """The wire form (JSON)."""
        return orjson.dumps(
            {
                "job_id": self.job_id,
                "index": self.index,
                "total": self.total,
                "status": self.status,
                "result": self.result,
                "error": self.error,
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> OperationResult:
        """Decode and validate the wire form; raises InvalidEvent."""
        data = _decode(raw)
        status = _field(data, "status", str)
        if status not in ("succeeded", "failed"):
            raise InvalidEvent(f"status must be 'succeeded' or 'failed', got {status!r}")
        return cls(
            job_id=_field(data, "job_id", str),
            index=_field(data, "index", int),
            total=_field(data, "total", int),
            status=status,  # type: ignore[arg-type]
            result=_optional(data, "result"),
            error=_optional(data, "error"),
        )


def _decode(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        raise InvalidEvent("event has no value")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"event is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidEvent(f"event must be a JSON object, got {type(data).__name__}")
    return data


def _field(data: dict[str, Any], name: str, kind: type[T]) -> T:
    value = data.get(name)
    # bool is an int in Python; an index of `true` is still a wrong schema
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InvalidEvent(f"field {name!r} must be {kind.__name__}, got {value!r:.50}")
    return value


def _optional(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidEvent(f"field {name!r} must be a string or null, got {value!r:.50}")
    return value


@dataclass(frozen=True)
class Job:
    """A job as stored and as the API shows it."""

    id: str
    status: JobStatus
    total: int
    succeeded: int
    failed: int
    created_at: datetime
    finished_at: datetime | None

    @property
    def pending(self) -> int:
        """Operations without a terminal result yet."""
        return max(self.total - self.succeeded - self.failed, 0)

    def to_json(self) -> dict[str, Any]:
        """The API's representation."""
        return {
            "id": self.id,
            "status": self.status,
            "operations": {
                "total": self.total,
                "succeeded": self.succeeded,
                "failed": self.failed,
                "pending": self.pending,
            },
            "created_at": _iso(self.created_at),
            "finished_at": _iso(self.finished_at),
        }


@dataclass(frozen=True)
class Operation:
    """One operation of a job, as stored and as the API shows it."""

    id: str
    job_id: str
    index: int
    expression: str
    status: OperationStatus
    result: str | None
    error: str | None

    def to_json(self) -> dict[str, Any]:
        """The API's representation."""
        return {
            "id": self.id,
            "job_id": self.job_id,
            "index": self.index,
            "expression": self.expression,
            "status": self.status,
            "result": self.result,
            "error": self.error,
        }


def operation_id(job_id: str, index: int) -> str:
    """The id of a job's index-th operation (deterministic, so retried inserts stay idempotent)."""
    return f"{job_id}-{index}"


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")
