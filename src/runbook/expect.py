"""Expectations such as ``== 0``, ``> 0``, ``is null``, ``== 'x'``, ``matches 'a.*'``.

Used by checks that compare an observed value (a query result, a count) with
what the runbook author expects; parsed once at load time so typos are found
by ``runbook validate``, not in the middle of a deployment.
"""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator

_OPS = {
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
_FORM = re.compile(r"^\s*(==|!=|>=|<=|>|<|is\s+not\s+null|is\s+null|matches|in)\s*(.*?)\s*$", re.I | re.S)
# Text opening with one of these was meant as an operator (``=> 1`` for ``>= 1``), never as a bare value.
_OPERATOR_STARTS = ("=", "<", ">", "!")


@dataclass(frozen=True)
class Expectation:
    op: str
    operand: Any
    text: str

    def holds(self, observed: Any) -> bool:
        if self.op == "is null":
            return observed is None
        if self.op == "is not null":
            return observed is not None
        if self.op == "matches":
            return observed is not None and re.search(self.operand, str(observed)) is not None
        if self.op == "in":
            return any(_equal(observed, item) for item in self.operand)
        if observed is None:
            return False
        if self.op in ("==", "!="):
            return _equal(observed, self.operand) == (self.op == "==")
        left, right = _comparable(observed, self.operand)
        try:
            return bool(_OPS[self.op](left, right))
        except TypeError:
            return False

    def __str__(self) -> str:
        return self.text


def parse_expectation(text: Any) -> Expectation:
    """Parse an expectation; a bare value means ``== value``."""
    if not isinstance(text, str):
        return Expectation("==", text, f"== {text!r}")
    match = _FORM.match(text)
    if not match:
        if text.lstrip().startswith(_OPERATOR_STARTS):
            raise ValueError(_not_understood(text))
        return Expectation("==", literal(text), f"== {text}")
    op = " ".join(match[1].lower().split())
    rest = match[2]
    if op in ("is null", "is not null"):
        if rest:
            raise ValueError(f"nothing may follow {op!r} in expectation {text!r}")
        return Expectation(op, None, op)
    if not rest:
        raise ValueError(f"expectation {text!r} needs a value after {op!r}")
    if rest.startswith(_OPERATOR_STARTS):
        raise ValueError(_not_understood(text))
    operand = literal(rest)
    if op == "matches":
        try:
            re.compile(str(operand))
        except re.error as err:
            raise ValueError(f"bad regular expression in {text!r}: {err}") from err
        operand = str(operand)
    if op == "in" and not isinstance(operand, (list, tuple, set)):
        raise ValueError(f"'in' needs a list such as in (1, 2) or in ['a', 'b'], got {rest!r}")
    return Expectation(op, operand, f"{op} {rest}")


def _not_understood(text: str) -> str:
    return f"expectation {text!r} is not understood; write it like == 0, > 0, is null or == 'x'"


def literal(text: str) -> Any:
    """A YAML-ish literal: null, true/false, numbers, quoted strings; else the text."""
    lowered = text.strip().lower()
    if lowered in ("null", "none"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError):  # TypeError: "{{ 1 }}" reads as an unhashable set of sets
        return text.strip()


def _comparable(observed: Any, expected: Any) -> tuple[Any, Any]:
    # Databases hand back Decimal, str or int for the same count; compare numerically when both are numbers.
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        try:
            return float(observed), float(expected)
        except (TypeError, ValueError):
            return observed, expected
    return observed, expected


def _equal(observed: Any, expected: Any) -> bool:
    if expected is None or observed is None:
        return observed is expected
    left, right = _comparable(observed, expected)
    if left == right:
        return True
    return str(observed) == str(expected)


def _valid_expectation(value: Any) -> Any:
    parse_expectation(value)
    return value


# A check parameter holding an expectation, validated when the runbook is loaded.
ExpectationText = Annotated[Any, AfterValidator(_valid_expectation)]


def _valid_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as err:
        raise ValueError(f"not a valid regular expression: {err}") from err
    return value


# A check parameter holding a regular expression, compiled once when the runbook is loaded.
RegexText = Annotated[str, AfterValidator(_valid_regex)]
