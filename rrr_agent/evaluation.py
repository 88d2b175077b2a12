"""Evaluation: first-try and second-try accuracy, the plain-retry control, reflection metrics,
forgetting, with 95 % confidence intervals, as tables, JSON and a PNG chart.

For each model, every task runs through the one engine with one reflection (the paper's setting).
The control starts from the *same* failed first attempt and only says "That was wrong. Try again."
(no reflection), so reflection earns credit only for what it adds over a plain retry. Rates carry
Wilson 95 % intervals; paired differences (gain, reflection minus control, forgetting) carry
normal-approximation intervals over the per-task differences. Sampling is seeded and task subsets
are fixed, so two runs are comparable.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._engine import Engine
from ._errors import InfrastructureError, VerifierError
from ._settings import Settings, load_settings
from ._types import LoopOptions, ModelOutput, SamplingParams, Task, Trajectory
from .verifiers import build_verifier

__all__ = [
    "EvalReport",
    "ModelEval",
    "evaluate",
    "first_tries",
    "paired_mean_ci",
    "wilson_interval",
]

Z95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (exact at the edges, sane for small n)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # Rounding can put a bound a hair past the rate (0 + 1e-17 at k = 0): the rate is always inside.
    return (min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)))


def paired_mean_ci(diffs: Sequence[float], z: float = Z95) -> tuple[float, float, float]:
    """(mean, low, high) of per-item differences, normal approximation."""
    n = len(diffs)
    if n == 0:
        return (0.0, 0.0, 0.0)
    mean = sum(diffs) / n
    if n == 1:
        return (mean, mean, mean)
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1)
    half = z * math.sqrt(var / n)
    return (mean, mean - half, mean + half)


def category_of(task: Task) -> str:
    meta = task.metadata
    return str(meta.get("category") or meta.get("bfcl_category") or task.family)


@dataclass
class ModelEval:
    """Per-task outcomes of one model, in task order (None: not run because of an error)."""

    model: str
    task_ids: list[str]
    categories: list[str]
    first: list[bool | None]
    second: list[bool | None]
    plain_second: list[bool | None]
    reflection_chars: list[int] = field(default_factory=list)
    reflection_holds_answer: list[bool] = field(default_factory=list)
    errors: int = 0
    forgetting_first: list[bool | None] | None = None

    def rows(self, category: str | None = None) -> list[int]:
        return [
            i for i, c in enumerate(self.categories)
            if (category is None or c == category) and self.first[i] is not None
            and self.second[i] is not None
        ]  # fmt: skip

    def summary(self, category: str | None = None) -> dict[str, Any]:
        idx = self.rows(category)
        n = len(idx)
        first = sum(bool(self.first[i]) for i in idx)
        second = sum(bool(self.second[i]) for i in idx)
        gain = paired_mean_ci([float(bool(self.second[i])) - bool(self.first[i]) for i in idx])
        out: dict[str, Any] = {
            "n": n,
            "first_try": _rate(first, n),
            "second_try": _rate(second, n),
            "gain": _diff(gain),
        }
        plain_idx = [i for i in idx if self.plain_second[i] is not None]
        if plain_idx:
            plain = sum(bool(self.plain_second[i]) for i in plain_idx)
            out["second_try_plain_retry"] = _rate(plain, len(plain_idx))
            out["reflection_minus_plain"] = _diff(paired_mean_ci(
                [float(bool(self.second[i])) - bool(self.plain_second[i]) for i in plain_idx]
            ))  # fmt: skip
        reflected = [i for i in idx if not self.first[i]]
        if reflected:
            fixed = sum(bool(self.second[i]) for i in reflected)
            out["retry_success_given_reflection"] = _rate(fixed, len(reflected))
        out["trigger_rate"] = _rate(len(reflected), n)
        return out

    def reflection_metrics(self) -> dict[str, Any]:
        n = len(self.reflection_chars)
        return {
            "reflections": n,
            "mean_reflection_chars": sum(self.reflection_chars) / n if n else 0.0,
            "reflection_holds_full_answer": _rate(sum(self.reflection_holds_answer), n),
        }


def _rate(k: int, n: int) -> dict[str, Any]:
    lo, hi = wilson_interval(k, n)
    return {"k": k, "n": n, "rate": k / n if n else 0.0, "ci95": [lo, hi]}


def _diff(triple: tuple[float, float, float]) -> dict[str, Any]:
    return {"mean": triple[0], "ci95": [triple[1], triple[2]]}


@dataclass
class EvalReport:
    taskset: str
    models: list[ModelEval]
    forgetting_taskset: str | None = None

    @property
    def categories(self) -> list[str]:
        seen: list[str] = []
        for m in self.models:
            for c in m.categories:
                if c not in seen:
                    seen.append(c)
        return seen

    def forgetting(self) -> list[dict[str, Any]]:
        """First-try accuracy on the untouched set, each model vs the first (the baseline)."""
        if not self.forgetting_taskset or not self.models[0].forgetting_first:
            return []
        base = self.models[0].forgetting_first
        rows = []
        for m in self.models:
            if m.forgetting_first is None:
                continue
            pairs = [(b, x) for b, x in zip(base, m.forgetting_first, strict=True)
                     if b is not None and x is not None]  # fmt: skip
            k = sum(bool(x) for _, x in pairs)
            rows.append({
                "model": m.model,
                "first_try": _rate(k, len(pairs)),
                "delta_vs_baseline": _diff(
                    paired_mean_ci([float(bool(x)) - bool(b) for b, x in pairs])
                ),
            })  # fmt: skip
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "taskset": self.taskset,
            "models": [
                {
                    "model": m.model,
                    "errors": m.errors,
                    "overall": m.summary(),
                    "by_category": {c: m.summary(c) for c in self.categories},
                    "reflection": m.reflection_metrics(),
                }
                for m in self.models
            ],
            "forgetting": {"taskset": self.forgetting_taskset, "rows": self.forgetting()},
        }

    def markdown(self) -> str:
        def pct(r: dict[str, Any]) -> str:
            lo, hi = r["ci95"]
            return f"{100 * r['rate']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"

        def pp(d: dict[str, Any]) -> str:
            lo, hi = d["ci95"]
            return f"{100 * d['mean']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"

        lines = [f"### {self.taskset}: accuracy, % [95 % CI]", ""]
        head = ["model", "n", "1st try", "2nd try (reflection)", "gain (pp)",
                "2nd try (plain retry)", "reflection − plain (pp)"]  # fmt: skip
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for m in self.models:
            for cat in [None, *self.categories] if len(self.categories) > 1 else [None]:
                s = m.summary(cat)
                name = m.model if cat is None else f"  {cat}"
                plain = pct(s["second_try_plain_retry"]) if "second_try_plain_retry" in s else "–"
                delta = pp(s["reflection_minus_plain"]) if "reflection_minus_plain" in s else "–"
                lines.append(
                    f"| {name} | {s['n']} | {pct(s['first_try'])} | {pct(s['second_try'])} | "
                    f"{pp(s['gain'])} | {plain} | {delta} |"
                )
        if len(self.models) == 2:  # the paper's table: vanilla vs trained
            a, b = self.models
            head2 = "| | vanilla 1st try | vanilla 2nd try | trained 1st try | trained 2nd try |"
            lines += ["", head2, "|---|---|---|---|---|"]
            for cat in [None, *self.categories]:
                sa, sb = a.summary(cat), b.summary(cat)
                lines.append(
                    f"| {cat or 'all'} | {pct(sa['first_try'])} | {pct(sa['second_try'])} | "
                    f"{pct(sb['first_try'])} | {pct(sb['second_try'])} |"
                )
        lines += [
            "",
            "| model | reflections | mean chars | holds a full answer |",
            "|---|---|---|---|",
        ]
        for m in self.models:
            r = m.reflection_metrics()
            lines.append(
                f"| {m.model} | {r['reflections']} | {r['mean_reflection_chars']:.0f} | "
                f"{pct(r['reflection_holds_full_answer'])} |"
            )
        forgetting = self.forgetting()
        if forgetting:
            lines += ["", f"Forgetting check on {self.forgetting_taskset} (first try):", "",
                      "| model | 1st try | Δ vs baseline (pp) |", "|---|---|---|"]  # fmt: skip
            for row in forgetting:
                lines.append(
                    f"| {row['model']} | {pct(row['first_try'])} | {pp(row['delta_vs_baseline'])} |"
                )
        return "\n".join(lines) + "\n"

    def plot(self, path: str | Path) -> Path:
        """Grouped bars (1st try, 2nd try, plain retry) per model with 95 % CI whiskers."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        labels = ["1st try", "2nd try (reflection)", "2nd try (plain retry)"]
        keys = ["first_try", "second_try", "second_try_plain_retry"]
        fig, ax = plt.subplots(figsize=(2.5 + 2.2 * len(self.models), 4.5))
        width = 0.8 / len(keys)
        for j, (label, key) in enumerate(zip(labels, keys, strict=True)):
            xs: list[float] = []
            ys: list[float] = []
            errs: list[list[float]] = [[], []]
            for i, m in enumerate(self.models):
                s = m.summary()
                if key not in s:
                    continue
                r = s[key]
                xs.append(i + (j - 1) * width)
                ys.append(100 * r["rate"])
                errs[0].append(100 * (r["rate"] - r["ci95"][0]))
                errs[1].append(100 * (r["ci95"][1] - r["rate"]))
            ax.bar(xs, ys, width, yerr=errs, capsize=3, label=label)
        ax.set_xticks(range(len(self.models)), [m.model for m in self.models], fontsize=8)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{self.taskset} (n={self.models[0].summary()['n']}, 95 % CI)")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
        plt.close(fig)
        return out


