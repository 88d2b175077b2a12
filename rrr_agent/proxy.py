"""An OpenAI-compatible HTTP proxy that makes any model correct itself: ``rrr proxy``.

Point an existing OpenAI client at it (``base_url="http://127.0.0.1:PORT/v1"``) and nothing else
changes. ``POST /v1/chat/completions``:

* a request that carries ``tools``, or a JSON-schema ``response_format``, runs through the engine:
  the answer is judged (``tool_schema``: every call names an offered tool and its arguments
  validate; ``json_schema``: the text is JSON matching the schema; no ground truth is needed),
  and a failed answer gets a reflection and a retry. The reply is the final answer in the normal
  OpenAI shape, with ``usage`` counting every call (reflections and retries too), an ``rrr``
  field listing the attempts and reflections, and the headers ``x-rrr-attempts``,
  ``x-rrr-verified`` and ``x-rrr-trajectory``. Every such request is logged as a trajectory, so
  an app's traffic becomes training data with no code change;
* any other request passes through unchanged: to an OpenAI-compatible upstream (``api_base``) as
  the same HTTP request, byte for byte back; to other providers through litellm.

``stream: true`` works on both paths (a self-corrected answer is streamed once it is verified).
``GET /v1/models`` lists the upstream model. Errors use OpenAI's error shape: 400 for a malformed
request, 401 for a bad token, 502 when the upstream fails, 504 when it times out. A client that
disconnects cancels the upstream call. Upstream keys come from the settings and are never
logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import aiohttp

from ._engine import Engine
from ._errors import (
    ConfigError,
    InfrastructureError,
    ModelTimeout,
    RRRError,
    VerifierError,
    VerifierSpecError,
)
from ._models import LiteLLMClient, map_litellm_error
from ._providers import ensure_provider, import_litellm
from ._secrets import redact, register_secret
from ._settings import Settings
from ._types import Message, SamplingParams, Task, Trajectory, Usage, VerifierSpec

__all__ = ["KEEP_ALIVE_S", "ProxyError", "create_app", "loop_task"]

#: How long the proxy keeps an idle client connection open. Longer than clients keep theirs
#: (httpx and the ``openai`` client: 5 s), so the client always closes an idle connection first:
#: with equal timeouts a request sent just as the server closes is lost as a read error.
KEEP_ALIVE_S = 75

T = TypeVar("T")

#: Request fields that become sampling parameters of the loop's model calls.
_SAMPLING = ("temperature", "top_p", "seed", "stop")
#: Request fields passed to the model as they are (besides sampling).
_PASS = ("response_format", "frequency_penalty", "presence_penalty", "logit_bias", "user",
         "top_k", "min_p", "repetition_penalty")  # fmt: skip


class ProxyError(RRRError):
    """A request the proxy answers with an OpenAI-shaped error (``status``, ``kind``)."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        self.status = status
        self.kind = kind
        super().__init__(message)


def _redact_bytes(content: bytes) -> bytes:
    return redact(content.decode("utf-8", "replace")).encode("utf-8")


def _error_body(message: str, kind: str, code: str | int | None = None) -> dict[str, Any]:
    return {"error": {"message": redact(message), "type": kind, "param": None, "code": code}}


def _upstream_error(exc: BaseException, model: str) -> ProxyError:
    if isinstance(exc, ModelTimeout | asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return ProxyError(504, f"the upstream model did not answer in time: {exc}", "timeout")
    return ProxyError(502, f"the upstream model failed: {exc}", "upstream_error")


def loop_task(body: dict[str, Any]) -> Task | None:
    """The task a request becomes when it runs through the loop, or None (pass-through).

    Raises :class:`ProxyError` (400) for a malformed request.
    """
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ProxyError(400, "'messages' must be a non-empty list")
    tools = body.get("tools")
    fmt = body.get("response_format")
    schema = None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        inner = fmt.get("json_schema")
        if not isinstance(inner, dict) or not isinstance(inner.get("schema"), dict):
            raise ProxyError(400, "response_format.json_schema.schema must be a JSON object")
        schema = inner["schema"]
    if not tools and schema is None:
        return None
    if tools is not None and (
        not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools)
    ):
        raise ProxyError(400, "'tools' must be a list of tool objects")
    try:
        parsed = [Message.model_validate(m) for m in messages]
    except ValueError as exc:
        raise ProxyError(400, f"invalid message: {exc}") from None
    if tools:
        choice = body.get("tool_choice")
        required = choice == "required" or isinstance(choice, dict)
        spec = VerifierSpec(type="tool_schema", require_call=required)
        family = "tool_call"
    else:
        spec = VerifierSpec(type="json_schema", schema=schema)
        family = "default"
    try:
        from .verifiers import build_verifier

        build_verifier(spec)
    except VerifierSpecError as exc:
        raise ProxyError(400, f"cannot check this request: {exc}") from None
    return Task(family=family, messages=parsed, tools=tools or None, verifier=spec,
                metadata={"source": "proxy"})  # fmt: skip


