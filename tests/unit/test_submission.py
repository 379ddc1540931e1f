"""Behaviour of jobstream.submission: turning a submitted body into a job's expressions."""

from __future__ import annotations

import re
from typing import Any

import jsonschema_rs
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobstream.errors import InvalidJob, JobTooLarge
from jobstream.settings import Settings
from jobstream.submission import (
    JSON,
    TEXT,
    SubmissionLimits,
    UnsupportedMediaType,
    media_type,
    parse_body,
)
from jobstream.views.openapi import STRIPPED, openapi_document

LIMITS = SubmissionLimits()
SMALL = SubmissionLimits(max_body_bytes=200, max_line_length=10, max_operations=3)


def as_json(operations: object) -> bytes:
    return orjson.dumps({"operations": operations})


# --- limits and media types -------------------------------------------------------------------


def test_default_limits_are_4_mib_1000_characters_and_100_000_operations() -> None:
    # Given / When the limits are built without arguments
    limits = SubmissionLimits()

    # Then they are the documented defaults
    assert limits.max_body_bytes == 4 * 1024 * 1024
    assert limits.max_line_length == 1000
    assert limits.max_operations == 100_000


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("text/plain", TEXT),
        ("application/json", JSON),
        ("text/plain; charset=utf-8", TEXT),
        ("Application/JSON; charset=UTF-8", JSON),
        ("  text/plain  ;charset=utf-8", TEXT),
        ("application/xml", "application/xml"),
        (None, TEXT),
        ("", TEXT),
    ],
)
def test_media_type_is_lower_cased_without_parameters(
    content_type: str | None, expected: str
) -> None:
    # Given a Content-Type header (or none)
    # When its media type is taken
    # Then parameters and case are dropped, and a missing header means plain text
    assert media_type(content_type) == expected


def test_errors_carry_their_http_status() -> None:
    # Given the three ways a body is rejected
    # Then each maps to its HTTP status, and all are InvalidJob
    assert InvalidJob.status == 400
    assert JobTooLarge.status == 413
    assert UnsupportedMediaType.status == 415
    assert issubclass(JobTooLarge, InvalidJob)
    assert issubclass(UnsupportedMediaType, InvalidJob)


# --- text/plain -------------------------------------------------------------------------------


def test_text_body_gives_one_operation_per_line() -> None:
    # Given a plain-text body of three lines
    body = b"1 + 2\n3 * 4\n5 / 6\n"

    # When it is parsed
    expressions = parse_body(body, "text/plain", LIMITS)

    # Then each line is one operation, in order
    assert expressions == ["1 + 2", "3 * 4", "5 / 6"]


def test_text_body_ignores_blank_lines_and_comments() -> None:
    # Given a body with blank lines, whitespace-only lines and # comments (also indented ones)
    body = b"# a job\n\n1 + 2\n   \n\t\n  # indented comment\n3 * 4\n#\n"

    # When it is parsed
    expressions = parse_body(body, "text/plain", LIMITS)

    # Then only the expressions remain
    assert expressions == ["1 + 2", "3 * 4"]


def test_text_body_accepts_crlf_line_endings() -> None:
    # Given a body written with Windows line endings
    body = b"1 + 2\r\n3 * 4\r\n"

    # When it is parsed
    expressions = parse_body(body, "text/plain", LIMITS)

    # Then no carriage return is left in any operation
    assert expressions == ["1 + 2", "3 * 4"]


def test_text_body_strips_surrounding_whitespace_but_keeps_inner_spaces() -> None:
    # Given lines padded with spaces and tabs
    body = b"   1 + 2   \n\t3\t*\t4\t\n"

    # When it is parsed
    expressions = parse_body(body, "text/plain", LIMITS)

    # Then the padding is gone and inner whitespace is untouched
    assert expressions == ["1 + 2", "3\t*\t4"]


def test_text_body_without_trailing_newline_keeps_its_last_line() -> None:
    assert parse_body(b"1\n2", "text/plain", LIMITS) == ["1", "2"]


def test_text_body_keeps_non_ascii_text_for_the_expression_parser_to_judge() -> None:
    # Given a line with non-ASCII characters (not control characters)
    body = "1 \u00d7 2\n".encode()

    # When it is parsed
    # Then it is accepted here: a bad expression fails its own operation later, not the job
    assert parse_body(body, "text/plain", LIMITS) == ["1 \u00d7 2"]


