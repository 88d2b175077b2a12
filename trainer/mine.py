"""``rrr train mine``: the paper's dataset of failures.

For each task, sample the first attempt ``samples`` times (temperature 1 by default) with the model
being trained, through the one engine (no reflection, no retry), and keep up to ``keep_per_task``
distinct failed answers as trajectories in a log that :func:`build_failure_set` reads. Tasks the
model always solves, or never fails in ``samples`` tries, contribute nothing.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rrr_agent import (
    Engine,
    LoopOptions,
    ModelClient,
    SamplingParams,
    Settings,
    Task,
    Trajectory,
    TrajectoryStore,
)

__all__ = ["MineReport", "mine_failures"]


@dataclass(slots=True)
class MineReport:
    tasks: int = 0
    samples: int = 0
    failures_kept: int = 0
    tasks_with_failures: int = 0
    infrastructure_errors: int = 0
    pass_rate_by_task: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        rates = list(self.pass_rate_by_task.values())
        return {
            "tasks": self.tasks,
            "samples": self.samples,
            "failures_kept": self.failures_kept,
            "tasks_with_failures": self.tasks_with_failures,
            "infrastructure_errors": self.infrastructure_errors,
            "mean_first_try_pass_rate": sum(rates) / len(rates) if rates else 0.0,
        }


def mine_failures(
    tasks: Sequence[Task],
    model: str | ModelClient | None,
    out: str | Path,
    *,
    settings: Settings | None = None,
    samples: int = 8,
    keep_per_task: int = 4,
    temperature: float = 1.0,
    max_tokens: int | None = None,
    concurrency: int = 16,
    on_result: Callable[[], None] | None = None,
    on_prepare: Callable[[str], None] | None = None,
) -> MineReport:
    """Sample first attempts and append kept failures to ``out`` (a trajectory log).

    The engine comes from :meth:`Engine.from_settings` (``model`` None: the settings' model, else
    the embedded one); only the kept failures are logged, to ``out``.
    """
    engine = Engine.from_settings(
        settings,
        model=model,
        options=LoopOptions(max_retries=0),
        sampling=SamplingParams(temperature=temperature, max_tokens=max_tokens, seed=None),
        log=False,
        on_prepare=on_prepare,
    )
    store = TrajectoryStore(out)
    report = MineReport(tasks=len(tasks))
    expanded = [t for t in tasks for _ in range(samples)]
    kept: dict[str, set[str]] = defaultdict(set)
    passes: dict[str, int] = defaultdict(int)
    seen: dict[str, int] = defaultdict(int)

    async def go() -> None:
        async for result in engine.run_many(expanded, concurrency=concurrency):
            if on_result is not None:
                on_result()
            if result.trajectory is None:
                report.infrastructure_errors += 1
                continue
            traj: Trajectory = result.trajectory
            report.samples += 1
            seen[traj.task.id] += 1
            if traj.first_try_passed:
                passes[traj.task.id] += 1
                continue
            answer = traj.attempts[0].text or str(traj.attempts[0].tool_calls)
            if len(kept[traj.task.id]) < keep_per_task and answer not in kept[traj.task.id]:
                kept[traj.task.id].add(answer)
                store.append(traj)
                report.failures_kept += 1

    asyncio.run(go())
    report.tasks_with_failures = sum(1 for v in kept.values() if v)
    report.pass_rate_by_task = {tid: passes[tid] / n for tid, n in seen.items()}
    return report
