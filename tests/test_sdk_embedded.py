"""The SDK, the proxy and BFCL on a real model: the embedded gemma-3-270m, in-process.

The base model writes tool calls as Python-call text (``[get_weather(city="Paris")]``); the local
backend turns them into OpenAI tool calls, the SDK runs the tool, and the model answers in words.
One model load serves the whole module.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from typer.testing import CliRunner

from rrr_agent import Agent, TokenDelta, TrajectoryStore, TurnFinished, load_settings
from rrr_agent.cli import app
from rrr_agent.proxy import create_app
from rrr_agent.testing import AppServer

from .conftest import REPO

pytestmark = pytest.mark.slow

MODEL = "local/gemma-3-270m"
SYSTEM = """You are a weather assistant. To call a function, answer with [function(arg="value")].

User: What is the weather in Rome?
Assistant: [get_weather(city="Rome")]
Tool: {"city": "Rome", "temperature": 25, "sky": "cloudy"}
Assistant: It is 25 degrees and cloudy in Rome.
"""
CALLS: list[dict[str, Any]] = []


def get_weather(city: str) -> dict[str, Any]:
    """Current weather in a city."""
    CALLS.append({"city": city})
    return {"city": city, "temperature": 21, "sky": "sunny"}


def _agent(tmp_path: Path, **kw: Any) -> Agent:
    settings = load_settings(model=MODEL, max_tokens=40, log_path=tmp_path / "sdk.jsonl")
    return Agent(tools=[get_weather], system=SYSTEM, settings=settings, max_steps=3, **kw)


def test_agent_calls_the_tool_and_answers_with_its_result(tmp_path: Path) -> None:
    CALLS.clear()
    result = _agent(tmp_path).run_sync("What is the weather in Paris?")
    first = result.trajectories[0].attempts[-1]
    assert first.tool_calls and first.tool_calls[0].function.name == "get_weather"
    assert json.loads(first.tool_calls[0].function.arguments) == {"city": "Paris"}
    assert CALLS == [{"city": "Paris"}]  # the SDK ran the Python function once
    assert first.tool_results == [json.dumps({"city": "Paris", "temperature": 21, "sky": "sunny"})]
    assert result.finished and result.text and "Paris" in result.text
    assert [m["role"] for m in result.messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    assert result.usage.total_tokens == sum(
        t.total_usage().total_tokens for t in result.trajectories
    )
    logged = list(TrajectoryStore(tmp_path / "sdk.jsonl").read())
    assert len(logged) == len(result.trajectories) == 2


async def test_agent_streams_tokens_from_the_local_model(tmp_path: Path) -> None:
    agent = _agent(tmp_path, stream=True)
    deltas: dict[tuple[str, str, int], str] = {}
    finished = None
    async for event in agent.stream("What is the weather in Madrid?"):
        if isinstance(event, TokenDelta):
            key = (event.trajectory_id, event.stage, event.index)
            deltas[key] = deltas.get(key, "") + event.text
        elif isinstance(event, TurnFinished):
            finished = event.result
    assert finished is not None
    answer = finished.trajectories[-1]
    streamed = deltas[(answer.id, "attempt", len(answer.attempts) - 1)]
    assert streamed == finished.text and len(streamed.split()) >= 3
    assert len([k for k in deltas if k[0] == answer.id]) >= 1
    # The first step's text was streamed too, then parsed into a call.
    call_step = finished.trajectories[0]
    assert deltas[(call_step.id, "attempt", 0)].startswith("[get_weather(")


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    logs = tmp_path_factory.mktemp("proxy-logs")
    settings = load_settings(model=MODEL, log_path=logs / "proxy.jsonl", max_tokens=40)
    with AppServer(create_app(settings, upstream=MODEL)) as server:
        yield server


TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}  # fmt: skip


def test_proxy_tool_request_on_the_embedded_model(proxy: AppServer) -> None:
    client = openai.OpenAI(base_url=proxy.base_url, api_key="unused", max_retries=0, timeout=300)
    raw = client.chat.completions.with_raw_response.create(
        model="any", tools=[TOOL], max_tokens=24,
        messages=[{"role": "system", "content": SYSTEM},
                  {"role": "user", "content": "What is the weather in Oslo?"}],
    )  # fmt: skip
    reply = raw.parse()
    assert raw.headers["x-rrr-verified"] == "true"
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {
        "city": "Oslo"
    }
    assert reply.model_extra["rrr"]["attempts"][0]["passed"] is True


UNIT_TOOL = {"type": "function", "function": {
             "name": "get_weather", "description": "Current weather",
             "parameters": {"type": "object", "properties": {
                 "city": {"type": "string"},
                 "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                 "required": ["city", "unit"]}}}  # fmt: skip
# One worked example of the checker's feedback; the model still leaves out the unit on its first try
# for Berlin (greedy), and the retry after the reflection puts it in.
FEEDBACK_SYSTEM = """You are a weather assistant. To call a function, answer with \
[function(arg="value")].

