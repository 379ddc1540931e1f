"""Behaviour of the pure expression core: parse, evaluate, format_number, compute."""

from __future__ import annotations

import dataclasses
import re
import time
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from jobstream.errors import (
    EvaluationError,
    ExpressionError,
    ExpressionSyntaxError,
    LimitExceeded,
)
from jobstream.expressions import (
    DEFAULT_LIMITS,
    BinaryOp,
    Limits,
    Number,
    UnaryOp,
    compute,
    evaluate,
    format_number,
    parse,
)

ONE_THIRD = "0." + "3" * 50
TWO_THIRDS = "0." + "6" * 49 + "7"
CANONICAL = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?")
ROOMY = Limits(max_length=1_000_000)  # lets depth, not length, be the bound that trips


# --- the original project's samples -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("69", "69"),
        ("1 + 2 + 3 - 7 * 2", "-8"),
        ("34 * 2 + 1", "69"),
        ("6 - 14 + 5", "-3"),
        ("-8 + 5", "-3"),
        ("1 + 2 + 3 - 14 + 5", "-3"),
        ("-3", "-3"),
        ("68 + 1", "69"),
        ("3 / 4 + 1", "1.75"),
        ("0 * 3 + 4 - 1 + 5 * 39", "198"),
    ],
)
def test_original_samples_compute_to_their_expected_results(text: str, expected: str) -> None:
    # Given one of the original project's sample operations
    # When it is computed
    result = compute(text)
    # Then the canonical result matches the original's
    assert result == expected


def test_a_trailing_operator_is_a_syntax_error_at_column_19() -> None:
    # Given the original's failing sample, which ends with a dangling "+"
    text = "1 + 2 + 3 - 7 * 2 +"
    # When it is computed
    with pytest.raises(ExpressionSyntaxError) as caught:
        compute(text)
    # Then the error says what was expected and where the expression stops
    assert str(caught.value) == (
        "unexpected end of expression, expected a number or '(' at column 19"
    )
    assert caught.value.column == 19


# --- operators, precedence, associativity -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2 + 3 * 4", "14"),
        ("(2 + 3) * 4", "20"),
        ("10 - 4 - 3", "3"),
        ("100 / 10 / 5", "2"),
        ("2 * 3 % 4", "2"),
        ("7 % 4 * 2", "6"),
        ("2 ^ 3 * 2", "16"),
        ("2 * 3 ^ 2", "18"),
        ("2 ^ 3 ^ 2", "512"),
        ("(2 ^ 3) ^ 2", "64"),
        ("2 ** 3 ** 2", "512"),
        ("2**3", "8"),
        ("-2 ^ 2", "-4"),
        ("(-2) ^ 2", "4"),
        ("2 ^ -1", "0.5"),
        ("2 ** -2", "0.25"),
        ("-2 ^ -2", "-0.25"),
        ("2 ^ -1 ^ 2", "0.5"),
        ("(1/2) ^ -3", "8"),
        ("(-2/3) ^ 3", "-0.2962962962962962962962962962962962962962962962963"),
        ("0 ^ 0", "1"),
        ("2 ^ (4 / 2)", "4"),
        ("-3 * -3", "9"),
        ("-2 * 3", "-6"),
        ("2 * -3", "-6"),
        ("2 - -3", "5"),
        ("--3", "3"),
        ("+5", "5"),
        ("-+-5", "5"),
        ("-(2 + 3)", "-5"),
        ("((((7))))", "7"),
        ("\t1\t+ 2 ", "3"),
        ("1+2*3-4/2", "5"),
    ],
)
def test_operators_follow_precedence_and_associativity(text: str, expected: str) -> None:
    # Given an expression mixing operators; When computed; Then "^" binds tightest (right to
    # left), then unary signs, then "* / %", then "+ -" (left to right)
    assert compute(text) == expected


def test_star_star_parses_to_the_same_tree_as_caret() -> None:
    # Given the two spellings of power; When parsed; Then the trees are identical
    assert parse("2 ** 3") == BinaryOp("^", Number(Fraction(2), 1), Number(Fraction(3), 6), 3)
    assert parse("2^3") == BinaryOp("^", Number(Fraction(2), 1), Number(Fraction(3), 3), 2)


