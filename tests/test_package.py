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
        "VERIFIER_KINDS",
        "Agent",
        "AgentResult",
        "Attempt",
        "AttemptFinished",
        "AttemptStarted",
        "Candidate",
        "ChatSession",
        "ChatStore",
        "Checkpoint",
        "ConfigError",
        "DataError",
        "Engine",
        "ErrorLog",
        "Event",
        "FunctionCall",
        "GroupFinished",
        "Hooks",
        "InfrastructureError",
        "JsonlAppender",
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
        "Registry",
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
        "SessionInfo",
        "Settings",
        "Summary",
        "Task",
        "TaskFileError",
        "TokenDelta",
        "Tool",
        "ToolCall",
        "ToolError",
        "ToolExecutor",
        "ToolOutcome",
        "ToolRunner",
        "Trajectory",
        "TrajectoryFilter",
        "TrajectoryStore",
        "TransportRetry",
        "TurnFinished",
        "Usage",
        "VerificationFailed",
        "Verdict",
        "Verified",
        "Verifier",
        "VerifierError",
        "VerifierSpec",
        "VerifierSpecError",
        "as_tool",
        "build_conversation",
        "build_verifier",
        "chat_verifier",
        "data_dir",
        "iter_tasks",
        "key_line",
        "load_settings",
        "load_tasks",
        "read_toml",
        "read_trajectories",
        "redact",
        "reflection_messages",
        "register_secret",
        "register_verifier",
        "require_extra",
        "retry_messages",
        "summarize",
        "write_tasks",
        "write_text_atomic",
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
    from rrr_agent import require_extra

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


REPO = Path(__file__).resolve().parents[1]


def _private_runtime_imports(folder: Path) -> list[str]:
    """``from rrr_agent._x import ...`` / ``import rrr_agent._x`` lines in a folder's modules."""
    import ast

    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "rrr_agent" and any(p.startswith("_") for p in parts[1:]):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: {name}")
    return found


def test_trainer_and_tui_use_only_public_runtime_names() -> None:
    checked = list((REPO / "trainer").rglob("*.py")) + list((REPO / "tui").rglob("*.py"))
    assert len(checked) >= 8  # the scan really read the trainer's modules
    assert _private_runtime_imports(REPO / "trainer") == []
    assert _private_runtime_imports(REPO / "tui") == []


def test_nothing_reads_a_folder_outside_the_project() -> None:
    """The project carries its own data and docs: no code, test or build file points outside."""
    # Spelled in pieces, so this file holds none of them and is scanned like the rest.
    outside = "sha" + "red"
    needles = (f"{outside}/data", "FIELD" + "_NOTES", f"../{outside}")
    offenders = []
    files = [p for ext in ("*.py", "*.toml", "*.md", "*.cfg") for p in REPO.rglob(ext)]
    files += [REPO / "Makefile", REPO / ".ci" / "run"]
    files = [p for p in files if ".venv" not in p.parts and ".git" not in p.parts]
    assert len(files) > 50
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        offenders += [f"{path.relative_to(REPO)}: {n}" for n in needles if n in text]
    assert offenders == []


#: Every task set and its record count (rrr_agent/data/SOURCES.md).
TASKSET_COUNTS = {
    "arithmetic-test": 300,
    "arithmetic-train": 1000,
    "bfcl-irrelevance": 240,
    "bfcl-live_irrelevance": 884,
    "bfcl-live_multiple": 1053,
    "bfcl-live_parallel": 16,
    "bfcl-live_parallel_multiple": 24,
    "bfcl-live_relevance": 16,
    "bfcl-live_simple": 258,
    "bfcl-multiple": 200,
    "bfcl-parallel": 200,
    "bfcl-parallel_multiple": 200,
    "bfcl-simple_java": 100,
    "bfcl-simple_javascript": 50,
    "bfcl-simple_python": 400,
    "countdown-cd3": 256,
    "countdown-test": 1024,
    "countdown-train": 10240,
    "countdown2-demo-test": 400,
    "countdown2-demo-train": 2000,
    "countdown2-shown-test": 400,
    "countdown2-shown-train": 2000,
    "countdown2-test": 400,
    "countdown2-train": 2000,
    "gsm8k-test": 1319,
    "humaneval": 164,
    "xlam-sample": 5,
}


@pytest.mark.slow
def test_tasks_list_from_an_empty_folder_uses_the_packaged_data(tmp_path: Path) -> None:
    """A fresh install knows every set with nothing beside it (no data folder, no RRR_DATASETS)."""
    import json
    import os

    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "RRR_DATASETS"}
    rrr = Path(sys.executable).with_name("rrr")
    result = subprocess.run(
        [str(rrr), "tasks", "list", "--json"],
        cwd=empty, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["name"]: r["tasks"] for r in rows} == TASKSET_COUNTS
    assert list(empty.iterdir()) == []  # nothing written to the working folder


@pytest.mark.slow
def test_built_wheel_ships_prompts_templates_and_data(tmp_path: Path) -> None:
    """``pip wheel --no-deps .`` on the project's files holds every prompt, template and data
    file, each upstream license and the SOURCES table."""
    import shutil
    import zipfile

    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    src = tmp_path / "src"
    for rel in listed:
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    out = tmp_path / "wheel"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = out.glob("rrr_agent-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"rrr_agent/data/{p.relative_to(REPO / 'rrr_agent' / 'data')}"
        for p in (REPO / "rrr_agent" / "data").rglob("*")
        if p.is_file()
    }
    expected |= {
        f"rrr_prompts/{p.relative_to(REPO / 'prompts')}"
        for p in (REPO / "prompts").rglob("*")
        if p.is_file() and p.suffix in (".txt", ".jinja")
    }
    assert len(expected) > 30
    assert expected <= names, sorted(expected - names)
    for required in ("rrr_agent/data/SOURCES.md", "rrr_agent/data/bfcl/LICENSE",
                     "rrr_agent/data/countdown/LICENSE", "rrr_agent/data/gsm8k/LICENSE",
                     "rrr_agent/data/humaneval/LICENSE", "rrr_agent/data/xlam_sample/LICENSE.md",
                     "rrr_prompts/templates/transcript.jinja", "rrr_agent/cli/__init__.py",
                     "rrr_trainer/run.py"):  # fmt: skip
        assert required in names, required


def test_installed_packages_match_the_pins() -> None:
    """The set-up installs from constraints.txt; nothing outside it may be installed."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.check_pins"], cwd=REPO, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 differences" in done.stderr
