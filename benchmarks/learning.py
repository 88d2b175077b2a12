"""The learning experiment: the whole RRR cycle on the embedded model, on CPU, in one command.

1. Evaluate the base model (gemma-3-270m) on held-out 2-number Countdown: first try, second try
   after a reflection, and the plain-retry control from the same failures; first-try accuracy on
   an untouched set for the forgetting check.
2. Mine the dataset of failures on the training problems (sampled first attempts).
3. Train reflections with RRR GRPO (LoRA) within a time budget.
4. Evaluate the trained model the same way and write the paper-style table, the chart and the
   training curves under ``--out`` (default ``docs/learning``).

Everything is seeded (problem generation, sampling, training), so a rerun is comparable.
Usage: ``python benchmarks/learning.py [--budget-minutes 22] [--heldout 200] [--out DIR]``; the
defaults reproduce run 3 (docs/learning/run3-anchored).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs/learning")
    parser.add_argument("--work", default=".rrr-learning-work", help="scratch folder (not kept)")
    parser.add_argument("--heldout", type=int, default=200)
    parser.add_argument("--train-tasks", type=int, default=200)
    parser.add_argument("--samples", type=int, default=1, help="first attempts mined per task")
    parser.add_argument("--mine-temperature", type=float, default=0.0,
                        help="0: the greedy failures, those the evaluation retries")  # fmt: skip
    parser.add_argument("--keep", type=int, default=1, help="failures kept per task")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--generations", type=int, default=8, help="reflections per failure")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--beta", type=float, default=0.04,
                        help="KL weight (paper: 0.001; 0.04 kept run 3 from drifting)")  # fmt: skip
    parser.add_argument("--reflection-tokens", type=int, default=32)
    parser.add_argument("--retry-tokens", type=int, default=12)
    parser.add_argument("--forgetting", default="arithmetic-test")
    parser.add_argument("--forgetting-limit", type=int, default=200)
    parser.add_argument("--budget-minutes", type=float, default=22.0,
                        help="wall-clock budget of the training step")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import transformers
    from rrr_trainer import RRRTrainConfig, mine_failures
    from rrr_trainer.data import build_failure_set
    from rrr_trainer.export import export_model
    from rrr_trainer.grpo import build_trainer
    from rrr_trainer.plots import plot_metrics

    from rrr_agent import embedded, load_settings
    from rrr_agent.evaluation import EvalReport, evaluate
    from rrr_agent.tasksets import get_taskset

    out = Path(args.out)
    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    embedded.prepare()
    heldout = list(get_taskset("countdown2-test").load())[: args.heldout]
    train_tasks = list(get_taskset("countdown2-train").load())[: args.train_tasks]
    forgetting = (args.forgetting,
                  list(get_taskset(args.forgetting).load())[: args.forgetting_limit])  # fmt: skip
    eval_kw: dict[str, Any] = {
        # Every evaluation trajectory goes to the work folder's log, not the user's data dir.
        "settings": load_settings(log_path=work / "eval-trajectories.jsonl"),
        "concurrency": 16,
        "temperature": 0.0,
        "seed": args.seed,
        "max_tokens": args.reflection_tokens,
        "forgetting": forgetting,
    }

    t = time.perf_counter()
    before = evaluate(
        heldout, [embedded.EMBEDDED_MODEL_STRING], taskset="countdown2-test", **eval_kw
    )
    timings["eval_before_s"] = time.perf_counter() - t
    print(before.markdown(), flush=True)

    t = time.perf_counter()
    failures = work / "failures.jsonl"
    mined = mine_failures(train_tasks, embedded.EMBEDDED_MODEL_STRING, failures,
                          samples=args.samples, keep_per_task=args.keep,
                          temperature=args.mine_temperature, max_tokens=12)  # fmt: skip
    timings["mine_s"] = time.perf_counter() - t
    print("mined:", mined.to_dict(), flush=True)

    t = time.perf_counter()
    config = RRRTrainConfig(
        output_dir=str(work / "train"), max_steps=args.steps, num_generations=args.generations,
        per_device_train_batch_size=args.generations, learning_rate=args.learning_rate,
        beta=args.beta,
        max_reflection_tokens=args.reflection_tokens, max_retry_tokens=args.retry_tokens,
        holdout_fraction=0.0, save_steps=max(10, args.steps // 4), seed=args.seed,
        merge=False,  # the adapter is all the evaluation needs
    )  # fmt: skip
    train_set, _, data_report = build_failure_set([failures], holdout_fraction=0.0)
    trainer, _, tokenizer, original_eos = build_trainer(config, train_set, Path(config.output_dir))
    deadline = time.monotonic() + 60 * args.budget_minutes

    class TimeBudget(transformers.TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if time.monotonic() > deadline:
                control.should_training_stop = True
            return control

    trainer.add_callback(TimeBudget())
    trainer.train()
    adapter, _merged = export_model(trainer.model, tokenizer, Path(config.output_dir), config,
                                    original_eos, data_report, trainer.state)  # fmt: skip
    timings["train_s"] = time.perf_counter() - t
    steps_done = int(trainer.state.global_step)
    del trainer

    t = time.perf_counter()
    trained_model = f"local/{adapter}"
    after = evaluate(heldout, [trained_model], taskset="countdown2-test", **eval_kw)
    timings["eval_after_s"] = time.perf_counter() - t
    after.models[0].model = "RRR-trained (LoRA)"
    before.models[0].model = "gemma-3-270m (vanilla)"
    report = EvalReport(taskset="countdown2-test (held-out)",
                        models=[before.models[0], after.models[0]],
                        forgetting_taskset=args.forgetting)  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    table = report.markdown()
    (out / "results.md").write_text(table)
    report.plot(out / "accuracy.png")
    plot_metrics(Path(config.output_dir) / "metrics.jsonl", out / "training.png")
    timings["total_s"] = time.perf_counter() - started
    summary = {
        "report": report.to_dict(),
        "mined": mined.to_dict(),
        "training": {
            "steps": steps_done,
            "failures": data_report.to_dict(),
            "config": config.to_dict(),
        },
        "timings": timings,
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    print(table)
    print(json.dumps(timings, indent=2))


if __name__ == "__main__":
    main()