def _sampling(body: dict[str, Any]) -> SamplingParams:
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    stop = body.get("stop")
    extra = {k: body[k] for k in _PASS if k in body}
    try:
        return SamplingParams(
            temperature=body.get("temperature"),
            top_p=body.get("top_p"),
            max_tokens=max_tokens,
            seed=body.get("seed"),
            stop=[stop] if isinstance(stop, str) else stop,
            extra=extra,
        )
    except ValueError as exc:
        raise ProxyError(400, f"invalid sampling parameters: {exc}") from None


def _message(traj: Trajectory) -> dict[str, Any]:
    final = traj.attempts[-1]
    msg: dict[str, Any] = {"role": "assistant", "content": final.text}
    if final.tool_calls:
        msg["tool_calls"] = [tc.model_dump() for tc in final.tool_calls]
    return msg


def _usage(usage: Usage) -> dict[str, int]:
    return usage.model_dump()


def _rrr_field(traj: Trajectory) -> dict[str, Any]:
    return {
        "trajectory_id": traj.id,
        "outcome": traj.outcome.value,
        "verified": traj.passed,
        "attempts": [
            {
                "index": a.index,
                "content": a.text,
                "tool_calls": [tc.model_dump() for tc in a.tool_calls] if a.tool_calls else None,
                "passed": v.passed,
                "feedback": v.feedback,
            }
            for a, v in zip(traj.attempts, traj.verdicts, strict=False)
        ],
        "reflections": [
            {"after_attempt": r.after_attempt, "content": r.text} for r in traj.reflections
        ],
    }


def _completion(traj: Trajectory, model: str) -> dict[str, Any]:
    final = traj.attempts[-1]
    return {
        "id": f"chatcmpl-{traj.id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": _message(traj),
                "finish_reason": "tool_calls"
                if final.tool_calls
                else final.finish_reason or "stop",
            }
        ],
        "usage": _usage(traj.total_usage()),
        "rrr": _rrr_field(traj),
    }


def _sse(data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"data: {payload}\n\n".encode()


def _completion_chunks(completion: dict[str, Any], include_usage: bool) -> list[bytes]:
    """A whole completion as an OpenAI stream: role and content (or tool calls), then the finish
    reason, then usage when asked, then [DONE]."""
    base = {k: completion[k] for k in ("id", "created", "model")} | {
        "object": "chat.completion.chunk"
    }
    choice = completion["choices"][0]
    message = choice["message"]
    delta: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
    if message.get("tool_calls"):
        delta["tool_calls"] = [{"index": i, **tc} for i, tc in enumerate(message["tool_calls"])]
    chunks = [
        _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}),
        _sse(
            {
                **base,
                "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}],
                "rrr": completion.get("rrr"),
            }
        ),
    ]
    if include_usage:
        chunks.append(_sse({**base, "choices": [], "usage": completion["usage"]}))
    chunks.append(_sse("[DONE]"))
    return chunks


async def _post(
    session: aiohttp.ClientSession, url: str, payload: bytes, headers: dict[str, str]
) -> tuple[int, str | None, bytes]:
    async with session.post(url, data=payload, headers=headers) as resp:
        return resp.status, resp.headers.get("content-type"), await resp.read()


