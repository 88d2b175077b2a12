"""Model access: the ``ModelClient`` protocol, litellm behind it, and infrastructure-error mapping.

Any litellm model string works (``openai/...``, ``hosted_vllm/...``, ``ollama_chat/...``, and our
own custom providers such as ``scripted/...``). Every failure to get an answer is mapped to an
:class:`~rrr_agent.InfrastructureError` subclass; the engine retries the retryable ones with backoff
(:class:`RetryPolicy`) and never records any of them as a failed attempt.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from ._errors import (
    ConfigError,
    InfrastructureError,
    MalformedResponse,
    ModelConnectionError,
    ModelRequestError,
    ModelTimeout,
    RateLimited,
    ServerError,
)
from ._providers import Provider, ensure_provider, import_litellm, provider_for
from ._secrets import redact, register_secret
from ._types import FunctionCall, ModelOutput, ToolCall, Usage

__all__ = [
    "LiteLLMClient",
    "ModelClient",
    "RetryPolicy",
    "call_with_retries",
    "map_litellm_error",
    "parse_response",
    "resolve_client",
]


@runtime_checkable
class ModelClient(Protocol):
    """Anything that turns messages into one :class:`ModelOutput`.

    Implementations raise :class:`InfrastructureError` subclasses for every failure to get an
    answer.
    """

    model: str

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        params: dict[str, Any],
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | None = None,
        timeout: float | None = None,
    ) -> ModelOutput: ...


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it was raised from (``__cause__``, ``__context__``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_connection_failure(exc: BaseException) -> bool:
    """Refused, reset or unreachable: litellm reports some of these as a 500 InternalServerError
    whose cause is the real connection error (httpx, aiohttp, openai or the OS)."""
    for e in _chain(exc):
        if isinstance(e, ConnectionError):  # refused, reset, aborted (OS level)
            return True
        kind = f"{type(e).__module__}.{type(e).__name__}"
        if kind in {
            "httpx.ConnectError",
            "httpx.ReadError",
            "httpx.WriteError",
            "httpx.RemoteProtocolError",
            "openai.APIConnectionError",
            "aiohttp.client_exceptions.ClientConnectorError",
            "aiohttp.client_exceptions.ServerDisconnectedError",
        }:
            return True
    return False


def _is_timeout(exc: BaseException) -> bool:
    """A read that timed out, however deep litellm wrapped it (a stream that stops mid-answer
    arrives as a ``MidStreamFallbackError`` around an ``APIConnectionError`` around the timeout)."""
    for e in _chain(exc):
        if isinstance(e, asyncio.TimeoutError | TimeoutError):
            return True
        kind = f"{type(e).__module__}.{type(e).__name__}"
        if kind.startswith(("httpx.", "aiohttp.")) and "Timeout" in type(e).__name__:
            return True
    text = " ".join(str(e) for e in _chain(exc))
    return "Timeout on reading data from socket" in text


def _missing_key(exc: BaseException, model: str) -> ConfigError | None:
    """A missing API key is the caller's configuration, not the server's fault: no retry, and
    the message names the variable to set."""
    text = " ".join(str(e) for e in _chain(exc)).lower()
    missing = "missing credentials" in text or (
        "missing" in text and ("api key" in text or "api_key" in text)
    )
    if not missing:
        return None
    names: list[str] = []
    try:
        names = list(import_litellm().validate_environment(model).get("missing_keys") or [])
    except Exception:  # the message below still says what to do
        names = []
    where = " or ".join(names) if names else "the provider's API key variable"
    return ConfigError(
        f"{model}: no API key: set {where} in the environment, or the api_key setting "
        "(RRR_API_KEY, or api_key in the TOML config)"
    )


def map_litellm_error(exc: BaseException, model: str) -> InfrastructureError | ConfigError:
    """Turn any exception raised while calling litellm into our typed error.

    Infrastructure errors (:class:`InfrastructureError`) say nothing about the task; a missing API
    key is a :class:`ConfigError`, never retried.
    """
    if isinstance(exc, InfrastructureError | ConfigError):
        return exc
    litellm = import_litellm()
    ex = litellm.exceptions
    status = getattr(exc, "status_code", None)
    msg = redact(f"{model}: {type(exc).__name__}: {exc}")  # providers echo rejected keys
    if isinstance(exc, ex.Timeout | asyncio.TimeoutError | TimeoutError) or _is_timeout(exc):
        return ModelTimeout(msg, status_code=status, model=model)
    key_error = _missing_key(exc, model)
    if key_error is not None:
        return key_error
    if isinstance(exc, ex.RateLimitError):
        return RateLimited(msg, model=model, retry_after=_retry_after(exc))
    if isinstance(exc, ex.APIConnectionError) or _is_connection_failure(exc):
        return ModelConnectionError(msg, status_code=None, model=model)
    if isinstance(
        exc,
        ex.BadRequestError
        | ex.AuthenticationError
        | ex.PermissionDeniedError
        | ex.NotFoundError
        | ex.UnprocessableEntityError,
    ):
        return ModelRequestError(msg, status_code=status, model=model)
    if isinstance(exc, ex.InternalServerError | ex.ServiceUnavailableError | ex.BadGatewayError):
        return ServerError(msg, status_code=status, model=model)
    if isinstance(exc, ex.APIError) and isinstance(status, int) and status >= 500:
        return ServerError(msg, status_code=status, model=model)
    if isinstance(exc, ex.APIError) and isinstance(status, int) and 400 <= status < 500:
        return ModelRequestError(msg, status_code=status, model=model)
    if isinstance(exc, OSError):
        return ModelConnectionError(msg, model=model)
    return MalformedResponse(msg, status_code=status, model=model)


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        value = headers.get("retry-after")
        return float(value) if value is not None else None
    except (TypeError, ValueError, AttributeError):
        return None


def _check_stream(response: Any, model: str) -> None:
    """A server asked for a stream that answers with a plain body (an error page, a JSON object)
    gets no SSE events, and litellm would make an empty, "finished" answer of it: a malformed
    response, never an empty attempt."""
    headers = (getattr(response, "_hidden_params", None) or {}).get("additional_headers") or {}
    kind = headers.get("llm_provider-content-type")
    if isinstance(kind, str) and not kind.lower().startswith("text/event-stream"):
        raise MalformedResponse(
            f"{model}: a stream was asked for, but the server answered with {kind}", model=model
        )


def parse_response(response: Any, *, model: str, latency_s: float) -> ModelOutput:
    """An OpenAI-shaped chat completion (litellm's ModelResponse) → :class:`ModelOutput`."""
    try:
        choices = response.choices
        if not choices:
            raise MalformedResponse(f"{model}: response has no choices", model=model)
        choice = choices[0]
        message = choice.message
        text = message.content
        if text is not None and not isinstance(text, str):
            raise MalformedResponse(f"{model}: message content is not text", model=model)
        tool_calls = _parse_tool_calls(getattr(message, "tool_calls", None))
        usage_obj = getattr(response, "usage", None)
        usage = Usage(
            prompt_tokens=int(getattr(usage_obj, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage_obj, "completion_tokens", 0) or 0),
            total_tokens=int(getattr(usage_obj, "total_tokens", 0) or 0),
        )
        return ModelOutput(
            text=text,
            tool_calls=tool_calls or None,
            finish_reason=getattr(choice, "finish_reason", None),
            usage=usage,
            latency_s=latency_s,
            response_model=getattr(response, "model", None),
            logprobs=_parse_logprobs(getattr(choice, "logprobs", None)),
        )
    except InfrastructureError:
        raise
    except Exception as exc:  # any shape surprise is the server's fault, not the task's
        raise MalformedResponse(f"{model}: cannot read response: {exc!r}", model=model) from exc


def _parse_tool_calls(raw: Any) -> list[ToolCall]:
    out: list[ToolCall] = []
    for i, tc in enumerate(raw or ()):
        fn = tc["function"] if isinstance(tc, dict) else tc.function
        name = fn["name"] if isinstance(fn, dict) else fn.name
        args = fn["arguments"] if isinstance(fn, dict) else fn.arguments
        if not isinstance(args, str):
            args = json.dumps(args)
        call_id = (tc.get("id") if isinstance(tc, dict) else getattr(tc, "id", None)) or f"call_{i}"
        out.append(ToolCall(id=call_id, function=FunctionCall(name=name or "", arguments=args)))
    return out


def _parse_logprobs(raw: Any) -> list[float] | None:
    if raw is None:
        return None
    content = raw.get("content") if isinstance(raw, dict) else getattr(raw, "content", None)
    if not content:
        return None
    values = []
    for item in content:
        lp = item.get("logprob") if isinstance(item, dict) else getattr(item, "logprob", None)
        if lp is None:
            return None
        values.append(float(lp))
    return values


class LiteLLMClient:
    """Calls any litellm model string; one request per call (retries belong to RetryPolicy)."""

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        extra: dict[str, Any] | None = None,
    ):
        self.model = model
        self.api_base = api_base
        self.api_key = api_key
        register_secret(api_key)
        self.extra = dict(extra or {})

    def _kwargs(
        self,
        params: dict[str, Any],
        tools: list[dict[str, Any]] | None,
        tool_choice: str | None,
        timeout: float | None,
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {**self.extra, **params}
        if tools:
            kwargs["tools"] = tools
            if tool_choice:
                kwargs["tool_choice"] = tool_choice
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self.api_key:
            kwargs["api_key"] = self.api_key
        if timeout is not None:
            kwargs["timeout"] = timeout
        # The openai SDK underneath would otherwise retry twice on its own: RetryPolicy owns it.
        kwargs["max_retries"] = 0
        return kwargs

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        params: dict[str, Any],
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | None = None,
        timeout: float | None = None,
    ) -> ModelOutput:
        litellm = import_litellm()
        ensure_provider(self.model)
        kwargs = self._kwargs(params, tools, tool_choice, timeout)
        start = time.perf_counter()
        try:
            call = litellm.acompletion(model=self.model, messages=messages, **kwargs)
            if timeout is not None:
                # A guard in case a provider ignores its timeout: a hung call is infrastructure.
                response = await asyncio.wait_for(call, timeout + 5.0)
            else:
                response = await call
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise map_litellm_error(exc, self.model) from exc
        return parse_response(response, model=self.model, latency_s=time.perf_counter() - start)

    async def stream(
        self,
        messages: list[dict[str, Any]],
        *,
        params: dict[str, Any],
        on_delta: Callable[[str], Awaitable[None] | None],
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | None = None,
        timeout: float | None = None,
    ) -> ModelOutput:
        """Like :meth:`complete`, calling ``on_delta(text)`` for each piece of text as it arrives.

        ``timeout`` bounds the wait for the first chunk and between chunks (a stream that stops
        is a :class:`ModelTimeout`), so a long answer that keeps flowing is never cut.
        """
        provider = provider_for(self.model)
        if provider is not None:
            return await self._stream_in_process(
                provider, messages, params, on_delta, tools, tool_choice, timeout
            )
        litellm = import_litellm()
        kwargs = self._kwargs(params, tools, tool_choice, timeout)
        kwargs["stream"] = True
        kwargs["stream_options"] = {"include_usage": True}
        start = time.perf_counter()
        chunks: list[Any] = []
        guard = timeout + 5.0 if timeout is not None else None
        try:
            response = await asyncio.wait_for(
                litellm.acompletion(model=self.model, messages=messages, **kwargs), guard
            )
            _check_stream(response, self.model)
            iterator = response.__aiter__()
            while True:
                try:
                    chunk = await asyncio.wait_for(iterator.__anext__(), guard)
                except StopAsyncIteration:
                    break
                chunks.append(chunk)
                choices = getattr(chunk, "choices", None) or []
                delta = getattr(choices[0], "delta", None) if choices else None
                text = getattr(delta, "content", None) if delta is not None else None
                if text:
                    result = on_delta(text)
                    if inspect.isawaitable(result):
                        await result
            if not chunks:
                raise MalformedResponse(f"{self.model}: the stream ended empty", model=self.model)
            response = litellm.stream_chunk_builder(chunks, messages=messages)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise map_litellm_error(exc, self.model) from exc
        return parse_response(response, model=self.model, latency_s=time.perf_counter() - start)

    async def _stream_in_process(
        self,
        provider: Provider,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        on_delta: Callable[[str], Awaitable[None] | None],
        tools: list[dict[str, Any]] | None,
        tool_choice: str | None,
        timeout: float | None,
    ) -> ModelOutput:
        """A custom provider runs in this process: stream from it directly (litellm would only
        re-chunk it). Without a ``stream`` function, the whole text is one delta."""
        name = self.model.split("/", 1)[1]
        start = time.perf_counter()
        kwargs: dict[str, Any] = {"params": dict(params), "tools": tools,
                                  "tool_choice": tool_choice, "timeout": timeout}  # fmt: skip
        try:
            if provider.stream is not None:
                output = await provider.stream(name, messages, on_delta=on_delta, **kwargs)
            else:
                output = await provider.complete(name, messages, **kwargs)
                if output.text:
                    result = on_delta(output.text)
                    if inspect.isawaitable(result):
                        await result
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise map_litellm_error(exc, self.model) from exc
        return output.model_copy(update={"latency_s": time.perf_counter() - start})