def test_parse_builds_a_tree_with_columns() -> None:
    # Given a small expression; When parsed
    tree = parse("1 + 2 * -3")
    # Then "*" is under "+", the sign is a unary node, and each node records its column
    assert tree == BinaryOp(
        "+",
        Number(Fraction(1), 1),
        BinaryOp("*", Number(Fraction(2), 5), UnaryOp("-", Number(Fraction(3), 10), 9), 7),
        3,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7 % 3", "1"),
        ("-7 % 3", "2"),
        ("7 % -3", "-2"),
        ("-7 % -3", "-1"),
        ("5.5 % 2", "1.5"),
        ("1 % 0.3", "0.1"),
        ("6 % 3", "0"),
    ],
)
def test_modulo_is_floor_modulo_with_the_sign_of_the_divisor(text: str, expected: str) -> None:
    assert compute(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 / 3 * 3", "1"),
        ("1/3*3", "1"),
        ("0.1 + 0.2", "0.3"),
        ("1 / 3 + 1 / 6", "0.5"),
        ("2 / 3 - 2 / 3", "0"),
        ("1 / 7 * 7", "1"),
    ],
)
def test_arithmetic_is_exact(text: str, expected: str) -> None:
    # Given operations that lose precision in floating point; Then results are exact
    assert compute(text) == expected


# --- numbers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12", "12"),
        ("1.5", "1.5"),
        (".5", "0.5"),
        ("5.", "5"),
        ("007", "7"),
        ("1.50", "1.5"),
        ("0.0", "0"),
        ("1e3", "1000"),
        ("1E3", "1000"),
        ("2.5E-3", "0.0025"),
        ("1.5e+2", "150"),
        ("12e-1", "1.2"),
        (".5e1", "5"),
        ("5.e0", "5"),
        ("1e-20", "0.00000000000000000001"),
        ("1e30", "1" + "0" * 30),
        ("1e" + "0" * 200 + "1", "10"),
    ],
)
def test_number_literals_accept_decimals_and_scientific_notation(text: str, expected: str) -> None:
    assert compute(text) == expected


# --- canonical formatting ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Fraction(0), "0"),
        (Fraction(69), "69"),
        (Fraction(-8), "-8"),
        (Fraction(100), "100"),
        (Fraction(7, 4), "1.75"),
        (Fraction(-1, 8), "-0.125"),
        (Fraction(1, 2**20), "0.00000095367431640625"),
        (Fraction(1, 3), ONE_THIRD),
        (Fraction(2, 3), TWO_THIRDS),
        (Fraction(-2, 3), "-" + TWO_THIRDS),
        (Fraction(1, 7), "0.14285714285714285714285714285714285714285714285714"),
        (Fraction(10, 3), "3." + "3" * 49),
        (Fraction(10**60, 3), "3" * 50 + "0" * 10),
        (Fraction(1, 3 * 10**10), "0." + "0" * 10 + "3" * 50),
        (Fraction(10**50 - 1, 10**50) * Fraction(3, 3), "0." + "9" * 50),
        (Fraction(1, 3) + Fraction(1, 10**60), "0." + "3" * 50),
        (Fraction(10**51 - 1, 3 * 10**51) * 3, "0." + "9" * 51),
        (Fraction(10**51 - 1, 10**51) + Fraction(1, 3 * 10**60), "1"),
    ],
)
def test_format_number_renders_canonical_decimals(value: Fraction, expected: str) -> None:
    # Given an exact value; When formatted; Then it is plain decimal, exact when it terminates,
    # otherwise rounded half-even to 50 significant digits, never with trailing zeros or "-0"
    assert format_number(value) == expected


@pytest.mark.parametrize("text", ["-0", "0 * -1", "-0.0", "1 - 1", "-(0)", "0 / -5", "-0e5"])
def test_zero_is_never_rendered_negative(text: str) -> None:
    assert compute(text) == "0"


