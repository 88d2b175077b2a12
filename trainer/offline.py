"""Offline RRR training: learn from logged k-reflection groups without generating anything.

When the runtime ran with ``reflections=k`` it logged, for each failure, k reflections and whether
the retry after each passed (``ReflectionGroup``). Those are complete GRPO groups: the advantage of
reflection *i* is ``(r_i - mean(r)) / (std(r) + 1e-4)`` within its group, and only its tokens
(plus the token that ended it) receive the policy-gradient loss. Groups whose rewards are all equal
carry no signal and are skipped (counted in the metrics).

The policy ratio. The logged reflections were sampled by the policy that was serving then, not by
the one being trained. When the log holds per-token log-probabilities for a reflection (servers
return them when asked, e.g. ``SamplingParams(extra={"logprobs": True})``) and they match the
re-tokenised reflection, the loss is PPO's clipped objective with
``ratio = exp(logp - logp_logged)`` (clip ``epsilon``). Without them the samples are treated as
on-policy (``ratio = 1``, a REINFORCE-style gradient with group baselines): correct for the first
pass over data logged by the same weights, increasingly off-policy after that. The KL penalty
against the reference model (the base weights) uses the k3 estimator, with ``beta`` as in online
mode.

The anchor (``config.anchor``, a task set of another skill). The reward reaches only reflection
tokens, but a LoRA on the attention layers changes the model on every input: the learning runs
lost 2.5-5.5 points on an untouched skill. With an anchor, each micro-batch also reads
``anchor_batch`` texts of that set (a task's messages, followed by its reference solution where
it has one) and adds ``anchor_beta`` times the full-vocabulary KL(reference || policy), averaged
over their tokens: the policy's next-token distribution on other work is held where the base
model had it (InstructGPT's PPO-ptx mixes pretraining data in for the same reason).

The retry anchor (``config.retry_anchor_beta``). A reflection's reward is whether the retry after
it passed, so it pays for what the retry does with the reflection. The retry is never rewarded,
but it moves with the shared adapter: in learning run 31 the trained retry wrote a sum whatever
its reflection said (82 of 84 held-out retries), and wrong reflections before a passing sum were
rewarded. With the retry anchor, each group also reads one of its logged retries, after a
reflection drawn at random, and adds ``retry_anchor_beta`` times the full-vocabulary
KL(reference || policy) over the retry's tokens: the retry given a reflection stays where the
reference model had it. The reward still reaches only reflection tokens.
``retry_anchor_rewarded_beta`` pays the same KL again over one retry that passed after a
rewarded reflection: it holds the retry where it followed a reflection to a pass. Alone (learning
run 35) it leaves the adapter free elsewhere; beside ``retry_anchor_beta`` it adds weight where
following matters (learning runs 32-34: holding every retry also held the first try).

The follow term (``config.retry_follow_beta``). Held-out, the trained retries of learning runs
42 and 50-54 dropped right reflections in one context: after a failed division, a right
subtraction was answered with the sum, a habit that training taught (the base model followed
all of them). The retry anchors hold the retry to the reference model, which after a right
reflection often resubmits its failed answer instead. The follow term reads one logged retry a
group that passed after a reflection that passes as the answer itself, and pays
``retry_follow_beta`` times its mean negative log-likelihood: the retry is taught to carry out
a right reflection wherever one was written. The reward still reaches only reflections. In
learning runs 55 and 56 it did: the retry came to copy its reflection, and the reflection became
the second attempt; GRPO then paid whichever was safest, one phrase that leaves the retry free
(run 55) or, with repeated texts unpaid, the failed answer again (run 56).

A group's retry terms share its reflection prompt, so they run in one pass (:func:`_retry_terms`):
the prompt once, its cache repeated for their conversations, logits only where retry tokens are
predicted, the reference once for the KL terms. ``benchmarks/retry_terms.py`` measured it 1.9×
faster than one full pass per term, with the same values and gradients.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

from rrr_agent import DataError, JsonlAppender, Reflection, Task, require_extra, retry_messages

from .config import RRRTrainConfig
from .data import (
    FailureExample,
    bare_answer,
    hollow,
    reflection_key,
    reflection_reward,
    repeated_reflections,
    scoped_resubmit_reward,
    text_passes,
)
from .policy import (
    ProgressHook,
    TrainedPolicy,
    load_policy,
    reflection_end_token,
    resolve_model_path,
    with_adapter,
)

__all__ = [
    "OfflineGroup",
    "anchor_ids",
    "group_advantages",
    "retry_anchor_choices",
    "retry_anchor_ids",
    "train_offline",
]

EPSILON = 0.2
#: The longest anchor text, in tokens (longer ones are cut at the end).
ANCHOR_TOKENS = 256


@dataclass(slots=True)
class OfflineGroup:
    prompt: list[dict[str, Any]]
    reflections: list[str]
    rewards: list[float]
    logprobs: list[list[float] | None] = field(default_factory=list)
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    #: The logged retry after each reflection (None where none finished) and its instruction:
    #: what ``retry_anchor_beta`` holds to the reference model.
    retries: list[str | None] = field(default_factory=list)
    retry_instruction: str = ""
    #: Whether each reflection itself passes as the answer and its retry passed too (judged only
    #: with ``retry_follow_beta``; empty otherwise): the retries the follow term reads.
    followed: list[bool] = field(default_factory=list)


def group_advantages(rewards: list[float]) -> list[float]:
    mean = sum(rewards) / len(rewards)
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / len(rewards))
    return [(r - mean) / (std + 1e-4) for r in rewards]


def _groups(
    examples: list[FailureExample],
    reward_blank: bool = False,
    repeated: Collection[str] = (),
    true_claims: bool = False,
    resubmit_reward: float | None = None,
    resubmit_scope: str = "all",
    judge_following: bool = False,
    hollow_reward: float | None = None,
) -> tuple[list[OfflineGroup], dict[str, int]]:
    """The trainable groups; with ``reward_blank`` False a blank reflection's reward is 0, and so
    is a reflection whose key is in ``repeated`` (:func:`_repeated`), and with ``true_claims``
    one that states no true equation over the problem's numbers; with ``resubmit_reward`` one
    whose retry resubmitted the failed answer earns that (:func:`reflection_reward`), in the
    groups ``resubmit_scope`` names (:func:`scoped_resubmit_reward`); with ``hollow_reward`` a
    blank reflection or one that restates the failed answer earns that. With ``judge_following``
    each group also records which reflections pass as the answer themselves and were followed
    by a passing retry (``OfflineGroup.followed``, judged by :func:`text_passes`)."""
    usable: list[OfflineGroup] = []
    skipped = {"no logged group": 0, "fewer than 2 reflections": 0, "all rewards equal": 0}
    for e in examples:
        if not e.group:
            skipped["no logged group"] += 1
            continue
        if len(e.group) < 2:
            skipped["fewer than 2 reflections"] += 1
            continue
        needs_task = true_claims or judge_following or hollow_reward is not None
        task = Task.model_validate_json(e.task_json) if needs_task else None
        task_text = task.user_text() if task is not None else None
        paid = scoped_resubmit_reward(
            resubmit_reward, resubmit_scope, [float(c["reward"]) for c in e.group]
        )
        rewards = [
            reflection_reward(
                c["text"],
                float(c["reward"]),
                reward_blank,
                repeated,
                task_text,
                bool(c.get("resubmits")),
                paid,
                failed_answer=e.failed_answer,
                hollow_reward=hollow_reward,
                true_claims=true_claims,
            )
            for c in e.group
        ]
        if len(set(rewards)) == 1:
            skipped["all rewards equal"] += 1
            continue
        usable.append(
            OfflineGroup(
                prompt=e.prompt,
                reflections=[c["text"] for c in e.group],
                rewards=rewards,
                logprobs=[c.get("logprobs") for c in e.group],
                chat_template_kwargs=e.chat_template_kwargs,
                retries=[c.get("retry") for c in e.group],
                retry_instruction=e.retry_instruction,
                followed=[
                    float(c["reward"]) >= 1.0 and text_passes(task, c["text"]) for c in e.group
                ]
                if task is not None and judge_following
                else [],
            )
        )
    return usable, skipped


def _repeated(examples: list[FailureExample], max_repeats: int) -> frozenset[str]:
    """The texts written for more than ``max_repeats`` of the examples' problems."""
    rows = ((e.task_id, c["text"]) for e in examples for c in e.group)
    return repeated_reflections(rows, max_repeats)


