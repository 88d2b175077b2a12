"""Countdown verifier: real reference equations, feedback, parser properties, and a fuzz test."""

from __future__ import annotations

import builtins
import contextlib
import itertools
import json
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rrr_agent._types import ModelOutput, Task
from rrr_agent.tasksets import datasets_root
from rrr_agent.verifiers import build_verifier
from rrr_agent.verifiers.countdown import (
    CountdownError,
    CountdownVerifier,
    evaluate,
    extract_equation,
    parse_equation,
)

DATA = datasets_root() / "countdown"


def _verify(numbers: list[int], target: int | float, text: str) -> Any:
    v = build_verifier({"type": "countdown", "numbers": numbers, "target": target})
    task = Task.from_prompt("countdown", v.to_spec())
    return v.verify(ModelOutput(text=text), task)


def _rows(name: str) -> list[dict[str, Any]]:
    with (DATA / name).open() as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.mark.parametrize("split", ["train.jsonl", "test.jsonl"])
def test_every_reference_equation_passes(split: str) -> None:
    rows = _rows(split)
    assert len(rows) == {"train.jsonl": 10240, "test.jsonl": 1024}[split]
    failures = []
    checked = 0
    for row in rows:
        text = f"Let me think.\n<answer>{row['reference_equation']}</answer>"
        verdict = _verify(row["nums"], row["target"], text)
        checked += 1
        if not verdict.passed:
            failures.append((row["index"], verdict.feedback))
    assert checked == len(rows)
    assert failures == []


def _solve(numbers: list[int], target: int) -> str | None:
    """Independent brute force over all orders and bracketings (exact arithmetic)."""

    def exprs(nums: tuple[int, ...]) -> Any:
        if len(nums) == 1:
            yield str(nums[0]), Fraction(nums[0])
            return
        for i in range(1, len(nums)):
            for ls, lv in exprs(nums[:i]):
                for rs, rv in exprs(nums[i:]):
                    yield f"({ls} + {rs})", lv + rv
                    yield f"({ls} - {rs})", lv - rv
                    yield f"({ls} * {rs})", lv * rv
                    if rv != 0:
                        yield f"({ls} / {rs})", lv / rv

    for perm in itertools.permutations(numbers):
        for text, value in exprs(perm):
            if value == target:
                return text
    return None


def test_cd3_constructed_solutions_pass_and_wrong_ones_fail() -> None:
    rows = _rows("cd3_test.jsonl")
    assert len(rows) == 256
    solved = refuted = 0
    for row in rows:
        numbers = [int(n) for n in row["input"].split(",")]
        target = int(row["output"])
        solution = _solve(numbers, target)
        if solution is not None:
            solved += 1
            assert _verify(numbers, target, f"<answer>{solution}</answer>").passed, solution
            # The same numbers with the first operator flipped must not also pass unless equal.
        wrong = " + ".join(str(n) for n in numbers)
        if sum(numbers) != target:
            verdict = _verify(numbers, target, f"<answer>{wrong}</answer>")
            assert not verdict.passed
            assert f"not the target {target}" in verdict.feedback
            refuted += 1
    assert solved >= 200  # the set is built from solvable problems
    assert refuted >= 240  # a plain sum is rarely the target


@pytest.mark.parametrize(
    ("text", "passed", "fragment"),
    [
        ("<answer>7 + 12 + 5</answer>", False, "evaluates to 24, not the target 23"),
        ("<answer>7 * 7 + 5</answer>", False, "uses 7 twice"),
        ("<answer>7 + 12</answer>", False, "number 5 not used"),
        ("<answer>12 / (7 - 7) + 5</answer>", False, "division by zero"),
        ("<answer>import os</answer>", False, "not an arithmetic expression"),
        ("<answer>2(3 + 4)</answer>", False, "write * for multiplication"),
        ("<answer>7 ** 2</answer>", False, "only + - * / are allowed"),
        ("<answer>12 // 5 + 7</answer>", False, "only + - * / are allowed"),
        ("<answer>1.5 + 2</answer>", False, "whole numbers"),
        ("<answer>12 + 5 + 7 = 24</answer>", False, "set equal to 24"),
        ("<answer>12 + 5 + 7 - 1</answer>", False, "uses 1, which is not one of the given"),
        ("no answer here\n\n", False, "not an arithmetic expression"),
        ("", False, "no answer found"),
        ("<answer></answer>", False, "no answer found"),
        ("<answer>12 + 7 + 5 - 1</answer>\nmore", False, "uses 1"),
    ],
)
def test_feedback_explains_without_solution(text: str, passed: bool, fragment: str) -> None:
    verdict = _verify([7, 12, 5], 23, text)
    assert verdict.passed is passed
    assert fragment in verdict.feedback