def test_significant_digits_are_configurable() -> None:
    limits = Limits(significant_digits=5)
    assert compute("1 / 3", limits) == "0.33333"
    assert compute("2 / 3", limits) == "0.66667"
    assert compute("200000 / 3", limits) == "66667"
    assert compute("1 / 8", limits) == "0.125"  # terminating values stay exact


# --- bounds -----------------------------------------------------------------------------------


def test_default_limits_have_the_documented_values() -> None:
    assert Limits() == DEFAULT_LIMITS
    assert dataclasses.asdict(DEFAULT_LIMITS) == {
        "max_length": 1000,
        "max_depth": 64,
        "max_number_digits": 100,
        "max_exponent": 1000,
        "max_result_digits": 1000,
        "significant_digits": 50,
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_LIMITS.max_depth = 1  # type: ignore[misc]


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(Limits)])
@pytest.mark.parametrize("bad", [0, -1, 1.5, "10"])
def test_limits_reject_values_that_are_not_positive_integers(field: str, bad: object) -> None:
    with pytest.raises(ValueError, match=field):
        Limits(**{field: bad})  # type: ignore[arg-type]


def test_an_expression_of_exactly_max_length_is_accepted() -> None:
    text = "1+" * 499 + "1 "
    assert len(text) == 1000
    assert compute(text) == "500"


def test_an_expression_longer_than_max_length_is_refused_before_tokenizing() -> None:
    # Given 1001 characters that are not even valid; Then the length is what is reported
    with pytest.raises(LimitExceeded, match="1001 characters long, more than the limit of 1000"):
        compute("$" * 1001)


@pytest.mark.parametrize(
    "text",
    [
        "(" * 64 + "1" + ")" * 64,
        "-" * 64 + "1",
        "1" + "^1" * 64,
        "-(" * 32 + "1" + ")" * 32,
        "+".join(["1"] * 500),  # a long flat chain is not nesting
    ],
)
def test_nesting_up_to_max_depth_is_accepted(text: str) -> None:
    compute(text)


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("(" * 65 + "1" + ")" * 65, 65),
        ("-" * 65 + "1", 65),
        ("1" + "^1" * 65, 130),
        ("-(" * 32 + "-1" + ")" * 32, 65),
    ],
)
def test_nesting_beyond_max_depth_is_refused_at_the_level_that_crosses_it(
    text: str, column: int
) -> None:
    with pytest.raises(
        LimitExceeded, match=f"^expression is nested more than 64 levels deep at column {column}$"
    ):
        compute(text)


@pytest.mark.parametrize(
    "text",
    [
        "(" * 10_000 + "1" + ")" * 10_000,
        "-" * 100_000 + "1",
        "2" + "^2" * 50_000,
        "(" * 100_000,
    ],
)
@pytest.mark.parametrize("limits", [DEFAULT_LIMITS, ROOMY], ids=["default", "roomy"])
def test_pathological_nesting_fails_fast_with_limit_exceeded_not_recursion_error(
    text: str, limits: Limits
) -> None:
    # Given absurdly deep nesting (by default also far too long)
    started = time.perf_counter()
    # When computed; Then a LimitExceeded (never RecursionError) is raised, and quickly
    with pytest.raises(LimitExceeded):
        compute(text, limits)
    assert time.perf_counter() - started < 1.0


def test_a_custom_max_depth_beyond_the_python_stack_still_raises_limit_exceeded() -> None:
    limits = Limits(max_length=1_000_000, max_depth=1_000_000)
    with pytest.raises(LimitExceeded, match="nested too deeply"):
        compute("(" * 100_000 + "1" + ")" * 100_000, limits)


def test_evaluate_handles_hand_built_trees_deeper_than_the_python_stack() -> None:
    # Given trees far deeper than the recursion limit, built without parse
    chain: BinaryOp | Number = Number(Fraction(0))
    for _ in range(100_000):
        chain = BinaryOp("+", chain, Number(Fraction(1)))
    signs: UnaryOp | Number = Number(Fraction(5))
    for _ in range(100_001):
        signs = UnaryOp("-", signs)
    # When evaluated; Then evaluation is iterative and correct
    assert evaluate(chain) == 100_000
    assert evaluate(signs) == -5