@pytest.mark.parametrize(
    "body",
    [b"", b"\n\n", b"   \n\t\n", b"# only a comment\n", b"# one\n\n# two\r\n"],
    ids=["empty", "newlines", "whitespace", "comment", "comments-and-blanks"],
)
def test_text_body_without_operations_is_an_invalid_job(body: bytes) -> None:
    # Given a body with nothing to compute
    # When it is parsed
    with pytest.raises(InvalidJob, match="no operations") as caught:
        parse_body(body, "text/plain", LIMITS)

    # Then it is a plain 400, not a 413
    assert type(caught.value) is InvalidJob
    assert caught.value.status == 400


def test_body_over_max_body_bytes_is_too_large() -> None:
    # Given a body one byte over the limit
    limits = SubmissionLimits(max_body_bytes=10)
    body = b"1+1\n" * 2 + b"123"  # 11 bytes

    # When it is parsed
    with pytest.raises(JobTooLarge, match="11 bytes; the limit is 10") as caught:
        parse_body(body, "text/plain", limits)

    # Then it is rejected with 413
    assert caught.value.status == 413


def test_body_of_exactly_max_body_bytes_is_accepted() -> None:
    limits = SubmissionLimits(max_body_bytes=10)
    assert parse_body(b"1+1\n2+2\n33", "text/plain", limits) == ["1+1", "2+2", "33"]


def test_body_size_is_checked_before_the_content_type() -> None:
    # Given an oversized body with an unsupported content type
    limits = SubmissionLimits(max_body_bytes=3)

    # When it is parsed, the size wins: nothing else is looked at in an oversized body
    with pytest.raises(JobTooLarge):
        parse_body(b"1234", "application/xml", limits)


def test_line_over_max_line_length_is_too_large_and_names_the_line() -> None:
    # Given a body whose third line (counting blank lines and comments) is too long
    body = b"1\n# comment\n" + b"1" * 11 + b"\n2\n"

    # When it is parsed
    with pytest.raises(JobTooLarge, match=r"line 3 is 11 characters long; the limit is 10") as e:
        parse_body(body, "text/plain", SMALL)

    # Then it is a 413
    assert e.value.status == 413


def test_line_length_is_measured_after_stripping_whitespace() -> None:
    # Given a line of exactly max_line_length characters padded with spaces
    body = b"    " + b"1" * 10 + b"    \n"

    # When it is parsed, the padding does not count
    assert parse_body(body, "text/plain", SMALL) == ["1" * 10]


def test_line_length_counts_characters_not_bytes() -> None:
    # Given a line of 10 two-byte characters (20 bytes)
    body = ("é" * 10).encode()

    # When it is parsed with a 10-character limit, it fits
    assert parse_body(body, "text/plain", SMALL) == ["é" * 10]


def test_more_lines_than_max_operations_is_too_large() -> None:
    # Given four operations where three are allowed
    body = b"1\n2\n3\n4\n"

    # When it is parsed
    with pytest.raises(JobTooLarge, match="more than 3 operations") as caught:
        parse_body(body, "text/plain", SMALL)

    # Then it is a 413
    assert caught.value.status == 413


def test_comments_and_blank_lines_do_not_count_towards_max_operations() -> None:
    # Given exactly three operations among many non-operations
    body = b"# a\n1\n\n# b\n2\n\n\n3\n# c\n"

    # When it is parsed with a limit of three, it fits
    assert parse_body(body, "text/plain", SMALL) == ["1", "2", "3"]


@pytest.mark.parametrize(
    ("body", "byte"),
    [(b"\xff", 0), (b"1 + 2\n\xc3\x28", 6), (b"12\xed\xa0\x80", 2)],
    ids=["bad-start-byte", "bad-continuation", "encoded-surrogate"],
)
def test_text_body_that_is_not_utf8_is_an_invalid_job(body: bytes, byte: int) -> None:
    # Given a body that is not valid UTF-8
    # When it is parsed
    with pytest.raises(InvalidJob, match=rf"not valid UTF-8 \(byte {byte}\)") as caught:
        parse_body(body, "text/plain", LIMITS)

    # Then it is a 400 naming the offending byte
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("body", "line", "char", "column"),
    [
        (b"1\x002", 1, "\\x00", 2),
        (b"1\n2\n3 +\x1b4", 3, "\\x1b", 4),
        (b"\x07", 1, "\\x07", 1),
        (b"1 + 2\x7f", 1, "\\x7f", 6),
        (b"1\x08\x08+2", 1, "\\x08", 2),  # the first one is reported
        (b"\n# c\n\n1\x012", 4, "\\x01", 2),  # blank lines and comments are counted
    ],
    ids=["nul", "escape-on-line-3", "bell-alone", "delete", "first-of-two", "after-comment"],
)
def test_text_line_with_a_control_character_is_an_invalid_job_naming_line_and_column(
    body: bytes, line: int, char: str, column: int
) -> None:
    # Given a line containing a control character
    # When it is parsed
    with pytest.raises(InvalidJob) as caught:
        parse_body(body, "text/plain", LIMITS)

    # Then it is a 400 that says which line, which character and which column
    assert (
        str(caught.value) == f"line {line} contains control character '{char}' at column {column}"
    )
    assert caught.value.status == 400


