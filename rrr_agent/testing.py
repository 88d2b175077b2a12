"""Test helpers: a real OpenAI-compatible HTTP server on 127.0.0.1 that answers instantly.

A Starlette app served by uvicorn in a background thread, speaking enough of
``POST /v1/chat/completions`` and ``GET /v1/models`` for the official ``openai`` client and
litellm. Planned responses (status codes, delays, malformed bodies) let tests exercise
infrastructure failures against a real socket; the default reply is a fixed completion. Run it
standalone for benchmarks::

    python -m rrr_agent.testing --port 8765 --reply "42"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from ._providers import openai_tool_calls
from ._types import FunctionCall, ToolCall

__all__ = ["AppServer", "StubOpenAIServer", "StubResponse"]


@dataclass(slots=True)
class StubResponse:
    """One planned answer. ``body=None`` means a normal completion with ``text``/``tool_calls``
    (``tool_calls``: ``[{"name": ..., "arguments": {...} or "json text"}]``)."""

    status: int = 200
    text: str | None = "ok"
    tool_calls: list[dict[str, Any]] | None = None
    delay_s: float = 0.0
    body: str | None = None  # raw body, e.g. malformed JSON
    headers: dict[str, str] = field(default_factory=dict)
    #: ``"reset"``: the connection is cut after ``after_chunks`` pieces of the answer (a stream's
    #: chunks, or the first bytes of a JSON body); ``"stall"``: the answer stops there and the
    #: server goes quiet until the client leaves.
    fault: Literal["reset", "stall"] | None = None
    after_chunks: int = 1


def _completion(req: dict[str, Any], resp: StubResponse, counter: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": resp.text}
    if resp.tool_calls:
        calls = [
            ToolCall(
                id=tc.get("id", f"call_{i}"),
                function=FunctionCall(
                    name=tc["name"],
                    arguments=tc["arguments"]
                    if isinstance(tc.get("arguments"), str)
                    else json.dumps(tc.get("arguments", {})),
                ),
            )
            for i, tc in enumerate(resp.tool_calls)
        ]
        message["tool_calls"] = openai_tool_calls(calls)
    prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in req.get("messages", []))
    completion_tokens = len((resp.text or "").split())
    return {
        "id": f"chatcmpl-{counter}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": req.get("model", "stub"),
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if resp.tool_calls else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


async def _stream(body: dict[str, Any], include_usage: bool) -> Any:
    """A completion as OpenAI stream chunks: the text word by word, then the finish, usage."""
    import re

    base = {k: body[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    choice = body["choices"][0]
    text = choice["message"].get("content") or ""
    for i, piece in enumerate(re.findall(r"\s*\S+", text)):
        delta = {"content": piece} | ({"role": "assistant"} if i == 0 else {})
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        yield f"data: {json.dumps(chunk)}\n\n"
    end = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]}
    yield f"data: {json.dumps(end)}\n\n"
    if include_usage:
        yield f"data: {json.dumps({**base, 'choices': [], 'usage': body['usage']})}\n\n"
    yield "data: [DONE]\n\n"


class _Cut(Exception):
    """Raised inside a streaming body: uvicorn then drops the connection mid-answer."""


async def _faulty(pieces: list[str], resp: StubResponse, request: Any) -> Any:
    for piece in pieces[: resp.after_chunks]:
        yield piece
    if resp.fault == "reset":
        raise _Cut("connection reset by the stub (planned)")
    while not await request.is_disconnected():  # noqa: ASYNC110 (polling the client is the point)
        await asyncio.sleep(0.05)  # stall: say nothing more until the client goes


class AppServer:
    """Any ASGI app served by uvicorn on 127.0.0.1 in a background thread (a context manager);
    ``port`` is the one it got (0 picks a free one)."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0):
        self.app = app
        self.host = host
        self.port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> AppServer:
        import uvicorn

        config = uvicorn.Config(
            self.app, host=self.host, port=self.port, log_level="warning", backlog=512,
            timeout_graceful_shutdown=1,
        )  # fmt: skip
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(target=server.run, name="rrr-app-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the app server did not start")
            time.sleep(0.01)
        self.port = server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> AppServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class StubOpenAIServer:
    """A real HTTP server in a background thread; a context manager. ``base_url`` ends in /v1.

    ``requests`` holds every chat-completion request body received, in order, and ``headers``
    their HTTP headers (lower-case names). A planned :class:`StubResponse` can also misbehave:
    a status with headers (429 + Retry-After), a raw malformed body, a delay past the client's
    timeout, a connection reset or a stall in the middle of the answer (``fault``).
    ``disconnects`` counts requests whose client went away while a planned delay was running.
    A request with ``"stream": true`` is answered as an SSE stream, word by word.
    """

    def __init__(
        self,
        responses: list[StubResponse] | None = None,
        *,
        default: StubResponse | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.planned: deque[StubResponse] = deque(responses or [])
        self.default = default or StubResponse()
        self.host = host
        self.port = port
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.disconnects = 0
        self._counter = 0
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def plan(self, *responses: StubResponse) -> None:
        self.planned.extend(responses)

    def app(self) -> Any:
        """The Starlette app (also usable in-process with an ASGI test client)."""
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response, StreamingResponse
        from starlette.routing import Route

        async def models(_request: Request) -> Response:
            data = [{"id": "stub", "object": "model", "owned_by": "rrr"}]
            return JSONResponse({"object": "list", "data": data})

        async def chat(request: Request) -> Response:
            try:
                req = json.loads(await request.body() or b"{}")
            except json.JSONDecodeError:
                error = {"message": "body is not JSON", "type": "invalid_request_error"}
                return JSONResponse({"error": error}, status_code=400)
            self.requests.append(req)
            self.headers.append(dict(request.headers))
            resp = self.planned.popleft() if self.planned else self.default
            deadline = time.monotonic() + resp.delay_s
            while time.monotonic() < deadline:  # a slow upstream that notices a client leaving
                if await request.is_disconnected():
                    self.disconnects += 1
                    return Response(status_code=499)
                await asyncio.sleep(min(0.02, max(0.0, deadline - time.monotonic())))
            self._counter += 1
            if resp.body is not None:
                return Response(
                    resp.body,
                    status_code=resp.status,
                    headers=resp.headers,
                    media_type="application/json",
                )
            if resp.status != 200:
                error = {"message": f"stub status {resp.status}", "type": "stub"}
                return JSONResponse(
                    {"error": {**error, "code": resp.status}},
                    status_code=resp.status,
                    headers=resp.headers,
                )
            body = _completion(req, resp, self._counter)
            if resp.fault is not None:
                if req.get("stream"):
                    chunks = [c async for c in _stream(body, False)]
                    media = "text/event-stream"
                else:
                    text = json.dumps(body)
                    chunks, media = [text[: len(text) // 2]], "application/json"
                return StreamingResponse(_faulty(chunks, resp, request), media_type=media)
            if req.get("stream"):
                return StreamingResponse(
                    _stream(body, bool((req.get("stream_options") or {}).get("include_usage"))),
                    media_type="text/event-stream",
                    headers=resp.headers,
                )
            return JSONResponse(body, headers=resp.headers)

        return Starlette(
            routes=[
                Route("/v1/models", models, methods=["GET"]),
                Route("/v1/chat/completions", chat, methods=["POST"]),
            ]
        )

    def start(self) -> StubOpenAIServer:
        self._server = AppServer(self.app(), host=self.host, port=self.port).start()
        self.port = self._server.port
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> StubOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Instant OpenAI-compatible stub server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--reply", default="ok")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args()
    default = StubResponse(text=args.reply, delay_s=args.delay)
    server = StubOpenAIServer(default=default, host=args.host, port=args.port)
    server.start()
    print(f"listening on {server.base_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