def _prune_checkpoints(output_dir: Path, keep: int | None) -> None:
    """Keep the newest ``keep`` checkpoint folders (``save_total_limit``, as TRL's Trainer does)."""
    if keep is None:
        return
    ckpts = sorted(
        (p for p in output_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
    )
    for old in ckpts[: max(0, len(ckpts) - keep)]:
        shutil.rmtree(old, ignore_errors=True)


def _encode(
    batch: list[OfflineGroup], tokenizer: Any, config: RRRTrainConfig, end_token: int
) -> tuple[list[list[int]], list[list[list[int]]], list[float], list[list[float] | None]]:
    """Each group's prompt ids, its completions' ids (reflection + end token), the advantages
    and the logged log-probs (one per completion, in order)."""
    prompts, completions, advantages, old = [], [], [], []
    for g in batch:
        prompt = tokenizer.apply_chat_template(
            g.prompt, tokenize=False, add_generation_prompt=True, **g.chat_template_kwargs
        )
        prompts.append(tokenizer(prompt, add_special_tokens=False).input_ids)
        comps = []
        for text, adv, lp in zip(g.reflections, group_advantages(g.rewards), g.logprobs,
                                 strict=True):  # fmt: skip
            comp = tokenizer(" " + text.strip(), add_special_tokens=False).input_ids
            comp = [*comp[: config.max_reflection_tokens], end_token]
            comps.append(comp)
            advantages.append(adv)
            n = len(comp) - 1  # reflection tokens (the end token has no logged log-prob)
            old.append(lp[:n] if lp is not None and len(lp) >= n else None)
        completions.append(comps)
    return prompts, completions, advantages, old


def anchor_ids(taskset: str, tokenizer: Any) -> list[list[int]]:
    """The token ids of each anchor text of ``taskset`` (at most :data:`ANCHOR_TOKENS`): the
    task's messages in the model's chat template, and its ``reference_solution`` (task metadata)
    as the assistant's turn where the set has one."""
    from rrr_agent.tasksets import get_taskset

    out = []
    for task in get_taskset(taskset).load():
        messages = task.openai_messages()
        solution = task.metadata.get("reference_solution")
        if isinstance(solution, str) and solution.strip():
            messages.append({"role": "assistant", "content": solution})
        kwargs = task.chat_template_kwargs or {}
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=False, **kwargs
        )
        ids = tokenizer(text, add_special_tokens=False).input_ids[:ANCHOR_TOKENS]
        if len(ids) >= 2:  # one token predicts nothing
            out.append(ids)
    if not out:
        raise DataError(f"anchor task set {taskset!r} has no text to anchor on")
    return out


