"""Countdown: reach a target with the given numbers, each used exactly once, and + - * / only.

``{"type": "countdown", "numbers": [44, 19, 35], "target": 98}``

The answer is the last ``<answer>...</answer>`` of the output, else its last non-empty line. A
leading label (``Equation:``) and a trailing ``= <target>`` are tolerated; ``× ÷ −`` and LaTeX
``\\times \\div \\cdot`` are read as ``* / -``.

Rules (those of the public TinyZero reward, made exact): only integers, ``+ - * /``, unary minus
and parentheses; every given number used exactly once (as a multiset); the value equals the target
within 1e-5; division by zero fails. The text is parsed with :mod:`ast` (never compiled to code,
never evaluated by Python): every node must be on a whitelist, and the tree is evaluated here with
exact :class:`fractions.Fraction` arithmetic. Length, node count and depth are capped, so no input
can make the verifier slow. Feedback says what is wrong without giving a solution.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

from pydantic import Field

from .._types import ModelOutput, Task, Verdict
from ._base import Verifier, register_verifier

__all__ = [
    "CountdownError",
    "CountdownVerifier",
    "ParsedEquation",
    "evaluate",
    "extract_equation",
    "normalize_operators",
    "parse_equation",
]

#: Longest expression (characters, after extraction) that is parsed at all.
MAX_CHARS = 500
#: Most AST nodes and deepest nesting an expression may have.
MAX_NODES = 200
MAX_DEPTH = 40
#: Only this much of the end of the output is searched for the answer.
MAX_SCAN_CHARS = 200_000
TOLERANCE = Fraction(1, 100_000)

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
_LABEL = re.compile(r"^\s*(?:[A-Za-z][A-Za-z ]{0,30}):\s*")
_TRAILING_EQ = re.compile(r"^(?P<expr>[^=]*?)\s*=+\s*(?P<rhs>-?\s*\d+(?:\.\d+)?)\s*\.?\s*$")
_REPLACEMENTS = {
    "×": "*",
    "✕": "*",
    "·": "*",
    "÷": "/",
    "−": "-",
    "–": "-",
    "\\times": "*",
    "\\cdot": "*",
    "\\div": "/",
    "\\left(": "(",
    "\\right)": ")",
}
_ALLOWED_CHARS = frozenset("0123456789+-*/() \t")
_OP_NAMES = {
    ast.Pow: "** (power)",
    ast.FloorDiv: "// (floor division)",
    ast.Mod: "% (modulo)",
    ast.MatMult: "@",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.LShift: "<<",
    ast.RShift: ">>",
}


class CountdownError(ValueError):
    """The answer cannot be read as an allowed expression; the message is model-facing feedback."""


@dataclass(frozen=True, slots=True)
class ParsedEquation:
    expression: str  # the normalized expression text
    tree: ast.expr
    numbers: tuple[int, ...]  # integer literals in order of appearance


def extract_equation(text: str) -> str | None:
    """The answer part of a model output: last ``<answer>`` tag, else last non-empty line."""
    text = text[-MAX_SCAN_CHARS:]
    last = None
    for match in _ANSWER_TAG.finditer(text):
        last = match.group(1)
    if last is None:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if not lines:
            return None
        last = lines[-1]
    last = last.strip()
    return last or None


def normalize_operators(text: str) -> str:
    """``text`` with the other ways of writing an operator read as ``+ - * /``: ``× ✕ ·`` as
    ``*``, ``÷`` as ``/``, the minus sign and en dash as ``-``, and the LaTeX forms. The verifier
    reads answers this way, and the trainer's claims check reads reflections this way."""
    for old, new in _REPLACEMENTS.items():
        text = text.replace(old, new)
    return text


def _normalize(expr: str, target: int | float | None) -> str:
    expr = normalize_operators(expr)
    expr = expr.strip().strip("`$").strip()
    expr = _LABEL.sub("", expr, count=1)
    m = _TRAILING_EQ.match(expr)
    if m:
        # \s also matches control characters such as \x1f, which Fraction rejects: drop them all
        # (found by the fuzz test).
        rhs = Fraction(re.sub(r"\s", "", m.group("rhs")))
        if target is not None and rhs != Fraction(str(target)):
            raise CountdownError(
                f"the equation is set equal to {m.group('rhs')}, but the target is {target}"
            )
        expr = m.group("expr")
    elif "=" in expr:
        raise CountdownError("not an arithmetic expression: write only the left-hand side")
    return expr.strip().rstrip(".").strip()


