"""Package hygiene: cheap import, public API guard, prompts shipped and verbatim."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import rrr_agent
from rrr_agent import ConfigError, PromptLibrary

HEAVY = [
    "torch",
    "transformers",
    "trl",
    "vllm",
    "textual",
    "peft",
    "datasets",
    "accelerate",
    "litellm",
    "openai",
]


@pytest.mark.parametrize(
    "module", ["rrr_agent", "rrr_agent.cli", "rrr_trainer", "rrr_tui", "rrr_prompts"]
)
def test_import_does_not_pull_heavy_packages(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"{module} imported {result.stdout.strip()}"


def test_public_api_is_stable() -> None:
    # Changing the public surface must be a deliberate edit of this list.
    expected = {
        "SCHEMA_VERSION",
        "Attempt",
        "AttemptFinished",
        "AttemptStarted",
        "Candidate",
        "ConfigError",
        "DataError",
        "Engine",
        "ErrorLog",
        "Event",
        "FunctionCall",
        "GroupFinished",
        "Hooks",
        "InfrastructureError",
        "LineProblem",
        "LiteLLMClient",
        "LogFileError",
        "LoopOptions",
        "MalformedResponse",
        "Message",
        "MissingExtraError",
        "ModelClient",
        "ModelConnectionError",
        "ModelOutput",
        "ModelRequestError",
        "ModelTimeout",
        "Outcome",
        "Prompt",
        "PromptLibrary",
        "RRRError",
        "RateLimited",
        "ReadReport",
        "Reflection",
        "ReflectionFinished",
        "ReflectionGroup",
        "ReflectionStarted",
        "RetryPolicy",
        "RetryStarted",
        "RunFailed",
        "RunFinished",
        "RunResult",
        "RunStarted",
        "SamplingParams",
        "ScriptedError",
        "ScriptedModel",
        "ScriptedReply",
        "ServeError",
        "ServerError",
        "Settings",
        "Summary",
        "Task",
        "TaskFileError",
        "ToolCall",
        "Trajectory",
        "TrajectoryFilter",
        "TrajectoryStore",
        "TransportRetry",
        "Usage",
        "VerificationFailed",
        "Verdict",
        "Verified",
        "Verifier",
        "VerifierError",
        "VerifierSpec",
        "VerifierSpecError",
        "build_conversation",
        "build_verifier",
        "data_dir",
        "iter_tasks",
        "load_settings",
        "load_tasks",
        "read_trajectories",
        "register_verifier",
        "summarize",
    }
    assert set(rrr_agent.__all__) == expected
    for name in rrr_agent.__all__:
        assert hasattr(rrr_agent, name), name


def test_error_tree() -> None:
    from rrr_agent import _errors as e

    for name in e.__all__:
        cls = getattr(e, name)
        assert issubclass(cls, e.RRRError)
        assert name in (e.__doc__ or ""), f"{name} missing from the error tree docstring"
    assert not e.ModelRequestError.retryable and e.ServerError.retryable


def test_missing_extra_message_names_the_extra() -> None:
    from rrr_agent._extras import require_extra

    with pytest.raises(ImportError, match=r"pip install 'rrr-agent\[train\]'"):
        require_extra("trl.definitely_not_here", "GRPO training")


PAPER = {
    "reflection/tool_call": "You tried performing the task, but failed in generating the correct "
    "tool call. Reflect on what went wrong and write a short explanation that will help you do "
    "better next time.",
    "reflection/math": "You tried solving the problem and got the wrong answer. Reflect on what "
    "went wrong and write a short explanation that will help you do better next time.",
}


def test_paper_prompts_verbatim() -> None:
    lib = PromptLibrary()
    for name, text in PAPER.items():
        kind, family = name.split("/")
        prompt = lib.get(kind, family)
        assert prompt.text == text and prompt.name == name
        assert prompt.version.startswith("sha256:") and len(prompt.version) == 19


def test_prompt_override_dir_and_versions(tmp_path: Path) -> None:
    (tmp_path / "reflection").mkdir()
    (tmp_path / "reflection" / "math.txt").write_text("Think harder.\n")
    lib = PromptLibrary(tmp_path)
    mine = lib.get("reflection", "math")
    assert mine.text == "Think harder."
    assert mine.version != PromptLibrary().get("reflection", "math").version
    assert lib.get("retry", "math").name == "retry/default"  # falls back to shipped files
    with pytest.raises(ConfigError, match="no prompt file nosuch"):
        lib.get("nosuch", "x")


def test_feedback_template_renders() -> None:
    prompt = PromptLibrary().get("feedback")
    assert "uses 7 twice" in prompt.render(feedback="uses 7 twice")
