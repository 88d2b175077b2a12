"""litellm, imported once and configured for offline use, and rrr's custom model providers.

A custom provider answers model strings ``<prefix>/<name>`` inside this process: ``local/...``
(the in-process transformers backend) and ``scripted/...`` (canned replies for tests and demos)
ship with rrr. Providers come from a table, never from hard-coded checks:

1. :func:`register_provider` (in this process);
2. :data:`BUILTIN_PROVIDERS` (``prefix → module``, imported on first use);
3. the ``rrr_agent.providers`` entry-point group of installed packages (``prefix = module``).

A provider is an async function ``complete(name, messages, *, params, tools, tool_choice,
timeout) -> ModelOutput`` and, optionally, ``stream(...)`` with the same arguments plus
``on_delta(text)``, returning the whole output at the end. A provider module exposes them under
those names. ``complete`` is wrapped into a litellm ``CustomLLM``, so the engine sees the model
like any other model string; failures may be raised as litellm exceptions, which
:func:`~rrr_agent._models.map_litellm_error` turns into rrr's typed errors. Streaming calls reach
``stream`` directly (the provider runs in this process anyway). Nothing here imports a provider
module until a model string with its prefix is used.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol

from ._errors import ConfigError
from ._types import ModelOutput, ToolCall

__all__ = [
    "BUILTIN_PROVIDERS",
    "ENTRY_POINT_GROUP",
    "Provider",
    "ProviderComplete",
    "ensure_provider",
    "import_litellm",
    "openai_tool_calls",
    "provider_for",
    "register_provider",
]

ENTRY_POINT_GROUP = "rrr_agent.providers"

#: The providers that ship with rrr: model-string prefix → module exposing ``complete``
#: (and ``stream``).
BUILTIN_PROVIDERS: dict[str, str] = {
    "local": "rrr_agent.local",
    "scripted": "rrr_agent._scripted",
}


class ProviderComplete(Protocol):
    def __call__(
        self,
        name: str,
        messages: list[dict[str, Any]],
        *,
        params: dict[str, Any],
        tools: list[dict[str, Any]] | None,
        tool_choice: str | None,
        timeout: float | None,
    ) -> Awaitable[ModelOutput]: ...


@dataclass(frozen=True, slots=True)
class Provider:
    complete: ProviderComplete
    stream: Callable[..., Awaitable[ModelOutput]] | None = None


_litellm: Any = None
_registered: dict[str, Provider] = {}
_installed: set[str] = set()
_not_custom: set[str] = set()


def import_litellm() -> Any:
    """Import litellm once, configured for offline and predictable use."""
    global _litellm
    if _litellm is not None:
        return _litellm
    # Without this every import tries to fetch a price map from the internet
    # (docs/platform-notes.md, "litellm offline").
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    litellm.disable_hf_tokenizer_download = True
    litellm.drop_params = True
    _litellm = litellm
    return litellm


def register_provider(
    prefix: str,
    complete: ProviderComplete,
    stream: Callable[..., Awaitable[ModelOutput]] | None = None,
) -> None:
    """Serve model strings ``<prefix>/<name>`` with ``complete`` (and ``stream``) here."""
    _registered[prefix] = Provider(complete, stream)
    _installed.discard(prefix)
    _not_custom.discard(prefix)


def provider_for(model: str) -> Provider | None:
    """The custom provider that answers ``model``, or None for litellm's own providers."""
    prefix, sep, _ = model.partition("/")
    if not sep or prefix in _not_custom:
        return None
    if prefix in _registered:
        return _registered[prefix]
    target = BUILTIN_PROVIDERS.get(prefix)
    if target is None:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == prefix:
                target = ep.value
                break
    if target is None:
        _not_custom.add(prefix)
        return None
    try:
        module = importlib.import_module(target)
    except Exception as exc:
        raise ConfigError(f"model provider {prefix!r} ({target}) cannot be loaded: {exc}") from exc
    complete = getattr(module, "complete", None)
    if not callable(complete):
        raise ConfigError(f"model provider {prefix!r} ({target}) has no complete() function")
    provider = Provider(complete, getattr(module, "stream", None))
    _registered[prefix] = provider
    return provider


def ensure_provider(model: str) -> None:
    """Install the custom provider that answers ``model``, if one does (litellm's own providers,
    such as ``openai/`` or ``hosted_vllm/``, need nothing)."""
    prefix = model.partition("/")[0]
    if prefix in _installed:
        return
    provider = provider_for(model)
    if provider is None:
        return
    litellm = import_litellm()
    handler = _handler_class(litellm)(prefix, provider.complete)
    litellm.custom_provider_map = [
        p for p in litellm.custom_provider_map if p.get("provider") != prefix
    ] + [{"provider": prefix, "custom_handler": handler}]
    _installed.add(prefix)


def openai_tool_calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    """Tool calls in the OpenAI message shape (``id``, ``type``, ``function``)."""
    return [tc.model_dump() for tc in calls]


def _response(litellm: Any, output: ModelOutput, model: str) -> Any:
    message: dict[str, Any] = {"role": "assistant", "content": output.text}
    if output.tool_calls:
        message["tool_calls"] = openai_tool_calls(output.tool_calls)
    finish = output.finish_reason or ("tool_calls" if output.tool_calls else "stop")
    return litellm.ModelResponse(
        choices=[{"message": message, "finish_reason": finish, "index": 0}],
        usage=output.usage.model_dump(),
        model=output.response_model or model,
    )


_HANDLER: Any = None


def _handler_class(litellm: Any) -> Any:
    global _HANDLER
    if _HANDLER is not None:
        return _HANDLER

    class CustomProvider(litellm.CustomLLM):  # type: ignore[misc]
        """litellm custom provider: ``<prefix>/<name>`` → ``complete(name, ...)``."""

        def __init__(self, prefix: str, complete: Callable[..., Awaitable[ModelOutput]]):
            super().__init__()
            self.prefix = prefix
            self.complete = complete

        async def acompletion(
            self, model: str, messages: list[dict[str, Any]], *args: Any, **kwargs: Any
        ) -> Any:
            name = model.split("/", 1)[1] if model.startswith(f"{self.prefix}/") else model
            params = dict(kwargs.get("optional_params") or {})
            params.pop("max_retries", None)
            tools = params.pop("tools", None)
            tool_choice = params.pop("tool_choice", None)
            timeout = kwargs.get("timeout")
            output = await self.complete(
                name,
                messages,
                params=params,
                tools=tools,
                tool_choice=tool_choice,
                timeout=float(timeout) if isinstance(timeout, int | float) else None,
            )
            return _response(litellm, output, model)

        def completion(
            self, model: str, messages: list[dict[str, Any]], *args: Any, **kwargs: Any
        ) -> Any:
            return asyncio.run(self.acompletion(model, messages, *args, **kwargs))

    _HANDLER = CustomProvider
    return CustomProvider
