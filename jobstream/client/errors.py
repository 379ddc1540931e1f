"""The errors the jobstream client raises: one class per API error code, and the client's own.

ClientError
├── ApiError                 the API answered with an error (`.status`, `.code`, `.message`)
│   ├── BadRequest           400 bad_request: malformed job, id, page or parameter
│   ├── Unauthorized         401 unauthorized: a token is required, or the one sent is wrong
│   ├── NotFound             404 not_found: no such job or operation
│   ├── MethodNotAllowed     405 method_not_allowed
│   ├── TooLarge             413 too_large: the body, a line or the operation count is too big
│   ├── UnsupportedMediaType 415 unsupported_media_type
│   ├── InternalError        500 internal
│   └── Unavailable          503 unavailable: the database (or Kafka) is down; retry later
├── ApiUnreachable           no answer: connection refused, name not found, or the request timed out
├── ProtocolError            an answer that is not what the API promises (wrong URL, proxy page...)
└── WaitTimeout              the job was still running when the caller's deadline passed
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobstream.errors import JobstreamError

if TYPE_CHECKING:
    from jobstream.client.models import Job


class ClientError(JobstreamError):
    """Base of every error the client raises."""


class ApiError(ClientError):
    """The API answered with an error status; `message` is the API's own explanation."""

    #: The HTTP status this class stands for (0 on the base class: any status).
    status: int = 0
    #: The API's `error` code this class stands for.
    code: str = ""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = self.status if status is None else status
        self.code = self.code if code is None else code

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status} {self.code})"


class BadRequest(ApiError):
    """The request was malformed (a job, an id, a page or a parameter)."""

    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    """The API requires a token (`--token`, JOBSTREAM_API_TOKEN) and got none or a wrong one."""

    status, code = 401, "unauthorized"


class NotFound(ApiError):
    """No job or operation has that id."""

    status, code = 404, "not_found"


class MethodNotAllowed(ApiError):
    """The route does not take that method."""

    status, code = 405, "method_not_allowed"


class TooLarge(ApiError):
    """The body, one of its lines or its operation count is over the API's limit."""

    status, code = 413, "too_large"


class UnsupportedMediaType(ApiError):
    """The body is neither text/plain nor application/json."""

    status, code = 415, "unsupported_media_type"


class InternalError(ApiError):
    """The API failed in a way it did not expect (it logged the details)."""

    status, code = 500, "internal"


class Unavailable(ApiError):
    """A service behind the API is down; retrying later may succeed."""

    status, code = 503, "unavailable"


class ApiUnreachable(ClientError):
    """No answer from the API: it cannot be connected to, or it did not answer in time."""


class ProtocolError(ClientError):
    """The answer is not shaped as the API promises (often: the URL is not a jobstream API)."""


class WaitTimeout(ClientError):
    """The job was still running when the deadline passed; `job` is its last state seen."""

    def __init__(self, message: str, job: Job) -> None:
        super().__init__(message)
        self.job = job


_BY_CODE: dict[str, type[ApiError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        Unauthorized,
        NotFound,
        MethodNotAllowed,
        TooLarge,
        UnsupportedMediaType,
        InternalError,
        Unavailable,
    )
}
_BY_STATUS: dict[int, type[ApiError]] = {cls.status: cls for cls in _BY_CODE.values()}


def api_error(status: int, body: Any, text: str = "") -> ApiError:
    """The exception for an error answer: by the body's `error` code, else by the status."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        code = body["error"]
        message = body.get("message") if isinstance(body.get("message"), str) else code
        cls = _BY_CODE.get(code) or _BY_STATUS.get(status, ApiError)
        return cls(message, status=status, code=code)
    # not the API's JSON (a proxy, another server on that port): keep the start of what it said
    cls = _BY_STATUS.get(status, ApiError)
    message = " ".join(text.split())[:200] or f"HTTP {status} without a body"
    return cls(message, status=status, code=cls.code or "http_error")
