"""The tool-calling SDK: tools from functions, models and schemas; the agent's steps, tool
execution, self-correction, the usage ledger, structured answers, streaming. Unit tests on a
scripted model; tests/test_agent_embedded.py runs the same paths on the embedded model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

from rrr_agent import (
    Agent,
    ConfigError,
    Engine,
    ScriptedModel,
    ScriptedReply,
    TokenDelta,
    Tool,
    ToolError,
    TrajectoryStore,
    TurnFinished,
    VerificationFailed,
    as_tool,
    build_verifier,
    load_settings,
)

from .conftest import math_task

PAPER_TOOL_CALL = (
    "You tried performing the task, but failed in generating the correct tool call. Reflect on "
    "what went wrong and write a short explanation that will help you do better next time."
)


def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> dict[str, Any]:
    """Current weather in a city.

    Args:
        city: The city's name, e.g. "Paris".
        unit: Temperature unit.
    """
    if city == "Atlantis":
        raise ToolError("unknown city 'Atlantis'")
    return {"city": city, "temperature": 21, "unit": unit}


def add(a: int, b: int) -> int:
    """Add two integers.

    :param a: first number
    :param b: second number
    """
    return a + b


class Invoice(BaseModel):
    """An invoice read from text."""

    number: str
    total: float = Field(ge=0)


def call(name: str, **arguments: Any) -> ScriptedReply:
    return ScriptedReply(tool_calls=[{"name": name, "arguments": arguments}])


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "sdk.jsonl"


def agent(model: ScriptedModel, log: Path, **kw: Any) -> Agent:
    return Agent(model.model, settings=load_settings(log_path=log), **kw)


# ------------------------------------------------------------------------------ tools


def test_tool_schema_from_function_hints_and_docstrings() -> None:
    tool = as_tool(get_weather)
    fn = tool.schema()["function"]
    assert fn["name"] == "get_weather" and fn["description"] == "Current weather in a city."
    props = fn["parameters"]["properties"]
    assert props["city"] == {"type": "string", "description": 'The city\'s name, e.g. "Paris".'}
    assert props["unit"]["enum"] == ["celsius", "fahrenheit"]
    assert props["unit"]["default"] == "celsius"
    assert fn["parameters"]["required"] == ["city"]
    assert fn["parameters"]["additionalProperties"] is False
    add_props = as_tool(add).parameters["properties"]
    assert add_props["a"] == {"type": "integer", "description": "first number"}


def test_tool_from_model_and_from_schema() -> None:
    invoice = as_tool(Invoice)
    assert invoice.name == "Invoice" and not invoice.runnable
    assert invoice.parameters["properties"]["total"]["minimum"] == 0
    raw = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    assert as_tool(raw).schema()["function"]["name"] == "lookup"
    with pytest.raises(ConfigError, match="not allowed"):
        Tool(name="bad name!", description="", parameters={})
    with pytest.raises(ConfigError, match="cannot use"):
        as_tool(42)


async def test_tool_call_validates_converts_and_runs() -> None:
    tool = as_tool(add)
    assert await tool.call({"a": "2", "b": 3}) == 5  # pydantic converts "2"
    with pytest.raises(ValueError, match="b"):
        await tool.call({"a": 1})


# ------------------------------------------------------------------------------ the agent


def test_bad_call_is_corrected_then_run_then_answered(log: Path) -> None:
    model = ScriptedModel([
        call("get_weather", town="Paris"),      # wrong argument name: schema violation
        "I used a parameter that does not exist; the tool takes city.",
        call("get_weather", city="Paris"),      # the retry
        "It is 21 degrees in Paris.",           # the next step, after the tool's result
    ])  # fmt: skip
    result = agent(model, log, tools=[get_weather]).run_sync("Weather in Paris?")
    assert result.text == "It is 21 degrees in Paris." and result.finished
    assert len(result.trajectories) == 2 and result.attempts == 3
    first = result.trajectories[0]
    assert first.outcome.value == "passed_after_retry"
    assert first.verdicts[0].details["error_type"] == "tool_schema:schema_violation"
    # The paper's tool-call reflection, with the verifier's feedback before it.
    reflect = model.requests[1].messages[-1]["content"]
    assert reflect.endswith(PAPER_TOOL_CALL) and "town" in reflect
    # The tool ran once (on the passing retry) and its result went back to the model.
    assert first.attempts[1].tool_results == [
        json.dumps({"city": "Paris", "temperature": 21, "unit": "celsius"})
    ]
    assert model.requests[3].messages[-1]["role"] == "tool"
    assert json.loads(model.requests[3].messages[-1]["content"])["temperature"] == 21
    # The conversation holds the clean turn: no failed attempt, no reflection.
    roles = [m["role"] for m in result.messages]
    assert roles == ["user", "assistant", "tool", "assistant"]
    # The usage ledger counts every call of every step, reflections included.
    total = sum(t.total_usage().total_tokens for t in result.trajectories)
    assert result.usage.total_tokens == total > 0
    stages = result.usage_by_stage()
    reflection = result.trajectories[0].reflections[0].text or ""
    assert stages["reflections"].completion_tokens == len(reflection.split()) > 5
    # Both steps are logged, with a spec the trainer can rebuild from the log alone.
    logged = list(TrajectoryStore(log).read())
    assert [t.id for t in logged] == [t.id for t in result.trajectories]
    assert logged[0].task.verifier.to_dict() == {"type": "tool_schema", "require_call": False}
    assert (
        logged[0].task.metadata["sdk"]["step"] == 0 and logged[1].task.metadata["sdk"]["step"] == 1
    )
    build_verifier(logged[0].task.verifier)


def test_tool_error_fails_the_attempt_with_its_message(log: Path) -> None:
    model = ScriptedModel([
        call("get_weather", city="Atlantis"),
        "Atlantis is not a real city; I should ask for Paris.",
        call("get_weather", city="Paris"),
        "21 degrees.",
    ])  # fmt: skip
    result = agent(model, log, tools=[get_weather]).run_sync("Weather?")
    first = result.trajectories[0]
    verdict = first.verdicts[0]
    assert not verdict.passed and verdict.verifier == "tool_execution"
    assert verdict.feedback == "The call to get_weather failed: unknown city 'Atlantis'"
    assert "unknown city 'Atlantis'" in model.requests[1].messages[-1]["content"]
    # The tool message after the failed call carries the error, not a "not executed" stub.
    tool_msg = model.requests[1].messages[-2]
    assert tool_msg["role"] == "tool" and tool_msg["content"].startswith("Error: ")
    assert result.text == "21 degrees."


def test_a_crashing_tool_is_a_failed_attempt_not_a_crash(log: Path) -> None:
    def divide(a: float, b: float) -> float:
        """Divide a by b."""
        return a / b

    replies = [call("divide", a=1, b=0), "b must not be zero.", call("divide", a=1, b=2), "0.5"]
    model = ScriptedModel(replies)
    result = agent(model, log, tools=[divide]).run_sync("1/2?")
    assert "raised ZeroDivisionError" in result.trajectories[0].verdicts[0].feedback
    assert result.text == "0.5"


def test_retries_exhausted_raise_with_every_attempt(log: Path) -> None:
    model = ScriptedModel([call("get_weather", town="x"), "oops", call("get_weather", town="y")])
    with pytest.raises(VerificationFailed) as info:
        agent(model, log, tools=[get_weather]).run_sync("Weather?")
    err = info.value
    assert len(err.trajectories) == 1 and len(err.trajectory.attempts) == 2
    assert err.trajectory.total_usage().total_tokens > 0
    assert len(list(TrajectoryStore(log).read())) == 1  # logged: it is training data


def test_multi_step_loop_stops_at_max_steps(log: Path) -> None:
    model = ScriptedModel(default=call("add", a=1, b=1))
    result = agent(model, log, tools=[add], max_steps=3).run_sync("count")
    assert not result.finished and len(result.trajectories) == 3
    assert [m["role"] for m in result.messages].count("tool") == 3


def test_structured_answer_with_a_pydantic_model(log: Path) -> None:
    model = ScriptedModel([
        "The invoice number is 17.",              # no call: the structured answer is required
        "I must call Invoice.",
        call("Invoice", number="A-17", total=-3),  # schema violation: total >= 0
        "The total cannot be negative.",
        call("Invoice", number="A-17", total=30.5),
    ])  # fmt: skip
    result = agent(model, log, tools=[Invoice], max_retries=3).run_sync("Invoice A-17, 30.50 EUR")
    assert result.output == Invoice(number="A-17", total=30.5)
    verdicts = result.trajectories[0].verdicts
    assert [v.details.get("error_type") for v in verdicts[:2]] == [
        "tool_schema:no_call",
        "tool_schema:schema_violation",
    ]


def test_execute_false_returns_the_calls(log: Path) -> None:
    model = ScriptedModel([call("get_weather", city="Paris")])
    result = agent(model, log, tools=[get_weather], execute=False).run_sync("Weather?")
    assert result.tool_calls and result.tool_calls[0].function.name == "get_weather"
    assert result.final.tool_results is None and len(result.trajectories) == 1


def test_user_verifier_adds_to_the_schema_check(log: Path) -> None:
    spec = {"type": "regex", "pattern": "Paris"}
    model = ScriptedModel(["Rome.", "I named the wrong city.", "Paris."])
    result = agent(model, log, tools=[get_weather], verifier=spec).run_sync("Capital of France?")
    assert result.text == "Paris." and result.attempts == 2
    assert result.trajectories[0].task.verifier.to_dict() == {
        "type": "all",
        "verifiers": [{"type": "tool_schema", "require_call": False}, spec],
    }


async def test_streaming_events_add_up_to_the_text(log: Path) -> None:
    model = ScriptedModel(["The answer is 41", "I added wrong.", "The answer is 42"])
    engine = Engine(model.model, stream=True)
    deltas: list[TokenDelta] = []
    task = math_task(answer="The answer is 42")
    traj = await engine.run(
        task, on_event=lambda e: deltas.append(e) if isinstance(e, TokenDelta) else None
    )
    by_call: dict[tuple[str, int], str] = {}
    for d in deltas:
        by_call[(d.stage, d.index)] = by_call.get((d.stage, d.index), "") + d.text
    assert by_call == {
        ("attempt", 0): "The answer is 41",
        ("reflection", 0): "I added wrong.",
        ("attempt", 1): "The answer is 42",
    }
    assert traj.passed
    # The agent's event stream ends with the turn's result.
    talker = Agent(ScriptedModel(["Hello there"]).model, stream=True, log=False)
    events = [e async for e in talker.stream("hi")]
    assert isinstance(events[-1], TurnFinished) and events[-1].result.text == "Hello there"
    assert "".join(e.text for e in events if isinstance(e, TokenDelta)) == "Hello there"


def test_trainer_skips_tool_execution_failures(log: Path) -> None:
    from rrr_trainer import build_failure_set

    model = ScriptedModel([
        call("get_weather", city="Atlantis"), "Use a real city.", call("get_weather", city="Paris"),
        "21.",
        call("get_weather", town="Paris"), "city, not town.", call("get_weather", city="Paris"),
        "21.",
    ])  # fmt: skip
    weather = agent(model, log, tools=[get_weather])
    weather.run_sync("Weather?")
    weather.run_sync("Weather again?")
    train, _, report = build_failure_set([log], holdout_fraction=0.0)
    assert len(train) == 1  # the schema failure; the tool's own failure cannot be re-judged
    assert report.skipped["tool execution failed (the spec does not re-run tools)"] == 1
