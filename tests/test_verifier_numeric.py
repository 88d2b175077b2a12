"""Numeric verifier: extraction rules, properties, and every GSM8K test answer."""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rrr_agent._types import ModelOutput, Task
from rrr_agent.tasksets import datasets_root
from rrr_agent.verifiers import build_verifier
from rrr_agent.verifiers.numeric import NumericVerifier, extract_final_number


def _verify(expected: float, text: str, **kw: Any) -> Any:
    v = build_verifier({"type": "numeric", "expected": expected, **kw})
    return v.verify(ModelOutput(text=text), Task.from_prompt("q", v.to_spec()))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("She makes 9 * 2 = $18 every day.\n#### 18", 18),
        ("#### 1,234", 1234),
        ("#### -7", -7),
        ("The total is $1,234.50.", Fraction(246900, 200)),
        ("so the answer is \\boxed{42} and then 7", 42),
        ("\\boxed{\\frac{3}{4}}", Fraction(3, 4)),
        ("\\boxed{\\dfrac{-1}{2}}", Fraction(-1, 2)),
        ("The answer is 12 apples, then 3 more are eaten.", 12),
        ("Final answer: 3/4 of a pizza", Fraction(3, 4)),
        ("It went from 3 to 5 kilometers, so 5 km", 5),
        ("He lost −$5 today.", -5),
        ("temperature was $-3 degrees", -3),
        ("about .5 liters", Fraction(1, 2)),
        ("pages 3-4", 4),
        ("It rose by 40%.", 40),
        ("x = 2.50", Fraction(5, 2)),
        ("\\boxed{1{,}000}", 1000),
    ],
)
def test_extraction(text: str, value: Fraction | int) -> None:
    found = extract_final_number(text)
    assert found is not None
    assert found.value == Fraction(value)


@pytest.mark.parametrize("text", ["", "no numbers here", "#### ", "x2 y3"])
def test_no_number(text: str) -> None:
    assert extract_final_number(text) is None
    verdict = _verify(1.0, text)
    assert not verdict.passed
    assert verdict.feedback == "No final numeric answer was found."


def test_hash_line_beats_later_numbers_and_boxed_beats_last_number() -> None:
    assert _verify(18, "#### 18\nI checked 3 times.").passed
    assert _verify(7, "\\boxed{7} (I tried 9 first)").passed
    assert not _verify(9, "\\boxed{7} (I tried 9 first)").passed


@pytest.mark.parametrize(
    ("percent", "text", "expected", "passed"),
    [
        ("strip", "It is 40%", 40, True),
        ("strip", "It is 40%", 0.4, False),
        ("fraction", "It is 40%", 0.4, True),
        ("fraction", "It is 40%", 40, False),
        ("either", "It is 40 percent", 40, True),
        ("either", "It is 40 percent", 0.4, True),
        ("fraction", "It is 40", 40, True),  # no % sign: the number is taken as written
    ],
)
def test_percent_options(percent: str, text: str, expected: float, passed: bool) -> None:
    assert _verify(expected, text, percent=percent).passed is passed


def test_tolerances_and_feedback_do_not_leak() -> None:
    assert _verify(0.1 + 0.2, "#### 0.3").passed
    assert not _verify(100, "#### 101").passed
    assert _verify(100, "#### 101", rel_tol=0.02).passed
    assert _verify(100, "#### 101", abs_tol=1.5).passed
    verdict = _verify(12345, "#### 54321")
    assert "12345" not in verdict.feedback
    assert "54321" in verdict.feedback
    assert not _verify(1, "#### " + "9" * 400).passed  # too big for a float: a fail, no crash


def test_spec_round_trip() -> None:
    v = NumericVerifier(expected=3.5, percent="either")
    assert build_verifier(v.to_spec()) == v


@settings(max_examples=300, deadline=None)
@given(
    st.integers(-(10**9), 10**9),
    st.integers(0, 99),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["", "$", "€"]),
    st.sampled_from(["", " dollars", " apples", " km", "."]),
    st.sampled_from(["####", "The answer is", "Answer:", "so we get", "\\boxed"]),
)
def test_formatted_numbers_round_trip(
    whole: int, cents: int, decimals: bool, commas: bool, currency: str, unit: str, how: str
) -> None:
    value = Decimal(whole) + (Decimal(cents) / 100 if decimals and whole >= 0 else 0)
    if decimals and whole < 0:
        value = Decimal(whole) - Decimal(cents) / 100
    magnitude = abs(value)
    body = (
        f"{magnitude:,.2f}"
        if decimals and commas
        else (f"{magnitude:.2f}" if decimals else (f"{magnitude:,}" if commas else f"{magnitude}"))
    )
    sign = "-" if value < 0 else ""
    number = f"{sign}{currency}{body}"
    answer = f"\\boxed{{{number}}}" if how == "\\boxed" else f"{how} {number}{unit}"
    text = f"First 17 + 4 = 21, then 3/4 of it.\n{answer}"
    found = extract_final_number(text)
    assert found is not None, text
    assert found.value == Fraction(value), text
    assert _verify(float(value), text).passed


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_extractor_total_on_any_text(text: str) -> None:
    found = extract_final_number(text)
    assert found is None or isinstance(found.value, Fraction)


def test_every_gsm8k_answer_line_passes() -> None:
    rows = [
        json.loads(line)
        for line in (datasets_root() / "gsm8k" / "test.jsonl").read_text().splitlines()
        if line.strip()
    ]
    assert len(rows) == 1319
    failures = []
    checked = 0
    for i, row in enumerate(rows):
        answer = row["answer"]
        expected = int(answer.split("####")[-1].strip().replace(",", ""))  # independent parse
        if not _verify(expected, answer).passed:  # the whole reference solution
            failures.append((i, "full"))
        if not _verify(expected, f"#### {answer.split('####')[-1].strip()}").passed:
            failures.append((i, "line"))
        if _verify(expected + 1, answer).passed:
            failures.append((i, "off-by-one passed"))
        checked += 1
    assert checked == 1319
    assert failures == []
