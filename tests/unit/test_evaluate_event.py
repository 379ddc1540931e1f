"""Behaviour of the compute agent's pure step: one OperationRequest in, one OperationResult out."""

from __future__ import annotations

import logging

import pytest

from jobstream import expressions
from jobstream.agents import compute
from jobstream.agents.compute import evaluate
from jobstream.expressions import DEFAULT_LIMITS, Limits
from jobstream.models import OperationRequest, OperationResult, decode_results, result_messages

JOB_ID = "0123456789abcdef0123456789abcdef"


def request(expression: str, index: int = 3, total: int = 7, attempt: int = 1) -> OperationRequest:
    return OperationRequest(JOB_ID, index, total, expression, attempt)


def test_valid_expression_gives_a_succeeded_result_with_its_canonical_value() -> None:
    # Given the request for operation 3 of 7, "3 / 4 + 1"
    # When it is evaluated
    result = evaluate(request("3 / 4 + 1"), DEFAULT_LIMITS)

    # Then the result is succeeded with "1.75", for the same job, index and total
    assert result == OperationResult(
        job_id=JOB_ID, index=3, total=7, status="succeeded", result="1.75", error=None
    )


def test_result_is_for_the_same_operation_as_the_request() -> None:
    result = evaluate(request("1", index=5, total=5), DEFAULT_LIMITS)

    assert result.operation_id == f"{JOB_ID}-5"
    assert (result.job_id, result.index, result.total) == (JOB_ID, 5, 5)


@pytest.mark.parametrize(
    ("expression", "value"),
    [("69", "69"), ("1 + 2 + 3 - 7 * 2", "-8"), ("1 / 3 * 3", "1"), ("2 ^ -1", "0.5")],
)
def test_result_value_is_what_compute_renders(expression: str, value: str) -> None:
    result = evaluate(request(expression), DEFAULT_LIMITS)
    assert (result.status, result.result, result.error) == ("succeeded", value, None)


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("1 +", "unexpected end of expression, expected a number or '(' at column 3"),
        ("1 $ 2", "unexpected character '$' at column 3"),
        ("(1 + 2", "unclosed '(' at column 1"),
        ("1 + 2)", "unmatched ')' at column 6"),
    ],
    ids=["incomplete", "bad-character", "unclosed", "unmatched"],
)
def test_syntax_error_gives_a_failed_result_with_the_message_and_column(
    expression: str, error: str
) -> None:
    # Given a request whose expression is malformed
    # When it is evaluated
    result = evaluate(request(expression), DEFAULT_LIMITS)

    # Then the operation fails (the worker does not) with what went wrong and where
    assert result == OperationResult(JOB_ID, 3, 7, "failed", result=None, error=error)


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("1 / 0", "division by zero at column 3"),
        ("5 / (2 - 2)", "division by zero at column 3"),
        ("5 % 0", "modulo by zero at column 3"),
        ("0 ^ -1", "division by zero at column 3"),
    ],
)
def test_division_by_zero_gives_a_failed_result(expression: str, error: str) -> None:
    result = evaluate(request(expression), DEFAULT_LIMITS)
    assert (result.status, result.result, result.error) == ("failed", None, error)


def test_huge_power_gives_a_failed_result_with_a_limit_message() -> None:
    # Given a request whose value would have billions of digits
    # When it is evaluated
    result = evaluate(request("9^9^9^9"), DEFAULT_LIMITS)

    # Then it fails fast, saying which limit was crossed
    assert result.status == "failed"
    assert result.result is None
    assert result.error == "exponent is larger than the limit of 1000 in absolute value at column 4"


def test_result_too_large_gives_a_failed_result_with_a_limit_message() -> None:
    result = evaluate(request("9 ^ 999 * 9 ^ 999"), DEFAULT_LIMITS)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.startswith("result too large: more than 1000 digits")


def test_evaluation_uses_the_limits_it_is_given() -> None:
    # Given limits tighter than the defaults
    tight = Limits(max_length=5)

    # When an expression fine by default is evaluated with them
    result = evaluate(request("1 + 2 + 3"), tight)

    # Then those limits apply
    assert result.status == "failed"
    assert result.error == "expression is 9 characters long, more than the limit of 5"


def test_unexpected_exception_fails_the_operation_not_the_worker(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an evaluator with a bug that raises something other than an ExpressionError
    def broken(text: str, limits: Limits) -> str:
        raise KeyError("boom")

    monkeypatch.setattr(expressions, "compute", broken)

    # When a request is evaluated
    with caplog.at_level(logging.ERROR, logger=compute.__name__):
        result = evaluate(request("1 + 1"), DEFAULT_LIMITS)

    # Then that one operation fails with a generic message, and the bug is logged with its trace
    assert result == OperationResult(
        JOB_ID, 3, 7, "failed", result=None, error="internal error: KeyError"
    )
    assert any(record.exc_info for record in caplog.records)


def test_attempt_number_does_not_change_the_result() -> None:
    first = evaluate(request("2 * 3", attempt=1), DEFAULT_LIMITS)
    retry = evaluate(request("2 * 3", attempt=5), DEFAULT_LIMITS)
    assert first == retry


@pytest.mark.parametrize("expression", ["3 / 4 + 1", "1 +", "1 / 0", "9^9^9^9"])
def test_result_survives_its_wire_form(expression: str) -> None:
    # The result is what is published to the response topic: it must decode back unchanged
    result = evaluate(request(expression), DEFAULT_LIMITS)
    [(key, value)] = result_messages([result])
    assert key == JOB_ID.encode()
    assert decode_results(value) == [result]