def test_tab_inside_a_line_is_not_a_control_character() -> None:
    assert parse_body(b"1\t+\t2", "text/plain", LIMITS) == ["1\t+\t2"]


@pytest.mark.parametrize("separator", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e"])
def test_text_line_with_a_line_breaking_control_character_is_an_invalid_job(
    separator: str,
) -> None:
    # Given one line with a control character that str.splitlines() treats as a line break
    body = f"1 + 2{separator}3\n".encode()

    # When it is parsed, it is rejected like any other control character
    with pytest.raises(InvalidJob, match="control character"):
        parse_body(body, "text/plain", LIMITS)


@pytest.mark.parametrize(
    "content_type",
    [None, "", "text/plain", "text/plain; charset=utf-8", "TEXT/PLAIN;charset=UTF-8"],
)
def test_text_body_is_read_with_any_spelling_of_text_plain_or_no_content_type(
    content_type: str | None,
) -> None:
    # Given a plain-text body with one of the spellings of text/plain (or none at all)
    # When it is parsed
    # Then it is read as lines
    assert parse_body(b"1 + 2\n3\n", content_type, LIMITS) == ["1 + 2", "3"]


@given(
    st.lists(
        st.text(
            # printable, no whitespace (Z*) and no control or surrogate characters (C*)
            alphabet=st.characters(categories=("L", "M", "N", "P", "S"), exclude_characters="#"),
            min_size=1,
            max_size=20,
        ),
        min_size=1,
        max_size=20,
    ),
    st.sampled_from(["\n", "\r\n"]),
)
def test_text_body_of_printable_lines_parses_back_to_those_lines(
    lines: list[str], newline: str
) -> None:
    # Given any printable, non-comment lines joined with either line ending
    body = newline.join(lines).encode()

    # When the body is parsed
    expressions = parse_body(body, "text/plain", LIMITS)

    # Then the result is exactly those lines
    assert expressions == lines


# --- application/json -------------------------------------------------------------------------


def test_json_body_gives_its_operations_in_order() -> None:
    # Given a JSON body with an operations list
    body = as_json(["1 + 2", "3 * 4", " 5 / 6 "])

    # When it is parsed
    expressions = parse_body(body, "application/json", LIMITS)

    # Then the operations are returned in order, stripped
    assert expressions == ["1 + 2", "3 * 4", "5 / 6"]


def test_json_body_with_charset_parameter_is_json() -> None:
    body = as_json(["1"])
    assert parse_body(body, "application/json; charset=utf-8", LIMITS) == ["1"]


def test_json_body_ignores_other_keys() -> None:
    body = orjson.dumps({"operations": ["1"], "name": "mine"})
    assert parse_body(body, "application/json", LIMITS) == ["1"]


def test_json_items_are_not_treated_as_comments() -> None:
    # Given a JSON item that starts with "#"
    # When it is parsed, it stays an operation (it will fail on its own, not vanish)
    assert parse_body(as_json(["# 1"]), "application/json", LIMITS) == ["# 1"]


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"operations: [1]", b"[1, 2", b"{'operations': ['1']}", b"1 + 2"],
    ids=["empty", "unclosed", "yaml", "unclosed-list", "single-quotes", "plain-text"],
)
def test_json_body_that_is_not_json_is_an_invalid_job(body: bytes) -> None:
    with pytest.raises(InvalidJob, match="not valid JSON") as caught:
        parse_body(body, "application/json", LIMITS)
    assert caught.value.status == 400


