"""Test helpers: a real OpenAI-compatible HTTP server on 127.0.0.1 that answers instantly.

It speaks enough of ``POST /v1/chat/completions`` (and ``GET /v1/models``) for the official
``openai`` client and litellm, over HTTP/1.1 keep-alive, using only the standard library. Planned
responses (status codes, delays, malformed bodies) let tests exercise infrastructure failures
against a real socket; the default reply is a fixed completion. Run it standalone for benchmarks::

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
from typing import Any

__all__ = ["StubOpenAIServer", "StubResponse"]


@dataclass(slots=True)
class StubResponse:
    """One planned answer. ``body=None`` means a normal completion with ``text``/``tool_calls``."""

    status: int = 200
    text: str | None = "ok"
    tool_calls: list[dict[str, Any]] | None = None
    delay_s: float = 0.0
    body: str | None = None  # raw body, e.g. malformed JSON
    headers: dict[str, str] = field(default_factory=dict)


def _completion(req: dict[str, Any], resp: StubResponse, counter: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": resp.text}
    if resp.tool_calls:
        message["tool_calls"] = [
            {
                "id": tc.get("id", f"call_{i}"),
                "type": "function",
                "function": {
                    "name": tc["name"],
                    "arguments": tc["arguments"]
                    if isinstance(tc.get("arguments"), str)
                    else json.dumps(tc.get("arguments", {})),
                },
            }
            for i, tc in enumerate(resp.tool_calls)
        ]
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


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class StubOpenAIServer:
    """A real HTTP server in a background thread; a context manager. ``base_url`` ends in /v1."""

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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._counter = 0
        self._conns: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def plan(self, *responses: StubResponse) -> None:
        self.planned.extend(responses)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    break
                method, path, _ = request_line.decode("latin-1").split(" ", 2)
                length = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                body = await reader.readexactly(length) if length else b""
                status, payload, headers = await self._respond(method, path, body)
                head = [
                    f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
                    "Content-Type: application/json",
                    f"Content-Length: {len(payload)}",
                    "Connection: keep-alive",
                ]
                head += [f"{k}: {v}" for k, v in headers.items()]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        except asyncio.CancelledError:
            # Shutting down. Python 3.11's stream callback calls task.exception() and would log a
            # spurious traceback for a cancelled handler, so end normally instead.
            pass
        finally:
            writer.close()
            if task is not None:
                self._conns.discard(task)

    async def _respond(
        self, method: str, path: str, body: bytes
    ) -> tuple[int, bytes, dict[str, str]]:
        if method == "GET" and path.rstrip("/").endswith("/models"):
            data = {
                "object": "list",
                "data": [{"id": "stub", "object": "model", "owned_by": "rrr"}],
            }
            return 200, json.dumps(data).encode(), {}
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            return 404, b'{"error": {"message": "not found"}}', {}
        req = json.loads(body or b"{}")
        self.requests.append(req)
        resp = self.planned.popleft() if self.planned else self.default
        if resp.delay_s:
            await asyncio.sleep(resp.delay_s)
        self._counter += 1
        if resp.body is not None:
            return resp.status, resp.body.encode(), resp.headers
        if resp.status != 200:
            err = {
                "error": {
                    "message": f"stub status {resp.status}",
                    "type": "stub",
                    "code": resp.status,
                }
            }
            return resp.status, json.dumps(err).encode(), resp.headers
        return 200, json.dumps(_completion(req, resp, self._counter)).encode(), resp.headers

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._server = loop.run_until_complete(
            asyncio.start_server(self._handle, self.host, self.port, backlog=512)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._shutdown())
            loop.close()

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        await self._server.wait_closed()

    def start(self) -> StubOpenAIServer:
        self._thread = threading.Thread(target=self._run, name="stub-openai", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("stub server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> StubOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Instant OpenAI-compatible stub server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--reply", default="ok")
    args = parser.parse_args()
    server = StubOpenAIServer(default=StubResponse(text=args.reply), host=args.host, port=args.port)
    server.start()
    print(f"listening on {server.base_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
