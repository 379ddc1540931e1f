"""`GET /api/openapi.json`: the API's OpenAPI 3.0 document (also drives the schemathesis tests).

The document says what the API does: every bound the views enforce is declared, so a request the
document calls valid is accepted and one it calls invalid is refused. Two bounds JSON Schema cannot
state are given in words and as `x-` fields: a body's size in bytes, and how many operations a
text/plain body holds. Patterns keep to the syntax ECMA-262, Python and Rust regexes share.
"""

from __future__ import annotations

from typing import Any

import faust
from aiohttp import web as aioweb

from jobstream.models import LISTED_STATUSES
from jobstream.settings import Settings
from jobstream.telemetry import Metrics
from jobstream.views.base import JsonView
from jobstream.views.jobs import (
    DEFAULT_PAGE_SIZE,
    MAX_LISTING_PAGE,
    MAX_PAGE,
    MAX_PAGE_SIZE,
    OPERATION_STATUSES,
)

JOB_ID = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
OPERATION_ID = {"type": "string", "pattern": "^(?:[0-9a-f]{32}-)?[1-9][0-9]{0,8}$"}
PAGE = [
    {
        "name": "page",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1},
    },
    {
        "name": "size",
        "in": "query",
        "schema": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_PAGE_SIZE,
            "default": DEFAULT_PAGE_SIZE,
        },
    },
]

#: The jobs listing's page number goes less deep (see `MAX_LISTING_PAGE`).
LISTING_PAGE = [
    {**PAGE[0], "schema": {**PAGE[0]["schema"], "maximum": MAX_LISTING_PAGE}},
    PAGE[1],
]

CURSOR = {
    "name": "cursor",
    "in": "query",
    "description": "The `next` of the previous page.",
    "schema": JOB_ID,
}

#: The characters an expression may not contain (jobstream.submission refuses them).
CONTROL = r"\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029"
#: What Python's str.strip() removes, i.e. str.isspace(): the edges of a JSON operation.
STRIPPED = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def _core(edge: str, last: str, length: int) -> str:
    """An expression of 1 to `length` characters without CONTROL, starting with `edge` and
    ending with `last` (character classes)."""
    if length == 1:
        return edge
    return f"{edge}(?:[^{CONTROL}]{{0,{length - 2}}}{last})?"


def expression_pattern(max_line_length: int) -> str:
    """One JSON operation: an expression, with any whitespace around it (stripped)."""
    edge = f"[^{STRIPPED}{CONTROL}]"
    return f"^[{STRIPPED}]*{_core(edge, edge, max_line_length)}[{STRIPPED}]*$"


