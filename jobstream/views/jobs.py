"""Client role: the job API (`/api/jobs...`). Parse, validate, make one repository call, answer."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import faust
from aiohttp import web as aioweb

from jobstream.agents.delivery import send_many_durably
from jobstream.errors import InvalidJob, JobTooLarge, NotFound
from jobstream.jobevents import JobChange
from jobstream.models import (
    LISTED_STATUSES,
    ListedStatus,
    OperationRequest,
    OperationStatus,
    new_job_id,
    request_messages,
)
from jobstream.settings import Settings
from jobstream.storage import Repository
from jobstream.submission import SubmissionLimits, parse_body
from jobstream.telemetry import Metrics
from jobstream.topics import Topics
from jobstream.views.base import JsonView
from jobstream.views.watch import WATCH

log = logging.getLogger(__name__)

JOB_ID = re.compile(r"[0-9a-f]{32}")
#: An operation id: `<job_id>-<index>` or the bare index, from 1 and without leading zeros.
OPERATION_ID = re.compile(r"(?:(?P<job>[0-9a-f]{32})-)?(?P<index>[1-9][0-9]{0,8})")
DEFAULT_PAGE_SIZE = 30
MAX_PAGE_SIZE = 100
MAX_PAGE = 10**9
#: Deepest page of the jobs listing by number (`?page=`): an offset is a walk through every job
#: before it (FerretDB reads each one; MongoDB's `skip` steps over each index entry), so deeper
#: pages go by the `next` cursor, whose cost does not grow. A bound on the page alone (not on the
#: offset) keeps it in the OpenAPI document, which cannot relate two parameters.
MAX_LISTING_PAGE = 100
READ_CHUNK = 64 * 1024


def job_id_from(raw: str) -> str:
    """A path's job id, validated (ids are 32 lower-case hex digits)."""
    if not JOB_ID.fullmatch(raw):
        raise InvalidJob(f"malformed job id {raw[:64]!r}: expected 32 hexadecimal digits")
    return raw


def operation_index_from(job_id: str, raw: str) -> int:
    """A path's operation id ("<job_id>-<index>", or just the index) as the 1-based index.

    A well-formed id of another job's operation names nothing under this job: NotFound (404).
    """
    match = OPERATION_ID.fullmatch(raw)
    if match is None:
        raise InvalidJob(
            f"malformed operation id {raw[:80]!r}: expected <job_id>-<index> or <index>, "
            "the index from 1 without leading zeros"
        )
    if match["job"] not in (None, job_id):
        raise NotFound(f"operation {raw} is not an operation of job {job_id}")
    return int(match["index"])


def _is_number(text: str) -> bool:
    """ASCII digits only (str.isdigit() also takes "²" and "٣"), and small enough to be sane."""
    return text.isascii() and text.isdigit() and len(text) <= 10


OPERATION_STATUSES = ("pending", "succeeded", "failed")


def _status_from(query: Any, allowed: tuple[str, ...]) -> str | None:
    """The optional `status` query parameter, one of `allowed`."""
    raw = query.get("status")
    if raw is None:
        return None
    if raw not in allowed:
        raise InvalidJob(f"status must be one of {', '.join(allowed)}, got {raw[:20]!r}")
    return raw  # type: ignore[no-any-return]


def operation_status_from(query: Any) -> OperationStatus | None:
    """The optional `status` filter of an operations listing, validated."""
    return _status_from(query, OPERATION_STATUSES)  # type: ignore[return-value]


def job_status_from(query: Any) -> ListedStatus | None:
    """The optional `status` filter of the jobs listing, validated."""
    return _status_from(query, LISTED_STATUSES)  # type: ignore[return-value]