async def _unless_disconnected(request: Any, work: Awaitable[T]) -> T | None:
    """Run ``work``; cancel it (and return None) when the client goes away first.

    The ASGI server reports a client that left as an ``http.disconnect`` message: a watcher
    waits for it (no polling), and whichever finishes first decides."""
    task = asyncio.ensure_future(work)

    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(gone())
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return None
    finally:
        for t in (task, watcher):
            if not t.done():
                t.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


class _Proxy:
    def __init__(self, settings: Settings, upstream: str, token: str | None):
        self.settings = settings
        self.upstream = upstream
        self.token = token
        register_secret(token)
        # One engine for the proxy's life; each request brings its own sampling.
        self.engine = Engine.from_settings(settings, model=upstream)
        self.api_base = settings.api_base
        self.api_key = settings.api_key.get_secret_value() if settings.api_key else None
        register_secret(self.api_key)
        # Pass-through requests go out on one aiohttp session (made in the server's loop on first
        # use): httpx's pool scans every connection per request, which cost 6 % of the
        # throughput at 32 concurrent requests (benchmarks/proxy_overhead.py).
        self._session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=10.0, sock_read=settings.timeout_s
        )
        # Name the upstream server knows the model by (hosted_vllm/rrr → rrr).
        self.upstream_name = upstream.split("/", 1)[1] if "/" in upstream else upstream

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, auto_decompress=False
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    # ------------------------------------------------------------------ routing

    def authorized(self, headers: Any) -> bool:
        if self.token is None:
            return True
        given = headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode())

    async def loop(self, request: Any, body: dict[str, Any], task: Task) -> Any:
        from starlette.responses import JSONResponse, Response, StreamingResponse

        sampling = _sampling(body)
        try:
            traj = await _unless_disconnected(request, self.engine.run(task, sampling=sampling))
        except InfrastructureError as exc:
            raise _upstream_error(exc, self.upstream) from exc
        except (VerifierError, ConfigError) as exc:
            raise ProxyError(500, str(exc), "server_error") from exc
        if traj is None:  # the client left; nothing to answer
            return Response(status_code=499)
        completion = _completion(traj, str(body.get("model") or self.upstream))
        headers = {
            "x-rrr-attempts": str(len(traj.attempts)),
            "x-rrr-verified": "true" if traj.passed else "false",
            "x-rrr-trajectory": traj.id,
        }
        if body.get("stream"):
            include = bool((body.get("stream_options") or {}).get("include_usage"))
            chunks = _completion_chunks(completion, include)

            async def replay() -> AsyncIterator[bytes]:
                for chunk in chunks:
                    yield chunk

            return StreamingResponse(replay(), media_type="text/event-stream", headers=headers)
        return JSONResponse(completion, headers=headers)

    async def passthrough(self, request: Any, body: dict[str, Any]) -> Any:
        if self.api_base is not None:
            return await self._forward(request, body)
        return await self._through_litellm(request, body)

    async def _forward(self, request: Any, body: dict[str, Any]) -> Any:
        """The same HTTP request to the OpenAI-compatible upstream; its answer back unchanged."""
        from starlette.background import BackgroundTask
        from starlette.responses import Response, StreamingResponse

        url = f"{self.api_base.rstrip('/')}/chat/completions"  # type: ignore[union-attr]
        headers = {"content-type": "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        payload = json.dumps({**body, "model": self.upstream_name}).encode()
        session = self.session()
        try:
            if body.get("stream"):
                resp = await session.post(url, data=payload, headers=headers)
                kept = {k: v for k, v in resp.headers.items() if k.lower() == "content-type"}
                if resp.status >= 400:  # an error body: read whole, keys blanked
                    content = _redact_bytes(await resp.read())
                    resp.release()
                    return Response(content, status_code=resp.status, headers=kept)

                async def relay() -> AsyncIterator[bytes]:
                    async for piece in resp.content.iter_any():
                        yield piece

                return StreamingResponse(
                    relay(), status_code=resp.status, headers=kept,
                    background=BackgroundTask(resp.release),
                )  # fmt: skip
            answer = await _unless_disconnected(request, _post(session, url, payload, headers))
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _upstream_error(exc, self.upstream) from exc
        if answer is None:
            return Response(status_code=499)
        status, kind, content = answer
        if status >= 400:  # providers echo a rejected key in their error message
            content = _redact_bytes(content)
        kept = {"content-type": kind} if kind else {}
        return Response(content, status_code=status, headers=kept)

    async def _through_litellm(self, request: Any, body: dict[str, Any]) -> Any:
        """Providers without an OpenAI-compatible URL (in-process models, cloud providers)."""
        from starlette.responses import JSONResponse, Response, StreamingResponse

        params = {k: v for k, v in body.items()
                  if k not in ("model", "messages", "stream", "stream_options")}  # fmt: skip
        messages = body["messages"]
        client = LiteLLMClient(self.upstream, api_key=self.api_key)
        if body.get("stream"):
            include = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                self._litellm_stream(client, messages, params, include),
                media_type="text/event-stream",
            )
        litellm = import_litellm()

        async def call() -> Any:
            ensure_provider(self.upstream)  # an in-process provider (local/...), if it is one
            return await litellm.acompletion(
                model=self.upstream, messages=messages, max_retries=0,
                timeout=self.settings.timeout_s,
                **({"api_key": self.api_key} if self.api_key else {}), **params,
            )  # fmt: skip

        try:
            response = await _unless_disconnected(request, call())
        except Exception as exc:
            raise _upstream_error(map_litellm_error(exc, self.upstream), self.upstream) from exc
        if response is None:
            return Response(status_code=499)
        return JSONResponse(response.model_dump(exclude_none=True))

    async def _litellm_stream(
        self, client: LiteLLMClient, messages: list[Any], params: dict[str, Any], usage: bool
    ) -> AsyncIterator[bytes]:
        """Deltas as OpenAI chunks while the upstream generates (runs as the response body: a
        client that disconnects cancels it)."""
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        cid = f"chatcmpl-{uuid.uuid4().hex}"
        base = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
                "model": self.upstream}  # fmt: skip
        sampling = {k: params[k] for k in params}
        work = asyncio.ensure_future(
            client.stream(messages, params=sampling, on_delta=pieces.put_nowait,
                          timeout=self.settings.timeout_s)
        )  # fmt: skip
        work.add_done_callback(lambda _t: pieces.put_nowait(None))
        try:
            first = True
            while (piece := await pieces.get()) is not None:
                delta: dict[str, Any] = {"content": piece}
                if first:
                    delta["role"] = "assistant"
                    first = False
                yield _sse({**base, "choices": [{"index": 0, "delta": delta,
                                                 "finish_reason": None}]})  # fmt: skip
            try:
                output = await work
            except InfrastructureError as exc:
                error = _upstream_error(exc, self.upstream)
                yield _sse(_error_body(str(error), error.kind, error.status))
                return
            finish = output.finish_reason or "stop"
            yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
            if usage:
                yield _sse({**base, "choices": [], "usage": _usage(output.usage)})
            yield _sse("[DONE]")
        finally:
            if not work.done():
                work.cancel()