def resolve_client(
    model: str | ModelClient,
    *,
    api_base: str | None = None,
    api_key: str | None = None,
) -> ModelClient:
    if isinstance(model, str):
        # Custom providers (local/, scripted/, plug-ins) are installed on the first call.
        return LiteLLMClient(model, api_base=api_base, api_key=api_key)
    if isinstance(model, ModelClient):
        return model
    raise TypeError(f"model must be a litellm model string or a ModelClient, not {model!r}")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Transport retries for retryable infrastructure errors: exponential backoff with jitter.

    ``tries`` counts every request, so ``tries=4`` means one call and up to three retries. A 429's
    ``Retry-After`` is honoured (capped at ``max_delay_s``).
    """

    tries: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 20.0
    jitter: float = 0.25

    def delay(self, try_number: int, error: InfrastructureError) -> float:
        if isinstance(error, RateLimited) and error.retry_after is not None:
            return min(max(error.retry_after, 0.0), self.max_delay_s)
        delay: float = min(self.base_delay_s * 2.0 ** (try_number - 1), self.max_delay_s)
        return delay * (1 + random.uniform(-self.jitter, self.jitter))


T = TypeVar("T")


async def call_with_retries(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    on_retry: Callable[[int, InfrastructureError, float], Awaitable[None]] | None = None,
) -> T:
    """Run ``fn``; retry retryable :class:`InfrastructureError`; re-raise the last one."""
    try_number = 1
    while True:
        try:
            return await fn()
        except InfrastructureError as exc:
            if not exc.retryable or try_number >= policy.tries:
                raise
            delay = policy.delay(try_number, exc)
            if on_retry is not None:
                await on_retry(try_number, exc, delay)
            await asyncio.sleep(delay)
            try_number += 1