def test_a_literal_with_exactly_max_number_digits_is_accepted() -> None:
    assert compute("9" * 100) == "9" * 100
    assert compute("0." + "0" * 98 + "1") == "0." + "0" * 98 + "1"
    assert compute("1" * 100 + "e-99") == "1." + "1" * 99


@pytest.mark.parametrize("text", ["9" * 101, "0." + "0" * 99 + "1", "1" * 101 + "e-99"])
def test_a_literal_with_more_than_max_number_digits_is_refused(text: str) -> None:
    with pytest.raises(LimitExceeded, match="number has 101 digits, more than the limit of 100"):
        compute(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2^1000", str(2**1000)),
        ("2^-1000", format_number(Fraction(1, 2**1000))),
        ("1e999", "1" + "0" * 999),
        ("1e-999", "0." + "0" * 998 + "1"),
        ("1e+999", "1" + "0" * 999),
    ],
)
def test_exponents_up_to_max_exponent_are_accepted(text: str, expected: str) -> None:
    assert compute(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2^1001", "exponent is larger than the limit of 1000 in absolute value at column 2"),
        ("2^-1001", "exponent is larger than the limit of 1000 in absolute value at column 2"),
        ("1^1001", "exponent is larger than the limit of 1000 in absolute value at column 2"),
        ("9^9^9^9", "exponent is larger than the limit of 1000 in absolute value at column 4"),
        ("1e1001", "scientific exponent is larger than the limit of 1000"),
        ("1e-1001", "scientific exponent is larger than the limit of 1000"),
        ("1e" + "9" * 500, "scientific exponent is larger than the limit of 1000"),
    ],
)
def test_exponents_beyond_max_exponent_are_refused(text: str, message: str) -> None:
    with pytest.raises(LimitExceeded, match=re.escape(message)):
        compute(text)


@pytest.mark.parametrize(
    "text",
    [
        "9^9^9^9",
        "10^1000^1000",
        "(10^999)*(10^999)",
        "999^999",
        "(1/999)^999",
        "(10^999)^1000",
        "2^1000^1000^1000",
    ],
)
def test_huge_powers_fail_in_well_under_a_second(text: str) -> None:
    started = time.perf_counter()
    with pytest.raises(LimitExceeded):
        compute(text)
    assert time.perf_counter() - started < 1.0


def test_a_result_of_exactly_max_result_digits_is_accepted() -> None:
    # 10^1000 - 1, built without any intermediate of more than 1000 digits
    assert compute("(10^500 - 1) * 10^500 + (10^500 - 1)") == "9" * 1000
    assert compute("1 / 10^999") == "0." + "0" * 998 + "1"


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("(10^999)*(10^999)", 9),
        ("10^1000", 3),
        ("10^999 * 10", 8),
        ("1 / 10^1000", 7),
        ("10^500 * 10^500", 8),
        ("1e1000", 1),
        ("(10^500 - 1) * 10^500 + 10^500", 23),
    ],
)
def test_a_result_beyond_max_result_digits_is_refused(text: str, column: int) -> None:
    with pytest.raises(
        LimitExceeded, match=f"result too large: more than 1000 digits at column {column}$"
    ):
        compute(text)


@pytest.mark.parametrize(
    ("limits", "accepted", "refused"),
    [
        (Limits(max_length=5), "1+2+3", "1+2+3+4"),
        (Limits(max_depth=2), "((1))", "(((1)))"),
        (Limits(max_depth=2), "-(1)", "--(1)"),
        (Limits(max_number_digits=3), "999", "1000"),
        (Limits(max_number_digits=3), "1.23", "1.234"),
        (Limits(max_exponent=3), "2^3", "2^4"),
        (Limits(max_exponent=3), "1e-3", "1e4"),
        (Limits(max_result_digits=3), "999", "10 * 100"),
        (Limits(max_result_digits=3), "1 / 125", "1 / 1000"),
    ],
)
def test_custom_limits_are_respected(limits: Limits, accepted: str, refused: str) -> None:
    compute(accepted, limits)
    with pytest.raises(LimitExceeded):
        compute(refused, limits)


