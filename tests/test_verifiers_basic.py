"""The spine's verifiers (exact, regex, contains, python) and the spec registry."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

from rrr_agent import (
    ModelOutput,
    Task,
    Verdict,
    Verifier,
    VerifierSpec,
    VerifierSpecError,
    build_verifier,
    register_verifier,
)

TASK = Task.from_prompt("q", {"type": "exact", "expected": "x"})


def judge(spec: dict[str, Any], text: str) -> Verdict:
    result: Any = build_verifier(spec).verify(ModelOutput(text=text), TASK)
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    assert isinstance(result, Verdict)
    return result


@pytest.mark.parametrize(
    ("spec", "text", "passed"),
    [
        ({"type": "exact", "expected": "Paris"}, "  Paris\n", True),
        ({"type": "exact", "expected": "Paris"}, "paris", False),
        ({"type": "exact", "expected": "Paris", "case_sensitive": False}, "PARIS", True),
        ({"type": "exact", "expected": "a b"}, "a   b", True),
        ({"type": "exact", "expected": "a b", "collapse_whitespace": False}, "a   b", False),
        ({"type": "exact", "expected": "42", "answer": "last_line"}, "work...\n42\n\n", True),
        ({"type": "regex", "pattern": r"\b91\b"}, "it is 91.", True),
        ({"type": "regex", "pattern": r"91", "mode": "fullmatch"}, "it is 91", False),
        ({"type": "regex", "pattern": r"^yes$", "flags": "i"}, "YES", True),
        ({"type": "regex", "pattern": r"sorry", "negate": True}, "Sure!", True),
        ({"type": "contains", "substrings": ["a", "b"]}, "xaxbx", True),
        ({"type": "contains", "substrings": ["a", "z"]}, "xaxbx", False),
        ({"type": "contains", "substrings": ["a", "z"], "mode": "any"}, "xaxbx", True),
        ({"type": "python", "path": "tests.helpers:is_upper"}, "LOUD", True),
        ({"type": "python", "path": "tests.helpers:is_upper"}, "quiet", False),
        ({"type": "python", "path": "tests.helpers:async_is_upper"}, "LOUD", True),
    ],
)
def test_verdicts(spec: dict[str, Any], text: str, passed: bool) -> None:
    verdict = judge(spec, text)
    assert verdict.passed is passed
    assert bool(verdict.feedback) is (not passed)


def test_exact_feedback_does_not_leak_the_answer() -> None:
    verdict = judge({"type": "exact", "expected": "SECRET-42"}, "wrong")
    assert "SECRET-42" not in verdict.feedback
    assert verdict.details["expected"] == "SECRET-42"


def test_python_verifier_kwargs_and_details() -> None:
    verdict = judge(
        {"type": "python", "path": "tests.helpers:async_is_upper", "kwargs": {"suffix": "!"}},
        "quiet",
    )
    assert not verdict.passed and verdict.feedback == "not upper"
    assert verdict.details == {"suffix": "!"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "nosuch"}, "unknown verifier type 'nosuch'"),
        ({"type": "exact"}, "expected: Field required"),
        ({"type": "exact", "expected": "x", "expcted": 1}, "expcted: Extra inputs"),
        ({"type": "regex", "pattern": "(["}, "invalid regular expression"),
        ({"type": "regex", "pattern": "a", "flags": "q"}, "unknown regex flag"),
        ({"type": "python", "path": "tests.helpers:nope"}, "has no attribute"),
        ({"type": "python", "path": "no_such_module_xyz:f"}, "cannot import module"),
        ({"type": "tests.helpers:is_upper"}, "is not a Verifier subclass"),
        ({}, "type"),
    ],
)
def test_bad_specs_are_explained(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(VerifierSpecError, match=message):
        build_verifier(spec)


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "exact", "expected": "x", "case_sensitive": False},
        {"type": "regex", "pattern": "^a$", "flags": "im", "mode": "fullmatch"},
        {"type": "contains", "substrings": ["a"], "mode": "any"},
        {"type": "python", "path": "tests.helpers:is_upper", "kwargs": {}},
    ],
)
def test_spec_round_trip(spec: dict[str, Any]) -> None:
    verifier = build_verifier(spec)
    again = build_verifier(verifier.to_spec())
    assert again == verifier
    assert verifier.to_spec().type == spec["type"]


@register_verifier
class EndsWithBang(Verifier):
    type: ClassVar[str] = "test-ends-with-bang"
    strict: bool = True

    def verify(self, output: ModelOutput, task: Task) -> Verdict:
        return Verdict(passed=(output.text or "").endswith("!"))


def test_user_registered_and_dotted_path_verifiers() -> None:
    assert judge({"type": "test-ends-with-bang"}, "hi!").passed
    dotted = build_verifier({"type": "tests.test_verifiers_basic:EndsWithBang", "strict": False})
    assert isinstance(dotted, EndsWithBang) and dotted.strict is False
    with pytest.raises(VerifierSpecError, match="already registered"):

        @register_verifier
        class Clash(Verifier):
            type: ClassVar[str] = "exact"

            def verify(self, output: ModelOutput, task: Task) -> Verdict:
                return Verdict(passed=True)


def test_entry_point_verifiers(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint

    from rrr_agent.verifiers import _base

    eps = [
        EntryPoint(
            name="bang-ep",
            value="tests.test_verifiers_basic:EndsWithBang",
            group="rrr_agent.verifiers",
        )
    ]
    monkeypatch.setattr(_base, "entry_points", lambda group: eps)
    assert isinstance(build_verifier({"type": "bang-ep"}), EndsWithBang)


def test_verifier_spec_is_plain_json() -> None:
    spec = VerifierSpec(type="regex", pattern="a")
    assert spec.to_dict() == {"type": "regex", "pattern": "a"}
    assert VerifierSpec.model_validate_json(spec.model_dump_json()) == spec
