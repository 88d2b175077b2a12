"""Numeric answers, GSM8K style: compare the final number of the output with ``expected``.

``{"type": "numeric", "expected": 42.0, "rel_tol": 1e-9, "abs_tol": 1e-6, "percent": "strip"}``

The final number is, in order of preference: the number after the last ``####``; the last
``\\boxed{...}``; the number after the last "answer is" / "answer:"; the last number in the text.
Thousands commas, currency signs (``$ € £ ¥``) and unit words are ignored; negatives (``-5``,
``−5``, ``-$5``, ``$-5``), decimals (``.5``, ``2.50``), simple fractions (``3/4``, ``\\frac{3}{4}``)
and percentages are understood. ``percent`` decides what ``40%`` means: ``strip`` → 40 (GSM8K),
``fraction`` → 0.4, ``either`` → passes when either reading matches. Mixed numbers (``2 1/2``) and
scientific notation are not read.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar, Literal

from pydantic import Field

from .._types import ModelOutput, Task, Verdict
from ._base import Verifier, register_verifier

__all__ = ["ExtractedNumber", "NumericVerifier", "extract_final_number", "parse_number"]

MAX_SCAN_CHARS = 100_000

_INT = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)"
_BODY = rf"(?:{_INT}(?:\.\d+)?|\.\d+)"
_NUMBER = re.compile(
    rf"(?<![\w.,])(?P<neg>-\s?)?(?:[$€£¥]\s?)?(?P<neg2>-\s?)?(?P<num>{_BODY})"
    r"(?:\s*/\s*(?P<den>\d+)(?!\d|\.\d))?"
    r"(?P<pct>\s?%|\s?percent\b)?",
    re.IGNORECASE,
)
_FRAC_TEX = re.compile(r"\\[dt]?frac\s*\{\s*(-?[\d.,]+)\s*\}\s*\{\s*(-?[\d.,]+)\s*\}")
_ANSWER_IS = re.compile(
    r"(?:final\s+answer|answer)\s*(?:is|:|=|would\s+be|will\s+be)\s*:?\s*", re.IGNORECASE
)
_BOXED = re.compile(r"\\boxed\s*\{")


@dataclass(frozen=True, slots=True)
class ExtractedNumber:
    value: Fraction
    percent: bool
    text: str  # the matched text
    source: Literal["####", "boxed", "answer_is", "last_number"]


def _clean(text: str) -> str:
    text = text.replace("−", "-").replace("–", "-").replace("\u00a0", " ").replace("\u202f", " ")
    text = _FRAC_TEX.sub(lambda m: f"{m.group(1)}/{m.group(2)}", text)
    return text.replace("\\%", "%").replace("\\$", "$").replace("\\!", "").replace("{,}", ",")


def parse_number(match: re.Match[str]) -> tuple[Fraction, bool] | None:
    negative = bool(match.group("neg")) != bool(match.group("neg2"))
    value = Fraction(match.group("num").replace(",", ""))
    if match.group("den") is not None:
        den = int(match.group("den"))
        if den == 0:
            return None
        value /= den
    return (-value if negative else value), match.group("pct") is not None


def _numbers(text: str) -> list[tuple[re.Match[str], Fraction, bool]]:
    out = []
    for m in _NUMBER.finditer(text):
        parsed = parse_number(m)
        if parsed is not None:
            out.append((m, parsed[0], parsed[1]))
    return out


def _boxed_contents(text: str) -> list[str]:
    found = []
    for m in _BOXED.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            found.append(text[m.end() : i - 1])
    return found


def extract_final_number(text: str) -> ExtractedNumber | None:
    """The final answer of a solution text, or None when it holds no number."""
    text = _clean(text[-MAX_SCAN_CHARS:])
    if "####" in text:
        nums = _numbers(text.rsplit("####", 1)[1])
        if nums:
            m, v, pct = nums[0]
            return ExtractedNumber(v, pct, m.group(0).strip(), "####")
    boxed = _boxed_contents(text)
    if boxed:
        nums = _numbers(boxed[-1])
        if nums:
            m, v, pct = nums[-1]
            return ExtractedNumber(v, pct, m.group(0).strip(), "boxed")
    answer_is = list(_ANSWER_IS.finditer(text))
    if answer_is:
        nums = _numbers(text[answer_is[-1].end() :])
        if nums:
            m, v, pct = nums[0]
            return ExtractedNumber(v, pct, m.group(0).strip(), "answer_is")
    nums = _numbers(text)
    if nums:
        m, v, pct = nums[-1]
        return ExtractedNumber(v, pct, m.group(0).strip(), "last_number")
    return None


def _fmt(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.6g}"


@register_verifier
class NumericVerifier(Verifier):
    """Passes when the final number equals ``expected`` within ``rel_tol`` / ``abs_tol``."""

    type: ClassVar[str] = "numeric"

    expected: float
    rel_tol: float = Field(default=1e-9, ge=0)
    abs_tol: float = Field(default=1e-6, ge=0)
    percent: Literal["strip", "fraction", "either"] = "strip"

    def _close(self, value: Fraction) -> bool:
        try:
            got = float(value)
        except OverflowError:
            return False
        return math.isclose(got, self.expected, rel_tol=self.rel_tol, abs_tol=self.abs_tol)

    def verify(self, output: ModelOutput, task: Task) -> Verdict:
        found = extract_final_number(output.text or "")
        if found is None:
            return Verdict(
                passed=False,
                feedback="No final numeric answer was found.",
                details={"reason": "no_number"},
            )
        candidates = [found.value]
        if found.percent:
            candidates = {
                "strip": [found.value],
                "fraction": [found.value / 100],
                "either": [found.value, found.value / 100],
            }[self.percent]
        passed = any(self._close(c) for c in candidates)
        details = {"answer": found.text, "value": _fmt(found.value), "source": found.source}
        if passed:
            return Verdict(passed=True, details=details)
        return Verdict(
            passed=False,
            feedback=f"The final answer {found.text} is not correct.",
            details={**details, "expected": self.expected},
        )
