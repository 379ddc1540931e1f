"""Arithmetic expressions: parse, evaluate exactly, render canonically.

Pure code: standard library only, no I/O. Workers call :func:`compute` once per operation.

The language is decimal numbers (``12``, ``1.5``, ``.5``, ``5.``, ``2.5E-3``), the binary
operators ``+ - * / %`` and ``^`` (``**`` is a synonym), unary ``+``/``-`` and parentheses;
spaces and tabs are insignificant. Grammar, loosest binding first::

    expression := term (("+" | "-") term)*
    term       := unary (("*" | "/" | "%") unary)*
    unary      := ("+" | "-") unary | power
    power      := primary ("^" unary)?        right-associative; a sign may start an exponent
    primary    := NUMBER | "(" expression ")"

So ``-2^2`` is -4, ``2^-1`` is 0.5 and ``2^3^2`` is 512. Arithmetic is exact
(:class:`~fractions.Fraction`): ``1 / 3 * 3`` is 1. Every size that could make a worker stall is
bounded by :class:`Limits`; crossing a bound raises :class:`~jobstream.errors.LimitExceeded`, a
malformed text raises :class:`~jobstream.errors.ExpressionSyntaxError` and a runtime failure
raises :class:`~jobstream.errors.EvaluationError`, all of them :class:`ExpressionError`.

Columns in messages are 1-based; an error at the end of the text points at its last non-blank
character (``"1 +"`` ends at column 3).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, fields
from fractions import Fraction
from typing import NoReturn, TypeAlias

from jobstream.errors import EvaluationError, ExpressionSyntaxError, LimitExceeded

__all__ = [
    "DEFAULT_LIMITS",
    "BinaryOp",
    "Limits",
    "Node",
    "Number",
    "UnaryOp",
    "compute",
    "evaluate",
    "format_number",
    "parse",
]


@dataclass(frozen=True)
class Limits:
    """Bounds that keep one expression cheap to parse, evaluate and render.

    Every field must be a positive integer (checked on construction, ``ValueError`` otherwise).
    """

    max_length: int = 1000
    """Characters in one expression, checked before anything else."""
    max_depth: int = 64
    """Nesting of parentheses, unary signs and ``^`` exponents (bounds the parser's recursion)."""
    max_number_digits: int = 100
    """Digits in one numeric literal, not counting its scientific exponent."""
    max_exponent: int = 1000
    """Absolute value of an exponent, in ``^`` and in scientific notation."""
    max_result_digits: int = 1000
    """Decimal digits of every numerator and denominator, literal, intermediate or final."""
    significant_digits: int = 50
    """Significant digits kept when rendering a non-terminating quotient such as 1/3."""

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if type(value) is not int or value < 1:
                raise ValueError(f"Limits.{field.name} must be a positive integer, got {value!r}")


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Number:
    """A numeric literal, already converted to its exact value."""

    value: Fraction
    column: int | None = None


@dataclass(frozen=True, slots=True)
class UnaryOp:
    """``+operand`` or ``-operand``."""

    op: str
    operand: Node
    column: int | None = None


@dataclass(frozen=True, slots=True)
class BinaryOp:
    """``left op right`` where op is one of ``+ - * / % ^`` (``**`` is parsed as ``^``)."""

    op: str
    left: Node
    right: Node
    column: int | None = None


Node: TypeAlias = Number | UnaryOp | BinaryOp

# ---------------------------------------------------------------------------------------------
# Parsing

# One regex per token keeps the tokenizer a tight loop. [0-9] rather than \d: \d would accept
# non-ASCII digits such as U+0661. The trailing "?" lets the pattern match at the very end too.
_TOKEN = re.compile(
    r"[ \t]*(?:"
    r"(?P<number>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"|(?P<operator>\*\*|[-+*/%^()])"
    r"|(?P<other>.)"
    r")?",
    re.DOTALL,
)
_NUMBER = "number"
_END = "end"
_ADDITIVE = frozenset("+-")
_MULTIPLICATIVE = frozenset("*/%")


def parse(text: str, limits: Limits = DEFAULT_LIMITS) -> Node:
    """Parse ``text`` into a tree of :class:`Number`, :class:`UnaryOp` and :class:`BinaryOp`.

    Raises ExpressionSyntaxError for malformed text and LimitExceeded when the text is too long,
    too deeply nested, or has a literal with too many digits or too large an exponent.
    """
    if len(text) > limits.max_length:
        raise LimitExceeded(
            f"expression is {len(text)} characters long, more than the limit of {limits.max_length}"
        )
    try:
        return _Parser(text, limits).parse()
    except RecursionError:
        # Only reachable when a custom max_depth allows more nesting than Python's stack does.
        raise LimitExceeded("expression is nested too deeply") from None


class _Parser:
    """Recursive descent over tokens pulled one at a time: a bad text fails at its first error."""

    __slots__ = ("bound", "column", "depth", "kind", "limits", "pos", "text", "token", "value")

    def __init__(self, text: str, limits: Limits) -> None:
        self.text = text
        self.limits = limits
        self.bound = _digit_bound(limits.max_result_digits)
        self.pos = 0
        self.depth = 0
        self.kind = _END  # "number", "end", or the operator itself ("**" becomes "^")
        self.token = ""  # the token's text, for messages
        self.column = 0
        self.value = Fraction(0)  # the value of the current number token
        self._advance()

    def parse(self) -> Node:
        if self.kind == _END:
            raise ExpressionSyntaxError("expression is empty")
        node = self._expression()
        if self.kind != _END:
            if self.kind == ")":
                raise ExpressionSyntaxError("unmatched ')'", self.column)
            self._unexpected("an operator")
        return node

    def _advance(self) -> None:
        match = _TOKEN.match(self.text, self.pos)
        assert match is not None  # the pattern also matches the empty string
        self.pos = match.end()
        group = match.lastgroup
        if group is None:
            self.kind = _END
            self.token = ""
            self.column = len(self.text.rstrip(" \t"))
            return
        self.token = token = match.group(group)
        self.column = match.start(group) + 1
        if group == "operator":
            self.kind = "^" if token == "**" else token
        elif group == "number":
            self.kind = _NUMBER
            self.value = self._number(token)
        else:
            raise ExpressionSyntaxError(f"unexpected character {token!r}", self.column)

    def _number(self, token: str) -> Fraction:
        limits = self.limits
        if token.isdigit():  # the common case: a plain integer
            digits, scale = token, 0
        else:
            mantissa, _, exponent = token.lower().partition("e")
            whole, _, decimals = mantissa.partition(".")
            digits, scale = whole + decimals, -len(decimals)
            if exponent:
                scale += self._exponent(exponent)
        if len(digits) > limits.max_number_digits:
            raise LimitExceeded(
                f"number has {len(digits)} digits, more than the limit of "
                f"{limits.max_number_digits} at column {self.column}"
            )
        value = _to_int(digits)
        number = Fraction(value * 10**scale) if scale >= 0 else Fraction(value, 10**-scale)
        _check_size(number, self.bound, self.column)
        return number

    def _exponent(self, text: str) -> int:
        limit = self.limits.max_exponent
        magnitude = text.lstrip("+-").lstrip("0") or "0"
        # Compare lengths first so a thousand-digit exponent is never converted to an int.
        if len(magnitude) > len(str(limit)) or int(magnitude) > limit:
            raise LimitExceeded(
                f"scientific exponent is larger than the limit of {limit} in absolute value "
                f"at column {self.column}"
            )
        return -int(magnitude) if text[0] == "-" else int(magnitude)

    def _enter(self) -> None:
        """Count one level of nesting at the current token; called before recursing."""
        self.depth += 1
        if self.depth > self.limits.max_depth:
            raise LimitExceeded(
                f"expression is nested more than {self.limits.max_depth} levels deep "
                f"at column {self.column}"
            )

    def _unexpected(self, expected: str) -> NoReturn:
        if self.kind == _END:
            found = "end of expression"
        elif self.kind == _NUMBER:
            found = f"number {self.token!r}"
        else:
            found = repr(self.token)
        raise ExpressionSyntaxError(f"unexpected {found}, expected {expected}", self.column)

    def _expression(self) -> Node:
        node = self._term()
        # Loops, not recursion, for left-associative chains: "1+1+...+1" costs no stack depth.
        while self.kind in _ADDITIVE:
            op, column = self.kind, self.column
            self._advance()
            node = BinaryOp(op, node, self._term(), column)
        return node

    def _term(self) -> Node:
        node = self._unary()
        while self.kind in _MULTIPLICATIVE:
            op, column = self.kind, self.column
            self._advance()
            node = BinaryOp(op, node, self._unary(), column)
        return node

    def _unary(self) -> Node:
        if self.kind not in _ADDITIVE:
            return self._power()
        op, column = self.kind, self.column
        self._enter()
        self._advance()
        operand = self._unary()
        self.depth -= 1
        return UnaryOp(op, operand, column)

    def _power(self) -> Node:
        base = self._primary()
        if self.kind != "^":
            return base
        column = self.column
        self._enter()
        self._advance()
        # The exponent is a whole unary, which makes "^" right-associative and allows "2^-1".
        exponent = self._unary()
        self.depth -= 1
        return BinaryOp("^", base, exponent, column)

    def _primary(self) -> Node:
        if self.kind == _NUMBER:
            node = Number(self.value, self.column)
            self._advance()
            return node
        if self.kind != "(":
            self._unexpected("a number or '('")
        open_column = self.column
        self._enter()
        self._advance()
        node = self._expression()
        if self.kind != ")":
            if self.kind == _END:
                raise ExpressionSyntaxError("unclosed '('", open_column)
            self._unexpected("an operator or ')'")
        self.depth -= 1
        self._advance()
        return node


# ---------------------------------------------------------------------------------------------
# Evaluation

_LOG2_10 = math.log2(10)


class _DigitBound:
    """Decides cheaply whether an integer has more than ``digits`` decimal digits."""

    __slots__ = ("digits", "fit_bits", "over_bits")

    def __init__(self, digits: int) -> None:
        bits_of_limit = digits * _LOG2_10  # log2(10**digits)
        self.digits = digits
        # Margins of a bit or two absorb float rounding; only the few bit lengths in between
        # need the exact comparison with 10**digits.
        self.fit_bits = math.floor(bits_of_limit) - 1  # at most this many bits: surely fits
        self.over_bits = math.ceil(bits_of_limit) + 2  # at least this many bits: surely too big

    def exceeded_by(self, n: int) -> bool:
        bits = n.bit_length()
        if bits <= self.fit_bits:
            return False
        if bits >= self.over_bits:
            return True
        return abs(n) >= _power_of_ten(self.digits)


@functools.lru_cache(maxsize=32)
def _digit_bound(digits: int) -> _DigitBound:
    return _DigitBound(digits)


@functools.lru_cache(maxsize=32)
def _power_of_ten(exponent: int) -> int:
    return 10**exponent


def _at(message: str, column: int | None) -> str:
    return message if column is None else f"{message} at column {column}"


def _too_large(bound: _DigitBound, column: int | None) -> LimitExceeded:
    return LimitExceeded(_at(f"result too large: more than {bound.digits} digits", column))


def _check_size(value: Fraction, bound: _DigitBound, column: int | None) -> None:
    numerator, denominator = value.numerator, value.denominator
    fit_bits = bound.fit_bits
    if numerator.bit_length() <= fit_bits and denominator.bit_length() <= fit_bits:
        return  # the common case, decided without a call
    if bound.exceeded_by(numerator) or bound.exceeded_by(denominator):
        raise _too_large(bound, column)


def _to_int(digits: str) -> int:
    try:
        return int(digits)
    except ValueError:
        # CPython refuses str<->int conversions over sys.get_int_max_str_digits() (4300 by
        # default); only reachable with custom limits above that.
        raise LimitExceeded(f"number has too many digits ({len(digits)}) to convert") from None


def evaluate(node: Node, limits: Limits = DEFAULT_LIMITS) -> Fraction:
    """Evaluate ``node`` exactly.

    ``/`` is exact division. ``%`` is Fraction's floor modulo: the result has the sign of the
    divisor (``-7 % 3`` is 2, ``7 % -3`` is -2) and ``a == (a // b) * b + a % b``.
    ``^`` needs an integer exponent no larger than ``max_exponent`` in absolute value; ``0^0``
    is 1. Raises EvaluationError on division or modulo by zero (``0 ^ -1`` included) and on a
    non-integer exponent, LimitExceeded when any value would exceed ``max_result_digits``.
    """
    bound = _digit_bound(limits.max_result_digits)
    values: list[Fraction] = []
    # An explicit stack rather than recursion: a hand-built or left-deep tree of any depth
    # (e.g. "1+1+...+1") must never hit Python's recursion limit. (node, True) means "the
    # operands are on `values`, apply the operator".
    todo: list[tuple[Node, bool]] = [(node, False)]
    while todo:
        current, ready = todo.pop()
        if isinstance(current, Number):
            # parse() checked its literals already, but a hand-built tree may hold anything.
            _check_size(current.value, bound, current.column)
            values.append(current.value)
        elif isinstance(current, BinaryOp):
            if ready:
                right = values.pop()
                values[-1] = _binary(current, values[-1], right, limits, bound)
            else:
                todo += ((current, True), (current.right, False), (current.left, False))
        elif isinstance(current, UnaryOp):
            if not ready:
                todo += ((current, True), (current.operand, False))
            elif current.op == "-":
                values[-1] = -values[-1]
            elif current.op != "+":
                raise ValueError(f"unknown unary operator {current.op!r}")
        else:
            raise TypeError(f"not an expression node: {current!r}")
    return values[0]


def _binary(
    node: BinaryOp, left: Fraction, right: Fraction, limits: Limits, bound: _DigitBound
) -> Fraction:
    op, column = node.op, node.column
    if op == "+":
        result = left + right
    elif op == "-":
        result = left - right
    elif op == "*":
        result = left * right
    elif op == "/":
        if not right:
            raise EvaluationError(_at("division by zero", column))
        result = left / right
    elif op == "%":
        if not right:
            raise EvaluationError(_at("modulo by zero", column))
        result = left % right
    elif op == "^":
        result = _power(left, right, column, limits, bound)
    else:
        raise ValueError(f"unknown binary operator {op!r}")
    _check_size(result, bound, column)
    return result


def _power(
    base: Fraction, exponent: Fraction, column: int | None, limits: Limits, bound: _DigitBound
) -> Fraction:
    if exponent.denominator != 1:
        raise EvaluationError(_at("exponent must be an integer", column))
    power = exponent.numerator
    magnitude = abs(power)
    if magnitude > limits.max_exponent:
        message = f"exponent is larger than the limit of {limits.max_exponent} in absolute value"
        raise LimitExceeded(_at(message, column))
    if power < 0 and not base:
        raise EvaluationError(_at("division by zero", column))  # 0^-n is 1 / 0^n
    # Before computing: x**m has at least m*(bits(x) - 1) + 1 bits. Refusing on this lower
    # bound rejects only results that are surely too large (so "9^9^9^9" fails in
    # microseconds), and what is computed stays within about twice the limit.
    for part in (base.numerator, base.denominator):
        if magnitude * (part.bit_length() - 1) + 1 >= bound.over_bits:
            raise _too_large(bound, column)
    return base**power


# ---------------------------------------------------------------------------------------------
# Rendering

_LOG10_2 = math.log10(2)
_FIVE_TO_16 = 5**16


def format_number(value: Fraction, limits: Limits = DEFAULT_LIMITS) -> str:
    """Render ``value`` as a canonical decimal: ``"69"``, ``"-8"``, ``"1.75"``, ``"0"``.

    No exponent notation, no trailing zeros after the point, no trailing point, never ``"-0"``.
    A terminating value (denominator of the form 2^a * 5^b) is written exactly; any other is
    rounded half-even to ``limits.significant_digits`` significant digits (1/3 gives
    ``"0.333…3"``, 2/3 gives ``"0.666…67"``).
    """
    numerator, denominator = value.numerator, value.denominator
    if denominator == 1:
        return _to_str(numerator)
    sign = "-" if numerator < 0 else ""
    numerator = abs(numerator)

    twos = (denominator & -denominator).bit_length() - 1
    rest = denominator >> twos
    fives = 0
    while rest % _FIVE_TO_16 == 0:  # big strides first: a denominator may be 5^1400
        rest //= _FIVE_TO_16
        fives += 16
    while rest % 5 == 0:
        rest //= 5
        fives += 1

    if rest == 1:
        # Terminating: exactly `places` decimals, the least that make it an integer, so the
        # last one is never 0.
        places = max(twos, fives)
        scaled = _to_str(numerator * 10**places // denominator).rjust(places + 1, "0")
        return f"{sign}{scaled[:-places]}.{scaled[-places:]}"
    return sign + _round_significant(numerator, denominator, limits.significant_digits)


def _round_significant(numerator: int, denominator: int, digits: int) -> str:
    """Render positive ``numerator / denominator`` rounded half-even to ``digits`` digits."""
    # e = floor(log10(n / d)): estimated from bit lengths (off by at most one), then made exact.
    e = math.floor((numerator.bit_length() - denominator.bit_length()) * _LOG10_2)
    while _at_least_power_of_ten(numerator, denominator, e + 1):
        e += 1
    while not _at_least_power_of_ten(numerator, denominator, e):
        e -= 1
    shift = digits - 1 - e  # scale so the quotient has exactly `digits` integer digits
    if shift >= 0:
        quotient, remainder = divmod(numerator * 10**shift, denominator)
        divisor = denominator
    else:
        divisor = denominator * 10**-shift
        quotient, remainder = divmod(numerator, divisor)
    if 2 * remainder > divisor or (2 * remainder == divisor and quotient & 1):
        quotient += 1
        if quotient == 10**digits:  # 9.99… rounded up to 10.0…
            quotient //= 10
            e += 1
    text = _to_str(quotient)
    if e < 0:
        text = "0." + "0" * (-e - 1) + text
    elif e + 1 >= digits:
        return text + "0" * (e + 1 - digits)  # an integer: its zeros are significant
    else:
        text = f"{text[: e + 1]}.{text[e + 1 :]}"
    return text.rstrip("0").rstrip(".")


def _at_least_power_of_ten(numerator: int, denominator: int, exponent: int) -> bool:
    """Whether ``numerator / denominator >= 10**exponent``, in integers only."""
    if exponent >= 0:
        return numerator >= denominator * 10**exponent
    return numerator * 10**-exponent >= denominator


def _to_str(n: int) -> str:
    try:
        return str(n)
    except ValueError:
        # CPython's int->str digit limit (4300 by default): only custom limits can get here.
        raise LimitExceeded("result has too many digits to render") from None


def compute(text: str, limits: Limits = DEFAULT_LIMITS) -> str:
    """Parse, evaluate and render ``text``; the one call a worker makes per operation.

    Raises only ExpressionError subclasses (syntax, evaluation, limits).
    """
    return format_number(evaluate(parse(text, limits), limits), limits)
