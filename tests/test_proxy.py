"""The self-correcting proxy over real sockets: the official openai client and litellm in front,
an OpenAI-compatible HTTP upstream behind (the stub here; tests/test_agent_embedded.py puts the
embedded model behind it)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from rrr_agent import TrajectoryStore, load_settings
from rrr_agent.proxy import create_app
from rrr_agent.testing import AppServer, StubOpenAIServer, StubResponse

KEY = "sk-planted-UPSTREAM-SECRET-0123456789"
TOKEN = "proxy-token-abc"

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    }
]


@pytest.fixture
def upstream() -> Iterator[StubOpenAIServer]:
    with StubOpenAIServer(default=StubResponse(text="plain answer")) as stub:
        yield stub


def _proxy(tmp_path: Path, api_base: str, *, token: str | None = None, **settings: Any) -> Any:
    s = load_settings(
        model="openai/up-model",
        api_base=api_base,
        api_key=KEY,
        log_path=tmp_path / "logs" / "proxy.jsonl",
        transport_tries=1,
        **settings,
    )
    return AppServer(create_app(s, upstream="openai/up-model", token=token))


@pytest.fixture
def proxy(tmp_path: Path, upstream: StubOpenAIServer) -> Iterator[AppServer]:
    with _proxy(tmp_path, upstream.base_url) as server:
        yield server


def client(server: AppServer, key: str = "unused", **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, **kw)


def test_bad_tool_call_is_corrected_on_retry(
    tmp_path: Path, upstream: StubOpenAIServer, proxy: AppServer
) -> None:
    upstream.plan(
        StubResponse(text=None, tool_calls=[{"name": "get_weather", "arguments": {"town": "x"}}]),
        StubResponse(text="I passed town; the tool takes city."),
        StubResponse(
            text=None, tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]
        ),
    )
    raw = client(proxy).chat.completions.with_raw_response.create(
        model="whatever", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=TOOLS
    )
    reply = raw.parse()
    assert raw.headers["x-rrr-attempts"] == "2" and raw.headers["x-rrr-verified"] == "true"
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {
        "city": "Paris"
    }
    assert reply.choices[0].finish_reason == "tool_calls"
    extra = reply.model_extra["rrr"]
    assert [a["passed"] for a in extra["attempts"]] == [False, True]
    assert extra["reflections"][0]["content"] == "I passed town; the tool takes city."
    # usage counts the three upstream calls, not only the last (the stub counts words).
    assert len(upstream.requests) == 3
    prompt_words = sum(
        len(str(m.get("content") or "").split()) for r in upstream.requests for m in r["messages"]
    )
    assert reply.usage.prompt_tokens == prompt_words
    reflection = extra["reflections"][0]["content"]
    assert reply.usage.completion_tokens == len(reflection.split()) == 7
    assert upstream.requests[0]["tools"] == TOOLS and upstream.requests[0]["model"] == "up-model"
    assert upstream.requests[1]["tool_choice"] == "none"  # the reflection is prose
    # The request is now a trajectory, with a spec the trainer can rebuild.
    (traj,) = TrajectoryStore(tmp_path / "logs" / "proxy.jsonl").read()
    assert traj.id == raw.headers["x-rrr-trajectory"] and traj.outcome.value == "passed_after_retry"
    assert traj.task.verifier.to_dict() == {"type": "tool_schema", "require_call": False}


def test_json_schema_answers_are_checked_without_ground_truth(
    upstream: StubOpenAIServer, proxy: AppServer
) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    upstream.plan(StubResponse(text='{"n": "seven"}'), StubResponse(text="n must be an integer."),
                  StubResponse(text='{"n": 7}'))  # fmt: skip
    reply = client(proxy).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "seven as JSON"}],
        response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema}},
    )  # fmt: skip
    assert json.loads(reply.choices[0].message.content) == {"n": 7}
    assert "response_format" in upstream.requests[0]
    assert "response_format" not in upstream.requests[1]  # never on the reflection


def test_other_requests_pass_through_unchanged(
    upstream: StubOpenAIServer, proxy: AppServer
) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.3,
            "max_tokens": 7, "logit_bias": {"42": 1}}  # fmt: skip
    direct = httpx.post(f"{upstream.base_url}/chat/completions", json=body, timeout=30).json()
    via = httpx.post(f"{proxy.base_url}/chat/completions", json=body, timeout=30)
    assert via.status_code == 200 and "x-rrr-attempts" not in via.headers
    answer = via.json()
    assert answer["choices"] == direct["choices"] and answer["usage"] == direct["usage"]
    assert upstream.requests[-1] == {**body, "model": "up-model"}  # the same request went on
    assert upstream.headers[-1]["authorization"] == f"Bearer {KEY}"


def test_streaming_pass_through_and_loop(upstream: StubOpenAIServer, proxy: AppServer) -> None:
    upstream.default = StubResponse(text="one two three")
    stream = client(proxy).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "count"}], stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three" and len([c for c in chunks if c.choices]) >= 4
    assert chunks[-1].usage is not None
    upstream.plan(
        StubResponse(text=None, tool_calls=[{"name": "get_weather", "arguments": {"city": "Rome"}}])
    )
    looped = list(client(proxy).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Weather?"}], tools=TOOLS, stream=True,
    ))  # fmt: skip
    calls = [tc for c in looped if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert [json.loads(tc.function.arguments) for tc in calls] == [{"city": "Rome"}]
    assert looped[-1].choices[0].finish_reason == "tool_calls"


def test_litellm_as_the_client(upstream: StubOpenAIServer, proxy: AppServer) -> None:
    import litellm

    upstream.plan(
        StubResponse(text=None, tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}])
    )
    reply = litellm.completion(
        model="openai/anything", api_base=proxy.base_url, api_key="x", tools=TOOLS,
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
    )  # fmt: skip
    assert reply.choices[0].message.tool_calls[0].function.name == "get_weather"


def test_bearer_token_is_required_when_set(tmp_path: Path, upstream: StubOpenAIServer) -> None:
    with _proxy(tmp_path, upstream.base_url, token=TOKEN) as server:
        messages = [{"role": "user", "content": "hi"}]
        with pytest.raises(openai.AuthenticationError) as info:
            client(server, key="wrong").chat.completions.create(model="m", messages=messages)
        assert info.value.status_code == 401
        assert info.value.body["code"] == "invalid_api_key"  # type: ignore[index]
        with pytest.raises(openai.AuthenticationError):
            client(server, key="wrong").models.list()
        ok = client(server, key=TOKEN).chat.completions.create(model="m", messages=messages)
        assert ok.choices[0].message.content == "plain answer"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_upstream_down_is_a_502_not_a_hang(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{_closed_port()}/v1"
    with _proxy(tmp_path, down) as server:
        c = client(server, timeout=60)
        for kwargs in ({}, {"tools": TOOLS}):  # pass-through and loop
            with pytest.raises(openai.APIStatusError) as info:
                c.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}], **kwargs
                )
            assert info.value.status_code == 502
            assert info.value.body["type"] == "upstream_error"  # type: ignore[index]
        errors = (tmp_path / "logs" / "proxy.errors.jsonl").read_text().splitlines()
        assert len(errors) == 1  # the loop request, in the error log, not as training data
        assert not (tmp_path / "logs" / "proxy.jsonl").exists()


def test_upstream_timeout_is_a_504(tmp_path: Path, upstream: StubOpenAIServer) -> None:
    upstream.default = StubResponse(delay_s=5.0)
    with _proxy(tmp_path, upstream.base_url, timeout_s=0.5) as server:
        for kwargs in ({}, {"tools": TOOLS}):
            with pytest.raises(openai.APIStatusError) as info:
                client(server, timeout=60).chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}], **kwargs
                )
            assert info.value.status_code == 504


def test_a_client_that_disconnects_cancels_the_upstream_call(
    upstream: StubOpenAIServer, proxy: AppServer
) -> None:
    upstream.default = StubResponse(delay_s=20.0)
    for extra in ({}, {"tools": TOOLS}):
        before = upstream.disconnects
        body = {"model": "m", "messages": [{"role": "user", "content": "slow"}], **extra}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{proxy.base_url}/chat/completions", json=body, timeout=0.5)
        deadline = time.monotonic() + 15  # waiting for the effect, not timing it
        while upstream.disconnects == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert upstream.disconnects == before + 1  # the upstream call was abandoned


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"model": "m"}', "'messages' must be a non-empty list"),
        (b'{"model": "m", "messages": [{"role": "wizard"}], "tools": []}', None),
        (b'{"messages": [{"role": "user", "content": "x"}], "tools": "nope"}', "'tools'"),
        (
            b'{"messages": [{"role": "user", "content": "x"}], "response_format": '
            b'{"type": "json_schema", "json_schema": {"schema": 3}}}',
            "json_schema.schema",
        ),
    ],
)
def test_malformed_requests_get_a_400(proxy: AppServer, body: bytes, message: str | None) -> None:
    resp = httpx.post(f"{proxy.base_url}/chat/completions", content=body, timeout=30)
    if message is None:  # empty tools: a pass-through the upstream judges; never a crash
        assert resp.status_code in (200, 400)
        return
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error" and message in error["message"]


def test_models_lists_the_upstream(proxy: AppServer) -> None:
    assert [m.id for m in client(proxy).models.list()] == ["openai/up-model"]


def test_no_api_key_in_any_written_file(tmp_path: Path, upstream: StubOpenAIServer) -> None:
    upstream.plan(
        StubResponse(text=None, tool_calls=[{"name": "nope", "arguments": {}}]),
        StubResponse(text="Only get_weather exists."),
        StubResponse(status=500),
    )
    with _proxy(tmp_path, upstream.base_url) as server:
        c = client(server)
        with pytest.raises(openai.APIStatusError):
            c.chat.completions.create(model="m", messages=[{"role": "user", "content": "a"}],
                                      tools=TOOLS)  # fmt: skip
        c.chat.completions.create(model="m", messages=[{"role": "user", "content": "b"}])
        upstream.plan(StubResponse(text=None, tool_calls=[
            {"name": "get_weather", "arguments": {"city": "Paris"}}]))  # fmt: skip
        c.chat.completions.create(model="m", messages=[{"role": "user", "content": "c"}],
                                  tools=TOOLS)  # fmt: skip
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) >= 2  # the trajectory log and the error log
    for path in written:
        assert KEY not in path.read_text(errors="replace"), path
    assert all(h["authorization"] == f"Bearer {KEY}" for h in upstream.headers)
