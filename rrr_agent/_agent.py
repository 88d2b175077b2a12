"""The SDK: an :class:`Agent` runs chat turns with tools through the one engine.

    from rrr_agent import Agent

    def get_weather(city: str, unit: str = "celsius") -> dict:
        \"\"\"Current weather in a city.

        Args:
            city: The city's name, e.g. "Paris".
            unit: "celsius" or "fahrenheit".
        \"\"\"
        return {"city": city, "temperature": 21, "unit": unit}

    agent = Agent("hosted_vllm/my-model", tools=[get_weather])
    result = agent.run_sync("What is the weather in Paris?")
    print(result.text, result.usage.total_tokens, result.attempts)

Each step of a turn is one engine run: the conversation so far, the tools, and a verifier made of
``tool_schema`` (every call names an offered tool, its arguments are JSON and validate against the
schema) plus the caller's own verifier, if any. A failed step gets the paper's tool-call
reflection, then the retry. With ``execute=True`` (the default) the SDK runs the chosen Python
tools once a call has passed: an exception or a :class:`~rrr_agent.ToolError` fails the attempt
with the error as feedback, and the reflection and retry follow. The results go back to the model
and the next step starts (call → result → next call), up to ``max_steps``. Every step is logged
as a trajectory whose verifier spec the trainer rebuilds (``tool_schema`` + yours; tool execution
itself is not part of the spec, so the trainer never re-runs your tools).

When a step still fails after its retries, :class:`~rrr_agent.VerificationFailed` is raised; it
carries every trajectory of the turn. Token usage is summed over every call of every step, first
attempts, reflections and retries alike: retries never hide tokens.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from ._engine import Engine
from ._errors import ConfigError, VerificationFailed
from ._events import Event, TurnFinished
from ._models import ModelClient
from ._settings import Settings, load_settings
from ._tools import Tool, ToolLike, ToolRunner, as_tool
from ._types import (
    Attempt,
    Message,
    Reflection,
    Task,
    ToolCall,
    Trajectory,
    Usage,
    VerifierSpec,
)
from .verifiers import load_spec

__all__ = ["Agent", "AgentResult"]

EventCallback = Callable[[Event], Awaitable[None] | None]


@dataclass
class AgentResult:
    """One turn: every step's trajectory, the conversation after it, and the summed usage."""

    messages: list[dict[str, Any]]
    trajectories: list[Trajectory]
    #: False when ``max_steps`` ended the turn while the model still wanted to call tools.
    finished: bool = True
    #: The structured answer, when the model's final call was to a pydantic-model tool.
    output: BaseModel | None = None
    tool_results: list[list[str]] = field(default_factory=list)

    @property
    def final(self) -> Attempt:
        """The last, verified attempt."""
        return self.trajectories[-1].attempts[-1]

    @property
    def text(self) -> str | None:
        return self.final.text

    @property
    def tool_calls(self) -> list[ToolCall] | None:
        return self.final.tool_calls

    @property
    def message(self) -> dict[str, Any]:
        """The final answer as an OpenAI assistant message."""
        return (
            self.messages[-1]
            if self.messages[-1]["role"] == "assistant"
            else _assistant(self.final)
        )

    @property
    def usage(self) -> Usage:
        """Tokens of every call of the turn: first attempts, reflections, retries, all steps."""
        total = Usage()
        for t in self.trajectories:
            total += t.total_usage()
        return total

    def usage_by_stage(self) -> dict[str, Usage]:
        out = {"first_attempt": Usage(), "reflections": Usage(), "retries": Usage()}
        for t in self.trajectories:
            for stage, usage in t.usage_by_stage().items():
                out[stage] += usage
        return out

    @property
    def attempts(self) -> int:
        """Attempts made in the whole turn (first tries and retries, every step)."""
        return sum(len(t.attempts) for t in self.trajectories)

    @property
    def reflections(self) -> list[Reflection]:
        return [r for t in self.trajectories for r in t.reflections]


def _assistant(attempt: Attempt) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": attempt.text}
    if attempt.tool_calls:
        msg["tool_calls"] = [tc.model_dump() for tc in attempt.tool_calls]
    return msg


