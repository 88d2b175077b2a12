"""Task sets built from the packaged data: counts, families, ids and verifier specs."""

from __future__ import annotations

import gzip
import json

import pytest

from rrr_agent._types import ModelOutput
from rrr_agent.tasksets import datasets_root, get_taskset, tasksets
from rrr_agent.verifiers import build_verifier

EXPECTED = {
    "countdown-train": (10240, "math", "countdown"),
    "countdown-test": (1024, "math", "countdown"),
    "countdown-cd3": (256, "math", "countdown"),
    "gsm8k-test": (1319, "math", "numeric"),
    "humaneval": (164, "code", "code_tests"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_taskset_shape(name: str) -> None:
    count, family, verifier_type = EXPECTED[name]
    ts = tasksets()[name]
    assert ts.family == family
    tasks = list(ts.load())
    assert len(tasks) == count
    assert len({t.id for t in tasks}) == count
    checked = 0
    for task in tasks[:50]:
        assert task.family == family
        assert task.verifier.type == verifier_type
        build_verifier(task.verifier)  # every spec builds
        checked += 1
    assert checked == min(50, count)
    # Loading twice gives the same tasks (ids are stable).
    assert [t.id for t in ts.load()][:10] == [t.id for t in tasks[:10]]


def test_countdown_prompt_and_reference() -> None:
    task = next(iter(get_taskset("countdown-test").load()))
    prompt = task.messages[-1].content
    assert isinstance(prompt, str)
    assert "<answer>" in prompt
    params = task.verifier.params()
    assert params["numbers"]
    for n in params["numbers"]:
        assert str(n) in prompt
    assert str(params["target"]) in prompt
    reference = task.metadata["reference_equation"]
    verdict = build_verifier(task.verifier).verify(
        ModelOutput(text=f"<answer>{reference}</answer>"), task
    )
    assert verdict.passed


def test_cd3_numbers_and_targets_match_the_file() -> None:
    with (datasets_root() / "countdown" / "cd3_test.jsonl").open() as f:
        rows = [json.loads(x) for x in f]
    tasks = list(get_taskset("countdown-cd3").load())
    checked = 0
    for row, task in zip(rows, tasks, strict=True):
        params = task.verifier.params()
        assert params["numbers"] == [int(n) for n in row["input"].split(",")]
        assert params["target"] == int(row["output"])
        checked += 1
    assert checked == EXPECTED["countdown-cd3"][0]


def test_gsm8k_expected_values_match_an_independent_parse() -> None:
    with (datasets_root() / "gsm8k" / "test.jsonl").open() as f:
        rows = [json.loads(x) for x in f]
    tasks = list(get_taskset("gsm8k-test").load())
    checked = 0
    for row, task in zip(rows, tasks, strict=True):
        expected = int(row["answer"].split("####")[-1].strip().replace(",", ""))
        assert task.verifier.params()["expected"] == expected
        assert row["question"] in str(task.messages[-1].content)
        assert "####" not in str(task.messages[-1].content).replace("'#### <number>'", "")
        checked += 1
    assert checked == EXPECTED["gsm8k-test"][0]


def test_humaneval_tasks_carry_tests_and_entry_point() -> None:
    with gzip.open(datasets_root() / "humaneval" / "HumanEval.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in f]
    tasks = list(get_taskset("humaneval").load())
    checked = 0
    for row, task in zip(rows, tasks, strict=True):
        params = task.verifier.params()
        assert params["entry_point"] == row["entry_point"]
        assert params["tests"].startswith(row["test"])
        assert params["tests"].rstrip().endswith(f"check({row['entry_point']})")
        assert params["prompt"] == row["prompt"]
        assert row["prompt"] in str(task.messages[-1].content)
        assert row["canonical_solution"] not in str(task.messages[-1].content)
        checked += 1
    assert checked == EXPECTED["humaneval"][0]
