"""Two-number Countdown with few-shot turns: a task family the embedded base model can learn on.

Measured on gemma-3-270m (docs/platform-notes.md): with 9 worked examples, first-try accuracy is
~40% greedy (~27% at temperature 1), so there is room both to fail and to improve. Each problem
gives two numbers (2-99) and a target reachable with exactly one of + - * / (subtraction stays
positive, division is exact). Operations are drawn equally often, but only ~190 exact divisions
exist with numbers up to 99, so the pool holds ~31 % each of + - * and ~8 % divisions. Both splits
are one seeded pool of distinct problems, shuffled and cut (train 2,000, test 400), so they share
that mix; the test split never repeats a training problem or a worked example.

The prompt is written for a base model (docs/platform-notes.md: 40 % greedy in this form against
28 % as a User/Assistant transcript): the rule and nine worked blocks "Numbers: 14, 9 / Target: 23 /
Equation: 14 + 9" in the system message, then the problem as one more block ending in
"Equation:". ``chat_template_kwargs={"style": "completion"}`` makes rrr's transcript template
render it without role prefixes; chat models read the same messages as ordinary turns. The family
``countdown2`` has its own one-line prompts in that style (``prompts/*/countdown2.txt``):
"That was wrong. Reflection:", "Try again. Equation:", and the plain retry
"That was wrong. Try again. Equation:".
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

from .._types import Message, Task, VerifierSpec
from ..verifiers.countdown import CountdownError, evaluate, extract_equation, parse_equation
from . import GENERATED, register_taskset

__all__ = [
    "FAMILY",
    "INSTRUCTION",
    "PLAIN_RETRY_DEMOS",
    "REFLECTION_DEMOS",
    "WORKED_EXAMPLES",
    "checked_reflection",
    "generate_problems",
    "make_task",
]

INSTRUCTION = "Use both numbers exactly once with one of + - * / to reach the target."
#: (a, b, target, equation): every operation appears at least twice.
WORKED_EXAMPLES = [
    (14, 9, 23, "14 + 9"),
    (50, 2, 25, "50 / 2"),
    (7, 6, 42, "7 * 6"),
    (31, 4, 27, "31 - 4"),
    (8, 35, 43, "8 + 35"),
    (12, 11, 132, "12 * 11"),
    (96, 8, 12, "96 / 8"),
    (45, 17, 28, "45 - 17"),
    (9, 5, 45, "9 * 5"),
]
OPS = "+-*/"
#: A failure, its reflection and the retry, shown after the worked examples by the ``-demo`` sets
#: so a base model sees what a reflection is: (a, b, target, wrong, reflection, right). The
#: numbers are worked examples' own, so no test problem is shown.
REFLECTION_DEMOS = [
    (14, 9, 23, "14 * 9", "14 * 9 = 126, not 23. 14 + 9 = 23.", "14 + 9"),
    (96, 8, 12, "96 - 8", "96 - 8 = 88, not 12. 96 / 8 = 12.", "96 / 8"),
    (45, 17, 28, "45 + 17", "45 + 17 = 62, not 28. 45 - 17 = 28.", "45 - 17"),
]
#: The family's one-line prompts as the demonstrations write them (the same text as
#: ``prompts/reflection/countdown2.txt`` and ``prompts/retry/countdown2.txt``; a test keeps them
#: equal).
DEMO_REFLECTION_PROMPT = "That was wrong. Reflection:"
DEMO_RETRY_PROMPT = "Try again. Equation:"
#: A failure followed by the plain retry (``prompts/plain_retry/countdown2.txt``), shown by the
#: ``-shown`` sets beside the reflection demonstrations so that the plain-retry control is
#: demonstrated as well as the reflection: (a, b, target, wrong, right), worked examples' numbers.
PLAIN_RETRY_DEMOS = [
    (50, 2, 25, "50 - 2", "50 / 2"),
    (7, 6, 42, "7 + 6", "7 * 6"),
    (31, 4, 27, "31 + 4", "31 - 4"),
]
DEMO_PLAIN_RETRY_PROMPT = "That was wrong. Try again. Equation:"


def _value_text(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.2f}".rstrip("0").rstrip(".")


def checked_reflection(failed: str | None, right: str, target: int) -> str:
    """The reflection :data:`REFLECTION_DEMOS` demonstrate, written by a program: the failed
    equation's value checked against the target, then the equation ``right`` that reaches it
    ("14 * 9 = 126, not 23. 14 + 9 = 23."). Values are computed exactly by the verifier's
    parser (:func:`~rrr_agent.verifiers.countdown.evaluate`, never Python's ``eval``); a value
    that is not whole is written to two decimals ("91 / 34 = 2.68, not 57."). Where the failed
    answer is no equation the parser reads, or divides by zero, the check is left out and only
    the right equation is written. Learning rounds give it to the model as a reflection
    (``benchmarks/learning.py --plain-branch-form checked``), ``right`` being the model's own
    passing plain retry. Raises :class:`~rrr_agent.verifiers.countdown.CountdownError` when
    ``right`` is not an equation."""
    fix = parse_equation(extract_equation(right) or "", target).expression
    check = ""
    raw = extract_equation(failed or "")
    if raw is not None:
        try:
            parsed = parse_equation(raw)
            value = evaluate(parsed.tree)
        except (CountdownError, ZeroDivisionError):
            pass
        else:
            check = f"{parsed.expression} = {_value_text(value)}, not {target}. "
    return f"{check}{fix} = {target}."


def _problem(rng: random.Random) -> tuple[int, int, int, str]:
    op = rng.choice(OPS)
    while True:
        if op == "/":
            b = rng.randint(2, 12)
            k = rng.randint(2, 99 // b)
            a = b * k
            if a <= 99:
                return a, b, k, f"{a} / {b}"
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        if op == "+":
            return a, b, a + b, f"{a} + {b}"
        if op == "-" and a > b:
            return a, b, a - b, f"{a} - {b}"
        if op == "*" and a * b <= 999:
            return a, b, a * b, f"{a} * {b}"


def generate_problems(
    seed: int, count: int, exclude: set[tuple[int, int, int]] | None = None
) -> list[tuple[int, int, int, str]]:
    """``count`` distinct problems from ``seed``, skipping any (a, b, target) in ``exclude``."""
    rng = random.Random(seed)
    seen = set(exclude or ()) | {(a, b, t) for a, b, t, _ in WORKED_EXAMPLES}
    out: list[tuple[int, int, int, str]] = []
    while len(out) < count:
        a, b, t, eq = _problem(rng)
        if (a, b, t) in seen:
            continue
        seen.add((a, b, t))
        out.append((a, b, t, eq))
    return out


FAMILY = "countdown2"
STYLE = {"style": "completion"}


def _block(a: int, b: int, target: int) -> str:
    return f"Numbers: {a}, {b}\nTarget: {target}\nEquation:"


def _demo(a: int, b: int, target: int, wrong: str, reflection: str, right: str) -> str:
    return (f"{_block(a, b, target)} {wrong}\n{DEMO_REFLECTION_PROMPT} {reflection}\n"
            f"{DEMO_RETRY_PROMPT} {right}")  # fmt: skip


def _plain_demo(a: int, b: int, target: int, wrong: str, right: str) -> str:
    return f"{_block(a, b, target)} {wrong}\n{DEMO_PLAIN_RETRY_PROMPT} {right}"


def make_task(
    a: int,
    b: int,
    target: int,
    *,
    task_id: str,
    reference: str | None = None,
    demos: bool = False,
    plain_demos: bool = False,
) -> Task:
    """One problem; ``demos`` adds :data:`REFLECTION_DEMOS` after the worked examples, and
    ``plain_demos`` interleaves :data:`PLAIN_RETRY_DEMOS` with them (the ``-shown`` sets)."""
    worked = "\n\n".join(f"{_block(xa, xb, xt)} {xeq}" for xa, xb, xt, xeq in WORKED_EXAMPLES)
    shown = [_demo(*d) for d in REFLECTION_DEMOS] if demos or plain_demos else []
    if plain_demos:  # reflection, plain, reflection, plain, ...: neither kind is always last
        plain = [_plain_demo(*d) for d in PLAIN_RETRY_DEMOS]
        shown = [block for pair in zip(shown, plain, strict=True) for block in pair]
    if shown:
        worked += "\n\n" + "\n\n".join(shown)
    generator = "countdown2-shown" if plain_demos else "countdown2-demo" if demos else "countdown2"
    return Task(
        id=task_id,
        family=FAMILY,
        messages=[
            Message(role="system", content=f"{INSTRUCTION}\n\n{worked}"),
            Message(role="user", content=_block(a, b, target)),
        ],
        verifier=VerifierSpec(type="countdown", numbers=[a, b], target=target),
        chat_template_kwargs=dict(STYLE),
        metadata={
            "reference_equation": reference,
            "generator": generator,
        },
    )


POOL_SEED, SPLIT_SEED = 20261121, 20261201
TRAIN_SIZE, TEST_SIZE = 2000, 400


@functools.cache
def _pool() -> tuple[tuple[int, int, int, str], ...]:
    """All problems of both splits, drawn from one generator and shuffled once.

    The splits are an i.i.d. split of one pool, so they have the same mix of operations. Until
    December 2026 the training split was generated first and took nearly all of the ~190 exact
    divisions with numbers up to 99 (24 % of its first 200 problems against 2.5 % of the held-out
    ones): runs 1-7 of ``docs/learning`` were measured on that split.
    """
    problems = generate_problems(POOL_SEED, TRAIN_SIZE + TEST_SIZE)
    random.Random(SPLIT_SEED).shuffle(problems)
    return tuple(problems)


def _train() -> tuple[tuple[int, int, int, str], ...]:
    return _pool()[:TRAIN_SIZE]


def _test() -> tuple[tuple[int, int, int, str], ...]:
    """The held-out problems: never a training problem or a worked example."""
    return _pool()[TRAIN_SIZE:]


@register_taskset(
    "countdown2-train",
    description=f"Countdown, 2 numbers and one operation, 9 few-shot turns ({TRAIN_SIZE}, seeded)",
    family=FAMILY,
    source=GENERATED,
)
def load_train(_root: Path) -> Iterator[Task]:
    for i, (a, b, t, eq) in enumerate(_train()):
        yield make_task(a, b, t, task_id=f"countdown2-train-{i}", reference=eq)


@register_taskset(
    "countdown2-test",
    description=f"Held-out 2-number Countdown ({TEST_SIZE}, seeded, disjoint from train)",
    family=FAMILY,
    source=GENERATED,
)
def load_test(_root: Path) -> Iterator[Task]:
    for i, (a, b, t, eq) in enumerate(_test()):
        yield make_task(a, b, t, task_id=f"countdown2-test-{i}", reference=eq)


@register_taskset(
    "countdown2-demo-train",
    description="countdown2-train with 3 demonstrated failure → reflection → retry blocks",
    family=FAMILY,
    source=GENERATED,
)
def load_demo_train(_root: Path) -> Iterator[Task]:
    for i, (a, b, t, eq) in enumerate(_train()):
        yield make_task(a, b, t, task_id=f"countdown2-demo-train-{i}", reference=eq, demos=True)


@register_taskset(
    "countdown2-demo-test",
    description="countdown2-test with 3 demonstrated failure → reflection → retry blocks",
    family=FAMILY,
    source=GENERATED,
)
def load_demo_test(_root: Path) -> Iterator[Task]:
    for i, (a, b, t, eq) in enumerate(_test()):
        yield make_task(a, b, t, task_id=f"countdown2-demo-test-{i}", reference=eq, demos=True)


@register_taskset(
    "countdown2-shown-train",
    description="countdown2-train with 3 demonstrated reflections and 3 demonstrated plain retries",
    family=FAMILY,
    source=GENERATED,
)
def load_shown_train(_root: Path) -> Iterator[Task]:
    for i, (a, b, t, eq) in enumerate(_train()):
        yield make_task(
            a, b, t, task_id=f"countdown2-shown-train-{i}", reference=eq, plain_demos=True
        )


@register_taskset(
    "countdown2-shown-test",
    description="countdown2-test with 3 demonstrated reflections and 3 demonstrated plain retries",
    family=FAMILY,
    source=GENERATED,
)
def load_shown_test(_root: Path) -> Iterator[Task]:
    for i, (a, b, t, eq) in enumerate(_test()):
        yield make_task(
            a, b, t, task_id=f"countdown2-shown-test-{i}", reference=eq, plain_demos=True
        )
