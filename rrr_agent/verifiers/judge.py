"""An LLM judge: another model decides PASS or FAIL against written criteria.

``{"type": "llm_judge", "model": "openai/gpt-4o-mini", "criteria": "...", "api_base": null}``

Any model string works (through :func:`~rrr_agent._models.resolve_client`, including
``scripted/...``). The prompt is the file ``judge/default.txt`` (``$criteria``, ``$task``,
``$answer``), loaded through :class:`~rrr_agent.PromptLibrary`; its content hash is recorded in
``details["prompt_version"]``. The judge is asked at temperature 0 and must end its reply with the
line ``VERDICT: PASS`` or ``VERDICT: FAIL`` (surrounding ``**`` tolerated, case ignored); any other
last line is a failing verdict that says the judge's reply could not be read.

Failures to reach the judge are :class:`~rrr_agent.InfrastructureError` (retried with
:class:`~rrr_agent._models.RetryPolicy` for ``tries`` requests, then raised): never a verdict.
The judge's reasoning stays in ``details`` unless ``share_reasoning`` is set, since criteria often
hold a reference answer that feedback must not leak.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, ClassVar

from pydantic import Field

from .._models import RetryPolicy, call_with_retries, resolve_client
from .._prompts import Prompt, PromptLibrary
from .._types import ModelOutput, Task, Verdict
from ._base import Verifier, register_verifier

__all__ = ["LLMJudgeVerifier", "parse_judge_reply"]

_VERDICT_LINE = re.compile(r"^\**\s*VERDICT\s*:\s*\**\s*(PASS|FAIL)\s*\**\s*$", re.IGNORECASE)


@lru_cache(maxsize=1)
def _prompt() -> Prompt:
    return PromptLibrary().get("judge")


def parse_judge_reply(text: str) -> bool | None:
    """True for PASS, False for FAIL, None when the last non-empty line is not a verdict line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return None
    m = _VERDICT_LINE.match(lines[-1])
    if m is None:
        return None
    return m.group(1).upper() == "PASS"


def _task_text(task: Task) -> str:
    for message in reversed(task.messages):
        if message.role != "user":
            continue
        if isinstance(message.content, str):
            return message.content
        if isinstance(message.content, list):
            return "\n".join(
                str(part.get("text", "")) for part in message.content if isinstance(part, dict)
            )
    return ""


def _answer_text(output: ModelOutput) -> str:
    text = output.text or ""
    if output.tool_calls:
        calls = [
            {"name": tc.function.name, "arguments": tc.function.arguments}
            for tc in output.tool_calls
        ]
        text += ("\n" if text else "") + "Tool calls: " + json.dumps(calls, ensure_ascii=False)
    return text


@register_verifier
class LLMJudgeVerifier(Verifier):
    """Passes when the judge model answers ``VERDICT: PASS``."""

    type: ClassVar[str] = "llm_judge"

    model: str = Field(min_length=1)
    criteria: str = Field(min_length=1)
    api_base: str | None = None
    timeout_s: float = Field(default=120.0, gt=0)
    max_tokens: int = Field(default=512, ge=16)
    #: Requests per verdict, counting the first (transport retries on retryable errors).
    tries: int = Field(default=4, ge=1, le=20)
    #: Show the judge's reasoning to the model as feedback (off: criteria may hold the answer).
    share_reasoning: bool = False

    async def verify(self, output: ModelOutput, task: Task) -> Verdict:
        prompt = _prompt()
        content = prompt.render(
            criteria=self.criteria, task=_task_text(task), answer=_answer_text(output)
        )
        messages: list[dict[str, Any]] = [{"role": "user", "content": content}]
        client = resolve_client(self.model, api_base=self.api_base)

        async def ask() -> ModelOutput:
            return await client.complete(
                messages,
                params={"temperature": 0.0, "max_tokens": self.max_tokens},
                timeout=self.timeout_s,
            )

        reply = await call_with_retries(ask, RetryPolicy(tries=self.tries))
        text = reply.text or ""
        details: dict[str, Any] = {
            "judge_model": self.model,
            "judge_reply": text[-4000:],
            "prompt_version": prompt.version,
        }
        decision = parse_judge_reply(text)
        if decision is None:
            details["reason"] = "unparsable"
            return Verdict(
                passed=False,
                feedback="The judge's reply could not be read (no final VERDICT: PASS/FAIL line).",
                details=details,
            )
        if decision:
            return Verdict(passed=True, details=details)
        reasoning = "\n".join(text.strip().splitlines()[:-1]).strip()
        feedback = "The judge found that the answer does not meet the criteria."
        if self.share_reasoning and reasoning:
            feedback += " " + reasoning[:1500]
        return Verdict(passed=False, feedback=feedback, details=details)
