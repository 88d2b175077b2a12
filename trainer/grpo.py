"""Online RRR training with TRL's GRPOTrainer: reward on the reflection tokens only.

Each training prompt is a logged failure: the task, the failed first attempt and the task family's
reflection instruction (:mod:`rrr_trainer.data`). GRPO samples a group of reflections from the
current policy; those are TRL's completions, so they, and only they, receive the policy-gradient
loss. For every reflection the reward function continues the same conversation with the retry
instruction and generates the retry with the current policy (no gradient, batched, left-padded),
then rebuilds the task's verifier from its logged spec: reward 1 when the retry passes, else 0. The
retry never enters TRL's sequences, so it is never trained.

For base models that use rrr's transcript template, a reflection ends at the first newline
(``reflection_stop="auto"``): the end-of-line token ids are added to the eos ids TRL uses to cut
completions. Without that, a base model would ramble on into the next "User:" turn and be trained
on it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rrr_agent import (
    ConfigError,
    JsonlAppender,
    Reflection,
    Task,
    require_extra,
    retry_messages,
)

from .config import RRRTrainConfig
from .data import (
    FailureExample,
    RepeatCounter,
    reflection_key,
    reflection_reward,
    resubmits,
    scoped_resubmit_reward,
    text_passes,
)
from .policy import (
    ProgressHook,
    TrainedPolicy,
    load_policy,
    reflection_eos_ids,
    resolve_model_path,
    with_adapter,
    world_size,
)

__all__ = ["RetryReward", "build_trainer", "shared_template_kwargs", "train_online"]


def shared_template_kwargs(examples: list[FailureExample]) -> dict[str, Any]:
    """The one chat_template_kwargs every example uses (TRL renders all prompts one way)."""
    found = {json.dumps(e.chat_template_kwargs, sort_keys=True) for e in examples}
    if len(found) > 1:
        raise ConfigError(
            "the failure set mixes tasks rendered differently (chat_template_kwargs: "
            + ", ".join(sorted(found))
            + "); train one rendering style per run (filter the logs by family)"
        )
    return json.loads(found.pop()) if found else {}


@dataclass
class RetryReward:
    """TRL reward function: generate the retry after each sampled reflection and verify it."""

    tokenizer: Any
    stop_ids: list[int]
    max_retry_tokens: int = 64
    retry_temperature: float = 0.0
    #: Force at least this many retry tokens (benchmarks compare fixed token counts).
    retry_min_tokens: int = 0
    #: False: a blank reflection earns 0 whatever its retry did (``reward_blank_reflections``).
    reward_blank: bool = False
    #: A reflection written for more than this many different problems so far earns 0
    #: (``max_reflection_repeats``; 0: off). Counted across calls: online, the log is the
    #: training run itself.
    max_repeats: int = 0
    #: A reflection must state a true equation over the problem's numbers and no false one
    #: (``reward_true_claims``).
    true_claims: bool = False
    #: What a reflection earns whose retry failed by resubmitting the failed answer
    #: (``resubmit_reward``; None: the 0 of any failed retry).
    resubmit_reward: float | None = None
    #: Where it applies (``resubmit_scope``): 'all' groups, or 'with_pass', only the groups
    #: (a problem's completions in this call) in which some retry passed.
    resubmit_scope: str = "all"
    #: What a blank reflection or one that restates the failed answer earns (``hollow_reward``;
    #: None: off), in every group and whatever its retry did.
    hollow_reward: float | None = None
    trainer: Any = None
    #: The most recent batch: reflection, retry and reward per completion (tests, debugging).
    last: list[dict[str, Any]] = field(default_factory=list)
    __name__: str = "retry_success"
    #: Which problems each reflection text was scored for so far, for ``max_repeats``.
    _counter: RepeatCounter = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._counter = RepeatCounter(self.max_repeats)

    def _trim(self, row: list[int]) -> str:
        for j, tok in enumerate(row):
            if tok in self.stop_ids or tok == self.tokenizer.pad_token_id:
                row = row[:j]
                break
        return str(self.tokenizer.decode(row, skip_special_tokens=True)).strip()

    def _generate_with_vllm(self, texts: list[str]) -> list[str]:
        """GPU path: the retry comes from TRL's vLLM engine, already synced to the current policy
        for this step. Untested on this project's CPU machines (no GPU was lent yet)."""
        generation = self.trainer.vllm_generation
        ids = [self.tokenizer(t, add_special_tokens=False).input_ids for t in texts]
        saved = (generation.temperature, generation.max_completion_length)
        generation.temperature = self.retry_temperature
        generation.max_completion_length = self.max_retry_tokens
        try:
            _, completion_ids, _, _ = generation.generate(ids, None, 1)
        finally:
            generation.temperature, generation.max_completion_length = saved
        return [self._trim(list(row)) for row in completion_ids]

    def generate_retries(
        self,
        conversations: list[list[dict[str, Any]]],
        template_kwargs: list[dict[str, Any]] | None = None,
    ) -> list[str]:
        torch = require_extra("torch", "training")
        kwargs_per_row = template_kwargs or [{} for _ in conversations]
        texts = [
            self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True, **kw)
            for c, kw in zip(conversations, kwargs_per_row, strict=True)
        ]
        if getattr(self.trainer, "use_vllm", False):
            return self._generate_with_vllm(texts)
        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(model.device) for k, v in enc.items()}
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_retry_tokens,
            "eos_token_id": self.stop_ids,
            "pad_token_id": self.tokenizer.pad_token_id,
            "use_cache": True,
        }
        if self.retry_min_tokens:
            kwargs["min_new_tokens"] = self.retry_min_tokens
        if self.retry_temperature > 0:
            kwargs.update(do_sample=True, temperature=self.retry_temperature, top_p=1.0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = model.generate(**enc, **kwargs)
        finally:
            if was_training:
                model.train()
        gen = out[:, enc["input_ids"].shape[1] :]
        return [self._trim(row) for row in gen.tolist()]

    def __call__(
        self,
        prompts: list[list[dict[str, Any]]],
        completions: list[Any],
        task: list[str],
        retry_instruction: list[str],
        template_kwargs: list[str] | None = None,
        log_metric: Any = None,
        failed_answer: list[str] | None = None,
        **_: Any,
    ) -> list[float]:
        reflections = [
            (c[-1]["content"] if isinstance(c, list) else str(c)).strip() for c in completions
        ]
        # The retry turn, built by the engine's own conversation function.
        conversations = [
            retry_messages(p, Reflection(text=r), ri)
            for p, r, ri in zip(prompts, reflections, retry_instruction, strict=True)
        ]
        kwargs = [json.loads(k) for k in template_kwargs] if template_kwargs else None
        retries = self.generate_retries(conversations, kwargs)
        tasks = [Task.model_validate_json(t) for t in task]
        # Off (max_repeats 0), the counter returns no text at once.
        repeated = self._counter.add((t.id, f) for t, f in zip(tasks, reflections, strict=True))
        # The failed answer each retry follows (a dataset column since resubmit_reward).
        failed = failed_answer if failed_answer is not None else [None] * len(retries)
        again = [resubmits(r, a) for r, a in zip(retries, failed, strict=True)]
        passed = [1.0 if text_passes(t, r) else 0.0 for t, r in zip(tasks, retries, strict=True)]
        group: dict[str, list[float]] = {}  # a problem's completions in this call are its group
        for t, p in zip(tasks, passed, strict=True):
            group.setdefault(t.id, []).append(p)
        rewards = [
            reflection_reward(f, p, self.reward_blank, repeated, t.user_text(), a,
                              scoped_resubmit_reward(self.resubmit_reward, self.resubmit_scope,
                                                     group[t.id]),
                              failed_answer=fa, hollow_reward=self.hollow_reward,
                              true_claims=self.true_claims)
            for t, f, p, a, fa in zip(tasks, reflections, passed, again, failed, strict=True)
        ]  # fmt: skip
        # Does the reflection already hold a full answer (the retry then only copies it)?
        holds_answer = [text_passes(t, r) for t, r in zip(tasks, reflections, strict=True)]
        self.last = [
            {"reflection": f, "retry": r, "reward": w, "resubmits": a}
            for f, r, w, a in zip(reflections, retries, rewards, again, strict=True)
        ]
        if log_metric is not None:
            n = max(len(rewards), 1)
            log_metric("rrr/retry_success", sum(rewards) / n)
            log_metric("rrr/reflection_chars", sum(len(r) for r in reflections) / n)
            log_metric("rrr/reflection_holds_answer", sum(holds_answer) / n)
            if self.max_repeats:
                hits = sum(reflection_key(f) in repeated for f in reflections)
                log_metric("rrr/reflection_repeated", hits / n)
            log_metric("rrr/retry_chars", sum(len(r) for r in retries) / n)
            log_metric("rrr/retry_resubmits", sum(again) / n)
        return rewards


def _metrics_callback(path: Path, progress: ProgressHook | None = None) -> Any:
    transformers = require_extra("transformers", "training")
    writer = JsonlAppender(path)

    class MetricsToJsonl(transformers.TrainerCallback):  # type: ignore[misc,name-defined]
        """Every log line of the trainer, appended to metrics.jsonl (survives crashes)."""

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and state.is_world_process_zero:  # one writer when several processes train
                row = {"step": state.global_step, "time": time.time()}
                row.update({k: v for k, v in logs.items() if isinstance(v, int | float | str)})
                writer.append(row)
                if progress is not None:
                    progress(state.global_step, state.max_steps, row)

    return MetricsToJsonl()


def _grpo_config(
    config: RRRTrainConfig,
    output_dir: Path,
    *,
    use_cpu: bool,
    stop_ids: list[int],
    template_kwargs: dict[str, Any] | None = None,
) -> Any:
    trl = require_extra("trl", "GRPO training")
    # vLLM reads its stop tokens from the checkpoint on disk, not from our in-memory eos change.
    generation_kwargs = {"stop_token_ids": stop_ids} if config.use_vllm else None
    return trl.GRPOConfig(
        generation_kwargs=generation_kwargs,
        chat_template_kwargs=template_kwargs or None,
        output_dir=str(output_dir),
        learning_rate=config.resolved_learning_rate(),
        beta=config.beta,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio
        max_grad_norm=config.max_grad_norm,
        num_generations=config.num_generations,
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        max_steps=config.max_steps,
        num_train_epochs=config.num_train_epochs,
        max_completion_length=config.max_reflection_tokens,
        temperature=config.reflection_temperature,
        loss_type=config.loss_type,
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        seed=config.seed,
        bf16=config.bf16,
        use_cpu=use_cpu,
        gradient_checkpointing=config.gradient_checkpointing,
        use_vllm=config.use_vllm,
        vllm_mode=config.vllm_mode,
        report_to="none",
        remove_unused_columns=False,
        disable_tqdm=True,
    )


def build_trainer(
    config: RRRTrainConfig,
    examples: list[FailureExample],
    output_dir: Path,
    progress: ProgressHook | None = None,
) -> tuple[Any, RetryReward, Any, list[int]]:
    """(GRPOTrainer, reward function, tokenizer, original eos ids), ready to ``train()``."""
    torch = require_extra("torch", "training")
    trl = require_extra("trl", "GRPO training")
    datasets = require_extra("datasets", "training")
    model_path = resolve_model_path(config.model)
    model, tokenizer, original_eos = load_policy(model_path, config)
    stop_ids = reflection_eos_ids(tokenizer, original_eos, config.reflection_stop)
    model.generation_config.eos_token_id = stop_ids  # TRL cuts completions at these ids
    model = with_adapter(model, config)  # TRL trains a PeftModel as it is
    template_kwargs = shared_template_kwargs(examples)
    dataset = datasets.Dataset.from_list([e.row() for e in examples])
    reward = RetryReward(
        tokenizer=tokenizer,
        stop_ids=stop_ids,
        max_retry_tokens=config.max_retry_tokens,
        retry_temperature=config.retry_temperature,
        reward_blank=config.reward_blank_reflections,
        max_repeats=config.max_reflection_repeats,
        true_claims=config.reward_true_claims,
        resubmit_reward=config.resubmit_reward,
        resubmit_scope=config.resubmit_scope,
        hollow_reward=config.hollow_reward,
    )
    trainer = trl.GRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=_grpo_config(
            config,
            output_dir,
            use_cpu=not torch.cuda.is_available(),
            stop_ids=stop_ids,
            template_kwargs=template_kwargs,
        ),
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[_metrics_callback(output_dir / "metrics.jsonl", progress)],
    )
    # With tqdm off, transformers adds a PrinterCallback that prints every log dict to stdout;
    # metrics go to metrics.jsonl and the progress hook instead, and stdout stays clean for --json.
    transformers = require_extra("transformers", "training")
    trainer.remove_callback(transformers.PrinterCallback)
    reward.trainer = trainer
    joined = int(trainer.accelerator.num_processes)
    if joined != world_size():  # launched processes that did not join would train apart
        raise ConfigError(
            f"{world_size()} processes were launched (WORLD_SIZE) but {joined} joined the "
            "training: launch several processes with `accelerate launch --multi_gpu "
            "--num_processes N` or `torchrun --nproc_per_node N` (on CPU too)"
        )
    return trainer, reward, tokenizer, original_eos


def train_online(
    config: RRRTrainConfig,
    examples: list[FailureExample],
    output_dir: Path,
    *,
    resume: bool = True,
    progress: ProgressHook | None = None,
) -> TrainedPolicy:
    """Online mode (the paper): GRPO with the retry generated inside the reward."""
    transformers = require_extra("transformers", "training")
    trainer, _reward, tokenizer, original_eos = build_trainer(
        config, examples, output_dir, progress
    )
    last = transformers.trainer_utils.get_last_checkpoint(str(output_dir)) if resume else None
    trainer.train(resume_from_checkpoint=last)
    return TrainedPolicy(trainer.model, tokenizer, original_eos, trainer.state)