async def _holds_answer(task: Task, text: str) -> bool:
    """Would the reflection itself pass as an answer? (The retry then only copies it.)"""
    verdict = await build_verifier(task.verifier).judge(ModelOutput(text=text), task)
    return verdict.passed


async def first_tries(
    engine: Engine, tasks: Sequence[Task], *, concurrency: int = 16
) -> list[bool | None]:
    """Whether each task's first attempt passed, in the tasks' order (``engine`` built with
    ``LoopOptions(max_retries=0)`` runs nothing more). None where the run failed on
    infrastructure: that is never a wrong answer. The forgetting check and the trainer's
    forgetting guard both read first tries this way."""
    index = {t.id: i for i, t in enumerate(tasks)}
    outcomes: list[bool | None] = [None] * len(tasks)
    async for r in engine.run_many(list(tasks), concurrency=concurrency):
        if r.trajectory is not None:
            outcomes[index[r.task.id]] = r.trajectory.first_try_passed
    return outcomes


async def _evaluate_model(
    model: str | None,
    tasks: Sequence[Task],
    *,
    settings: Settings,
    sampling: SamplingParams,
    concurrency: int,
    control: bool,
    progress: Callable[[], None] | None,
    forgetting_tasks: Sequence[Task] | None,
    on_prepare: Callable[[str], None] | None,
    forgetting_concurrency: int,
) -> ModelEval:
    def engine(options: LoopOptions) -> Engine:
        return Engine.from_settings(
            settings, model=model, options=options, sampling=sampling, on_prepare=on_prepare
        )

    reflect_engine = engine(LoopOptions(max_retries=1))
    index = {t.id: i for i, t in enumerate(tasks)}
    n = len(tasks)
    result = ModelEval(
        model=reflect_engine.model, task_ids=[t.id for t in tasks],
        categories=[category_of(t) for t in tasks],
        first=[None] * n, second=[None] * n, plain_second=[None] * n,
    )  # fmt: skip
    trajectories: dict[int, Trajectory] = {}
    async for r in reflect_engine.run_many(tasks, concurrency=concurrency):
        if progress:
            progress()
        if r.trajectory is None:
            result.errors += 1
            continue
        i = index[r.task.id]
        t = r.trajectory
        trajectories[i] = t
        result.first[i] = t.first_try_passed
        result.second[i] = t.passed_within(2)
        if t.reflections:
            text = t.reflections[0].text or ""
            result.reflection_chars.append(len(text))
            result.reflection_holds_answer.append(await _holds_answer(t.task, text))
    if control:
        plain_engine = engine(LoopOptions(max_retries=1, reflect=False))
        sem = asyncio.Semaphore(concurrency)

        async def plain(i: int, t: Trajectory) -> None:
            if t.first_try_passed:
                result.plain_second[i] = True
                return
            async with sem:
                try:
                    p = await plain_engine.run(tasks[i], first_attempt=t.attempts[0])
                except (InfrastructureError, VerifierError):
                    result.errors += 1  # in the error log; never counted as a failed retry
                    return
            result.plain_second[i] = p.passed_within(2)

        await asyncio.gather(*(plain(i, t) for i, t in trajectories.items()))
    if forgetting_tasks is not None:
        first_only = engine(LoopOptions(max_retries=0))
        result.forgetting_first = await first_tries(
            first_only, forgetting_tasks, concurrency=forgetting_concurrency
        )
    return result


