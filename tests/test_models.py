"""Model access over a real socket: the official openai client and litellm against our stub
server, and the mapping of every infrastructure failure to a typed error."""

from __future__ import annotations

import socket
from typing import Any

import openai
import pytest

from rrr_agent import (
    ConfigError,
    Engine,
    InfrastructureError,
    LiteLLMClient,
    MalformedResponse,
    ModelConnectionError,
    ModelRequestError,
    ModelTimeout,
    Outcome,
    RateLimited,
    RetryPolicy,
    ServerError,
    Task,
    TransportRetry,
)
from rrr_agent.testing import StubOpenAIServer, StubResponse

from .conftest import math_task

ONE_TRY = RetryPolicy(tries=1)


@pytest.fixture
def server() -> StubOpenAIServer:
    with StubOpenAIServer(default=StubResponse(text="42")) as s:
        yield s  # type: ignore[misc]


def test_official_openai_client_talks_to_stub(server: StubOpenAIServer) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="none")
    reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "42"
    assert [m.id for m in client.models.list()] == ["stub"]


def test_engine_through_litellm_over_http(server: StubOpenAIServer) -> None:
    server.plan(StubResponse(text="41"), StubResponse(text="I was off by one."))
    engine = Engine("hosted_vllm/stub", api_base=server.base_url, retry_policy=ONE_TRY)
    traj = engine.run_sync(math_task())
    assert traj.outcome is Outcome.PASSED_AFTER_RETRY
    assert len(server.requests) == 3
    assert server.requests[1]["messages"][-1]["content"].startswith("You tried solving")
    assert traj.attempts[0].usage.total_tokens > 0


def test_tool_calls_over_http(server: StubOpenAIServer) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    server.plan(StubResponse(text=None, tool_calls=[{"name": "f", "arguments": {"x": 1}}]))
    task = Task.from_prompt(
        "call f",
        {"type": "python", "path": "tests.helpers:is_upper"},
        tools=tools,
        family="tool_call",
    )
    engine = Engine(
        "hosted_vllm/stub", api_base=server.base_url, retry_policy=ONE_TRY, options=None
    )
    traj = engine.run_sync(task)
    call = traj.attempts[0].tool_calls[0]  # type: ignore[index]
    assert call.function.name == "f" and call.parsed_arguments() == {"x": 1}
    assert server.requests[0]["tools"] == tools
    assert server.requests[1]["tool_choice"] == "none"
    assert server.requests[1]["messages"][-2]["role"] == "tool"


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (StubResponse(status=500), ServerError),
        (StubResponse(status=502), ServerError),
        (StubResponse(status=503), ServerError),
        (StubResponse(status=429, headers={"retry-after": "0"}), RateLimited),
        (StubResponse(status=400), ModelRequestError),
        (StubResponse(status=404), ModelRequestError),
        (StubResponse(body="{not json"), MalformedResponse),
        (StubResponse(body='{"choices": []}'), MalformedResponse),
    ],
)
async def test_http_failures_map_to_typed_errors(
    server: StubOpenAIServer, response: StubResponse, error: type[InfrastructureError]
) -> None:
    server.plan(response)
    client = LiteLLMClient("hosted_vllm/stub", api_base=server.base_url)
    with pytest.raises(error):
        await client.complete([{"role": "user", "content": "hi"}], params={}, timeout=5)


async def test_slow_server_is_a_timeout(server: StubOpenAIServer) -> None:
    server.plan(StubResponse(delay_s=2.0))
    client = LiteLLMClient("hosted_vllm/stub", api_base=server.base_url)
    with pytest.raises(ModelTimeout):
        await client.complete([{"role": "user", "content": "hi"}], params={}, timeout=0.3)


@pytest.mark.parametrize("model", ["hosted_vllm/stub", "openai/stub"])
async def test_refused_connection_is_a_connection_error(model: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        client = LiteLLMClient(model, api_base=f"http://127.0.0.1:{port}/v1", api_key="k")
        with pytest.raises(ModelConnectionError) as info:
            await client.complete([{"role": "user", "content": "hi"}], params={}, timeout=5)
    # litellm reports it as a 500 InternalServerError; rrr reads the cause, and no status.
    assert info.value.retryable and info.value.status_code is None


def test_missing_api_key_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, server: StubOpenAIServer
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    events: list[Any] = []
    engine = Engine(
        "openai/gpt-4o-mini", api_base=server.base_url, retry_policy=RetryPolicy(tries=4)
    )
    with pytest.raises(ConfigError, match="OPENAI_API_KEY") as info:
        engine.run_sync(math_task(), on_event=events.append)
    assert not isinstance(info.value, InfrastructureError)
    assert not [e for e in events if isinstance(e, TransportRetry)]  # never retried
    assert server.requests == []  # nothing reached the server
    # With the key given, the same engine reaches the server.
    keyed = Engine("openai/gpt-4o-mini", api_base=server.base_url, api_key="sk-test")
    assert keyed.run_sync(math_task()).first_try_passed


def test_transport_retry_recovers_over_http(server: StubOpenAIServer) -> None:
    server.plan(StubResponse(status=503), StubResponse(status=500))
    engine = Engine(
        "hosted_vllm/stub",
        api_base=server.base_url,
        retry_policy=RetryPolicy(tries=3, base_delay_s=0.01),
    )
    traj = engine.run_sync(math_task())
    assert traj.outcome is Outcome.PASSED_FIRST_TRY
    assert len(server.requests) == 3 and len(traj.attempts) == 1


async def test_custom_providers_come_from_the_table() -> None:
    from rrr_agent import ModelOutput
    from rrr_agent._providers import BUILTIN_PROVIDERS, register_provider

    assert set(BUILTIN_PROVIDERS) == {"local", "scripted"}
    seen: list[str] = []

    async def echo(
        name: str, messages: list[dict[str, Any]], *, params: dict[str, Any], **_: Any
    ) -> ModelOutput:
        seen.append(name)
        return ModelOutput(text=messages[-1]["content"].upper())

    register_provider("echo", echo)
    out = await LiteLLMClient("echo/loud").complete(
        [{"role": "user", "content": "hi"}], params={}, timeout=5
    )
    assert out.text == "HI" and seen == ["loud"]


def test_model_modules_do_not_import_each_other() -> None:
    """_models knows no provider: local/ and scripted/ come from the table, not from imports."""
    import ast
    from pathlib import Path

    import rrr_agent

    src = Path(rrr_agent.__file__).parent / "_models.py"
    imported = {
        node.module
        for node in ast.walk(ast.parse(src.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported and not imported & {"local", "_scripted"}
    code = [ln for ln in src.read_text().splitlines() if not ln.strip().startswith("#")]
    assert not [ln for ln in code if 'startswith("local/' in ln or 'startswith("scripted/' in ln]
