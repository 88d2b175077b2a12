"""A scripted model: a queue of canned replies, served through litellm's custom-provider mechanism.

For fast, deterministic tests of the loop and for plumbing demos; never a stand-in for judging a
real feature. ``ScriptedModel(["wrong", "reflection", "right"]).model`` is a model string
(``scripted/<name>``) that any part of rrr accepts; each call pops the next reply. A reply is a
string, a :class:`ScriptedReply` (text and/or tool calls, delay, finish reason), a
:class:`ScriptedError` (simulates an infrastructure failure: the exception litellm would raise), or
a callable ``f(messages) -> reply``. Every request is recorded in ``.requests`` for assertions.

Token counts are whitespace-separated words (there is no tokenizer behind a script).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ._errors import DataError
from ._models import map_litellm_error
from ._providers import import_litellm
from ._types import FunctionCall, ModelOutput, ToolCall, Usage

__all__ = ["ScriptedError", "ScriptedModel", "ScriptedReply", "ScriptedRequest"]

PROVIDER = "scripted"


@dataclass(slots=True)
class ScriptedReply:
    text: str | None = None
    #: ``[{"name": "f", "arguments": {...} or "json text", "id": optional}]``
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    delay_s: float = 0.0


ErrorKind = Literal["server", "timeout", "rate_limit", "connection", "bad_request", "malformed"]


@dataclass(slots=True)
class ScriptedError:
    """Simulates an infrastructure failure of the given kind (raised as litellm would)."""

    kind: ErrorKind = "server"
    message: str = "scripted failure"
    status_code: int | None = None
    retry_after: float | None = None


Reply = str | ScriptedReply | ScriptedError | Callable[[list[dict[str, Any]]], Any]


@dataclass(slots=True)
class ScriptedRequest:
    messages: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)


_MODELS: dict[str, ScriptedModel] = {}
_COUNTER = itertools.count(1)
_LOCK = threading.Lock()


class ScriptedModel:
    def __init__(
        self,
        replies: Iterable[Reply] = (),
        *,
        name: str | None = None,
        default: Reply | None = None,
    ):
        self.name = name or f"model-{next(_COUNTER)}"
        self._queue: deque[Reply] = deque(replies)
        self.default = default
        self.requests: list[ScriptedRequest] = []
        _MODELS[self.name] = self

    @property
    def model(self) -> str:
        """The litellm model string for this script."""
        return f"{PROVIDER}/{self.name}"

    def add(self, *replies: Reply) -> ScriptedModel:
        self._queue.extend(replies)
        return self

    @property
    def remaining(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        _MODELS.pop(self.name, None)

    def __enter__(self) -> ScriptedModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def from_file(cls, path: str | Path, *, name: str | None = None) -> ScriptedModel:
        """Load a JSON list of replies: strings, ``{"text": ...}``, ``{"tool_calls": [...]}`` or
        ``{"error": "server" | "timeout" | ...}``."""
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read script: {exc}", path=p) from exc
        if not isinstance(data, list):
            raise DataError("a script must be a JSON list of replies", path=p)
        replies: list[Reply] = []
        for i, item in enumerate(data):
            if isinstance(item, str):
                replies.append(item)
            elif isinstance(item, dict) and "error" in item:
                replies.append(ScriptedError(kind=item["error"], message=item.get("message", "")))
            elif isinstance(item, dict):
                replies.append(
                    ScriptedReply(
                        text=item.get("text"),
                        tool_calls=item.get("tool_calls"),
                        finish_reason=item.get("finish_reason"),
                        delay_s=float(item.get("delay_s", 0.0)),
                    )
                )
            else:
                raise DataError(f"reply #{i} is neither a string nor an object", path=p)
        return cls(replies, name=name or p.stem)

    def _next(self, messages: list[dict[str, Any]]) -> ScriptedReply | ScriptedError:
        with _LOCK:
            if self._queue:
                reply: Any = self._queue.popleft()
            elif self.default is not None:
                reply = self.default
            else:
                return ScriptedError(
                    kind="bad_request",
                    message=f"scripted model {self.name!r} has no replies left "
                    f"(request #{len(self.requests)})",
                )
        while callable(reply) and not isinstance(reply, ScriptedReply | ScriptedError):
            reply = reply(messages)
        if isinstance(reply, str):
            return ScriptedReply(text=reply)
        if isinstance(reply, ScriptedReply | ScriptedError):
            return reply
        raise TypeError(f"unsupported scripted reply {reply!r}")

    def _respond(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> Any:
        """Record the request and return the next reply or a ScriptedError."""
        self.requests.append(ScriptedRequest(messages=messages, params=params))
        return self._next(messages)

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        params: dict[str, Any],
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | None = None,
        timeout: float | None = None,
    ) -> ModelOutput:
        """Direct :class:`~rrr_agent.ModelClient` use, bypassing litellm (overhead-free tests)."""
        start = time.perf_counter()
        try:
            output = await _build(self, messages, dict(params), timeout)
        except Exception as exc:
            raise map_litellm_error(exc, self.model) from exc
        return output.model_copy(update={"latency_s": time.perf_counter() - start})


def _words(messages: list[dict[str, Any]]) -> int:
    n = 0
    for m in messages:
        c = m.get("content")
        if isinstance(c, str):
            n += len(c.split())
    return n


def _raise(error: ScriptedError, model: str) -> None:
    litellm = import_litellm()
    ex = litellm.exceptions
    kw = {"message": error.message, "llm_provider": PROVIDER, "model": model}
    if error.kind == "timeout":
        raise ex.Timeout(**kw)
    if error.kind == "rate_limit":
        raise ex.RateLimitError(**kw)
    if error.kind == "connection":
        raise ex.APIConnectionError(**kw)
    if error.kind == "bad_request":
        raise ex.BadRequestError(**kw)
    if error.kind == "malformed":
        raise ex.APIError(status_code=200, **kw)
    if error.status_code == 503:
        raise ex.ServiceUnavailableError(**kw)
    raise ex.InternalServerError(**kw)


async def _build(
    scripted: ScriptedModel,
    messages: list[dict[str, Any]],
    params: dict[str, Any],
    timeout: float | None,
) -> ModelOutput:
    reply = scripted._respond(messages, params)
    if isinstance(reply, ScriptedError):
        _raise(reply, scripted.model)
    if reply.delay_s:
        if timeout is not None and reply.delay_s > timeout:
            await asyncio.sleep(timeout)
            raise import_litellm().exceptions.Timeout(
                message=f"no reply within {timeout}s", llm_provider=PROVIDER, model=scripted.model
            )
        await asyncio.sleep(reply.delay_s)
    calls = [
        ToolCall(
            id=tc.get("id") or f"call_{i}",
            function=FunctionCall(
                name=tc["name"],
                arguments=tc["arguments"]
                if isinstance(tc.get("arguments"), str)
                else json.dumps(tc.get("arguments", {})),
            ),
        )
        for i, tc in enumerate(reply.tool_calls or ())
    ]
    prompt_tokens = _words(messages)
    completion_tokens = len((reply.text or "").split()) + sum(
        len(json.dumps(tc)) // 4 for tc in reply.tool_calls or ()
    )
    return ModelOutput(
        text=reply.text,
        tool_calls=calls or None,
        finish_reason=reply.finish_reason or ("tool_calls" if calls else "stop"),
        usage=Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        ),
        response_model=scripted.model,
    )


async def complete(
    name: str,
    messages: list[dict[str, Any]],
    *,
    params: dict[str, Any],
    tools: list[dict[str, Any]] | None = None,
    tool_choice: str | None = None,
    timeout: float | None = None,
) -> ModelOutput:
    """The ``scripted/<name>`` provider (see :mod:`rrr_agent._providers`)."""
    try:
        scripted = _MODELS[name]
    except KeyError:
        raise import_litellm().exceptions.NotFoundError(
            message=f"no scripted model named {name!r} is registered in this process",
            llm_provider=PROVIDER,
            model=f"{PROVIDER}/{name}",
        ) from None
    recorded = dict(params)  # what the request carried, tools included
    if tools:
        recorded["tools"] = tools
    if tool_choice:
        recorded["tool_choice"] = tool_choice
    return await _build(scripted, messages, recorded, timeout)


async def stream(
    name: str,
    messages: list[dict[str, Any]],
    *,
    params: dict[str, Any],
    on_delta: Callable[[str], Any],
    tools: list[dict[str, Any]] | None = None,
    tool_choice: str | None = None,
    timeout: float | None = None,
) -> ModelOutput:
    """The ``scripted/<name>`` provider's streaming call: the reply's text, word by word."""
    output = await complete(
        name, messages, params=params, tools=tools, tool_choice=tool_choice, timeout=timeout
    )
    for piece in re.findall(r"\s*\S+", output.text or ""):
        sent = on_delta(piece)
        if asyncio.iscoroutine(sent):
            await sent
    return output
