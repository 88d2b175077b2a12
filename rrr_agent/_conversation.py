"""How a trajectory becomes a chat conversation: one definition for the engine and the trainer.

After a failed attempt the conversation continues in place::

    ...task messages
    assistant: <attempt i>
    tool: <one message per tool call in attempt i>   # only when attempt i called tools
    user: <reflection instruction (+ verifier feedback)>
    assistant: <reflection i>
    user: <retry instruction>
    assistant: <attempt i + 1>

The tool messages exist because OpenAI-compatible servers reject an assistant message with tool
calls that is not followed by one tool message per call. When the SDK ran the calls, they hold the
results (or the error that failed the attempt); otherwise they say the call was not run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._types import Attempt, Generation, Reflection, Task

__all__ = [
    "TOOL_NOT_EXECUTED",
    "assistant_message",
    "build_conversation",
    "plain_retry_messages",
    "reflection_messages",
    "retry_messages",
]

TOOL_NOT_EXECUTED = "Not executed: this call was judged incorrect."


def assistant_message(gen: Generation) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": gen.text or ""}
    if gen.tool_calls:
        msg["tool_calls"] = [tc.model_dump() for tc in gen.tool_calls]
        if not gen.text:
            del msg["content"]  # OpenAI allows no content beside tool calls
    return msg


def _tool_stubs(gen: Generation) -> list[dict[str, Any]]:
    """One tool message per call: the result the runtime got when it ran the call (an attempt's
    ``tool_results``), else a note that the call was not run."""
    results = getattr(gen, "tool_results", None) or []
    return [
        {
            "role": "tool",
            "tool_call_id": tc.id,
            "content": results[i] if i < len(results) else TOOL_NOT_EXECUTED,
        }
        for i, tc in enumerate(gen.tool_calls or ())
    ]


def build_conversation(
    task: Task, attempts: Sequence[Attempt], reflections: Sequence[Reflection]
) -> list[dict[str, Any]]:
    """The main line: task, then each attempt, and after each failed one its reflection."""
    messages = task.openai_messages()
    for i, attempt in enumerate(attempts):
        if i > 0:
            if i - 1 >= len(reflections):  # plain retry: no reflection after the previous attempt
                messages.extend(_tool_stubs(attempts[i - 1]))
            messages.append({"role": "user", "content": attempt.instruction or ""})
        messages.append(assistant_message(attempt))
        if i < len(reflections):
            reflection = reflections[i]
            messages.extend(_tool_stubs(attempt))
            messages.append({"role": "user", "content": reflection.instruction or ""})
            messages.append(assistant_message(reflection))
    return messages


def reflection_messages(
    task: Task,
    attempts: Sequence[Attempt],
    reflections: Sequence[Reflection],
    instruction: str,
) -> list[dict[str, Any]]:
    """The prompt that asks for a reflection on the last attempt in ``attempts``."""
    messages = build_conversation(task, attempts, reflections)
    messages.extend(_tool_stubs(attempts[-1]))
    messages.append({"role": "user", "content": instruction})
    return messages


def plain_retry_messages(
    task: Task, attempts: Sequence[Attempt], instruction: str
) -> list[dict[str, Any]]:
    """The prompt for a retry without reflection (the plain-retry control)."""
    messages = build_conversation(task, attempts, [])
    messages.extend(_tool_stubs(attempts[-1]))
    messages.append({"role": "user", "content": instruction})
    return messages


def retry_messages(
    reflection_prompt: list[dict[str, Any]], reflection: Reflection, instruction: str
) -> list[dict[str, Any]]:
    """The prompt that asks for the next attempt, after the reflection was written."""
    return [
        *reflection_prompt,
        assistant_message(reflection),
        {"role": "user", "content": instruction},
    ]