User: What is the weather in Rome?
Assistant: [get_weather(city="Rome")]
User: The answer was checked and judged incorrect. Checker feedback: Call #1 to 'get_weather': \
(arguments): 'unit' is a required property
Assistant: [get_weather(city="Rome", unit="celsius")]
"""


def test_proxy_corrects_a_bad_tool_call_on_the_embedded_model(tmp_path: Path) -> None:
    log = tmp_path / "proxy.jsonl"
    settings = load_settings(model=MODEL, log_path=log, max_tokens=40, show_feedback=True)
    with AppServer(create_app(settings, upstream=MODEL)) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="any", tools=[UNIT_TOOL], max_tokens=32,
            messages=[{"role": "system", "content": FEEDBACK_SYSTEM},
                      {"role": "user", "content": "What is the weather in Berlin in celsius?"}],
        )  # fmt: skip
    reply = raw.parse()
    assert raw.headers["x-rrr-attempts"] == "2" and raw.headers["x-rrr-verified"] == "true"
    first, second = reply.model_extra["rrr"]["attempts"]
    assert json.loads(first["tool_calls"][0]["function"]["arguments"]) == {"city": "Berlin"}
    assert first["passed"] is False and "'unit' is a required property" in first["feedback"]
    assert second["passed"] is True
    call = reply.choices[0].message.tool_calls[0]
    assert json.loads(call.function.arguments) == {"city": "Berlin", "unit": "celsius"}
    (traj,) = TrajectoryStore(log).read()  # the corrected call is training data
    assert [v.passed for v in traj.verdicts] == [False, True] and len(traj.reflections) == 1


def test_proxy_passthrough_and_stream_on_the_embedded_model(proxy: AppServer) -> None:
    import litellm

    client = openai.OpenAI(base_url=proxy.base_url, api_key="unused", max_retries=0, timeout=300)
    messages = [
        {
            "role": "user",
            "content": "Country: Germany\nCapital: Berlin\n\nCountry: France\nCapital:",
        }
    ]
    # A base model: ask for the template's completion style, a field passed through as it is.
    style = {"chat_template_kwargs": {"style": "completion"}}
    plain = client.chat.completions.create(
        model="m", messages=messages, max_tokens=8, extra_body=style
    )
    text = plain.choices[0].message.content
    assert text and "Paris" in text
    chunks = list(client.chat.completions.create(model="m", messages=messages, max_tokens=8,
                                                 stream=True, extra_body=style))  # fmt: skip
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text  # greedy: the same answer, delivered in pieces
    via_litellm = litellm.completion(model="openai/m", api_base=proxy.base_url, api_key="x",
                                     messages=messages, max_tokens=8, extra_body=style)  # fmt: skip
    assert via_litellm.choices[0].message.content == text


def test_bfcl_through_rrr_eval_on_the_embedded_model(tmp_path: Path) -> None:
    """simple_python and live_simple end to end: functions offered as tools, the model's calls
    judged by the BFCL verifier (a 270M base model scores low; the path and the verdicts count)."""
    for taskset in ("bfcl-simple_python", "bfcl-live_simple"):
        result = CliRunner().invoke(app, [
            "eval", taskset, "--limit", "3", "-m", MODEL, "--max-tokens", "48", "--json",
            "--log", str(tmp_path / f"{taskset}.jsonl"),
        ])  # fmt: skip
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)["models"][0]
        assert report["overall"]["n"] == 3
        logged = list(TrajectoryStore(tmp_path / f"{taskset}.jsonl").read())
        assert len(logged) >= 3
        for traj in logged:
            assert traj.task.tools and traj.verdicts[0].verifier == "bfcl"
            details = traj.verdicts[0].details
            # Every first attempt was decoded and judged by BFCL's rules, pass or fail.
            assert details.get("error_type") is None or ":" in details["error_type"]


def test_the_example_app_runs_on_the_embedded_model(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "tool_app.py"), "What is the weather in Paris?"],
        capture_output=True, text=True, timeout=600,
        env={**__import__("os").environ, "RRR_HOME": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "get_weather(" in result.stdout and "assistant:" in result.stdout
    assert "tokens (reflections and retries included)" in result.stdout
    assert len(list(TrajectoryStore(tmp_path / "trajectories.jsonl").read())) >= 1
