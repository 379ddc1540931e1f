"""The events that travel over Kafka and the documents the API returns."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import orjson

T = TypeVar("T")

JobStatus = Literal["in_progress", "completed", "cancelled"]
#: The statuses the jobs listing can be filtered on (a deleted job is never listed).
ListedStatus = Literal["in_progress", "completed"]
LISTED_STATUSES: tuple[ListedStatus, ...] = ("in_progress", "completed")
OperationStatus = Literal["pending", "succeeded", "failed"]


class InvalidEvent(ValueError):
    """An event from Kafka cannot be decoded or does not have the expected shape."""


#: Operations (or results) of one job that one Kafka message carries at most.
MAX_PER_MESSAGE = 100
#: Bytes of expressions (or results and errors), as encoded in the message's JSON, that one message
#: carries at most, unless a single operation is longer: keeps messages far below Kafka's 1 MiB.
MAX_MESSAGE_TEXT_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class OperationRequest:
    """One operation to compute; requests travel in batches (see `request_messages`)."""

    #: The job the operation belongs to.
    job_id: str
    #: 1-based position of the operation in its job; its id is "<job_id>-<index>".
    index: int
    #: How many operations the job has (lets the progress table know when it is done).
    total: int
    #: The expression text, as submitted.
    expression: str
    #: Delivery attempt: 1 when first published, +1 per reconciliation re-publish.
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class OperationResult:
    """The outcome of one operation; results travel in batches (see `result_messages`)."""

    #: The job the operation belongs to (the message key, so a job stays on one partition).
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


def request_messages(requests: Iterable[OperationRequest]) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) messages for `application.operation.request`, in order.

    Consecutive requests of one job (and attempt) share a message, up to MAX_PER_MESSAGE and
    MAX_MESSAGE_TEXT_BYTES; the key is the id of the message's first operation, which spreads a big
    job over every partition. The value is JSON:
    `{"job_id", "total", "attempt", "operations": [{"index", "expression"}, ...]}`.
    """
    for group in _grouped(requests, lambda r: (r.job_id, r.total, r.attempt), _request_bytes):
        first = group[0]
        value = {
            "job_id": first.job_id,
            "total": first.total,
            "attempt": first.attempt,
            "operations": [{"index": r.index, "expression": r.expression} for r in group],
        }
        yield operation_id(first.job_id, first.index).encode(), orjson.dumps(value)


def decode_requests(raw: bytes | None) -> list[OperationRequest]:
    """The requests a message carries; raises InvalidEvent unless it is well-formed."""
    data = _decode(raw)
    job_id = _field(data, "job_id", str)
    total = _field(data, "total", int)
    attempt = _field(data, "attempt", int)
    return [
        OperationRequest(
            job_id=job_id,
            index=_field(item, "index", int),
            total=total,
            expression=_field(item, "expression", str),
            attempt=attempt,
        )
        for item in _items(data, "operations")
    ]


def result_messages(results: Iterable[OperationResult]) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) messages for `application.operation.response`, in order.

    Consecutive results of one job share a message, up to MAX_PER_MESSAGE and
    MAX_MESSAGE_TEXT_BYTES, keyed by the job id. The value is JSON:
    `{"job_id", "total", "results": [{"index", "status", "result", "error"}, ...]}`.
    """
    for group in _grouped(results, lambda r: (r.job_id, r.total), _result_bytes):
        first = group[0]
        value = {
            "job_id": first.job_id,
            "total": first.total,
            "results": [
                {"index": r.index, "status": r.status, "result": r.result, "error": r.error}
                for r in group
            ],
        }
        yield first.job_id.encode(), orjson.dumps(value)


def decode_results(raw: bytes | None) -> list[OperationResult]:
    """The results a message carries; raises InvalidEvent unless it is well-formed."""
    data = _decode(raw)
    job_id = _field(data, "job_id", str)
    total = _field(data, "total", int)
    results = []
    for item in _items(data, "results"):
        status = _field(item, "status", str)
        if status not in ("succeeded", "failed"):
            raise InvalidEvent(f"status must be 'succeeded' or 'failed', got {status!r:.50}")
        results.append(
            OperationResult(
                job_id=job_id,
                index=_field(item, "index", int),
                total=total,
                status=status,  # type: ignore[arg-type]
                result=_optional(item, "result"),
                error=_optional(item, "error"),
            )
        )
    return results


def _json_bytes(text: str | None) -> int:
    """Bytes a string takes in a message's JSON (escapes included, quotes not)."""
    return 0 if text is None else len(orjson.dumps(text)) - 2


def _request_bytes(request: OperationRequest) -> int:
    return _json_bytes(request.expression)


def _result_bytes(result: OperationResult) -> int:
    return _json_bytes(result.result) + _json_bytes(result.error)


def _grouped(
    items: Iterable[T], key: Callable[[T], Hashable], size_of: Callable[[T], int]
) -> Iterator[list[T]]:
    """Runs of consecutive items with the same key, each within the per-message bounds."""
    group: list[T] = []
    group_key: Hashable = None
    size = 0
    for item in items:
        item_key, item_size = key(item), size_of(item)
        if group and (
            item_key != group_key
            or len(group) >= MAX_PER_MESSAGE
            or size + item_size > MAX_MESSAGE_TEXT_BYTES
        ):
            yield group
            group, size = [], 0
        group.append(item)
        group_key = item_key
        size += item_size
    if group:
        yield group


def _items(data: dict[str, Any], name: str) -> list[dict[str, Any]]:
    items = data.get(name)
    if not isinstance(items, list) or not items:
        raise InvalidEvent(f"field {name!r} must be a non-empty list, got {items!r:.50}")
    for item in items:
        if not isinstance(item, dict):
            raise InvalidEvent(f"every item of {name!r} must be a JSON object, got {item!r:.50}")
    return items


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


def new_job_id(at: datetime | None = None) -> str:
    """A new job id: 32 hex digits laid out as a UUIDv7 (RFC 9562), whose first 48 bits are the
    creation time in milliseconds, so that ids sort in creation order (the jobs listing pages on
    them) and tell when their job was created."""
    millis = int((at or datetime.now(UTC)).timestamp() * 1000)
    value = (millis & (1 << 48) - 1) << 80 | 0x7 << 76 | secrets.randbits(12) << 64
    value |= 0b10 << 62 | secrets.randbits(62)
    return f"{value:032x}"


#: Creation times a job id may tell (anything else is not one of our time-ordered ids).
_PLAUSIBLE_MILLIS = (1_577_836_800_000, 7_258_118_400_000)  # 2020-01-01 .. 2200-01-01


def job_created_at(job_id: str) -> datetime | None:
    """When a job of a `new_job_id` id was created (ms precision), or None for other ids."""
    if len(job_id) != 32 or job_id[12] != "7":
        return None
    try:
        millis = int(job_id[:12], 16)
    except ValueError:
        return None
    if not _PLAUSIBLE_MILLIS[0] <= millis < _PLAUSIBLE_MILLIS[1]:
        return None
    return datetime.fromtimestamp(millis / 1000, UTC)


def operation_id(job_id: str, index: int) -> str:
    """The id of a job's index-th operation (deterministic, so retried inserts stay idempotent)."""
    return f"{job_id}-{index}"


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")
