"""Model access: the ``ModelClient`` protocol, litellm behind it, and infrastructure-error mapping.

Any litellm model string works (``openai/...``, ``hosted_vllm/...``, ``ollama_chat/...``, and our
own custom providers such as ``scripted/...``). Every failure to get an answer is mapped to an
:class:`~rrr_agent.InfrastructureError` subclass; the engine retries the retryable ones with backoff
(:class:`RetryPolicy`) and never records any of them as a failed attempt.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from ._errors import (
    InfrastructureError,
    MalformedResponse,
    ModelConnectionError,
    ModelRequestError,
    ModelTimeout,
    RateLimited,
    ServerError,
)
from ._types import FunctionCall, ModelOutput, ToolCall, Usage

__all__ = [
    "LiteLLMClient",
    "ModelClient",
    "RetryPolicy",
    "call_with_retries",
    "import_litellm",
    "map_litellm_error",
    "register_provider",
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


_PROVIDERS: dict[str, Any] = {}
_litellm: Any = None


def import_litellm() -> Any:
    """Import litellm once, configured for offline and predictable use."""
    global _litellm
    if _litellm is not None:
        return _litellm
    # Without this every import tries to fetch a price map from the internet (FIELD_NOTES).
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    litellm.disable_hf_tokenizer_download = True
    litellm.drop_params = True
    _litellm = litellm
    for name, handler in _PROVIDERS.items():
        _install_provider(litellm, name, handler)
    return litellm


def _install_provider(litellm: Any, name: str, handler: Any) -> None:
    litellm.custom_provider_map = [
        p for p in litellm.custom_provider_map if p.get("provider") != name
    ] + [{"provider": name, "custom_handler": handler}]


def register_provider(name: str, handler_factory: Callable[[], Any]) -> None:
    """Register a litellm custom provider (``name/<model>``). The handler is built lazily."""
    if name in _PROVIDERS:
        return
    if _litellm is None:
        _PROVIDERS[name] = _LazyHandler(handler_factory)
    else:
        _PROVIDERS[name] = handler_factory()
        _install_provider(_litellm, name, _PROVIDERS[name])


class _LazyHandler:
    # Holds the factory until litellm is imported; replaced by the real handler at install time.
    def __init__(self, factory: Callable[[], Any]):
        self.factory = factory


def _materialize_providers() -> None:
    for name, handler in list(_PROVIDERS.items()):
        if isinstance(handler, _LazyHandler):
            _PROVIDERS[name] = handler.factory()
            if _litellm is not None:
                _install_provider(_litellm, name, _PROVIDERS[name])


def map_litellm_error(exc: BaseException, model: str) -> InfrastructureError:
    """Turn any exception raised while calling litellm into our typed infrastructure error."""
    if isinstance(exc, InfrastructureError):
        return exc
    litellm = import_litellm()
    ex = litellm.exceptions
    status = getattr(exc, "status_code", None)
    msg = f"{model}: {type(exc).__name__}: {exc}"
    if isinstance(exc, ex.Timeout | asyncio.TimeoutError | TimeoutError):
        return ModelTimeout(msg, status_code=status, model=model)
    if isinstance(exc, ex.RateLimitError):
        return RateLimited(msg, model=model, retry_after=_retry_after(exc))
    if isinstance(
        exc,
        ex.BadRequestError
        | ex.AuthenticationError
        | ex.PermissionDeniedError
        | ex.NotFoundError
        | ex.UnprocessableEntityError,
    ):
        return ModelRequestError(msg, status_code=status, model=model)
    if isinstance(exc, ex.APIConnectionError):
        return ModelConnectionError(msg, status_code=None, model=model)
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
        self.extra = dict(extra or {})

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
        _materialize_providers()
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
        start = time.perf_counter()
        try:
            # max_retries=0: the openai SDK underneath would otherwise retry twice on its own.
            call = litellm.acompletion(model=self.model, messages=messages, max_retries=0, **kwargs)
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


def resolve_client(
    model: str | ModelClient,
    *,
    api_base: str | None = None,
    api_key: str | None = None,
) -> ModelClient:
    if isinstance(model, str):
        if model.startswith("scripted/"):
            from . import _scripted  # registers the provider

            _scripted.ensure_registered()
        elif model.startswith("local/"):
            from . import local  # registers the provider; torch loads on the first call

            local.ensure_registered()
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
