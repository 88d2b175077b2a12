"""A misbehaving OpenAI-compatible server on 127.0.0.1, driven through the engine (plain and
streaming), the SDK, the proxy and the chat.

Every fault must end, within its timeout, either in a successful transport retry or in a typed
:class:`InfrastructureError` (a 502/504 in the OpenAI error shape at the proxy); none may be logged
as a task failure (the trajectory log stays empty, the error log gets the run); and nothing may be
left behind: threads, asyncio tasks and sockets are counted before and after.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from rrr_agent import (
    Agent,
    ChatSession,
    Engine,
    InfrastructureError,
    MalformedResponse,
    ModelConnectionError,
    ModelTimeout,
    Outcome,
    RateLimited,
    ServerError,
    Settings,
    TrajectoryStore,
    chat_verifier,
    load_settings,
)
from rrr_agent.proxy import create_app
from rrr_agent.testing import AppServer, StubOpenAIServer, StubResponse

from .conftest import math_task

TIMEOUT = 1.5  # the model-call timeout every surface runs with here
MODEL = "hosted_vllm/stub"

# name → (the planned misbehaviour, the typed error it must become)
FAULTS: dict[str, tuple[StubResponse, type[InfrastructureError]]] = {
    "timeout": (StubResponse(delay_s=30.0), ModelTimeout),
    "429": (StubResponse(status=429, headers={"retry-after": "0.2"}), RateLimited),
    "500": (StubResponse(status=500), ServerError),
    "truncated_json": (
        StubResponse(body='{"id": "c1", "object": "chat.completion", "choices": [{"ind'),
        MalformedResponse,
    ),
    "not_json": (StubResponse(body="<html>502 Bad Gateway</html>"), MalformedResponse),
    "empty_choices": (
        StubResponse(body='{"id": "c1", "object": "chat.completion", "choices": []}'),
        MalformedResponse,
    ),
    "reset": (StubResponse(text="forty two and more", fault="reset"), ModelConnectionError),
    "stall": (StubResponse(text="forty two and more", fault="stall"), ModelTimeout),
}
# In a stream the same faults arrive as chunks: a reset after the first chunk, a stall after it.
STREAM_FAULTS = {
    "stream_reset": (
        StubResponse(text="forty two and more", fault="reset", after_chunks=2),
        ModelConnectionError,
    ),
    "stream_stall": (
        StubResponse(text="forty two and more", fault="stall", after_chunks=2),
        ModelTimeout,
    ),
}


def _sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


class Leaks:
    """Threads and sockets of this process before and after; settles for a few seconds first
    (closing a socket and ending a thread are asynchronous), then compares."""

    def __init__(self) -> None:
        gc.collect()
        self.threads = {t.ident for t in threading.enumerate()}
        self.sockets = _sockets()

    def check(self) -> None:
        deadline = time.monotonic() + 10  # waiting for clean-up to finish, not timing it
        while True:
            gc.collect()
            new = [t for t in threading.enumerate() if t.ident not in self.threads]
            new = [t for t in new if t.is_alive()]
            sockets = _sockets()
            if (not new and sockets <= self.sockets) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert not new, f"threads left behind: {[t.name for t in new]}"
        assert sockets <= self.sockets, f"sockets: {self.sockets} before, {sockets} after"


@pytest.fixture(scope="module")
def stub() -> Iterator[StubOpenAIServer]:
    with StubOpenAIServer(default=StubResponse(text="42")) as server:
        yield server


@pytest.fixture
def server(stub: StubOpenAIServer) -> StubOpenAIServer:
    stub.planned.clear()
    stub.default = StubResponse(text="42")
    return stub


def _settings(tmp_path: Path, server: StubOpenAIServer, tries: int = 1) -> Settings:
    return load_settings(
        model=MODEL, api_base=server.base_url, timeout_s=TIMEOUT, transport_tries=tries,
        log_path=tmp_path / "t.jsonl", max_tokens=16,
    )  # fmt: skip


def _logged(settings: Settings) -> int:
    return len(list(TrajectoryStore(settings.trajectory_log).read()))


def _no_task_failure(settings: Settings, errors: int, trajectories: int = 0) -> None:
    assert _logged(settings) == trajectories, "the fault was logged as a task"
    logged = settings.error_log.read_text().splitlines() if settings.error_log.exists() else []
    assert len(logged) == errors


async def _bounded(coro: Any) -> float:
    """Runs a call that must fail; returns how long it took. A hang would fail the test at 60 s
    (the bound is on a hang, the figure itself is not asserted)."""
    start = time.monotonic()
    await asyncio.wait_for(coro, 60)
    return time.monotonic() - start


ALL = {**FAULTS, **STREAM_FAULTS}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("fault", list(ALL))
async def test_engine_fault_is_a_typed_error_and_never_a_task_failure(
    tmp_path: Path, server: StubOpenAIServer, fault: str, stream: bool
) -> None:
    planned, expected = ALL[fault]
    settings = _settings(tmp_path, server)
    engine = Engine.from_settings(settings, stream=stream)
    await engine.run(math_task())  # warm: litellm's client pool exists before counting
    (settings.trajectory_log).unlink()
    leaks, tasks = Leaks(), asyncio.all_tasks()
    server.plan(planned)
    with pytest.raises(expected):
        await _bounded(engine.run(math_task()))
    _no_task_failure(settings, errors=1)
    await asyncio.sleep(0.2)  # let cancelled tasks finish
    assert not asyncio.all_tasks() - tasks - {asyncio.current_task()}, "asyncio tasks left"
    leaks.check()


@pytest.mark.parametrize("fault", list(ALL))
async def test_engine_retries_past_each_fault(
    tmp_path: Path, server: StubOpenAIServer, fault: str
) -> None:
    settings = _settings(tmp_path, server, tries=2)
    stream = fault.startswith("stream")
    engine = Engine.from_settings(settings, stream=stream)
    server.plan(ALL[fault][0], StubResponse(text="42"))
    traj = await asyncio.wait_for(engine.run(math_task()), 60)
    assert traj.outcome is Outcome.PASSED_FIRST_TRY  # the retry was a transport retry
    assert len(traj.attempts) == 1
    assert [t.id for t in TrajectoryStore(settings.trajectory_log).read()] == [traj.id]


@pytest.mark.parametrize("fault", list(ALL))
async def test_sdk_agent_fault_is_a_typed_error(
    tmp_path: Path, server: StubOpenAIServer, fault: str
) -> None:
    planned, expected = ALL[fault]
    settings = _settings(tmp_path, server)
    agent = Agent(settings=settings)
    await agent.run("warm up")  # pools and executor threads exist before counting
    async for _event in agent.stream("warm up"):
        pass
    leaks = Leaks()
    server.plan(planned)
    if fault.startswith("stream"):

        async def consume() -> None:
            async for _event in agent.stream("What is 6 times 7?"):
                pass

        with pytest.raises(expected):
            await _bounded(consume())
    else:
        with pytest.raises(expected):
            await _bounded(agent.run("What is 6 times 7?"))
    _no_task_failure(settings, errors=1, trajectories=2)
    leaks.check()


@pytest.mark.parametrize("fault", list(ALL))
async def test_chat_fault_is_a_typed_error(
    tmp_path: Path, server: StubOpenAIServer, fault: str
) -> None:
    planned, expected = ALL[fault]
    settings = _settings(tmp_path, server)
    session = ChatSession(settings, model=MODEL, verifier=chat_verifier("none"))
    await session.send("warm up")
    leaks = Leaks()
    server.plan(planned)
    with pytest.raises(expected):
        await _bounded(session.send("What is 6 times 7?"))
    assert len(session.turns) == 1
    _no_task_failure(settings, errors=1, trajectories=1)
    reply = await session.send("And now?")  # the session goes on after the fault
    assert reply.attempts[0].text == "42"
    leaks.check()


@pytest.mark.parametrize("fault", list(ALL))
def test_proxy_fault_is_a_502_or_504(tmp_path: Path, server: StubOpenAIServer, fault: str) -> None:
    planned, expected = ALL[fault]
    settings = _settings(tmp_path, server)
    status = 504 if expected is ModelTimeout else 502
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    with AppServer(create_app(settings, upstream=MODEL)) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key="x", max_retries=0, timeout=60)
        ask = [{"role": "user", "content": "What is 6 times 7?"}]
        for stream in (False, True):  # warm: the proxy's pools and worker threads exist
            client.chat.completions.create(model="m", tools=tools, messages=ask, stream=stream)  # type: ignore[call-overload]
        leaks = Leaks()
        server.plan(planned)
        start = time.monotonic()
        with pytest.raises(openai.APIStatusError) as info:  # through the loop (tools offered)
            client.chat.completions.create(
                model="m", tools=tools, stream=fault.startswith("stream"),  # type: ignore[arg-type]
                messages=[{"role": "user", "content": "What is 6 times 7?"}],
            )  # fmt: skip
        assert time.monotonic() - start < 60
        assert info.value.status_code == status
        assert info.value.body["type"] in {"upstream_error", "timeout"}  # type: ignore[index]
        _no_task_failure(settings, errors=1, trajectories=2)
        ok = client.chat.completions.create(  # and the proxy still answers
            model="m", tools=tools, messages=[{"role": "user", "content": "What is 6 times 7?"}]
        )
        assert ok.choices[0].message.content == "42"
        client.close()
        leaks.check()
