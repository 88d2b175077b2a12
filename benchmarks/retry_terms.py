"""One offline group's retry terms on the embedded model: one pass for the group vs one per term.

Offline training (``rrr_trainer.offline``) with the retry anchors and the follow term reads, for
each group, up to three logged retries in the conversations that led to them (reflection
prompt, a reflection, the retry instruction, the retry): the full-vocabulary KL to the reference
model over the retry's tokens (``retry_anchor_beta``, ``retry_anchor_rewarded_beta``) and the
negative log-likelihood of a retry that carried out a right reflection (``retry_follow_beta``).
The three conversations share the group's reflection prompt. The library runs it once, repeats
its key/value cache for the three tails, takes logits only where retry tokens are predicted, and
runs the reference once for the KL terms (``_retry_terms``). The baseline, measured in the same
run, is what it did before (learning run 78: 305-339 s per round with the anchors against
179-240 s without): one full pass of the policy per term and one of the reference per KL term,
logits over the last positions. Both arms compute the forward and backward pass of the same
weighted sum through the LoRA adapter (weights 1, 3 and 0.3, learning run 78's), and the
benchmark checks that values and gradients agree.

Usage: ``python benchmarks/retry_terms.py [--taskset countdown2-train] [--repeats 5] [--json]``.
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

#: Reflections and retries of the kinds learning run 78 sampled for a failed "66 - 4" (target
#: 16): a new guess with a value, a check of the failed answer, a short phrase.
BRANCHES = [
    ("66 / 4 = 16.5, not 16. 64 / 4 = 16.", "64 / 4"),
    ("66 - 4 = 62, not 16. The target is smaller, so divide.", "66 / 4"),
    ("Numbers are not the same.", "66 + 4"),
]


def per_term(model: Any, term: Any) -> Any:
    """The baseline: one term from its own full pass (the previous ``_anchor_kl`` with ``last``
    and ``_retry_nll``), the reference run again for each KL term."""
    import torch

    batch = torch.tensor([term.ids])
    logits = model(input_ids=batch, logits_to_keep=term.last + 1).logits[0, :-1]
    logp = torch.log_softmax(logits.float(), dim=-1)
    if not term.kl:
        return -logp.gather(-1, batch[0, -term.last :].unsqueeze(-1)).mean()
    with torch.no_grad(), model.disable_adapter():
        ref_logits = model(input_ids=batch, logits_to_keep=term.last + 1).logits[0, :-1]
        ref_logp = torch.log_softmax(ref_logits.float(), dim=-1)
    return (ref_logp.exp() * (ref_logp - logp)).sum(-1).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--taskset", default="countdown2-train")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per arm")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch
    from _arms import gradient_gap, time_arms
    from rrr_trainer import RRRTrainConfig
    from rrr_trainer.offline import OfflineGroup, RetryTerm, _retry_terms, retry_anchor_ids
    from rrr_trainer.policy import load_policy, reflection_end_token, with_adapter

    from rrr_agent import PromptLibrary, embedded
    from rrr_agent._conversation import reflection_messages
    from rrr_agent._types import Attempt
    from rrr_agent.tasksets import get_taskset

    task = next(iter(get_taskset(args.taskset).load()))
    prompts = PromptLibrary()
    instruction = prompts.get("reflection", task.family).text
    group = OfflineGroup(
        prompt=reflection_messages(task, [Attempt(text=" 66 - 4")], [], instruction),
        reflections=[r for r, _ in BRANCHES],
        rewards=[1.0, 1.0, 0.0],
        retries=[a for _, a in BRANCHES],
        retry_instruction=prompts.get("retry", task.family).text,
        chat_template_kwargs=dict(task.chat_template_kwargs or {}),
    )
    path = embedded.prepare()
    config = RRRTrainConfig(model=str(path), output_dir=tempfile.mkdtemp(), mode="offline")
    model, tokenizer, eos = load_policy(path, config)
    model = with_adapter(model, config)
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # B starts at zero, where every KL is 0: a trained adapter's shape
            torch.nn.init.normal_(p, std=0.01)
    model.train()
    end = reflection_end_token(tokenizer, eos, config.reflection_stop)
    terms, weights = [], [1.0, 3.0, 0.3]  # all, rewarded, followed (learning run 78's weights)
    for i, kl in ((2, True), (0, True), (1, False)):
        found = retry_anchor_ids(group, i, tokenizer, config, end)
        assert found is not None
        terms.append(RetryTerm(*found, kl=kl))
    params = [p for p in model.parameters() if p.requires_grad]

    def step(arm: str) -> tuple[float, list[float], list[Any]]:
        model.zero_grad()
        start = time.perf_counter()
        if arm == "group":
            values = _retry_terms(model, None, terms)
        else:
            values = [per_term(model, t) for t in terms]
        sum(w * v for w, v in zip(weights, values, strict=True)).backward()
        seconds = time.perf_counter() - start
        grads = [p.grad.clone() for p in params if p.grad is not None]
        return seconds, [float(v.detach()) for v in values], grads

    times, medians, results = time_arms(step, ("per_term", "group"), args.repeats)
    (values_a, grads_a), (values_b, grads_b) = results["per_term"], results["group"]
    grad_diff, grad_scale = gradient_gap(grads_a, grads_b)
    base, grouped = medians["per_term"], medians["group"]
    report = {
        "model": "gemma-3-270m + LoRA r8, CPU",
        "taskset": args.taskset,
        "conversation_tokens": [len(t.ids) for t in terms],
        "retry_tokens": [t.last for t in terms],
        "per_term_seconds": base,
        "group_seconds": grouped,
        "speedup_group_vs_per_term": base / grouped,
        "values_per_term": values_a,
        "values_group": values_b,
        "max_grad_difference": grad_diff,
        "max_grad": grad_scale,
        "all": times,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"retry terms of one group: conversations of {report['conversation_tokens']} tokens, "
        f"retries of {report['retry_tokens']}, forward + backward, median of {args.repeats} "
        "after a warm-up"
    )
    print(f"  one pass per term (baseline): {base:6.2f} s")
    print(f"  one pass for the group:       {grouped:6.2f} s")
    print(f"  speedup: {base / grouped:.1f}x")
    print(f"  values {[round(v, 6) for v in values_a]} vs {[round(v, 6) for v in values_b]}")
    print(f"  largest gradient difference {grad_diff:.2e} (largest gradient {grad_scale:.2e})")


if __name__ == "__main__":
    main()
