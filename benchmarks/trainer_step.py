"""One RRR GRPO step vs one plain TRL GRPO step generating the same number of tokens.

Same model (the embedded gemma-3-270m with a LoRA adapter), same prompts, same run (one arm after
the other, each after a warm-up step). Every completion is forced to a fixed length, so both
steps generate exactly
``num_generations x (R + T)`` tokens per prompt:

* RRR: TRL samples R reflection tokens; the reward function generates T retry tokens after each
  reflection (no gradient) and verifies the retry; the loss covers the R reflection tokens.
* plain: TRL samples R + T tokens per completion; a reward that needs no generation (the
  verifier applied to the completion); the loss covers all R + T tokens.

Prints seconds per step for each and the ratio RRR / plain (target <= 1.3).
Usage: ``python benchmarks/trainer_step.py [--reflection-tokens 32] [--retry-tokens 32]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def examples(n: int) -> list[Any]:
    from rrr_trainer.data import FailureExample

    from rrr_agent import PromptLibrary
    from rrr_agent._conversation import reflection_messages
    from rrr_agent._types import Attempt
    from rrr_agent.tasksets import get_taskset

    prompts = PromptLibrary()
    out = []
    for task in list(get_taskset("countdown2-train").load())[:n]:
        # A benchmark input: a fixed wrong first attempt; only the shapes matter for timing.
        failed = Attempt(text="1 + 1")
        instruction = prompts.get("reflection", "math").text
        out.append(
            FailureExample(
                task_json=task.model_dump_json(),
                prompt=reflection_messages(task, [failed], [], instruction),
                reflection_instruction=instruction,
                retry_instruction=prompts.get("retry", "math").text,
                failed_answer="1 + 1",
                task_id=task.id,
                trajectory_id="bench",
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reflection-tokens", type=int, default=32)
    parser.add_argument("--retry-tokens", type=int, default=32)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="timed steps per arm")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from rrr_trainer import RRRTrainConfig
    from rrr_trainer.grpo import build_trainer

    from rrr_agent import ModelOutput, Task, build_verifier

    r, t, g = args.reflection_tokens, args.retry_tokens, args.generations
    data = examples(64)
    tmp = Path(tempfile.mkdtemp(prefix="rrr-bench-train-"))
    common = dict(
        max_steps=10_000, num_generations=g, per_device_train_batch_size=g, save_steps=10_000,
        holdout_fraction=0.0, retry_temperature=1.0, reflection_stop="eos", seed=0,
    )  # fmt: skip

    # RRR: reflections of exactly r tokens, retries of exactly t tokens.
    rrr_cfg = RRRTrainConfig(
        output_dir=str(tmp / "rrr"), max_reflection_tokens=r, max_retry_tokens=t, **common
    )
    rrr, reward, _, _ = build_trainer(rrr_cfg, data, tmp / "rrr")
    rrr.generation_config.min_new_tokens = r
    reward.retry_min_tokens = t

    # Plain TRL: completions of exactly r + t tokens, a reward that generates nothing.
    def verify_completion(completions: list[Any], task: list[str], **_: Any) -> list[float]:
        out = []
        for c, tj in zip(completions, task, strict=True):
            text = c[-1]["content"] if isinstance(c, list) else str(c)
            parsed = Task.model_validate_json(tj)
            verdict: Any = build_verifier(parsed.verifier).verify(ModelOutput(text=text), parsed)
            out.append(1.0 if verdict.passed else 0.0)
        return out

    plain_cfg = RRRTrainConfig(output_dir=str(tmp / "plain"), max_reflection_tokens=r + t, **common)
    plain, _, _, _ = build_trainer(plain_cfg, data, tmp / "plain")
    plain.reward_funcs = [verify_completion]
    plain.reward_func_names = ["verify_completion"]
    plain.generation_config.min_new_tokens = r + t

    import transformers

    class StepTimer(transformers.TrainerCallback):
        """Wall time of each optimizer step: generation, reward (RRR: the retry), loss, update."""

        def __init__(self) -> None:
            self.times: list[float] = []
            self._start = 0.0

        def on_step_begin(self, *a: Any, **k: Any) -> None:
            self._start = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            self.times.append(time.perf_counter() - self._start)

    def timed_steps(trainer: Any) -> list[float]:
        timer = StepTimer()
        trainer.add_callback(timer)
        trainer.args.max_steps = args.rounds + 1  # the first step warms up
        trainer.train()
        return timer.times[1:]

    # Arms run one after the other in this process (same machine state, same run).
    rrr_times = timed_steps(rrr)
    plain_times = timed_steps(plain)
    rrr_s, plain_s = statistics.median(rrr_times), statistics.median(plain_times)
    report = {
        "model": "gemma-3-270m + LoRA r8, CPU",
        "tokens_generated_per_step": g * (r + t),
        "rrr_seconds_per_step": rrr_s,
        "plain_trl_seconds_per_step": plain_s,
        "ratio_rrr_vs_plain": rrr_s / plain_s,
        "rounds": args.rounds,
        "all_rrr": rrr_times,
        "all_plain": plain_times,
        "target": "<= 1.3",
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"trainer step: {g} generations x ({r} reflection + {t} retry) tokens per step, "
        f"median of {args.rounds} timed steps per arm after one warm-up step"
    )
    print(f"  RRR GRPO step:   {rrr_s:6.1f} s")
    print(f"  plain TRL step:  {plain_s:6.1f} s  (completions of {r + t} tokens)")
    ok = "meets" if rrr_s / plain_s <= 1.3 else "MISSES"
    print(f"  ratio RRR / plain: {rrr_s / plain_s:.2f} ({ok} target <= 1.3)")


if __name__ == "__main__":
    main()
