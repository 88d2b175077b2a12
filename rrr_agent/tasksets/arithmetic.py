"""Two-digit ± one-digit arithmetic in few-shot blocks: a skill the embedded base model partly has.

docs/platform-notes.md measures gemma-3-270m at ~36 % greedy on this kind of sum. It is the
forgetting probe of the learning experiment: training on Countdown reflections must not break a
neighbouring skill the base model can do (BFCL and GSM8K are near 0 % for it, so they cannot show
forgetting). Rendered like ``countdown2``: the worked blocks sit in the system message and
``chat_template_kwargs={"style": "completion"}`` drops role prefixes for base models."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

from .._types import Message, Task, VerifierSpec
from . import GENERATED, register_taskset

__all__ = ["generate_sums", "make_task"]

INSTRUCTION = "Work out each sum."
WORKED_EXAMPLES = [(23, "+", 5, 28), (61, "-", 7, 54), (48, "+", 9, 57), (90, "-", 4, 86)]
SEED, SIZE = 20261123, 300
TRAIN_SEED, TRAIN_SIZE = 20261201, 1000  # of the 1,136 sums left after the test set


def generate_sums(
    seed: int,
    count: int,
    exclude: set[tuple[int, str, int]] | frozenset[tuple[int, str, int]] = frozenset(),
) -> list[tuple[int, str, int, int]]:
    """``count`` distinct (a, op, b, result) with a in 10-99 and b in 2-9, none a worked example
    and none in ``exclude``."""
    rng = random.Random(seed)
    seen = {(a, op, b) for a, op, b, _ in WORKED_EXAMPLES} | set(exclude)
    if count > 90 * 2 * 8 - len(seen):  # a: 90 values, op: 2, b: 8
        raise ValueError(f"only {90 * 2 * 8 - len(seen)} distinct sums are left, not {count}")
    out: list[tuple[int, str, int, int]] = []
    while len(out) < count:
        a, op, b = rng.randint(10, 99), rng.choice("+-"), rng.randint(2, 9)
        if (a, op, b) in seen:
            continue
        seen.add((a, op, b))
        out.append((a, op, b, a + b if op == "+" else a - b))
    return out


def make_task(a: int, op: str, b: int, result: int, *, task_id: str) -> Task:
    worked = "\n\n".join(f"Sum: {x} {o} {y}\nAnswer: {r}" for x, o, y, r in WORKED_EXAMPLES)
    return Task(
        id=task_id,
        family="arithmetic",
        messages=[
            Message(role="system", content=f"{INSTRUCTION}\n\n{worked}"),
            Message(role="user", content=f"Sum: {a} {op} {b}\nAnswer:"),
        ],
        verifier=VerifierSpec(type="numeric", expected=float(result)),
        chat_template_kwargs={"style": "completion"},
        metadata={"generator": "arithmetic"},
    )


@register_taskset(
    "arithmetic-test",
    description=f"2-digit ± 1-digit sums in few-shot blocks ({SIZE}, seeded; forgetting probe)",
    family="arithmetic",
    source=GENERATED,
)
def load_test(_root: Path) -> Iterator[Task]:
    for i, (a, op, b, r) in enumerate(generate_sums(SEED, SIZE)):
        yield make_task(a, op, b, r, task_id=f"arithmetic-test-{i}")


@register_taskset(
    "arithmetic-train",
    description=f"2-digit ± 1-digit sums ({TRAIN_SIZE}, seeded; none in arithmetic-test)",
    family="arithmetic",
    source=GENERATED,
)
def load_train(_root: Path) -> Iterator[Task]:
    test = {(a, op, b) for a, op, b, _ in generate_sums(SEED, SIZE)}
    for i, (a, op, b, r) in enumerate(generate_sums(TRAIN_SEED, TRAIN_SIZE, exclude=test)):
        yield make_task(a, op, b, r, task_id=f"arithmetic-train-{i}")