@contextlib.contextmanager
def _reference(model: Any, reference: Any) -> Iterator[Any]:
    """The reference model to call: ``reference``, or with LoRA (``reference`` None) the policy
    with its adapter disabled, which is the base model."""
    if reference is not None:
        yield reference
        return
    with model.disable_adapter():
        yield model


RetryScope = Literal["all", "rewarded", "followed"]


def retry_anchor_choices(group: OfflineGroup, scope: RetryScope = "all") -> list[int]:
    """The reflections whose logged retry a retry term may read: every one with a finished
    retry (``scope`` 'all'), only those whose retry passed and earned the reflection its
    reward ('rewarded'), or only those that pass as the answer themselves and whose retry passed
    ('followed', the follow term's; ``OfflineGroup.followed``)."""
    if scope == "followed":
        pairs = zip(group.retries, group.followed, strict=False)  # not judged: none followed
        return [i for i, (r, f) in enumerate(pairs) if r is not None and f]
    return [
        i
        for i, r in enumerate(group.retries)
        if r is not None and (scope == "all" or group.rewards[i] > 0)
    ]


def retry_anchor_ids(
    group: OfflineGroup,
    i: int,
    tokenizer: Any,
    config: RRRTrainConfig,
    end_token: int,
    *,
    bare: bool = False,
) -> tuple[list[int], int] | None:
    """The ids of the conversation that led to reflection ``i``'s logged retry: the reflection
    prompt, the reflection, the retry instruction, then the retry and the end token (encoded as
    :func:`_encode` encodes a reflection), and how many ids at the end are the retry's. With
    ``bare`` the retry is its answer alone (:func:`~rrr_trainer.data.bare_answer`: the follow
    term's 'bare' form). None when no retry was logged after that reflection."""
    retry = group.retries[i] if i < len(group.retries) else None
    if retry is None:
        return None
    if bare:
        retry = bare_answer(retry)
    messages = retry_messages(
        group.prompt, Reflection(text=group.reflections[i]), group.retry_instruction
    )
    text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, **group.chat_template_kwargs
    )
    head = tokenizer(text, add_special_tokens=False).input_ids
    tail = tokenizer(" " + retry.strip(), add_special_tokens=False).input_ids
    tail = [*tail[: config.max_reflection_tokens], end_token]
    return [*head, *tail], len(tail)


