"""HumanEval (family ``code``): 164 Python functions to complete, judged by their unit tests.

Each task's ``code_tests`` verifier runs the problem's ``test`` code followed by
``check(<entry_point>)`` after the model's code, in the sandbox of :mod:`rrr_agent.verifiers.code`.
The problem's prompt is the verifier's ``prompt`` prefix, so both a full function and a bare body
are accepted.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

from .._errors import DataError
from .._types import Task
from . import register_taskset

__all__ = ["HUMANEVAL_INSTRUCTION"]

HUMANEVAL_INSTRUCTION = (
    "Complete the following Python function. Reply with the complete function (including its "
    "signature and any imports it needs) in a single ```python code block."
)


@register_taskset(
    "humaneval",
    description="HumanEval (164 Python problems with unit tests)",
    family="code",
    source="humaneval/HumanEval.jsonl.gz",
)
def _humaneval(root: Path) -> Iterator[Task]:
    path = root / "humaneval" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                task_id, prompt = str(row["task_id"]), str(row["prompt"])
                test, entry_point = str(row["test"]), str(row["entry_point"])
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DataError(f"bad HumanEval row: {exc!r}", path=path, line=lineno) from exc
            yield Task.from_prompt(
                f"{HUMANEVAL_INSTRUCTION}\n\n```python\n{prompt}```",
                {
                    "type": "code_tests",
                    "tests": f"{test}\n\ncheck({entry_point})\n",
                    "entry_point": entry_point,
                    "prompt": prompt,
                    "timeout_s": 10,
                },
                family="code",
                id=task_id.replace("/", "-"),
                metadata={
                    "task_id": task_id,
                    "canonical_solution": row.get("canonical_solution"),
                },
            )