def text_body_pattern(max_line_length: int) -> str:
    """A text/plain body: lines split on \\n (an \\r before it dropped), spaces and tabs around
    each stripped, blank and `#` lines skipped, at least one expression."""
    expression = _core(f"[^ \\t#{CONTROL}]", f"[^ \\t{CONTROL}]", max_line_length)
    operation = f"[ \\t]*{expression}[ \\t]*\\r?"
    skipped = "[ \\t]*(?:#[^\\n]*|\\r?)"
    return f"^(?:{skipped}\\n)*{operation}(?:\\n(?:{operation}|{skipped}))*$"


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def _ok(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


UNAUTHORIZED = {
    **_problem("No bearer token, or not one of JOBSTREAM_API_TOKENS"),
    "headers": {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
}
UNAVAILABLE = _problem(
    "The database is unavailable or full (a job posted then is not stored); retry later"
)
#: `GET /api/jobs/{job_id}?wait=` (jobstream.views.watch).
WAIT = {
    "name": "wait",
    "in": "query",
    "description": "Seconds to wait for the job to complete (answered as soon as it does)",
    "schema": {"type": "number", "minimum": 0, "maximum": 60},
}
EVENT_STREAM = {
    "description": (
        "Server-Sent Events: `event: job` messages whose data is a Job document (status "
        "`in_progress`, `completed` or `deleted`), `event: stats` messages on the stream of every "
        'job (`{"operations_per_second"}`), and `: keepalive` comments when idle'
    ),
    # schemathesis validates each event, parsed into its fields, against this schema
    "content": {
        "text/event-stream": {
            "schema": {
                "type": "object",
                "required": ["data"],
                "properties": {
                    "event": {"type": "string", "enum": ["job", "stats"]},
                    "data": {"type": "string"},
                    "id": {"type": "string"},
                    "retry": {"type": "integer", "minimum": 0},
                },
            }
        }
    },
}
BUSY = _problem("The database is unavailable, or the worker serves its most event streams")


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI document of the job API, with the configured bounds (and tokens, if any)."""
    job_path = {"name": "job_id", "in": "path", "required": True, "schema": JOB_ID}
    operation_path = {
        "name": "operation_id",
        "in": "path",
        "required": True,
        "schema": OPERATION_ID,
    }
    protected = {"401": UNAUTHORIZED} if settings.api_tokens else {}
    common = {**protected, "503": UNAVAILABLE}
    bad = {
        "400": _problem("Malformed id, page, size, cursor or status"),
        "404": _problem("No such job"),
    }
    limits = {
        "x-max-body-bytes": settings.max_body_bytes,
        "x-max-line-length": settings.max_line_length,
        "x-max-operations": settings.max_operations,
    }
    document: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": "jobstream", "version": "1", "description": "Jobs of arithmetic."},
        "paths": {
            "/api/jobs": {
                "post": {
                    "summary": "Create a job",
                    "description": (
                        f"The body is at most {settings.max_body_bytes} bytes of UTF-8 and holds "
                        f"1 to {settings.max_operations} expressions of at most "
                        f"{settings.max_line_length} characters. Answered within "
                        f"{settings.publish_deadline:g} s of arrival while Kafka is unreachable: "
                        "201 once stored (its operations are published later)."
                    ),
                    **limits,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "text/plain": {
                                "schema": {
                                    "type": "string",
                                    "maxLength": settings.max_body_bytes,
                                    "pattern": text_body_pattern(settings.max_line_length),
                                }
                            },
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/JobRequest"}
                            },
                        },
                    },
                    "responses": {
                        "201": {
                            **_ok("Stored, and published or to be", "Created"),
                            "headers": {
                                "Location": {"required": True, "schema": {"type": "string"}}
                            },
                        },
                        "400": _problem("Malformed job"),
                        "413": _problem("Body, line or operation count over the limit"),
                        "415": _problem("Unsupported content type"),
                        **common,
                    },
                },
                "get": {
                    "summary": "List jobs, newest first",
                    "description": (
                        "Page by `cursor` (the `next` of the previous page; cheap however many "
                        "jobs are stored) or by `page` number (ignored with a cursor), at most "
                        f"{MAX_LISTING_PAGE} (an offset walks every job before it). With "
                        "`status`, only the jobs in that status, and `total` counts those. "
                        "`total` is approximate: it may count jobs being deleted or lag a few "
                        "seconds, and on FerretDB the completed jobs' total is estimated."
                    ),
                    "parameters": [
                        *LISTING_PAGE,
                        CURSOR,
                        {
                            "name": "status",
                            "in": "query",
                            "schema": {"type": "string", "enum": list(LISTED_STATUSES)},
                        },
                    ],
                    "responses": {
                        "200": _ok("A page of jobs", "JobPage"),
                        "400": bad["400"],
                        **common,
                    },
                },
            },
            "/api/jobs/{job_id}": {
                "parameters": [job_path],
                "get": {
                    "summary": "One job; with `wait`, once completed or when the time is up",
                    "parameters": [WAIT],
                    "responses": {"200": _ok("The job", "Job"), **bad, **common, "503": BUSY},
                },
                "delete": {
                    "summary": "Cancel and remove a job",
                    "responses": {"204": {"description": "Removed"}, **bad, **common},
                },
            },
            "/api/jobs/{job_id}/operations": {
                "parameters": [job_path],
                "get": {
                    "summary": "A job's operations in submission order",
                    "description": "With `status`, only the operations in that status (and "
                    "`total` counts those).",
                    "parameters": [
                        *PAGE,
                        {
                            "name": "status",
                            "in": "query",
                            "schema": {"type": "string", "enum": list(OPERATION_STATUSES)},
                        },
                    ],
                    "responses": {
                        "200": _ok("A page of operations", "OperationPage"),
                        **bad,
                        **common,
                    },
                },
            },
            "/api/jobs/{job_id}/operations/{operation_id}": {
                "parameters": [job_path, operation_path],
                "get": {
                    "summary": "One operation",
                    "description": (
                        "The operation id is `<job_id>-<index>` or the bare index; an id naming "
                        "another job's operation is not found under this job."
                    ),
                    "responses": {
                        "200": _ok("The operation", "Operation"),
                        "400": bad["400"],
                        "404": _problem("No such job, or no such operation of it"),
                        **common,
                    },
                },
            },
            "/api/jobs/{job_id}/events": {
                "parameters": [job_path],
                "get": {
                    "summary": "The job's state, then each change until it completes or is deleted",
                    "x-event-stream": True,
                    "responses": {"200": EVENT_STREAM, **bad, **common, "503": BUSY},
                },
            },
            "/api/events": {
                "get": {
                    "summary": "Every job's changes and the operations per second (never ends)",
                    "x-event-stream": True,
                    "responses": {"200": EVENT_STREAM, **common, "503": BUSY},
                },
            },
            "/health": {
                "get": {
                    "summary": "Liveness: the worker's event loop answers",
                    "security": [],
                    "responses": {"200": _ok("Alive", "Health")},
                }
            },
            "/ready": {
                "get": {
                    "summary": "Readiness: database, brokers and partition assignment usable",
                    "security": [],
                    "responses": {
                        "200": _ok("Ready", "Readiness"),
                        "503": _ok("Not ready, with what is missing", "NotReady"),
                    },
                }
            },
        },
        "components": {"schemas": schemas(settings)},
    }
    if settings.api_tokens:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
    return document


_NULLABLE_STRING = {"type": "string", "nullable": True}


def _page_of(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["page", "size", "total", "items"],
        "properties": {
            "page": {"type": "integer"},
            "size": {"type": "integer"},
            "total": {"type": "integer"},
            "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}},
        },
    }


def _job_page() -> dict[str, Any]:
    page = _page_of("Job")
    page["required"] = ["size", "total", "items", "next"]
    page["properties"]["next"] = {
        **JOB_ID,
        "nullable": True,
        "description": "The `cursor` of the next page; null on the last page.",
    }
    page["properties"]["page"]["description"] = "Given when paging by number."
    return page


_IDENTITY = {"role": {"type": "string"}, "worker": {"type": "string"}}
_CHECKS = {"type": "object", "additionalProperties": {"type": "string"}}


def schemas(settings: Settings) -> dict[str, Any]:
    """The document's component schemas, with the configured bounds."""
    return {
        "Problem": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
        },
        "JobRequest": {
            "type": "object",
            "required": ["operations"],
            "properties": {
                "operations": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": settings.max_operations,
                    "items": {
                        "type": "string",
                        "pattern": expression_pattern(settings.max_line_length),
                    },
                }
            },
        },
        "Created": {
            "type": "object",
            "required": ["id", "created_operations", "status"],
            "properties": {
                "id": JOB_ID,
                "created_operations": {"type": "integer", "minimum": 1},
                "status": {"type": "string", "enum": ["in_progress"]},
            },
        },
        "Job": {
            "type": "object",
            "required": ["id", "status", "operations", "created_at", "finished_at"],
            "properties": {
                "id": JOB_ID,
                "status": {"type": "string", "enum": ["in_progress", "completed"]},
                "operations": {
                    "type": "object",
                    "required": ["total", "succeeded", "failed", "pending"],
                    "properties": {
                        name: {"type": "integer", "minimum": 0}
                        for name in ("total", "succeeded", "failed", "pending")
                    },
                },
                "created_at": {"type": "string", "format": "date-time"},
                "finished_at": {"type": "string", "format": "date-time", "nullable": True},
            },
        },
        "Operation": {
            "type": "object",
            "required": ["id", "job_id", "index", "expression", "status", "result", "error"],
            "properties": {
                "id": {"type": "string"},
                "job_id": JOB_ID,
                "index": {"type": "integer", "minimum": 1},
                "expression": {"type": "string"},
                "status": {"type": "string", "enum": ["pending", "succeeded", "failed"]},
                "result": _NULLABLE_STRING,
                "error": _NULLABLE_STRING,
            },
        },
        "JobPage": _job_page(),
        "OperationPage": _page_of("Operation"),
        "Health": {
            "type": "object",
            "required": ["status", "role", "worker"],
            "properties": {"status": {"type": "string", "enum": ["ok"]}, **_IDENTITY},
        },
        "Readiness": {
            "type": "object",
            "required": ["status", "role", "worker", "checks"],
            "properties": {
                "status": {"type": "string", "enum": ["ready"]},
                **_IDENTITY,
                "checks": _CHECKS,
            },
        },
        "NotReady": {
            "type": "object",
            "required": ["status", "error", "message", "role", "worker", "checks"],
            "properties": {
                "status": {"type": "string", "enum": ["not_ready"]},
                "error": {"type": "string"},
                "message": {"type": "string"},
                **_IDENTITY,
                "checks": _CHECKS,
            },
        },
    }


def register_openapi(app: faust.App, settings: Settings, metrics: Metrics) -> None:
    """Serve the document at /api/openapi.json."""
    document = openapi_document(settings)

    @app.page("/api/openapi.json")
    class OpenApi(JsonView):
        route = "/api/openapi.json"

        async def get(self, request: aioweb.Request) -> aioweb.Response:
            return aioweb.json_response(document)

    OpenApi.metrics = metrics