def create_app(settings: Settings, *, upstream: str, token: str | None = None) -> Any:
    """The proxy as a Starlette app (serve it with uvicorn; ``rrr proxy`` does)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    proxy = _Proxy(settings, upstream, token)

    def error(exc: ProxyError) -> Response:
        code = {401: "invalid_api_key"}.get(exc.status)
        return JSONResponse(_error_body(str(exc), exc.kind, code), status_code=exc.status)

    async def models(request: Request) -> Response:
        if not proxy.authorized(request.headers):
            return error(ProxyError(401, "invalid or missing bearer token"))
        data = [{"id": upstream, "object": "model", "created": 0, "owned_by": "rrr"}]
        return JSONResponse({"object": "list", "data": data})

    async def chat(request: Request) -> Response:
        if not proxy.authorized(request.headers):
            return error(ProxyError(401, "invalid or missing bearer token"))
        try:
            try:
                body = json.loads(await request.body())
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ProxyError(400, "the request body is not valid JSON") from None
            if not isinstance(body, dict):
                raise ProxyError(400, "the request body must be a JSON object")
            task = loop_task(body)
            if task is not None:
                return await proxy.loop(request, body, task)  # type: ignore[no-any-return]
            return await proxy.passthrough(request, body)  # type: ignore[no-any-return]
        except ProxyError as exc:
            return error(exc)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        yield
        await proxy.close()

    app = Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.proxy = proxy
    return app
