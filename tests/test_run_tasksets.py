"""`rrr run` end to end on a task file exported from each real task set.

For every set: `rrr tasks export` writes real tasks; a scripted model answers each one wrongly,
writes a reflection, then gives the reference answer; `rrr run` must log every task as passed after
one retry (Countdown cd3 ships no reference, so its tasks must fail). This proves the exported
verifier specs rebuild and judge correctly through the whole runtime.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rrr_agent import Task, TrajectoryStore
from rrr_agent.tasksets import tasksets
from rrr_agent.verifiers.bfcl_ast import format_python_calls, reference_calls

from .conftest import REPO

#: Every registered set, read eagerly at collection. An empty list would make pytest skip the
#: parametrized test silently; test_every_taskset_is_run checks the list is the full registry.
NAMES = sorted(tasksets())

KNOWN = {
    "arithmetic-test",
    "arithmetic-train",
    "bfcl-irrelevance",
    "bfcl-live_irrelevance",
    "bfcl-live_multiple",
    "bfcl-live_parallel",
    "bfcl-live_parallel_multiple",
    "bfcl-live_relevance",
    "bfcl-live_simple",
    "bfcl-multiple",
    "bfcl-parallel",
    "bfcl-parallel_multiple",
    "bfcl-simple_java",
    "bfcl-simple_javascript",
    "bfcl-simple_python",
    "countdown-cd3",
    "countdown-test",
    "countdown-train",
    "countdown2-demo-test",
    "countdown2-demo-train",
    "countdown2-shown-test",
    "countdown2-shown-train",
    "countdown2-test",
    "countdown2-train",
    "gsm8k-test",
    "humaneval",
    "xlam-sample",
}


def reference_reply(task: Task) -> Any | None:
    spec = task.verifier.to_dict()
    kind = spec["type"]
    if kind == "countdown":
        eq = task.metadata.get("reference_equation")
        return f"<answer>{eq}</answer>" if eq else None
    if kind == "numeric":
        if "reference_solution" not in task.metadata:  # generated sums: the expected value
            return str(int(spec["expected"]))
        return (
            "The answer is\n#### " + task.metadata["reference_solution"].split("####")[-1].strip()
        )
    if kind == "code_tests":
        prompt = str(task.messages[-1].content)
        code = re.search(r"```python\n(.*?)```", prompt, re.S)
        assert code, "humaneval prompt should carry the function stub"
        return f"```python\n{code.group(1)}{task.metadata['canonical_solution']}\n```"
    if kind == "bfcl":
        if spec["category"] == "irrelevance":
            return "None of the functions fit this request."
        if spec["category"] == "relevance":  # any well-formed call passes
            return {"tool_calls": [{"name": task.tools[0]["function"]["name"], "arguments": {}}]}
        calls = reference_calls(
            spec["functions"], spec["ground_truth"], spec.get("language", "python")
        )
        return format_python_calls(calls)
    if kind == "xlam":
        return {
            "tool_calls": [
                {"name": c["name"], "arguments": c["arguments"]} for c in spec["expected"]
            ]
        }
    raise AssertionError(f"no reference for {kind}")


def wrong_reply(task: Task) -> Any:
    if task.verifier.type == "bfcl" and task.verifier.to_dict()["category"] == "irrelevance":
        fn = task.tools[0]["function"]["name"] if task.tools else "f"  # any call is wrong here
        return {"tool_calls": [{"name": fn, "arguments": {}}]}
    return "I am not sure."


def test_every_taskset_is_run() -> None:
    assert len(NAMES) == len(KNOWN) == 27
    assert set(NAMES) == KNOWN


@pytest.mark.parametrize("name", NAMES)
def test_rrr_run_on_exported_taskset(name: str, tmp_path: Path, rrr_home: Path) -> None:
    exported = tmp_path / f"{name}.jsonl"
    rrr = str(Path(sys.executable).with_name("rrr"))
    env_run = {"cwd": REPO, "capture_output": True, "text": True, "timeout": 300}
    out = subprocess.run(
        [rrr, "tasks", "export", name, "--limit", "3", "-o", str(exported)], **env_run
    )  # type: ignore[call-overload]
    assert out.returncode == 0, out.stderr
    tasks = [Task.model_validate_json(line) for line in exported.read_text().splitlines()]
    assert len(tasks) == 3
    assert len({t.id for t in tasks}) == 3
    script: list[Any] = []
    expect: list[str] = []
    for task in tasks:
        right = reference_reply(task)
        script += [
            wrong_reply(task),
            "My first answer ignored the task's rules.",
            right or "still unsure",
        ]
        expect.append("passed_after_retry" if right is not None else "failed")
    script_file = tmp_path / "script.json"
    script_file.write_text(json.dumps(script))
    run = subprocess.run(  # type: ignore[call-overload]
        [rrr, "run", "--tasks", str(exported), "--script", str(script_file), "-c", "1", "--json"],
        **env_run,
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["trajectories"] == 3 and summary["passed_first_try"] == 0
    logged = list(TrajectoryStore(rrr_home / "trajectories.jsonl").read())
    assert [t.outcome.value for t in logged] == expect
    assert [t.task.id for t in logged] == [t.id for t in tasks]
    family = {t.task.family for t in logged}.pop()
    if family in ("math", "tool_call", "countdown2"):
        assert logged[0].reflections[0].prompt_name == f"reflection/{family}"
