"""Shared by the benchmarks that time two implementations of one computation in the same run
(``offline_step.py``, ``retry_terms.py``): each arm warmed up, then timed, and its gradients
compared with the baseline's."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

#: One timed pass of an arm: (seconds, its value, its gradients).
Step = Callable[[str], tuple[float, Any, list[Any]]]


def time_arms(
    step: Step, arms: Sequence[str], repeats: int
) -> tuple[dict[str, list[float]], dict[str, float], dict[str, tuple[Any, list[Any]]]]:
    """Run each arm once to warm up, then ``repeats`` timed passes: every pass's seconds, the
    median per arm, and the last pass's (value, gradients) per arm."""
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    results: dict[str, tuple[Any, list[Any]]] = {}
    for arm in arms:
        step(arm)  # warm-up
        for _ in range(repeats):
            seconds, value, grads = step(arm)
            times[arm].append(seconds)
        results[arm] = (value, grads)
    return times, {arm: statistics.median(t) for arm, t in times.items()}, results


def gradient_gap(baseline: list[Any], other: list[Any]) -> tuple[float, float]:
    """The largest difference between two arms' gradients, and the baseline's largest gradient
    (the scale to read it against)."""
    gap = max(float((a - b).abs().max()) for a, b in zip(baseline, other, strict=True))
    return gap, max(float(a.abs().max()) for a in baseline)