def parse_equation(expr: str, target: int | float | None = None) -> ParsedEquation:
    """Parse (never evaluate) an answer; raises :class:`CountdownError` with model-facing text."""
    if len(expr) > MAX_CHARS:
        raise CountdownError(f"the answer is too long ({len(expr)} characters)")
    expr = _normalize(expr, target)
    if not expr:
        raise CountdownError("the answer is empty")
    bad = sorted({c for c in expr if c not in _ALLOWED_CHARS})
    if bad:
        if "." in bad or "," in bad:
            raise CountdownError("only whole numbers may appear in the equation")
        shown = " ".join(repr(c) for c in bad[:5])
        raise CountdownError(
            f"not an arithmetic expression: it contains {shown}; use only integers, "
            "+ - * / and parentheses"
        )
    try:
        tree = ast.parse(expr, mode="eval")  # builds a syntax tree only; nothing is executed
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        raise CountdownError("not an arithmetic expression: it does not parse") from None
    numbers: list[int] = []
    count = 0
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES or depth > MAX_DEPTH:
            raise CountdownError("the expression is too long or too deeply nested")
        if isinstance(node, ast.BinOp):
            if not isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div):
                name = _OP_NAMES.get(type(node.op), type(node.op).__name__)
                raise CountdownError(f"uses {name}; only + - * / are allowed")
            stack.append((node.right, depth + 1))
            stack.append((node.left, depth + 1))
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, ast.USub):
                raise CountdownError("only + - * / and parentheses are allowed")
            stack.append((node.operand, depth + 1))
        elif isinstance(node, ast.Constant):
            if type(node.value) is not int:
                raise CountdownError("only whole numbers may appear in the equation")
            numbers.append(node.value)
        elif isinstance(node, ast.Call):
            raise CountdownError(
                "not an arithmetic expression: a number is followed by '(' "
                "(write * for multiplication)"
            )
        else:
            raise CountdownError("not an arithmetic expression")
    return ParsedEquation(expression=expr, tree=tree.body, numbers=tuple(numbers))


def evaluate(node: ast.expr) -> Fraction:
    """Exact value of a tree that :func:`parse_equation` accepted. ``ZeroDivisionError`` on x/0."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return Fraction(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -evaluate(node.operand)
    if isinstance(node, ast.BinOp):
        left, right = evaluate(node.left), evaluate(node.right)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if isinstance(node.op, ast.Div):
            if right == 0:
                raise ZeroDivisionError("division by zero")
            return left / right
    raise CountdownError("not an arithmetic expression")  # unreachable for parsed trees


def _fmt(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    return f"{value.numerator}/{value.denominator} (≈ {float(value):.4g})"


def _usage_problems(used: tuple[int, ...], given: list[int]) -> list[str]:
    have, want = Counter(used), Counter(given)
    problems: list[str] = []
    for n in sorted(have):
        if n not in want:
            problems.append(f"uses {n}, which is not one of the given numbers")
        elif have[n] > want[n]:
            times = {2: "twice", 3: "three times"}.get(have[n], f"{have[n]} times")
            allowed = "once" if want[n] == 1 else f"{want[n]} times"
            problems.append(f"uses {n} {times} (it is given {allowed})")
    for n in sorted(want):
        if have[n] < want[n]:
            problems.append(
                f"number {n} not used" if have[n] == 0 else f"number {n} not used {want[n]} times"
            )
    return problems


@register_verifier
class CountdownVerifier(Verifier):
    """Passes when the answer uses each given number once and reaches the target exactly."""

    type: ClassVar[str] = "countdown"

    numbers: list[int] = Field(min_length=1, max_length=32)
    target: int | float

    def verify(self, output: ModelOutput, task: Task) -> Verdict:
        raw = extract_equation(output.text or "")
        if raw is None:
            return self._fail("no answer found: put the equation inside <answer></answer>", None)
        try:
            parsed = parse_equation(raw, self.target)
        except CountdownError as exc:
            return self._fail(str(exc), raw)
        problems = _usage_problems(parsed.numbers, self.numbers)
        details: dict[str, object] = {"answer": raw, "expression": parsed.expression}
        try:
            value = evaluate(parsed.tree)
        except ZeroDivisionError:
            return self._fail("; ".join([*problems, "division by zero"]), raw, details)
        details["value"] = _fmt(value)
        if abs(value - Fraction(str(self.target))) > TOLERANCE:
            problems.append(f"evaluates to {_fmt(value)}, not the target {self.target}")
        if problems:
            return self._fail("; ".join(problems), raw, details)
        return Verdict(passed=True, details=details)

    def _fail(
        self, reason: str, raw: str | None, details: dict[str, object] | None = None
    ) -> Verdict:
        info: dict[str, object] = {"answer": raw}
        info.update(details or {})
        info["reason"] = reason
        return Verdict(passed=False, feedback=f"The equation is wrong: {reason}.", details=info)
