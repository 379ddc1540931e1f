"""`GET /api/openapi.json`: the API's OpenAPI 3.0 document (also drives the schemathesis tests)."""

from __future__ import annotations

from typing import Any

import faust
from aiohttp import web as aioweb

from jobstream.settings import Settings
from jobstream.telemetry import Metrics
from jobstream.views.base import JsonView

JOB_ID = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
PAGE = [
    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 1}},
    {
        "name": "size",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 30},
    },
]


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


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI document of the job API, with the configured bounds."""
    job_path = {"name": "job_id", "in": "path", "required": True, "schema": JOB_ID}
    bad = {"400": _problem("Malformed id, page or size"), "404": _problem("No such job")}
    return {
        "openapi": "3.0.3",
        "info": {"title": "jobstream", "version": "1", "description": "Jobs of arithmetic."},
        "paths": {
            "/api/jobs": {
                "post": {
                    "summary": "Create a job",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "text/plain": {
                                "schema": {"type": "string", "maxLength": settings.max_body_bytes}
                            },
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/JobRequest"}
                            },
                        },
                    },
                    "responses": {
                        "201": _ok("Accepted", "Created"),
                        "400": _problem("Malformed job"),
                        "413": _problem("Body, line or operation count over the limit"),
                        "415": _problem("Unsupported content type"),
                    },
                },
                "get": {
                    "summary": "List jobs, newest first",
                    "parameters": PAGE,
                    "responses": {"200": _ok("A page of jobs", "JobPage"), "400": bad["400"]},
                },
            },
            "/api/jobs/{job_id}": {
                "parameters": [job_path],
                "get": {"summary": "One job", "responses": {"200": _ok("The job", "Job"), **bad}},
                "delete": {
                    "summary": "Cancel and remove a job",
                    "responses": {"204": {"description": "Removed"}, **bad},
                },
            },
            "/api/jobs/{job_id}/operations": {
                "parameters": [job_path],
                "get": {
                    "summary": "A job's operations in submission order",
                    "parameters": PAGE,
                    "responses": {"200": _ok("A page of operations", "OperationPage"), **bad},
                },
            },
            "/api/jobs/{job_id}/operations/{operation_id}": {
                "parameters": [
                    job_path,
                    {
                        "name": "operation_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ],
                "get": {
                    "summary": "One operation",
                    "responses": {"200": _ok("The operation", "Operation"), **bad},
                },
            },
            "/health": {
                "get": {"summary": "Liveness", "responses": {"200": _ok("Alive", "Health")}}
            },
        },
        "components": {"schemas": SCHEMAS},
    }


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


SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
    },
    "JobRequest": {
        "type": "object",
        "required": ["operations"],
        "properties": {"operations": {"type": "array", "items": {"type": "string"}}},
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
    "JobPage": _page_of("Job"),
    "OperationPage": _page_of("Operation"),
    "Health": {
        "type": "object",
        "required": ["status", "role", "worker"],
        "properties": {
            "status": {"type": "string"},
            "role": {"type": "string"},
            "worker": {"type": "string"},
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