@pytest.mark.parametrize(
    "text",
    [
        "<answer>12 + 5 + 7 - 1</answer> oops <answer>(7 - 5) * 12 - 1</answer>",
        "reasoning...\n(7 - 5) * 12 - 1",
        "<answer>(7 - 5) * 12 - 1 = 23</answer>",
        "<answer> Equation: (7 - 5) × 12 − 1 </answer>",
        "<answer>$(7 - 5) \\times 12 - 1$</answer>",
        "<ANSWER>((7 - 5) * 12) - 1</ANSWER>",
    ],
)
def test_accepted_answer_forms(text: str) -> None:
    verdict = _verify([7, 5, 12, 1], 23, text)
    assert verdict.passed, verdict.feedback


def test_fractional_intermediate_values_are_exact() -> None:
    # 8 / (3 - 8 / 3) = 24 only with exact arithmetic.
    assert _verify([8, 3, 8, 3], 24, "<answer>8 / (3 - 8 / 3)</answer>").passed
    assert not _verify([1, 3], 0.3333, "<answer>1 / 3</answer>").passed  # 1e-5 tolerance
    assert _verify([1, 3], 0.333333, "<answer>1 / 3</answer>").passed


def test_input_caps() -> None:
    long = " + ".join(["1"] * 400)
    assert "too long" in _verify([1], 1, f"<answer>{long}</answer>").feedback
    deep = "(" * 60 + "1" + ")" * 60
    verdict = _verify([1], 1, f"<answer>{deep}</answer>")
    assert verdict.passed  # parentheses alone do not add AST depth
    nested = "1" + "-(1" * 45 + ")" * 45
    assert "too long or too deeply nested" in _verify([1], 1, nested).feedback
    huge = "x" * 1_000_000 + "\n<answer>1</answer>"
    assert _verify([1], 1, huge).passed


def test_spec_round_trip() -> None:
    v = CountdownVerifier(numbers=[1, 2], target=3)
    assert build_verifier(v.to_spec()) == v


# --- property tests ------------------------------------------------------------------------------

_OPS = ["+", "-", "*", "/"]


@st.composite
def _expressions(draw: Any, max_leaves: int = 5) -> tuple[str, Fraction | None, list[int]]:
    """(fully parenthesized text, exact value or None on division by zero, leaves)."""
    n = draw(st.integers(1, max_leaves))
    leaves = draw(st.lists(st.integers(0, 120), min_size=n, max_size=n))
    items: list[tuple[str, Fraction | None]] = [(str(x), Fraction(x)) for x in leaves]
    while len(items) > 1:
        i = draw(st.integers(0, len(items) - 2))
        op = draw(st.sampled_from(_OPS))
        (ls, lv), (rs, rv) = items[i], items[i + 1]
        value: Fraction | None
        if lv is None or rv is None or (op == "/" and rv == 0):
            value = None
        else:
            value = {"+": lv + rv, "-": lv - rv, "*": lv * rv}.get(op) if op != "/" else lv / rv
        spaces = draw(st.sampled_from(["", " "]))
        items[i : i + 2] = [(f"({ls}{spaces}{op}{spaces}{rs})", value)]
    return items[0][0], items[0][1], leaves


@settings(max_examples=300, deadline=None)
@given(_expressions())
def test_parser_agrees_with_exact_arithmetic(expr: tuple[str, Fraction | None, list[int]]) -> None:
    text, value, leaves = expr
    parsed = parse_equation(text)
    assert sorted(parsed.numbers) == sorted(leaves)
    if value is None:
        with pytest.raises(ZeroDivisionError):
            evaluate(parsed.tree)
        verdict = _verify(leaves, 0, f"<answer>{text}</answer>")
        assert not verdict.passed
        assert "division by zero" in verdict.feedback
    else:
        assert evaluate(parsed.tree) == value
        if value.denominator == 1:
            assert _verify(leaves, int(value), f"<answer>{text}</answer>").passed
            assert not _verify(leaves, int(value) + 1, f"<answer>{text}</answer>").passed
            if len(leaves) > 1:  # dropping a number is reported
                assert not _verify([*leaves, 999], int(value), text).passed


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789+-*/() ", max_size=40))
def test_parser_never_raises_anything_but_countdown_error(text: str) -> None:
    try:
        parsed = parse_equation(text)
    except CountdownError:
        return
    with contextlib.suppress(ZeroDivisionError):
        evaluate(parsed.tree)


