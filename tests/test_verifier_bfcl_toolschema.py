"""The ``tool_schema`` verifier: calls must name offered tools and match their JSON schemas."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rrr_agent._errors import VerifierSpecError
from rrr_agent._types import FunctionCall, Message, ModelOutput, Task, ToolCall, Verdict
from rrr_agent.verifiers import build_verifier

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "days": {"type": "integer", "minimum": 1},
                    "unit": {"type": "string", "enum": ["c", "f"]},
                },
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    },
    {"type": "function", "name": "ping", "parameters": {"type": "object", "properties": {}}},
]


def task(spec: dict[str, Any] | None = None, tools: list[dict[str, Any]] | None = None) -> Task:
    return Task(
        messages=[Message(role="user", content="weather?")],
        tools=TOOLS if tools is None else tools,
        verifier={"type": "tool_schema", **(spec or {})},  # type: ignore[arg-type]
    )


def run(t: Task, *calls: tuple[str, Any], text: str | None = None) -> Verdict:
    out = ModelOutput(
        text=text,
        tool_calls=[
            ToolCall(
                id=f"c{i}",
                function=FunctionCall(name=n, arguments=a if isinstance(a, str) else json.dumps(a)),
            )
            for i, (n, a) in enumerate(calls)
        ]
        or None,
    )
    verdict = build_verifier(t.verifier).verify(out, t)
    assert isinstance(verdict, Verdict)
    return verdict


def test_valid_calls_pass() -> None:
    t = task()
    assert run(t, ("get_weather", {"city": "Oslo", "days": 2})).passed
    assert run(t, ("get_weather", {"city": "Oslo"}), ("ping", {})).passed
    assert run(t, text='[get_weather(city="Oslo", unit="c")]').passed


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({"days": 2}, "'city' is a required property"),
        ({"city": 5}, "city"),
        ({"city": "Oslo", "days": 0}, "days"),
        ({"city": "Oslo", "unit": "k"}, "unit"),
        ({"city": "Oslo", "extra": 1}, "extra"),
    ],
)
def test_schema_violations_fail(args: dict[str, Any], fragment: str) -> None:
    v = run(task(), ("get_weather", args))
    assert not v.passed
    assert v.details["error_type"] == "tool_schema:schema_violation"
    assert fragment in v.feedback


def test_unknown_tool_and_bad_json() -> None:
    v = run(task(), ("get_wether", {"city": "Oslo"}))
    assert v.details["error_type"] == "tool_schema:unknown_tool"
    v = run(task(), ("get_weather", "{not json"))
    assert v.details["error_type"] == "tool_schema:invalid_arguments"


def test_require_call_and_max_calls() -> None:
    assert run(task(), text="It is sunny.").passed
    v = run(task({"require_call": True}), text="It is sunny.")
    assert v.details["error_type"] == "tool_schema:no_call"
    calls = [("ping", {})] * 3
    assert run(task({"max_calls": 3}), *calls).passed
    assert run(task({"max_calls": 2}), *calls).details["error_type"] == "tool_schema:too_many_calls"


def test_invalid_tool_schema_is_a_spec_error() -> None:
    bad = [{"type": "function", "function": {"name": "x", "parameters": {"type": 12}}}]
    with pytest.raises(VerifierSpecError):
        run(task(tools=bad), ("x", {}))


def test_spec_validation() -> None:
    with pytest.raises(VerifierSpecError):
        build_verifier({"type": "tool_schema", "max_calls": 0})
    with pytest.raises(VerifierSpecError):
        build_verifier({"type": "tool_schema", "typo": True})
