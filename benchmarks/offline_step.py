"""One offline GRPO group on the embedded model: the prompt run once (its cache reused) vs k times.

Offline training (``rrr_trainer.offline``) computes the log-probs of a group's k reflections,
which share one prompt: the task, its worked examples, the failed attempt and "Reflection:".
It runs that prompt once and repeats its key/value cache for the k reflections. The baseline,
measured in the same run, is what it did before: one left-padded batch of k full sequences
(prompt + reflection each), logits only at the completion positions. Both arms compute the
forward pass and the backward pass of the same loss through the LoRA adapter, and the benchmark
checks they agree.

Usage: ``python benchmarks/offline_step.py [--taskset countdown2-shown-train] [--k 8] [--json]``.
Needs the ``train`` extra. Run it on a quiet machine: it measures wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

#: Reflections of the lengths the learning runs sample (the -shown prompt's demonstrated form).
REFLECTIONS = [
    "66 - 4 = 62, not 16. 66 / 4 = 16.",
    "66 + 4 = 70, not 16. 66 - 4 = 16.",
    "66 * 4 = 264, not 16. 66 / 4 = 16.5.",
    "I used the wrong operation.",
    "66 - 4 = 62, not 16. 64 / 4 = 16.",
    "The target is smaller than both numbers, so it must be a division.",
    "66 - 4 = 62, not 16. 66 - 50 = 16.",
    "66 / 4 = 16.",
]


def separate_logps(model: Any, prompt: list[int], comps: list[list[int]], pad: int) -> Any:
    """The baseline: k left-padded full sequences in one batch (the previous implementation)."""
    import torch

    width = max(len(prompt) + len(c) for c in comps)
    keep = max(len(c) for c in comps)
    ids = torch.full((len(comps), width), pad, dtype=torch.long)
    attn = torch.zeros_like(ids)
    mask = torch.zeros((len(comps), keep))
    for i, c in enumerate(comps):
        seq = prompt + c
        ids[i, width - len(seq) :] = torch.tensor(seq)
        attn[i, width - len(seq) :] = 1
        mask[i, keep - len(c) :] = 1.0
    logits = model(input_ids=ids, attention_mask=attn, logits_to_keep=keep + 1).logits[:, :-1]
    logps = torch.log_softmax(logits.float(), -1).gather(-1, ids[:, -keep:, None]).squeeze(-1)
    return logps * mask, mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--taskset", default="countdown2-shown-train")
    parser.add_argument("--k", type=int, default=8, help="reflections in the group")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per arm")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch
    from _arms import gradient_gap, time_arms
    from rrr_trainer import RRRTrainConfig
    from rrr_trainer.offline import OfflineGroup, _encode, _group_logps
    from rrr_trainer.policy import load_policy, reflection_end_token, with_adapter

    from rrr_agent import PromptLibrary, embedded
    from rrr_agent._conversation import reflection_messages
    from rrr_agent._types import Attempt
    from rrr_agent.tasksets import get_taskset

    task = next(iter(get_taskset(args.taskset).load()))
    instruction = PromptLibrary().get("reflection", task.family).text
    prompt = reflection_messages(task, [Attempt(text=" 66 - 4")], [], instruction)
    group = OfflineGroup(
        prompt=prompt,
        reflections=[REFLECTIONS[i % len(REFLECTIONS)] for i in range(args.k)],
        rewards=[float(i % 2) for i in range(args.k)],
        logprobs=[None] * args.k,
        chat_template_kwargs=dict(task.chat_template_kwargs or {}),
    )
    path = embedded.prepare()
    config = RRRTrainConfig(model=str(path), output_dir=tempfile.mkdtemp(), mode="offline")
    model, tokenizer, eos = load_policy(path, config)
    model = with_adapter(model, config)
    model.train()
    end = reflection_end_token(tokenizer, eos, config.reflection_stop)
    prompts, comps, advantages, _ = _encode([group], tokenizer, config, end)
    pad = tokenizer.pad_token_id
    adv = torch.tensor(advantages).unsqueeze(1)

    def step(arm: str) -> tuple[float, Any, list[Any]]:
        model.zero_grad()
        start = time.perf_counter()
        if arm == "once":
            logps, mask = _group_logps(model, prompts, comps, pad)
        else:
            logps, mask = separate_logps(model, prompts[0], comps[0], pad)
        loss = -(logps * adv * mask).sum() / mask.sum()
        loss.backward()
        seconds = time.perf_counter() - start
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        return seconds, float(loss.detach()), grads

    times, medians, results = time_arms(step, ("separate", "once"), args.repeats)
    (loss_a, grads_a), (loss_b, grads_b) = results["separate"], results["once"]
    grad_diff, grad_scale = gradient_gap(grads_a, grads_b)
    sep, once = medians["separate"], medians["once"]
    report = {
        "model": "gemma-3-270m + LoRA r8, CPU",
        "taskset": args.taskset,
        "prompt_tokens": len(prompts[0]),
        "completion_tokens": [len(c) for c in comps[0]],
        "k": args.k,
        "separate_seconds": sep,
        "once_seconds": once,
        "speedup_once_vs_separate": sep / once,
        "loss_separate": loss_a,
        "loss_once": loss_b,
        "max_grad_difference": grad_diff,
        "max_grad": grad_scale,
        "all": times,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"offline group: prompt of {len(prompts[0])} tokens, {args.k} reflections of "
        f"{min(report['completion_tokens'])}-{max(report['completion_tokens'])} tokens, "
        f"forward + backward, median of {args.repeats} after a warm-up"
    )
    print(f"  k separate sequences (baseline): {sep:6.2f} s")
    print(f"  prompt once, cache reused:       {once:6.2f} s")
    print(f"  speedup: {sep / once:.1f}x; loss {loss_a:.6f} vs {loss_b:.6f}")
    print(f"  largest gradient difference {grad_diff:.2e} (largest gradient {grad_scale:.2e})")


if __name__ == "__main__":
    main()