def test_limits_beyond_what_python_converts_still_raise_limit_exceeded() -> None:
    # Given limits above CPython's 4300-digit int/str conversion bound
    limits = Limits(max_length=10_000, max_number_digits=5000, max_result_digits=5000)
    # Then converting such a literal is reported as a limit, never as a ValueError
    with pytest.raises(LimitExceeded):
        compute("1" * 4400, limits)


# --- syntax and evaluation errors -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("1 $ 2", "unexpected character '$'", 3),
        ("(1 + 2", "unclosed '('", 1),
        ("2 * ((1 + 2)", "unclosed '('", 5),
        ("1 + 2)", "unmatched ')'", 6),
        ("1 2", "unexpected number '2', expected an operator", 3),
        ("(1 2)", "unexpected number '2', expected an operator or ')'", 4),
        ("(1)(2)", "unexpected '(', expected an operator", 4),
        ("()", "unexpected ')', expected a number or '('", 2),
        ("1 + * 2", "unexpected '*', expected a number or '('", 5),
        ("2 *** 3", "unexpected '*', expected a number or '('", 5),
        ("* 2", "unexpected '*', expected a number or '('", 1),
        ("2 ^", "unexpected end of expression, expected a number or '('", 3),
        ("1 +   \t", "unexpected end of expression, expected a number or '('", 3),
        ("1\x00", "unexpected character '\\x00'", 2),
        ("1 + é", "unexpected character 'é'", 5),
        ("\u0661 + 1", "unexpected character '\u0661'", 1),
        ("1 + 2\n", "unexpected character '\\n'", 6),
        ("\t1 +\t$", "unexpected character '$'", 6),
        (".", "unexpected character '.'", 1),
        ("1.2.3", "unexpected number '.3', expected an operator", 4),
        ("1e", "unexpected character 'e'", 2),
        ("1e+", "unexpected character 'e'", 2),
        ("__import__('os')", "unexpected character '_'", 1),
    ],
)
def test_syntax_errors_say_what_and_where(text: str, message: str, column: int) -> None:
    # Given malformed text; When computed
    with pytest.raises(ExpressionSyntaxError) as caught:
        compute(text)
    # Then the message says what is wrong and at which 1-based column
    assert str(caught.value) == f"{message} at column {column}"
    assert caught.value.column == column


@pytest.mark.parametrize("text", ["", " ", " \t  "])
def test_empty_or_blank_text_is_a_syntax_error(text: str) -> None:
    with pytest.raises(ExpressionSyntaxError, match=r"^expression is empty$"):
        compute(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 / 0", "division by zero at column 3"),
        ("5 / (2 - 2)", "division by zero at column 3"),
        ("1 / 0.0", "division by zero at column 3"),
        ("1 % 0", "modulo by zero at column 3"),
        ("7 + 1 % (3 - 3)", "modulo by zero at column 7"),
        ("0 ^ -1", "division by zero at column 3"),
        ("(1 - 1) ^ -2", "division by zero at column 9"),
        ("2 ^ 0.5", "exponent must be an integer at column 3"),
        ("4 ^ (1 / 2)", "exponent must be an integer at column 3"),
    ],
)
def test_evaluation_errors_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(EvaluationError, match=f"^{re.escape(message)}$"):
        compute(text)


def test_every_error_is_an_expression_error() -> None:
    for error in (ExpressionSyntaxError, EvaluationError, LimitExceeded):
        assert issubclass(error, ExpressionError)


# --- properties -------------------------------------------------------------------------------

Tree = int | tuple  # an int leaf, (op, left, right) or ("^", base, int exponent)

_trees = st.recursive(
    st.integers(min_value=-1000, max_value=1000),
    lambda children: st.one_of(
        st.tuples(st.sampled_from(["+", "-", "*", "/", "%"]), children, children),
        st.tuples(st.just("^"), children, st.integers(min_value=-3, max_value=3)),
    ),
    max_leaves=20,
)