def test_json_body_that_is_not_utf8_is_an_invalid_job() -> None:
    body = b'{"operations": ["1 \xff"]}'
    with pytest.raises(InvalidJob, match=r"not valid UTF-8 \(byte 19\)") as caught:
        parse_body(body, "application/json", LIMITS)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "document",
    [
        ["1 + 2"],
        "1 + 2",
        42,
        None,
        {},
        {"ops": ["1"]},
        {"operations": "1 + 2"},
        {"operations": {"0": "1"}},
        {"operations": None},
        {"operations": 3},
    ],
    ids=[
        "list",
        "string",
        "number",
        "null",
        "empty-object",
        "wrong-key",
        "operations-string",
        "operations-object",
        "operations-null",
        "operations-number",
    ],
)
def test_json_body_that_is_not_an_object_with_an_operations_list_is_an_invalid_job(
    document: object,
) -> None:
    # Given valid JSON of the wrong shape
    body = orjson.dumps(document)

    # When it is parsed
    with pytest.raises(InvalidJob, match="must be an object like") as caught:
        parse_body(body, "application/json", LIMITS)

    # Then it is a 400 that shows the expected shape
    assert type(caught.value) is InvalidJob
    assert caught.value.status == 400


def test_json_body_with_an_empty_operations_list_is_an_invalid_job() -> None:
    with pytest.raises(InvalidJob, match="no operations") as caught:
        parse_body(as_json([]), "application/json", LIMITS)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("operations", "index"),
    [
        ([1], 0),
        (["1", 2], 1),
        (["1", "2", None], 2),
        (["1", ["2"]], 1),
        ([{"e": "1"}], 0),
        ([True], 0),
        ([1.5], 0),
        (["1", ""], 1),
        (["   "], 0),
        (["1", "\t\n"], 1),
    ],
    ids=[
        "int",
        "int-second",
        "null-third",
        "list",
        "object",
        "bool",
        "float",
        "empty",
        "spaces",
        "whitespace",
    ],
)
def test_json_item_that_is_not_a_non_blank_string_is_an_invalid_job_naming_its_index(
    operations: list[object], index: int
) -> None:
    # Given an operations list with one item that is not a non-blank string
    # When it is parsed
    with pytest.raises(InvalidJob, match=rf"operations\[{index}\] must be a non-empty string") as e:
        parse_body(as_json(operations), "application/json", LIMITS)

    # Then it is a 400 naming that item's index
    assert e.value.status == 400


def test_json_with_more_operations_than_allowed_is_too_large() -> None:
    # Given four operations where three are allowed
    body = as_json(["1", "2", "3", "4"])

    # When it is parsed
    with pytest.raises(JobTooLarge, match="4 operations; the limit is 3") as caught:
        parse_body(body, "application/json", SMALL)

    # Then it is a 413
    assert caught.value.status == 413


def test_json_operation_count_is_checked_before_the_items() -> None:
    # Given too many operations, some of which are also malformed
    body = as_json([1, 2, 3, 4])

    # When it is parsed, the count is what is reported
    with pytest.raises(JobTooLarge):
        parse_body(body, "application/json", SMALL)


def test_json_with_exactly_max_operations_is_accepted() -> None:
    assert parse_body(as_json(["1", "2", "3"]), "application/json", SMALL) == ["1", "2", "3"]


def test_json_item_over_max_line_length_is_too_large_and_names_its_index() -> None:
    body = as_json(["1", "2" * 11])
    with pytest.raises(JobTooLarge, match=r"operations\[1\] is 11 characters long") as caught:
        parse_body(body, "application/json", SMALL)
    assert caught.value.status == 413


@pytest.mark.parametrize(
    ("item", "char", "column"),
    [("1\u00002", "\\x00", 2), ("1 +\n2", "\\n", 4), ("1\x0c2", "\\x0c", 2), ("\x1b1", "\\x1b", 1)],
    ids=["nul", "newline-inside", "form-feed", "escape"],
)
def test_json_item_with_a_control_character_is_an_invalid_job_naming_index_and_column(
    item: str, char: str, column: int
) -> None:
    # Given an item with a control character inside it
    body = as_json(["1", item])

    # When it is parsed
    with pytest.raises(InvalidJob) as caught:
        parse_body(body, "application/json", LIMITS)

    # Then the message names the item, the character and its column
    assert str(caught.value) == (
        f"operations[1] contains control character '{char}' at column {column}"
    )
    assert caught.value.status == 400


@given(
    st.lists(
        st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1),
        min_size=1,
        max_size=50,
    )
)
def test_json_body_of_printable_items_parses_back_to_those_items(items: list[str]) -> None:
    assert parse_body(as_json(items), "application/json", LIMITS) == items


