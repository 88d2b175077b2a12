"""Aggregate numbers over trajectories: first-try and second-try success, tokens by stage."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ._types import Trajectory, Usage

__all__ = ["Summary", "summarize", "trajectory_row"]


@dataclass(slots=True)
class Summary:
    trajectories: int = 0
    errors: int = 0
    passed_first_try: int = 0
    passed_second_try: int = 0  # within the first two attempts (one reflection)
    passed_final: int = 0  # within all attempts
    retried: int = 0
    usage_first_attempt: Usage = field(default_factory=Usage)
    usage_reflections: Usage = field(default_factory=Usage)
    usage_retries: Usage = field(default_factory=Usage)
    models: dict[str, int] = field(default_factory=dict)

    def add(self, traj: Trajectory) -> None:
        self.trajectories += 1
        self.passed_first_try += traj.first_try_passed
        self.passed_second_try += traj.passed_within(2)
        self.passed_final += traj.passed
        self.retried += len(traj.attempts) > 1
        stages = traj.usage_by_stage()
        self.usage_first_attempt += stages["first_attempt"]
        self.usage_reflections += stages["reflections"]
        self.usage_retries += stages["retries"]
        self.models[traj.model] = self.models.get(traj.model, 0) + 1

    def rate(self, count: int) -> float:
        return count / self.trajectories if self.trajectories else 0.0

    @property
    def usage_total(self) -> Usage:
        return self.usage_first_attempt + self.usage_reflections + self.usage_retries

    def to_dict(self) -> dict[str, Any]:
        return {
            "trajectories": self.trajectories,
            "errors": self.errors,
            "passed_first_try": self.passed_first_try,
            "passed_second_try": self.passed_second_try,
            "passed_final": self.passed_final,
            "first_try_rate": self.rate(self.passed_first_try),
            "second_try_rate": self.rate(self.passed_second_try),
            "final_rate": self.rate(self.passed_final),
            "retried": self.retried,
            "tokens": {
                "first_attempt": self.usage_first_attempt.model_dump(),
                "reflections": self.usage_reflections.model_dump(),
                "retries": self.usage_retries.model_dump(),
                "total": self.usage_total.model_dump(),
            },
            "models": dict(self.models),
        }


def summarize(trajectories: Iterable[Trajectory], *, errors: int = 0) -> Summary:
    summary = Summary(errors=errors)
    for traj in trajectories:
        summary.add(traj)
    return summary


def trajectory_row(t: Trajectory) -> dict[str, Any]:
    """One trajectory as a listing row (``rrr logs list``, session lists)."""
    return {
        "id": t.id,
        "started_at": t.started_at.isoformat(),
        "model": t.model,
        "task_id": t.task.id,
        "family": t.task.family,
        "outcome": t.outcome.value,
        "attempts": len(t.attempts),
        "reflections": len(t.reflections),
        "groups": len(t.groups),
        "tokens": t.total_usage().total_tokens,
    }