def _render(tree: Tree) -> str:
    """Fully parenthesised text; negative leaves are parenthesised so "^" cannot bind first."""
    if isinstance(tree, int):
        return str(tree) if tree >= 0 else f"({tree})"
    op, left, right = tree
    return f"({_render(left)} {op} {_render(right)})"


def _depth(tree: Tree) -> int:
    return 0 if isinstance(tree, int) else 1 + max(_depth(tree[1]), _depth(tree[2]))


def _reference(tree: Tree, max_digits: int) -> Fraction:
    """Python's own Fraction arithmetic, raising the errors compute is expected to raise."""
    if isinstance(tree, int):
        return Fraction(tree)
    op, left_tree, right_tree = tree
    left, right = _reference(left_tree, max_digits), _reference(right_tree, max_digits)
    if (op in ("/", "%") and right == 0) or (op == "^" and left == 0 and right < 0):
        raise EvaluationError("by zero")
    result = {
        "+": lambda: left + right,
        "-": lambda: left - right,
        "*": lambda: left * right,
        "/": lambda: left / right,
        "%": lambda: left % right,
        "^": lambda: left ** int(right),
    }[op]()
    for part in (result.numerator, result.denominator):
        if len(str(abs(part))) > max_digits:
            raise LimitExceeded("too large")
    return result


@given(_trees)
def test_computing_random_integer_expressions_matches_fraction_arithmetic(tree: Tree) -> None:
    # Given a random small integer expression, rendered with full parentheses
    assume(_depth(tree) <= 20)
    text = _render(tree)
    limits = Limits(max_length=100_000)
    try:
        expected = _reference(tree, limits.max_result_digits)
    except ExpressionError as error:
        # Then it fails the same way Fraction arithmetic does
        with pytest.raises(type(error)):
            compute(text, limits)
        return
    # Then parse + evaluate give exactly the Fraction result, and compute renders it
    assert evaluate(parse(text, limits), limits) == expected
    assert compute(text, limits) == format_number(expected, limits)


@given(st.text(max_size=200))
def test_compute_raises_only_expression_errors_on_arbitrary_text(text: str) -> None:
    try:
        result = compute(text)
    except ExpressionError:
        return
    assert CANONICAL.fullmatch(result)


@given(st.text(alphabet="0123456789.eE+-*/%^() \t", max_size=200))
def test_compute_raises_only_expression_errors_on_arithmetic_looking_text(text: str) -> None:
    started = time.perf_counter()
    try:
        result = compute(text)
    except ExpressionError:
        pass
    else:
        assert CANONICAL.fullmatch(result)
        assert result != "-0"
    assert time.perf_counter() - started < 1.0


@given(
    st.integers(min_value=-(10**40), max_value=10**40),
    st.integers(min_value=0, max_value=60),
    st.integers(min_value=0, max_value=60),
)
def test_terminating_values_are_rendered_exactly_and_canonically(
    numerator: int, twos: int, fives: int
) -> None:
    value = Fraction(numerator, 2**twos * 5**fives)
    text = format_number(value)
    assert CANONICAL.fullmatch(text)
    assert text != "-0"
    assert Fraction(text) == value


@given(
    st.integers(min_value=-(10**40), max_value=10**40),
    st.integers(min_value=1, max_value=10**12),
)
def test_non_terminating_values_round_half_even_to_50_significant_digits(
    numerator: int, denominator: int
) -> None:
    value = Fraction(numerator, denominator)
    rest = value.denominator
    for prime in (2, 5):
        while rest % prime == 0:
            rest //= prime
    assume(rest != 1)
    # Decimal division is correctly rounded, so it is an independent oracle
    with localcontext() as context:
        context.prec = 50
        context.rounding = ROUND_HALF_EVEN
        oracle = Decimal(value.numerator) / Decimal(value.denominator)
    expected = format(oracle, "f")
    if "." in expected:
        expected = expected.rstrip("0").rstrip(".")
    assert format_number(value) == expected