def page_from(query: Any, max_page: int = MAX_PAGE, beyond: str = "") -> tuple[int, int]:
    """`page` (1 to `max_page`, default 1) and `size` (1-100, default 30) query parameters,
    validated; `beyond` ends the message that refuses a deeper page.

    A parameter given empty (`?page=`) is refused like any other non-integer.
    """

    def number(name: str, default: int, high: int, beyond: str = "") -> int:
        raw = query.get(name)
        if raw is None:
            return default
        if not _is_number(raw):
            raise InvalidJob(f"{name} must be a positive integer, got {raw[:20]!r}")
        value = int(raw)
        if not 1 <= value <= high:
            raise InvalidJob(f"{name} must be between 1 and {high}, got {value}{beyond}")
        return value

    return number("page", 1, max_page, beyond), number("size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def cursor_from(query: Any) -> str | None:
    """The optional `cursor` of the jobs listing (a previous page's `next`), validated; with one,
    `page` is ignored."""
    raw = query.get("cursor")
    if raw is None:
        return None
    if not JOB_ID.fullmatch(raw):
        raise InvalidJob(f"malformed cursor {raw[:64]!r}: use the 'next' of a previous page")
    return raw  # type: ignore[no-any-return]


def page_response(page: int, size: int, total: int, items: list[Any]) -> aioweb.Response:
    """One page of a listing: `{"page", "size", "total", "items"}`."""
    return aioweb.json_response({"page": page, "size": size, "total": total, "items": items})


async def read_body(request: aioweb.Request, limit: int) -> bytes:
    """The request body, refusing (413) as soon as it is known to exceed the limit."""
    if request.content_length is not None and request.content_length > limit:
        raise JobTooLarge(f"body is {request.content_length} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise JobTooLarge(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def register_job_views(
    app: faust.App,
    settings: Settings,
    repository: Repository,
    topics: Topics,
    metrics: Metrics,
    on_changes: Callable[[list[JobChange]], None] | None = None,
) -> None:
    """Register `/api/jobs` and the routes below it; `on_changes` is told of each deletion."""
    limits = SubmissionLimits(
        max_body_bytes=settings.max_body_bytes,
        max_line_length=settings.max_line_length,
        max_operations=settings.max_operations,
    )

    class View(JsonView):
        pass

    View.metrics = metrics
    #: Publishes that outlived their request (kept referenced until they end).
    background: set[asyncio.Future] = set()

    def _published_late(job_id: str, publish: asyncio.Future) -> None:
        background.discard(publish)
        if publish.cancelled():
            return
        error = publish.exception()
        if error is None:
            log.info("job %s published after its answer", job_id)
        else:
            log.warning("job %s not fully published (%s): reconciliation will", job_id, error)

    @app.page("/api/jobs")
    class Jobs(View):
        route = "/api/jobs"

        async def post(self, request: aioweb.Request) -> aioweb.Response:
            deadline = asyncio.get_running_loop().time() + settings.publish_deadline
            body = await read_body(request, limits.max_body_bytes)
            expressions = parse_body(body, request.headers.get("Content-Type"), limits)
            job_id = new_job_id()
            job = await repository.create_job(job_id, expressions)
            # Stored before published: a crash here, or Kafka not acknowledging before the
            # deadline, leaves pending operations that reconciliation publishes, so the 201 below
            # is a promise kept either way.
            total = len(expressions)
            loop = asyncio.get_running_loop()
            # The publish outlives the answer when the deadline passes first (a big job whose
            # storing took most of it, or Kafka unreachable): it goes on in the background until
            # reconciliation would take over, instead of leaving the rest of the job to the timer.
            publish = asyncio.ensure_future(
                send_many_durably(
                    topics.requests_for(total),  # the job's lane (jobstream.topics)
                    request_messages(
                        OperationRequest(job_id, index, total, text)
                        for index, text in enumerate(expressions, start=1)
                    ),
                    metrics,
                    deadline=loop.time() + settings.reconcile_after,
                )
            )
            done, _ = await asyncio.wait({publish}, timeout=max(deadline - loop.time(), 0.0))
            if done:
                publish.result()  # PublishTimeout cannot happen this early; anything else is a bug
            else:
                log.warning(
                    "job %s stored, not yet published when the %g s deadline passed: publishing "
                    "goes on after the answer, and reconciliation publishes what it does not",
                    job_id,
                    settings.publish_deadline,
                )
                background.add(publish)
                publish.add_done_callback(functools.partial(_published_late, job_id))
            metrics.jobs_created.inc()
            log.info("job %s accepted with %d operations", job_id, total)
            return aioweb.json_response(
                {"id": job.id, "created_operations": total, "status": job.status},
                status=201,
                headers={"Location": f"/api/jobs/{job.id}"},
            )

        async def get(self, request: aioweb.Request) -> aioweb.Response:
            page, size = page_from(
                request.query,
                MAX_LISTING_PAGE,
                ": the jobs listing goes that deep by page number; to go further, follow a "
                "page's 'next' cursor (?cursor=)",
            )
            after = cursor_from(request.query)
            status = job_status_from(request.query)
            listing = await repository.list_jobs(size, after=after, page=page, status=status)
            body: dict[str, Any] = {
                "size": size,
                "total": listing.total,
                "items": [job.to_json() for job in listing.jobs],
                "next": listing.next,
            }
            if after is None:
                body["page"] = page
            return aioweb.json_response(body)

    @app.page("/api/jobs/{job_id}")
    class OneJob(View):
        route = "/api/jobs/{job_id}"

        async def get(self, request: aioweb.Request, job_id: str) -> aioweb.Response:
            job_id = job_id_from(job_id)
            watch = request.app.get(WATCH)
            if watch is not None and "wait" in request.query:  # answers when completed
                return await watch.job_response(job_id, request.query["wait"])
            job = await repository.get_job(job_id)
            return aioweb.json_response(job.to_json())

        async def delete(self, request: aioweb.Request, job_id: str) -> aioweb.Response:
            job_id = job_id_from(job_id)
            await repository.delete_job(job_id)
            if on_changes is not None:
                # Watchers end on it; without it they learn of the deletion only from a result
                # arriving after it, and never when none does.
                on_changes([JobChange.deletion(job_id, datetime.now(UTC))])
            return aioweb.Response(status=204)

    @app.page("/api/jobs/{job_id}/operations")
    class Operations(View):
        route = "/api/jobs/{job_id}/operations"

        async def get(self, request: aioweb.Request, job_id: str) -> aioweb.Response:
            page, size = page_from(request.query)
            status = operation_status_from(request.query)
            total, operations = await repository.list_operations(
                job_id_from(job_id), page, size, status
            )
            return page_response(page, size, total, [op.to_json() for op in operations])

    @app.page("/api/jobs/{job_id}/operations/{operation_id}")
    class OneOperation(View):
        route = "/api/jobs/{job_id}/operations/{operation_id}"

        async def get(
            self, request: aioweb.Request, job_id: str, operation_id: str
        ) -> aioweb.Response:
            job_id = job_id_from(job_id)
            index = operation_index_from(job_id, operation_id)
            try:
                operation = await repository.get_operation(job_id, index)
            except NotFound:
                await repository.get_job(job_id)  # say which is missing: the job or the operation
                raise
            return aioweb.json_response(operation.to_json())
