"""The whole exception tree of jobstream.

JobstreamError
├── ExpressionError            an operation's text cannot be evaluated (the operation fails)
│   ├── ExpressionSyntaxError  the text is not a valid expression
│   ├── EvaluationError        a runtime error such as division by zero
│   └── LimitExceeded          a bound on size, depth, exponent or result was crossed
├── InvalidJob                 a submitted job is rejected before it is stored (HTTP 4xx)
│   ├── JobTooLarge            the body, a line or the operation count is over its limit (413)
│   └── UnsupportedMediaType   the body is neither text/plain nor application/json (415)
├── NotFound                   no such job or operation (HTTP 404)
└── StorageError               the database failed or was unreachable (driver errors, converted);
                               `transient` tells a database that is down from a refused command
"""

from __future__ import annotations


class JobstreamError(Exception):
    """Base of every error raised by jobstream itself."""


class ExpressionError(JobstreamError):
    """An operation's text cannot be evaluated; the message says what and where."""


class ExpressionSyntaxError(ExpressionError):
    """The text is not a valid expression."""

    def __init__(self, message: str, column: int | None = None) -> None:
        self.column = column
        super().__init__(message if column is None else f"{message} at column {column}")


class EvaluationError(ExpressionError):
    """A runtime error while evaluating, such as division by zero."""


class LimitExceeded(ExpressionError):
    """A bound on length, nesting, number size, exponent or result size was crossed."""


class InvalidJob(JobstreamError):
    """A submitted job is malformed; it is rejected and nothing is stored."""

    status = 400


class JobTooLarge(InvalidJob):
    """The body, one of its lines or its operation count is over the configured limit."""

    status = 413


class UnsupportedMediaType(InvalidJob):
    """The body's content type is neither text/plain nor application/json."""

    status = 415


class NotFound(JobstreamError):
    """No job or operation has that id."""


class StorageError(JobstreamError):
    """The database failed or could not be reached.

    `transient` is True when retrying can cure it (the database is unreachable, restarting or
    electing a primary) and False when the database refused the command itself, which retrying the
    same command will not change.
    """

    def __init__(self, message: str, *, transient: bool = True, full: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
        #: The database has no space left to write (transient too: freeing space cures it).
        self.full = full