def _anchor_kl(model: Any, reference: Any, ids: list[int]) -> Any:
    """KL(reference || policy) of the next-token distributions along one anchor text, averaged
    over its positions (the full vocabulary, not a sampled estimate: the text was not sampled
    from the policy)."""
    torch = require_extra("torch", "training")
    batch = torch.tensor([ids])
    logp = torch.log_softmax(model(input_ids=batch).logits[0, :-1].float(), dim=-1)
    with torch.no_grad(), _reference(model, reference) as base:
        ref_logp = torch.log_softmax(base(input_ids=batch).logits[0, :-1].float(), dim=-1)
    return _full_kl(ref_logp, logp)


def _full_kl(ref_logp: Any, logp: Any) -> Any:
    """KL(reference || policy) over the whole vocabulary at each position, averaged over them."""
    return (ref_logp.exp() * (ref_logp - logp)).sum(-1).mean()


@dataclass(frozen=True, slots=True)
class RetryTerm:
    """One retry term's text (:func:`retry_anchor_ids`): the conversation's ``ids``, how many
    ids at the end are the retry's (``last``), and its measure: the full-vocabulary
    KL(reference || policy) over them (``kl``, the retry anchors) or their mean negative
    log-likelihood (the follow term)."""

    ids: list[int]
    last: int
    kl: bool


def _tail_hidden(model: Any, prefix: list[int], tails: list[list[int]]) -> Any:
    """The decoder's final hidden states of ``tails`` (``rows × width``, right-padded), each
    read after ``prefix``: the prefix is run once and its key/value cache repeated for the
    rows, as :func:`_group_logps` does, with gradients through the shared cache."""
    torch = require_extra("torch", "training")
    body = model.get_decoder()
    width = max(len(t) for t in tails)
    ids = torch.zeros((len(tails), width), dtype=torch.long)  # padding: any id, masked out
    mask = torch.zeros((len(tails), width), dtype=torch.long)
    for i, t in enumerate(tails):
        ids[i, : len(t)] = torch.tensor(t)
        mask[i, : len(t)] = 1
    if not prefix:
        return body(input_ids=ids, attention_mask=mask).last_hidden_state
    cache = body(input_ids=torch.tensor([prefix]), use_cache=True).past_key_values
    cache.batch_repeat_interleave(len(tails))
    attention = torch.cat([torch.ones((len(tails), len(prefix)), dtype=torch.long), mask], 1)
    return body(input_ids=ids, attention_mask=attention, past_key_values=cache).last_hidden_state


def _head_logps(model: Any, hidden: Any) -> Any:
    """Log-probabilities over the vocabulary from final hidden states, as the model's own
    forward turns them into logits (its output embedding, then Gemma's final soft-capping
    where the config sets one)."""
    torch = require_extra("torch", "training")
    logits = model.get_output_embeddings()(hidden)
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return torch.log_softmax(logits.float(), dim=-1)


