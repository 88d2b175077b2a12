"""LLM judge against the scripted model: PASS/FAIL parsing, prompt, and infrastructure errors."""

from __future__ import annotations

import pytest

from rrr_agent import InfrastructureError
from rrr_agent._errors import ModelRequestError, ServerError
from rrr_agent._scripted import ScriptedError, ScriptedModel
from rrr_agent._types import ModelOutput, Task
from rrr_agent.verifiers import build_verifier
from rrr_agent.verifiers.judge import LLMJudgeVerifier, parse_judge_reply

TASK = Task.from_prompt("Name a prime number.", {"type": "exact", "expected": "x"})


def _judge(script: ScriptedModel, **kw: object) -> LLMJudgeVerifier:
    v = build_verifier(
        {"type": "llm_judge", "model": script.model, "criteria": "The number is prime.", **kw}
    )
    assert isinstance(v, LLMJudgeVerifier)
    return v


@pytest.mark.parametrize(
    ("reply", "decision"),
    [
        ("It is prime.\nVERDICT: PASS", True),
        ("It is even.\nVERDICT: FAIL\n\n", False),
        ("**VERDICT: PASS**", True),
        ("verdict: fail", False),
        ("VERDICT: PASS because it is prime", None),
        ("PASS", None),
        ("VERDICT: PASS\nActually no.", None),
        ("", None),
        ("VERDICT: MAYBE", None),
    ],
)
def test_parse_is_strict(reply: str, decision: bool | None) -> None:
    assert parse_judge_reply(reply) is decision


async def test_pass_and_fail_and_prompt_contents() -> None:
    with ScriptedModel(["7 is prime.\nVERDICT: PASS", "8 is even.\nVERDICT: FAIL"]) as script:
        judge = _judge(script)
        ok = await judge.verify(ModelOutput(text="7"), TASK)
        bad = await judge.verify(ModelOutput(text="8"), TASK)
    assert ok.passed
    assert not bad.passed
    assert "8 is even" not in bad.feedback  # reasoning stays in details by default
    assert bad.details["judge_reply"].startswith("8 is even")
    assert ok.details["prompt_version"].startswith("sha256:")
    sent = script.requests[0].messages[-1]["content"]
    assert "The number is prime." in sent
    assert "Name a prime number." in sent
    assert "\n7\n" in sent
    assert script.requests[0].params.get("temperature") == 0.0


async def test_share_reasoning() -> None:
    with ScriptedModel(["8 is even.\nVERDICT: FAIL"]) as script:
        verdict = await _judge(script, share_reasoning=True).verify(ModelOutput(text="8"), TASK)
    assert "8 is even" in verdict.feedback


async def test_unparsable_reply_is_a_failing_verdict() -> None:
    with ScriptedModel(["I think it is fine."]) as script:
        verdict = await _judge(script).verify(ModelOutput(text="7"), TASK)
    assert not verdict.passed
    assert verdict.details["reason"] == "unparsable"
    assert "could not be read" in verdict.feedback


async def test_infrastructure_errors_raise_not_verdicts() -> None:
    with (
        ScriptedModel([ScriptedError("bad_request")]) as script,
        pytest.raises(ModelRequestError),
    ):
        await _judge(script).verify(ModelOutput(text="7"), TASK)
    with ScriptedModel([ScriptedError("server"), ScriptedError("server")]) as script:
        with pytest.raises(InfrastructureError) as info:
            await _judge(script, tries=2).verify(ModelOutput(text="7"), TASK)
        assert isinstance(info.value, ServerError)
        assert len(script.requests) == 2


async def test_retryable_error_is_retried_then_judged() -> None:
    with ScriptedModel([ScriptedError("server"), "ok\nVERDICT: PASS"]) as script:
        verdict = await _judge(script).verify(ModelOutput(text="7"), TASK)
    assert verdict.passed
    assert len(script.requests) == 2


def test_spec_round_trip() -> None:
    v = LLMJudgeVerifier(model="openai/x", criteria="c", api_base="http://localhost:1/v1")
    assert build_verifier(v.to_spec()) == v