def evaluate(
    tasks: Sequence[Task],
    models: Sequence[str | None],
    *,
    settings: Settings | None = None,
    taskset: str = "tasks",
    concurrency: int = 8,
    temperature: float = 0.0,
    seed: int = 0,
    max_tokens: int | None = None,
    stop: list[str] | None = None,
    control: bool = True,
    forgetting: tuple[str, Sequence[Task]] | None = None,
    forgetting_concurrency: int | None = None,
    progress: Callable[[], None] | None = None,
    on_prepare: Callable[[str], None] | None = None,
) -> EvalReport:
    """Evaluate each model on ``tasks`` (and the control, and the forgetting set). A model of
    None is the settings' model (else the embedded one).

    ``forgetting_concurrency``: the forgetting set's requests in flight (None: ``concurrency``).
    1 makes a served model's answers repeatable where batching changes them: vLLM's CPU backend
    in bf16 gave 16 of 200 different greedy answers to two-digit sums in two evaluations of the
    same model at 16 requests, none at 1 (the sums are near-ties for gemma-3-270m).

    Engines come from :meth:`Engine.from_settings` (API key and base, timeout, transport retries,
    prompts folder and log from ``settings``); the sampling here is the evaluation's own (greedy,
    seeded), so that two runs compare.
    """
    settings = settings if settings is not None else load_settings()
    sampling = SamplingParams(temperature=temperature, seed=seed, max_tokens=max_tokens, stop=stop)
    evals = [
        asyncio.run(
            _evaluate_model(
                model, tasks, settings=settings, sampling=sampling, concurrency=concurrency,
                control=control, progress=progress, on_prepare=on_prepare,
                forgetting_tasks=forgetting[1] if forgetting else None,
                forgetting_concurrency=forgetting_concurrency or concurrency,
            )
        )
        for model in models
    ]  # fmt: skip
    return EvalReport(
        taskset=taskset, models=evals, forgetting_taskset=forgetting[0] if forgetting else None
    )
