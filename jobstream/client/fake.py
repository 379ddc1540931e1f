"""An in-memory jobstream API behind an httpx transport, for testing code that uses the client.

    fake = FakeApi(steps_per_read=5)
    with Client("http://jobstream.test", transport=fake.transport()) as api:
        ...

It validates submissions with the workers' own rules (`jobstream.submission`) and computes results
with the workers' own evaluator (`jobstream.expressions`), so answers match the real API's. Jobs
advance only when told: `run(job_id, count)`, `steps_per_read` operations per read of the job, or
to completion on a `?wait=` read (a held request answers when its job completes). A job's event
stream (`/events`) is written when it opens: the job's state, then, `steps_per_read` operations
later each, its next states up to the completed one; with `steps_per_read` 0 the stream ends
after the first state, as a real one does when its lifetime runs out. Switches mimic older or
newer APIs (`supports_wait`, `filters`, `cursors`), `token` makes it require one, and `fail_next`
queues faults (transport errors or error statuses) for the next requests.
"""

from __future__ import annotations

import re
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from jobstream import expressions
from jobstream.errors import ExpressionError, InvalidJob
from jobstream.submission import SubmissionLimits, parse_body

_JOB_ID = re.compile(r"[0-9a-f]{32}")
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    500: "internal",
    502: "bad_gateway",
    503: "unavailable",
    504: "gateway_timeout",
}


@dataclass
class FakeOperation:
    """One stored operation."""

    index: int
    expression: str
    status: str = "pending"
    result: str | None = None
    error: str | None = None


@dataclass
class FakeJob:
    """One stored job."""

    id: str
    operations: list[FakeOperation]
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None

    def count(self, status: str) -> int:
        return sum(1 for op in self.operations if op.status == status)

    @property
    def status(self) -> str:
        return "completed" if self.finished_at else "in_progress"

    def to_json(self) -> dict[str, Any]:
        total = len(self.operations)
        succeeded, failed = self.count("succeeded"), self.count("failed")
        return {
            "id": self.id,
            "status": self.status,
            "operations": {
                "total": total,
                "succeeded": succeeded,
                "failed": failed,
                "pending": total - succeeded - failed,
            },
            "created_at": _iso(self.created_at),
            "finished_at": _iso(self.finished_at) if self.finished_at else None,
        }


