"""BFCL and xLAM task sets: counts, tool conversion, and that the stored specs judge correctly."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from rrr_agent import DataError
from rrr_agent._types import FunctionCall, ModelOutput, Task, ToolCall, Verdict
from rrr_agent.tasksets import datasets_root, get_taskset, tasksets
from rrr_agent.verifiers import build_verifier

EXPECTED = {
    "bfcl-simple_python": 400,
    "bfcl-multiple": 200,
    "bfcl-parallel": 200,
    "bfcl-parallel_multiple": 200,
    "bfcl-irrelevance": 240,
    "bfcl-simple_java": 100,
    "bfcl-simple_javascript": 50,
    "bfcl-live_simple": 258,
    "bfcl-live_multiple": 1053,
    "bfcl-live_parallel": 16,
    "bfcl-live_parallel_multiple": 24,
    "bfcl-live_irrelevance": 884,
    "bfcl-live_relevance": 16,
}

OPENAI_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@pytest.fixture
def root() -> Path:
    return datasets_root()


def _types(schema: Any) -> list[str]:
    found: list[str] = []
    if isinstance(schema, dict):
        if isinstance(schema.get("type"), str):
            found.append(schema["type"])
        for key in ("properties",):
            for sub in (schema.get(key) or {}).values():
                found += _types(sub)
        if isinstance(schema.get("items"), dict):
            found += _types(schema["items"])
    return found


def test_all_sets_are_registered() -> None:
    names = set(tasksets())
    assert set(EXPECTED) | {"xlam-sample"} <= names
    for name in EXPECTED:
        assert get_taskset(name).family == "tool_call"


@pytest.mark.parametrize(("name", "count"), EXPECTED.items())
def test_export_counts_and_shape(root: Path, name: str, count: int) -> None:
    all_tasks = list(get_taskset(name).load(root))
    assert len(all_tasks) == count
    assert len({t.id for t in all_tasks}) == count
    language = all_tasks[0].metadata["language"]
    checked = tools_checked = 0
    for task in all_tasks:
        assert task.family == "tool_call"
        assert task.messages and task.messages[-1].role == "user"
        spec = task.verifier.params()
        # Only BFCL's live_irrelevance has questions offered no function (4 of them).
        assert task.tools or (name == "bfcl-live_irrelevance" and not spec["functions"])
        assert task.verifier.type == "bfcl"
        assert len(task.tools or []) == len(spec["functions"])
        names = task.metadata["tool_names"]
        for tool, function in zip(task.tools or [], spec["functions"], strict=True):
            assert tool["type"] == "function"
            oai = tool["function"]["name"]
            assert OPENAI_NAME.match(oai)
            assert names[oai] == function["name"]
            assert oai == function["name"].replace(".", "_")
            params = tool["function"]["parameters"]
            assert params["type"] == "object"
            types = _types(params)[1:]
            if language == "python":
                assert not {"dict", "float", "tuple", "any"} & set(types), (task.id, types)
            else:
                assert set(types) <= {"string"}, (task.id, types)
            tools_checked += 1
        build_verifier(task.verifier)
        # The task line survives JSON export and import unchanged.
        again = Task.model_validate_json(task.model_dump_json())
        assert again == task
        checked += 1
    assert checked == count
    assert tools_checked >= count - (4 if name == "bfcl-live_irrelevance" else 0)


def test_python_types_are_converted(root: Path) -> None:
    task = next(
        t for t in get_taskset("bfcl-simple_python").load(root) if t.id == "simple_python_0"
    )
    props = task.tools[0]["function"]["parameters"]["properties"]  # type: ignore[index]
    assert props["base"]["type"] == "integer"
    seen: set[str] = set()
    n = 0
    for t in get_taskset("bfcl-multiple").load(root):
        for tool in t.tools or []:
            for p in tool["function"]["parameters"]["properties"].values():
                seen.add(p.get("type", "<none>"))
        n += 1
    assert n == EXPECTED["bfcl-multiple"]
    assert {"number", "object", "array", "<none>"} <= seen


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        list(get_taskset("bfcl-parallel").load(tmp_path))


def test_broken_question_file_names_path_and_line(tmp_path: Path, root: Path) -> None:
    (tmp_path / "bfcl" / "possible_answer").mkdir(parents=True)
    src = root / "bfcl"
    q = (src / "BFCL_v4_simple_python.json").read_text().splitlines()[:2]
    assert len(q) == 2
    (tmp_path / "bfcl" / "BFCL_v4_simple_python.json").write_text(q[0] + "\n{oops\n")
    a = (src / "possible_answer" / "BFCL_v4_simple_python.json").read_text().splitlines()[:2]
    assert len(a) == 2
    (tmp_path / "bfcl" / "possible_answer" / "BFCL_v4_simple_python.json").write_text("\n".join(a))
    with pytest.raises(DataError) as info:
        list(get_taskset("bfcl-simple_python").load(tmp_path))
    assert info.value.line == 2
    assert info.value.path and info.value.path.endswith("BFCL_v4_simple_python.json")


# ------------------------------------------------------------------ xlam sample


def _judge(task: Task, calls: list[tuple[str, dict[str, Any]]]) -> Verdict:
    out = ModelOutput(
        tool_calls=[
            ToolCall(id=f"c{i}", function=FunctionCall(name=n, arguments=json.dumps(a)))
            for i, (n, a) in enumerate(calls)
        ]
    )
    verdict = build_verifier(task.verifier).verify(out, task)
    assert isinstance(verdict, Verdict)
    return verdict


def test_xlam_sample(root: Path) -> None:
    all_tasks = list(get_taskset("xlam-sample").load(root))
    assert len(all_tasks) == 5
    n = 0
    for task in all_tasks:
        assert task.tools and all("function" in t for t in task.tools)
        expected = [(e["name"], e["arguments"]) for e in task.verifier.params()["expected"]]
        assert expected and all(args for _, args in expected), task.id
        assert _judge(task, expected).passed
        assert _judge(task, list(reversed(expected))).passed
        # Extra arguments are allowed (as in NeMo Gym's reward); missing calls are not.
        name, args = expected[0]
        assert _judge(task, [(name, {**args, "extra_arg": 1}), *expected[1:]]).passed
        v = _judge(task, expected[:-1] or [("nothing", {})])
        assert not v.passed
        key = next(iter(args))
        wrong = [(name, {**args, key: "definitely-wrong"}), *expected[1:]]
        v = _judge(task, wrong)
        assert not v.passed
        assert v.details["error_type"] == "xlam:cannot_find_match"
        assert "definitely" not in v.feedback
        assert _judge(task, [*expected, expected[0]]).details["error_type"] == "xlam:wrong_count"
        n += 1
    assert n == 5