@pytest.mark.parametrize(
    ("text", "passed"),
    [("-=-\x1f\x1f\x1f2", False), ("1 + 1 =\x1f2", True), ("1 + 1 = -\u20032", False),
     ("1 + 1 =\x1c2", False)],  # \x1c ends a line for splitlines: the last line is "2"
)  # fmt: skip
def test_control_whitespace_in_the_right_hand_side_is_no_crash(text: str, passed: bool) -> None:
    """Regex ``\\s`` matches control characters (\\x1c-\\x1f, \\x0b) that ``Fraction`` rejects:
    the fuzz test found ``-=-\\x1f...2`` raising ValueError out of the verifier."""
    with contextlib.suppress(CountdownError):
        parse_equation(text, 2)
    verdict = _verify([1, 1], 2, text)
    assert verdict.passed is passed


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789+-*/()= \x0b\x0c\x1c\x1d\x1e\x1f\u2003.", max_size=40))
def test_parser_with_odd_whitespace_raises_only_countdown_error(text: str) -> None:
    try:
        parsed = parse_equation(text, 7)
    except CountdownError:
        return
    with contextlib.suppress(ZeroDivisionError):
        evaluate(parsed.tree)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200), st.text(min_size=1, max_size=30).filter(lambda s: "<" not in s))
def test_last_answer_tag_wins(prefix: str, inner: str) -> None:
    text = f"{prefix}<answer>ignored</answer>\n<answer>{inner}</answer>"
    assert extract_equation(text) == (inner.strip() or None)


# --- fuzz: nothing in the text is ever executed ---------------------------------------------------

_DANGEROUS = [
    "__import__('os').system('touch /tmp/rrr-pwned')",
    "().__class__.__bases__[0].__subclasses__()",
    "lambda: 1",
    "open('/etc/passwd')",
    "exec('1')",
    "eval('1+1')",
    "globals()",
    "[x for x in ()]",
    "1 if 1 else 2",
    "f'{1}'",
    "__builtins__",
    "breakpoint()",
    "(1).__add__(2)",
    "import os",
    "__import__",
    "\\N{DIGIT ONE}",
    "9" * 200,
    "(" * 100,
]


class _Exploded(AssertionError):
    pass


def _explode(*args: Any, **kwargs: Any) -> Any:
    raise _Exploded(f"model text reached an executing builtin: {args!r:.80}")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(st.sampled_from(_DANGEROUS), st.text(max_size=20), st.sampled_from(_OPS)),
        max_size=6,
    ),
    st.booleans(),
)
def test_fuzz_never_executes_model_text(parts: list[str], tagged: bool) -> None:
    body = " ".join(parts)
    text = f"<answer>{body}</answer>" if tagged else body
    v = CountdownVerifier(numbers=[1, 2, 3], target=6)
    task = Task.from_prompt("countdown", v.to_spec())
    v.verify(ModelOutput(text="<answer>1 + 2 + 3</answer>"), task)  # warm every lazy import
    real_compile = builtins.compile
    import ast

    def ast_only_compile(
        source: Any, filename: Any, mode: Any, flags: int = 0, *a: Any, **k: Any
    ) -> Any:
        if not flags & ast.PyCF_ONLY_AST:
            raise _Exploded("compile() to bytecode was called")
        return real_compile(source, filename, mode, flags, *a, **k)

    modules_before = set(sys.modules)
    saved = {
        name: getattr(builtins, name)
        for name in ("eval", "exec", "__import__", "open", "compile", "breakpoint")
    }
    try:
        builtins.eval = _explode
        builtins.exec = _explode
        builtins.__import__ = _explode
        builtins.open = _explode
        builtins.breakpoint = _explode
        builtins.compile = ast_only_compile
        verdict = v.verify(ModelOutput(text=text), task)
    finally:
        for name, fn in saved.items():
            setattr(builtins, name, fn)
    assert set(sys.modules) == modules_before
    assert not Path("/tmp/rrr-pwned").exists()
    if not verdict.passed:
        assert verdict.feedback.startswith("The equation is wrong: ")