class _Answer(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.code = code or _CODES.get(status, "error")


class FakeApi:
    """The jobstream API in memory; see the module's docstring."""

    def __init__(
        self,
        *,
        steps_per_read: int = 0,
        supports_wait: bool = True,
        filters: bool = True,
        cursors: bool = False,
        token: str | None = None,
        limits: SubmissionLimits | None = None,
    ) -> None:
        self.steps_per_read = steps_per_read
        self.supports_wait = supports_wait
        self.filters = filters
        self.cursors = cursors
        self.token = token
        self.limits = limits or SubmissionLimits()
        self.jobs: dict[str, FakeJob] = {}
        #: Every request received, in order (faults included).
        self.requests: list[httpx.Request] = []
        self._faults: deque[Exception | int] = deque()

    def transport(self) -> httpx.MockTransport:
        """A transport for `Client(transport=...)` or `AsyncClient(transport=...)`."""
        return httpx.MockTransport(self.handle)

    def fail_next(self, *faults: Exception | int) -> None:
        """The next requests fail, one fault each: raise the exception, or answer that status."""
        self._faults.extend(faults)

    def run(self, job_id: str, count: int | None = None) -> None:
        """Compute the job's next `count` pending operations (all when None)."""
        job = self.jobs[job_id]
        pending = [op for op in job.operations if op.status == "pending"]
        for op in pending if count is None else pending[:count]:
            try:
                op.result, op.status = expressions.compute(op.expression), "succeeded"
            except ExpressionError as exc:
                op.error, op.status = str(exc), "failed"
        if all(op.status != "pending" for op in job.operations) and not job.finished_at:
            job.finished_at = datetime.now(UTC)

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request as the API would."""
        self.requests.append(request)
        if self._faults:
            fault = self._faults.popleft()
            if isinstance(fault, Exception):
                raise fault
            return _problem(fault, _CODES.get(fault, "error"), "injected fault")
        try:
            self._authorize(request)
            return self._route(request)
        except _Answer as answer:
            return _problem(answer.status, answer.code, answer.message)
        except InvalidJob as exc:
            return _problem(exc.status, _CODES.get(exc.status, "bad_request"), str(exc))

    # --- routes ---

    def _route(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.strip("/").split("/")
        method = request.method
        if parts[:2] != ["api", "jobs"] or len(parts) > 5:
            raise _Answer(404, "Not Found")
        allowed = {2: {"GET", "POST"}, 3: {"GET", "DELETE"}, 4: {"GET"}, 5: {"GET"}}[len(parts)]
        if method not in allowed:
            raise _Answer(405, "Method Not Allowed")
        if len(parts) == 2:
            return self._create(request) if method == "POST" else self._list_jobs(request)
        job = self._job(parts[2])
        if len(parts) == 3 and method == "DELETE":
            del self.jobs[job.id]
            return httpx.Response(204)
        if len(parts) == 3:
            return self._read_job(request, job)
        if parts[3:] == ["events"]:
            return self._events(job)
        if parts[3] != "operations":
            raise _Answer(404, "Not Found")
        if len(parts) == 4:
            ops = [_operation_json(job, op) for op in job.operations]
            return self._page(request, ops)
        return _json(_operation_json(job, self._operation(job, parts[4])))

    def _create(self, request: httpx.Request) -> httpx.Response:
        texts = parse_body(request.content, request.headers.get("Content-Type"), self.limits)
        job = FakeJob(uuid.uuid4().hex, [FakeOperation(i, t) for i, t in enumerate(texts, 1)])
        self.jobs[job.id] = job
        body = {"id": job.id, "created_operations": len(texts), "status": job.status}
        return _json(body, 201)

    def _read_job(self, request: httpx.Request, job: FakeJob) -> httpx.Response:
        if self.steps_per_read:
            self.run(job.id, self.steps_per_read)
        if self.supports_wait and "wait" in request.url.params:
            wait = request.url.params["wait"]
            if not wait.isdigit() or not 0 <= int(wait) <= 60:
                raise _Answer(400, f"wait must be between 0 and 60 seconds, got {wait!r}")
            self.run(job.id)  # a held request answers when the job completes
        return _json(job.to_json())

    def _events(self, job: FakeJob) -> httpx.Response:
        messages = [b"retry: 2000\n\n"]
        while True:
            if self.steps_per_read:
                self.run(job.id, self.steps_per_read)
            messages.append(b"event: job\ndata: " + orjson.dumps(job.to_json()) + b"\n\n")
            if job.finished_at or not self.steps_per_read:
                break
        return httpx.Response(
            200, content=b"".join(messages), headers={"Content-Type": "text/event-stream"}
        )

    def _list_jobs(self, request: httpx.Request) -> httpx.Response:
        jobs = sorted(self.jobs.values(), key=lambda j: j.created_at, reverse=True)
        return self._page(request, [job.to_json() for job in jobs])

    def _page(self, request: httpx.Request, items: list[dict[str, Any]]) -> httpx.Response:
        params = request.url.params
        size = _number(params.get("size"), "size", 30, 100)
        if self.filters and params.get("status"):
            items = [item for item in items if item["status"] == params["status"]]
        if self.cursors and "cursor" in params:
            start = _number(params["cursor"], "cursor", 0, len(items))
        else:
            start = (_number(params.get("page"), "page", 1, 10**9) - 1) * size
        chunk = items[start : start + size]
        body: dict[str, Any] = {"size": size, "total": len(items), "items": chunk}
        if self.cursors:
            body["next"] = str(start + size) if start + size < len(items) else None
        else:
            body["page"] = start // size + 1
        return _json(body)

    # --- lookups ---

    def _authorize(self, request: httpx.Request) -> None:
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            raise _Answer(401, "a valid bearer token is required")

    def _job(self, raw: str) -> FakeJob:
        if not _JOB_ID.fullmatch(raw):
            raise _Answer(400, f"malformed job id {raw[:64]!r}: expected 32 hexadecimal digits")
        if raw not in self.jobs:
            raise _Answer(404, f"no job {raw}")
        return self.jobs[raw]

    def _operation(self, job: FakeJob, raw: str) -> FakeOperation:
        text = raw.removeprefix(job.id + "-")
        if not text.isdigit() or int(text) < 1:
            raise _Answer(400, f"malformed operation id {raw[:80]!r}: expected <job_id>-<index>")
        if int(text) > len(job.operations):
            raise _Answer(404, f"no operation {job.id}-{text}")
        return job.operations[int(text) - 1]


def _number(raw: str | None, name: str, default: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not 0 <= int(raw) <= high:
        raise _Answer(400, f"{name} must be an integer up to {high}, got {raw[:20]!r}")
    return int(raw)


def _operation_json(job: FakeJob, op: FakeOperation) -> dict[str, Any]:
    return {
        "id": f"{job.id}-{op.index}",
        "job_id": job.id,
        "index": op.index,
        "expression": op.expression,
        "status": op.status,
        "result": op.result,
        "error": op.error,
    }


def _json(body: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(
        status, content=orjson.dumps(body), headers={"Content-Type": "application/json"}
    )


def _problem(status: int, code: str, message: str) -> httpx.Response:
    return _json({"error": code, "message": message}, status)


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