def _retry_terms(model: Any, reference: Any, terms: list[RetryTerm]) -> list[Any]:
    """One group's retry terms (:class:`RetryTerm`), in one pass of the policy and one of the
    reference (the KL terms only). The terms' conversations share the group's reflection
    prompt, which is run once (the longest prefix they share, up to the first position that
    predicts a retry token); logits are taken only at the positions that predict each term's
    retry tokens, not over the whole vocabulary at every position of the padded batch. Each
    value equals that of the term's own full forward pass (a test checks values and gradients;
    ``benchmarks/retry_terms.py`` measures the time against one pass per term)."""
    torch = require_extra("torch", "training")
    cap = min(len(t.ids) - t.last - 1 for t in terms)
    first = terms[0].ids
    shared = 0
    while shared < cap and all(t.ids[shared] == first[shared] for t in terms):
        shared += 1
    prefix = first[:shared]

    def logps(m: Any, rows: list[RetryTerm]) -> list[Any]:
        """Each row's log-probabilities at the positions that predict its retry tokens."""
        hidden = _tail_hidden(m, prefix, [t.ids[shared:] for t in rows])
        ends = [len(t.ids) - shared - 1 for t in rows]
        picked = torch.cat(
            [hidden[i, e - t.last : e] for i, (t, e) in enumerate(zip(rows, ends, strict=True))]
        )
        return list(torch.split(_head_logps(m, picked), [t.last for t in rows]))

    policy = logps(model, terms)
    held = [t for t in terms if t.kl]
    ref: list[Any] = []
    if held:
        with torch.no_grad(), _reference(model, reference) as base:
            ref = logps(base, held)
    values, refs = [], iter(ref)
    for t, logp in zip(terms, policy, strict=True):
        if t.kl:
            values.append(_full_kl(next(refs), logp))
        else:
            target = torch.tensor(t.ids[-t.last :]).unsqueeze(-1)
            values.append(-logp.gather(-1, target).mean())
    return values


def _group_logps(
    model: Any, prompts: list[list[int]], completions: list[list[list[int]]], pad: int
) -> tuple[Any, Any]:
    """Per-token log-probs of each completion, right-padded to the widest (``rows × C``), and
    the matching mask. A group's k completions share one prompt, so the prompt is run once and
    its key/value cache is repeated for the k completions: with a prompt of hundreds of tokens
    and completions of tens, that is most of a step's work done once instead of k times.
    Gradients flow through the shared cache, so the result and its gradient equal k separate
    passes (a test checks both, on a model with sliding-window layers)."""
    torch = require_extra("torch", "training")
    width = max(len(c) for comps in completions for c in comps)
    out, masks = [], []
    for prompt, comps in zip(prompts, completions, strict=True):
        k = len(comps)
        ids = torch.full((k, width), pad, dtype=torch.long)
        mask = torch.zeros((k, width), dtype=torch.float32)
        for i, c in enumerate(comps):  # right padding: padded positions come after every token
            ids[i, : len(c)] = torch.tensor(c)
            mask[i, : len(c)] = 1.0
        head = model(input_ids=torch.tensor([prompt]), use_cache=True, logits_to_keep=1)
        cache = head.past_key_values
        cache.batch_repeat_interleave(k)
        attention = torch.cat([torch.ones((k, len(prompt)), dtype=torch.long), mask.long()], 1)
        tail = model(input_ids=ids, attention_mask=attention, past_key_values=cache).logits
        # the prompt's last position predicts each completion's first token
        logits = torch.cat([head.logits[:, -1:].expand(k, 1, -1), tail[:, :-1]], dim=1)
        logps = torch.log_softmax(logits.float(), dim=-1).gather(-1, ids.unsqueeze(-1))
        out.append(logps.squeeze(-1) * mask)
        masks.append(mask)
    return torch.cat(out), torch.cat(masks)


