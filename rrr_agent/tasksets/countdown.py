"""Countdown task sets: reach a target with the given numbers (family ``math``).

``countdown-train`` / ``countdown-test``: ``countdown/{train,test}.jsonl`` (3-4 numbers, with a
reference equation kept in metadata). ``countdown-cd3``: ``countdown/cd3_test.jsonl`` (3 numbers,
no reference). The answer goes inside ``<answer></answer>``; see the ``countdown`` verifier.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._errors import DataError
from .._types import Task
from . import register_taskset

__all__ = ["countdown_prompt", "countdown_task"]

PROMPT = (
    "Using the numbers {numbers}, create an equation that equals {target}. You can use basic "
    "arithmetic operations (+, -, *, /) and parentheses, and each number must be used exactly "
    "once. Think it through, then give only the equation (without '= {target}') inside "
    "<answer></answer> tags, for example <answer>(1 + 2) / 3</answer>."
)


def countdown_prompt(numbers: list[int], target: int) -> str:
    return PROMPT.format(numbers=", ".join(str(n) for n in numbers), target=target)


def countdown_task(
    numbers: list[int], target: int, *, id: str, metadata: dict[str, Any] | None = None
) -> Task:
    return Task.from_prompt(
        countdown_prompt(numbers, target),
        {"type": "countdown", "numbers": numbers, "target": target},
        family="math",
        id=id,
        metadata=metadata,
    )


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON: {exc}", path=path, line=lineno) from exc
            if not isinstance(row, dict):
                raise DataError("expected a JSON object", path=path, line=lineno)
            yield lineno, row


def _uft(split: str) -> Any:
    def load(root: Path) -> Iterator[Task]:
        path = root / "countdown" / f"{split}.jsonl"
        for lineno, row in _rows(path):
            try:
                numbers = [int(n) for n in row["nums"]]
                target = int(row["target"])
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(f"bad Countdown row: {exc!r}", path=path, line=lineno) from exc
            index = row.get("index", lineno - 1)
            yield countdown_task(
                numbers,
                target,
                id=f"countdown-{split}-{index}",
                metadata={"reference_equation": row.get("reference_equation"), "index": index},
            )

    return load


register_taskset(
    "countdown-train",
    description="Countdown, 3-4 numbers (10240 training problems, reference equations)",
    family="math",
    source="countdown/train.jsonl",
)(_uft("train"))
register_taskset(
    "countdown-test",
    description="Countdown, 3-4 numbers (1024 test problems, reference equations)",
    family="math",
    source="countdown/test.jsonl",
)(_uft("test"))


@register_taskset(
    "countdown-cd3",
    description="Countdown, 3 numbers (256 test problems from d1, no reference equations)",
    family="math",
    source="countdown/cd3_test.jsonl",
)
def _cd3(root: Path) -> Iterator[Task]:
    path = root / "countdown" / "cd3_test.jsonl"
    for lineno, row in _rows(path):
        try:
            numbers = [int(n) for n in str(row["input"]).split(",")]
            target = int(row["output"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"bad Countdown row: {exc!r}", path=path, line=lineno) from exc
        yield countdown_task(numbers, target, id=f"countdown-cd3-{lineno - 1}")
