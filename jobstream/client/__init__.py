"""A typed client of the jobstream HTTP API: synchronous (`Client`) and asyncio (`AsyncClient`).

    from pathlib import Path
    from jobstream.client import Client

    with Client("http://127.0.0.1:8080") as api:      # or JOBSTREAM_API_URL / JOBSTREAM_API_TOKEN
        job = api.submit(["1 + 2", "3 / 4 + 1"])       # or Path("operations.txt"), or text
        done = api.wait(job.id, timeout=60)
        for operation in api.operations(job.id):
            print(operation.expression, "=", operation.result or operation.error)

Errors are `jobstream.client.errors` classes: one per API error code (`NotFound`, `TooLarge`, ...),
`ApiUnreachable` when the API does not answer, `WaitTimeout` when a wait runs out of time. Nothing
here imports Faust or the workers' code.
"""

from jobstream.client._async import AsyncClient
from jobstream.client._core import DEFAULT_URL, TOKEN_ENV, URL_ENV, Poll, Retry
from jobstream.client._sync import Client
from jobstream.client.errors import (
    ApiError,
    ApiUnreachable,
    BadRequest,
    ClientError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    ProtocolError,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    WaitTimeout,
)
from jobstream.client.models import Job, Operation, Submission

__all__ = [
    "DEFAULT_URL",
    "TOKEN_ENV",
    "URL_ENV",
    "ApiError",
    "ApiUnreachable",
    "AsyncClient",
    "BadRequest",
    "Client",
    "ClientError",
    "InternalError",
    "Job",
    "MethodNotAllowed",
    "NotFound",
    "Operation",
    "Poll",
    "ProtocolError",
    "Retry",
    "Submission",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
    "WaitTimeout",
]