class Agent:
    """Chat turns with tools and self-correction, through :meth:`Engine.from_settings`.

    ``model`` is any model string (default: the settings' model, else the embedded one).
    ``tools`` are functions, pydantic models or OpenAI tool schemas (see :func:`as_tool`).
    ``verifier`` is an extra verifier spec every answer must pass. ``require_call`` makes an
    answer without a tool call fail (default: when every tool is a pydantic model, i.e. the tools
    describe a structured answer). ``feedback`` shows the verifier's (or the tool's) error to the
    model before it reflects. ``settings`` supplies API base and key, timeouts, retries and the
    log; ``max_retries`` and ``reflections`` override the settings' loop options.
    """

    def __init__(
        self,
        model: str | ModelClient | None = None,
        *,
        tools: Sequence[ToolLike] = (),
        verifier: VerifierSpec | dict[str, Any] | str | None = None,
        system: str | None = None,
        settings: Settings | None = None,
        execute: bool = True,
        max_steps: int = 8,
        require_call: bool | None = None,
        feedback: bool = True,
        max_retries: int | None = None,
        reflections: int | None = None,
        family: str = "tool_call",
        stream: bool = False,
        log: bool | None = None,
    ):
        self.tools: list[Tool] = [as_tool(t) for t in tools]
        names = [t.name for t in self.tools]
        if len(set(names)) != len(names):
            raise ConfigError(f"two tools share a name: {sorted(names)}")
        if max_steps < 1:
            raise ConfigError("max_steps must be at least 1")
        self.system = system
        self.execute = execute
        self.max_steps = max_steps
        self.family = family
        if require_call is None:
            require_call = bool(self.tools) and all(not t.runnable and t.model for t in self.tools)
        self.spec = self._spec(load_spec(verifier) if verifier is not None else None, require_call)
        settings = settings if settings is not None else load_settings()
        options = settings.loop_options().model_copy(
            update={
                "show_feedback": feedback,
                **({"max_retries": max_retries} if max_retries is not None else {}),
                **({"reflections": reflections} if reflections is not None else {}),
            }
        )
        self.engine = Engine.from_settings(
            settings, model=model, options=options, stream=stream, log=log
        )
        self.runner = ToolRunner(self.tools)

    @property
    def model(self) -> str:
        return self.engine.model

    def _spec(self, user: VerifierSpec | None, require_call: bool) -> VerifierSpec:
        checks: list[dict[str, Any]] = []
        if self.tools:
            checks.append({"type": "tool_schema", "require_call": require_call})
        if user is not None:
            checks.append(user.to_dict())
        if not checks:
            return VerifierSpec(type="accept")
        if len(checks) == 1:
            return VerifierSpec(**checks[0])
        return VerifierSpec(type="all", verifiers=checks)

    def _messages(self, prompt: str | Sequence[dict[str, Any] | Message]) -> list[dict[str, Any]]:
        if isinstance(prompt, str):
            messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
        else:
            messages = [m.to_openai() if isinstance(m, Message) else dict(m) for m in prompt]
        if not messages:
            raise ConfigError("a turn needs at least one message")
        if self.system and messages[0].get("role") != "system":
            messages.insert(0, {"role": "system", "content": self.system})
        return messages

    def _task(self, messages: list[dict[str, Any]], turn: str, step: int) -> Task:
        return Task(
            family=self.family,
            messages=[Message.model_validate(m) for m in messages],
            tools=[t.schema() for t in self.tools] or None,
            verifier=self.spec,
            metadata={"sdk": {"turn": turn, "step": step}},
        )

    def _structured(self, attempt: Attempt) -> BaseModel | None:
        """The validated answer when the final call is to a pydantic-model tool."""
        by_name = {t.name: t for t in self.tools}
        for call in attempt.tool_calls or []:
            tool = by_name.get(call.function.name)
            if tool is not None and tool.model is not None and not tool.runnable:
                checked = tool.validate(json.loads(call.function.arguments or "{}"))
                if isinstance(checked, BaseModel):
                    return checked
        return None

    # ------------------------------------------------------------------ turns

    async def run(
        self,
        prompt: str | Sequence[dict[str, Any] | Message],
        *,
        on_event: EventCallback | None = None,
    ) -> AgentResult:
        """One turn: steps until the model answers without a call to a runnable tool (or
        ``max_steps``). Raises :class:`VerificationFailed` when a step's retries are exhausted,
        and the engine's typed errors for infrastructure and configuration problems."""
        messages = self._messages(prompt)
        turn = uuid.uuid4().hex
        trajectories: list[Trajectory] = []
        tool_results: list[list[str]] = []
        for step in range(self.max_steps):
            task = self._task(messages, turn, step)
            executor = self.runner if self.execute else None
            traj = await self.engine.run(task, on_event=on_event, execute=executor)
            trajectories.append(traj)
            if not traj.passed:
                raise VerificationFailed(traj, earlier=trajectories[:-1])
            final = traj.attempts[-1]
            messages = [*messages, _assistant(final)]
            structured = self._structured(final)
            calls = final.tool_calls or []
            by_name = {t.name: t for t in self.tools}
            runnable = all(
                c.function.name in by_name and by_name[c.function.name].runnable for c in calls
            )
            if structured is not None or not calls or not runnable or final.tool_results is None:
                # Answered, a structured output, or calls for the caller to run.
                return AgentResult(messages, trajectories, True, structured, tool_results)
            tool_results.append(list(final.tool_results or []))
            messages += [
                {"role": "tool", "tool_call_id": call.id, "content": result}
                for call, result in zip(calls, final.tool_results or [], strict=False)
            ]
        return AgentResult(messages, trajectories, False, None, tool_results)

    def run_sync(
        self,
        prompt: str | Sequence[dict[str, Any] | Message],
        *,
        on_event: EventCallback | None = None,
    ) -> AgentResult:
        """Blocking form of :meth:`run` (not callable inside a running event loop)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.run(prompt, on_event=on_event))
        raise RuntimeError("run_sync() cannot run inside an event loop; use `await agent.run()`")

    async def stream(
        self, prompt: str | Sequence[dict[str, Any] | Message]
    ) -> AsyncIterator[Event]:
        """Yield the turn's events as they happen (``TokenDelta`` too when built with
        ``stream=True``), ending with :class:`~rrr_agent.TurnFinished` carrying the result.
        The turn's error, if any, is raised after its events."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        runner = asyncio.create_task(self.run(prompt, on_event=queue.put_nowait))
        runner.add_done_callback(lambda _t: queue.put_nowait(None))
        try:
            while (event := await queue.get()) is not None:
                yield event
            result = await runner
            last = result.trajectories[-1]
            yield TurnFinished(trajectory_id=last.id, task_id=last.task.id, result=result)
        finally:
            if not runner.done():
                runner.cancel()