def train_offline(
    config: RRRTrainConfig,
    examples: list[FailureExample],
    output_dir: Path,
    *,
    resume: bool = True,
    progress: ProgressHook | None = None,
) -> TrainedPolicy:
    """Offline mode: GRPO on the logged groups; resumes from the last checkpoint when asked."""
    torch = require_extra("torch", "training")
    transformers = require_extra("transformers", "training")

    repeated = _repeated(examples, config.max_reflection_repeats)
    groups, skipped = _groups(
        examples, config.reward_blank_reflections, repeated, config.reward_true_claims,
        config.resubmit_reward, config.resubmit_scope, config.retry_follow_beta is not None,
        config.hollow_reward,
    )  # fmt: skip
    zeroed = sum(reflection_key(c["text"]) in repeated for e in examples for c in e.group)
    summary = {
        "usable_groups": len(groups),
        "skipped": skipped,
        "repeated_texts": sorted(repeated),
        "repeated_reflections": zeroed,
        "resubmitted_retries": sum(bool(c.get("resubmits")) for e in examples for c in e.group),
        "hollow_reflections": sum(
            hollow(c["text"], e.failed_answer, (), problem)
            for e in examples
            for problem in [Task.model_validate_json(e.task_json).user_text()]
            for c in e.group
        ),
    }
    (output_dir / "offline_groups.json").write_text(json.dumps(summary, indent=2))
    if not groups:
        raise DataError(
            f"offline mode needs logged k-reflection groups with differing rewards; "
            f"found none ({skipped}). Log them with `rrr run -k 4 ...`."
        )
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    model_path = resolve_model_path(config.model)
    model, tokenizer, original_eos = load_policy(model_path, config)
    end_token = reflection_end_token(tokenizer, original_eos, config.reflection_stop)
    model = with_adapter(model, config)
    lora = hasattr(model, "peft_config")
    if lora:
        reference = None  # the adapter disabled is the reference
    else:
        reference = transformers.AutoModelForCausalLM.from_pretrained(
            str(model_path), dtype=next(model.parameters()).dtype
        ).eval()
    anchors = anchor_ids(config.anchor, tokenizer) if config.anchor else []
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.resolved_learning_rate())
    accumulate = config.gradient_accumulation_steps
    groups_per_micro = max(1, config.per_device_train_batch_size // config.num_generations)
    steps = config.max_steps if config.max_steps > 0 else math.ceil(
        len(groups) * config.num_train_epochs / (groups_per_micro * accumulate)
    )  # fmt: skip
    scheduler = transformers.get_scheduler(
        config.lr_scheduler_type, optimizer,
        num_warmup_steps=int(config.warmup_ratio * steps), num_training_steps=steps,
    )  # fmt: skip
    step = 0
    last = transformers.trainer_utils.get_last_checkpoint(str(output_dir)) if resume else None
    if last is not None:
        state = torch.load(Path(last) / "offline_state.pt", weights_only=False)
        if lora:
            peft = require_extra("peft", "LoRA training")
            peft.set_peft_model_state_dict(model, state["model"])
        else:
            model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = int(state["step"])
        rng.setstate(state["rng"])
    metrics = JsonlAppender(output_dir / "metrics.jsonl")
    log_history: list[dict[str, Any]] = []
    model.train()
    pad = tokenizer.pad_token_id

    while step < steps:
        optimizer.zero_grad()
        seen: list[OfflineGroup] = []
        losses, kls, corrected, anchor_kls = [], [], [], []
        retry_kls: list[float] = []
        rewarded_retry_kls: list[float] = []
        follow_nlls: list[float] = []
        for _ in range(accumulate):  # gradient accumulation: one update per `accumulate` batches
            batch = [rng.choice(groups) for _ in range(groups_per_micro)]
            seen += batch
            prompts, comps, advantages, old = _encode(batch, tokenizer, config, end_token)
            logps, mask = _group_logps(model, prompts, comps, tokenizer.pad_token_id)
            adv = torch.tensor(advantages).unsqueeze(1)
            old_logps = logps.detach().clone()
            for i, lp in enumerate(old):
                if lp is not None:
                    positions = mask[i].nonzero().squeeze(-1)[: len(lp)]
                    old_logps[i, positions] = torch.tensor(lp, dtype=old_logps.dtype)
            ratio = torch.exp(logps - old_logps)
            surrogate = torch.min(ratio * adv, torch.clamp(ratio, 1 - EPSILON, 1 + EPSILON) * adv)
            with torch.no_grad(), _reference(model, reference) as base:
                ref_logps, _ = _group_logps(base, prompts, comps, pad)
            delta = ref_logps - logps
            kl = torch.exp(delta) - delta - 1
            per_token = -(surrogate - config.beta * kl)
            # Token-level mean over the batch: the "dapo" loss, TRL's default loss_type.
            loss = (per_token * mask).sum() / mask.sum()
            (loss / accumulate).backward()
            losses.append(float(loss.detach()))
            kls.append(float(((kl * mask).sum() / mask.sum()).detach()))
            corrected += [o is not None for o in old]
            for _ in range(config.anchor_batch if anchors else 0):
                # one text at a time: its logits span the whole vocabulary at every position
                anchor_kl = _anchor_kl(model, reference, rng.choice(anchors))
                (config.anchor_beta * anchor_kl / (accumulate * config.anchor_batch)).backward()
                anchor_kls.append(float(anchor_kl.detach()))
            for g in batch:
                # one retry of each group, after a reflection drawn at random: the reward never
                # reaches retry tokens, but the adapter moves them; this holds them where the
                # reference model had them, so the retry keeps following its reflection. The
                # rewarded term draws again among the retries that passed after a rewarded one.
                # The follow term draws among retries that passed after a right reflection and
                # pays their negative log-likelihood: the retry held to following, not to the
                # reference model.
                terms: tuple[tuple[RetryScope, float | None, list[float], bool], ...] = (
                    ("all", config.retry_anchor_beta, retry_kls, True),
                    ("rewarded", config.retry_anchor_rewarded_beta, rewarded_retry_kls, True),
                    ("followed", config.retry_follow_beta, follow_nlls, False),
                )
                drawn: list[tuple[RetryTerm, float, list[float]]] = []
                for scope, weight, sink, kl in terms:
                    if weight is None or not (held := retry_anchor_choices(g, scope)):
                        continue
                    bare = scope == "followed" and config.retry_follow_form == "bare"
                    found = retry_anchor_ids(
                        g, rng.choice(held), tokenizer, config, end_token, bare=bare
                    )
                    assert found is not None
                    drawn.append((RetryTerm(*found, kl=kl), weight, sink))
                if not drawn:
                    continue
                # the group's terms in one pass: they share its reflection prompt
                values = _retry_terms(model, reference, [term for term, _, _ in drawn])
                paid = sum(w * v for (_, w, _), v in zip(drawn, values, strict=True))
                (paid / (accumulate * len(batch))).backward()
                for (_, _, sink), value in zip(drawn, values, strict=True):
                    sink.append(float(value.detach()))
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm))
        optimizer.step()
        scheduler.step()
        step += 1
        row = {
            "step": step,
            "time": time.time(),
            "loss": sum(losses) / len(losses),
            "grad_norm": grad_norm,
            "kl": sum(kls) / len(kls),
            "reward": sum(sum(g.rewards) / len(g.rewards) for g in seen) / len(seen),
            "rrr/retry_success": sum(sum(g.rewards) for g in seen)
            / sum(len(g.rewards) for g in seen),
            "rrr/reflection_chars": sum(len(r) for g in seen for r in g.reflections)
            / sum(len(g.reflections) for g in seen),
            "frac_reward_zero_std": 0.0,  # such groups were filtered out before training
            "learning_rate": scheduler.get_last_lr()[0],
            "importance_corrected": sum(corrected) / len(corrected),
        }
        if anchor_kls:
            row["anchor_kl"] = sum(anchor_kls) / len(anchor_kls)
        if retry_kls:
            row["retry_kl"] = sum(retry_kls) / len(retry_kls)
        if rewarded_retry_kls:
            row["rewarded_retry_kl"] = sum(rewarded_retry_kls) / len(rewarded_retry_kls)
        if follow_nlls:
            row["retry_follow_nll"] = sum(follow_nlls) / len(follow_nlls)
        metrics.append(row)
        log_history.append(row)
        if progress is not None:
            progress(step, steps, row)
        if step % config.save_steps == 0 or step == steps:
            ckpt = output_dir / f"checkpoint-{step}"
            ckpt.mkdir(parents=True, exist_ok=True)
            if lora:
                peft = require_extra("peft", "LoRA training")
                model_state = peft.get_peft_model_state_dict(model)
            else:
                model_state = model.state_dict()
            torch.save(
                {"model": model_state, "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "step": step, "rng": rng.getstate()},
                ckpt / "offline_state.pt",
            )  # fmt: skip
            trainer_state = {"global_step": step, "log_history": log_history}
            (ckpt / "trainer_state.json").write_text(json.dumps(trainer_state))
            _prune_checkpoints(output_dir, config.save_total_limit)
    state = SimpleNamespace(global_step=step, log_history=log_history)
    return TrainedPolicy(model, tokenizer, original_eos, state)
