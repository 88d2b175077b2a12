"""GSM8K test set (family ``math``): grade-school word problems with a numeric answer.

The reference answer is the integer after ``####`` in the data; the ``numeric`` verifier reads the
model's final number the same way (``####``, else a boxed answer, else "answer is", else the last
number).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from .._errors import DataError
from .._types import Task
from ..verifiers.numeric import extract_final_number
from . import register_taskset

__all__ = ["GSM8K_INSTRUCTION"]

GSM8K_INSTRUCTION = (
    "Solve the problem step by step. End with a final line of the form '#### <number>' "
    "giving only the numeric answer."
)


@register_taskset(
    "gsm8k-test",
    description="GSM8K test set (1319 word problems, numeric answers)",
    family="math",
    source="gsm8k/test.jsonl",
)
def _gsm8k_test(root: Path) -> Iterator[Task]:
    path = root / "gsm8k" / "test.jsonl"
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                question, answer = str(row["question"]), str(row["answer"])
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DataError(f"bad GSM8K row: {exc!r}", path=path, line=lineno) from exc
            if "####" not in answer:
                raise DataError("answer has no '####' line", path=path, line=lineno)
            found = extract_final_number("####" + answer.rsplit("####", 1)[1])
            if found is None:
                raise DataError("no number after '####'", path=path, line=lineno)
            yield Task.from_prompt(
                f"{question}\n\n{GSM8K_INSTRUCTION}",
                {"type": "numeric", "expected": float(found.value)},
                family="math",
                id=f"gsm8k-test-{lineno - 1}",
                metadata={"reference_solution": answer},
            )