# --- unsupported content types ----------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "application/xml",
        "text/csv",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "text/plainx",
        "application/json-seq",
    ],
)
def test_unknown_content_type_is_unsupported_media_type(content_type: str) -> None:
    # Given a body whose content type is neither text/plain nor application/json
    # When it is parsed
    with pytest.raises(UnsupportedMediaType, match="is not supported") as caught:
        parse_body(b"1 + 2", content_type, LIMITS)

    # Then it is a 415 (and still an InvalidJob for callers that catch the family)
    assert caught.value.status == 415
    assert isinstance(caught.value, InvalidJob)


# --- the OpenAPI document's body schemas say exactly what parse_body accepts ---------------------

#: Characters at every edge of the rules: separators, blanks, comments, control characters, the
#: whitespace str.strip() removes but the text form keeps, and ordinary ones.
EDGY = " \t\n\r#1+aé\x00\x0b\x1c\x1f\x7f\x85\x9f\xa0\u2028\u3000\u200b"
BOUNDED = SubmissionLimits(max_body_bytes=1 << 20, max_line_length=4, max_operations=1000)


def body_schemas(limits: SubmissionLimits) -> tuple[Any, Any]:
    """Validators (ECMA-262 regexes, as schemathesis reads them) of both documented bodies."""
    document = openapi_document(
        Settings(max_line_length=limits.max_line_length, max_operations=limits.max_operations)
    )
    content = document["paths"]["/api/jobs"]["post"]["requestBody"]["content"]
    text = jsonschema_rs.validator_for(content["text/plain"]["schema"])
    job_request = {
        **document["components"]["schemas"]["JobRequest"],
        "components": document["components"],
    }
    return text, jsonschema_rs.validator_for(job_request)


def accepted(body: bytes, content_type: str, limits: SubmissionLimits) -> bool:
    try:
        parse_body(body, content_type, limits)
    except InvalidJob:
        return False
    return True


TEXT_SCHEMA, JSON_SCHEMA = body_schemas(BOUNDED)


@given(st.text(alphabet=EDGY, max_size=40))
def test_text_body_is_accepted_exactly_when_the_document_says_it_is_valid(text: str) -> None:
    assert TEXT_SCHEMA.is_valid(text) == accepted(text.encode(), TEXT, BOUNDED), repr(text)


@given(st.lists(st.text(alphabet=EDGY, max_size=8), max_size=4))
def test_json_body_is_accepted_exactly_when_the_document_says_it_is_valid(
    operations: list[str],
) -> None:
    document = {"operations": operations}
    assert JSON_SCHEMA.is_valid(document) == accepted(as_json(operations), JSON, BOUNDED)


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("1+1", True),
        ("# only\n\n  \r\n", False),
        ("", False),
        ("1234\n  # x\x00\n\t5 \r\n", True),
        ("12345", False),
        ("1\r\r", False),
        (" \u00a01", True),
    ],
)
def test_text_body_schema_examples(text: str, valid: bool) -> None:
    assert TEXT_SCHEMA.is_valid(text) is valid is accepted(text.encode(), TEXT, BOUNDED)


@pytest.mark.parametrize(
    ("operations", "valid"),
    [
        (["1+1"], True),
        ([""], False),
        ([" \n\u3000"], False),
        (["\u30001\n"], True),
        (["12345"], False),
        (["1\x002"], False),
        ([], False),
    ],
)
def test_json_body_schema_examples(operations: list[str], valid: bool) -> None:
    document = {"operations": operations}
    assert JSON_SCHEMA.is_valid(document) is valid is accepted(as_json(operations), JSON, BOUNDED)


def test_json_body_schema_bounds_the_operation_count() -> None:
    limits = SubmissionLimits(max_body_bytes=1 << 20, max_line_length=10, max_operations=3)
    _, schema = body_schemas(limits)
    assert schema.is_valid({"operations": ["1"] * 3})
    assert not schema.is_valid({"operations": ["1"] * 4})
    with pytest.raises(JobTooLarge):
        parse_body(as_json(["1"] * 4), JSON, limits)


def test_stripped_characters_are_those_of_str_strip() -> None:
    # The document's STRIPPED class, expanded, is exactly what Python's str.strip() removes
    expanded = re.compile(f"[{STRIPPED}]")
    spaces = {chr(code) for code in range(0x110000) if chr(code).isspace()}
    assert {c for c in map(chr, range(0x3100)) if expanded.fullmatch(c)} == spaces
