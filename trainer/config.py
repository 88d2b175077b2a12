"""Training configuration: one dataclass, help text on every field, paper defaults.

Mirrors the parts of TRL's ``GRPOConfig`` that matter here, with the defaults of Reflect, Retry,
Reward (KL β = 0.001, learning rate 5e-7 for a full fine-tune, cosine schedule, warm-up 3 %). Load
it from a TOML file (``[train]`` table or top-level keys) and override with flags.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rrr_agent import ConfigError, key_line, read_toml

__all__ = ["RRRTrainConfig", "merge_sources"]


def merge_sources(
    cls: Any,
    toml_path: str | Path | None,
    pick: Callable[[dict[str, Any]], dict[str, Any]],
    overrides: dict[str, Any],
    what: str,
) -> dict[str, Any]:
    """A settings dataclass's values: what ``pick`` takes from the TOML file, then the overrides
    that are not None. An unreadable file or an unknown key is a ConfigError."""
    values: dict[str, Any] = {}
    from_file: set[str] = set()
    if toml_path is not None:
        values.update(pick(read_toml(toml_path)))
        from_file = set(values)
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        in_file = toml_path is not None and unknown[0] in from_file
        where = key_line(toml_path, unknown[0]) + ": " if in_file and toml_path else ""
        raise ConfigError(f"{where}unknown {what} setting(s): {', '.join(unknown)}")
    return values


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class RRRTrainConfig:
    # what to train
    model: str = _f("gemma-3-270m", "Base model: 'gemma-3-270m' (embedded) or a checkpoint folder.")
    output_dir: str = _f("rrr-train", "Where checkpoints, the final model and metrics go.")
    mode: Literal["online", "offline"] = _f(
        "online",
        "online: sample reflections from the current policy and generate retries (the paper); "
        "offline: learn from logged k-reflection groups without generating.",
    )
    # data
    holdout_fraction: float = _f(0.1, "Share of tasks held out (by task id) for evaluation.")
    max_examples: int | None = _f(None, "Use at most this many training failures.")
    # LoRA or full fine-tune
    use_lora: bool = _f(True, "Train a LoRA adapter (False: full fine-tune).")
    init_adapter: str | None = _f(
        None,
        "Go on training this LoRA adapter folder (e.g. the promoted checkpoint) instead of "
        "a fresh one; its base must be `model`.",
    )
    lora_r: int = _f(8, "LoRA rank.")
    lora_alpha: int = _f(16, "LoRA alpha.")
    lora_dropout: float = _f(0.0, "LoRA dropout.")
    lora_target_modules: list[str] = _f(
        ["q_proj", "k_proj", "v_proj", "o_proj"], "Modules LoRA adapts."
    )
    lora_layers: list[int] | None = _f(
        None,
        "Adapt only these decoder layers (0-based; PEFT's layers_to_transform), e.g. the "
        "upper ones; None: every layer. Like lora_r and lora_target_modules, it shapes a fresh "
        "adapter only: an init_adapter keeps its own.",
    )
    # optimisation (paper defaults)
    learning_rate: float | None = _f(
        None, "Learning rate. Default: 5e-7 for a full fine-tune (paper), 2e-5 for LoRA."
    )
    beta: float = _f(0.001, "KL coefficient against the reference model (paper: 0.001).")
    lr_scheduler_type: str = _f("cosine", "Learning-rate schedule.")
    warmup_ratio: float = _f(0.03, "Warm-up share of the steps.")
    max_grad_norm: float = _f(1.0, "Gradient clipping.")
    num_generations: int = _f(4, "Group size: reflections sampled per failure (GRPO group).")
    per_device_train_batch_size: int = _f(
        4, "Completions per device per step (a multiple of num_generations)."
    )
    gradient_accumulation_steps: int = _f(1, "Steps to accumulate before an update.")
    max_steps: int = _f(100, "Optimizer steps (-1: use num_train_epochs).")
    num_train_epochs: float = _f(1.0, "Epochs over the failures when max_steps is -1.")
    loss_type: str = _f("dapo", "TRL GRPO loss type.")
    # generation
    max_reflection_tokens: int = _f(64, "Longest reflection sampled (the trained completion).")
    max_retry_tokens: int = _f(64, "Longest retry generated inside the reward (never trained).")
    reward_blank_reflections: bool = _f(
        False,
        "False: a blank reflection earns 0 whatever its retry did (a reflection must carry "
        "something; trained without this rule, runs 3 and 5 learned to skip reflecting).",
    )
    max_reflection_repeats: int = _f(
        0,
        "A reflection written for more than this many different problems earns 0 whatever its "
        "retry did (case, spacing and punctuation ignored; counted over the training log, or "
        "over the problems seen so far online). Such a text says nothing about the problem: "
        "run 12's trained model wrote one phrase after every failure. 0: off.",
    )
    reward_true_claims: bool = _f(
        False,
        "True: a reflection earns 0 unless it states a true equation 'a op b = c' over the "
        "problem's own numbers (both operands in the problem's last user message) and no false "
        "one, checked by arithmetic. For arithmetic tasks (Countdown, sums), where a phrase that "
        "only marks the attempt wrong earned as much as a computation (runs 11, 12, 17).",
    )
    resubmit_reward: float | None = _f(
        None,
        "What a reflection earns when its retry failed by resubmitting the failed answer (the "
        "same text, spacing and a trailing period ignored), instead of the 0 of any failed "
        "retry; below 0 (e.g. -1), groups in which every retry failed become learnable where "
        "some retries tried something new. Held-out, runs 25 and 26's trained models "
        "resubmitted their failed answer after 28 of 75 and 43 of 80 reflections; the vanilla "
        "model after none. None: off. Must be below 1, a passing retry's reward.",
    )
    resubmit_scope: Literal["all", "with_pass"] = _f(
        "all",
        "Where resubmit_reward applies: 'all' groups, or only groups in which some retry passed "
        "('with_pass'), where it ranks a resubmission below the other failures next to a "
        "success and never makes a group of failures learnable on its own. In run 28 ('all') "
        "most trained groups were such all-failed groups and the trained retry learned to "
        "answer something other than what came before, its own reflection included.",
    )
    hollow_reward: float | None = _f(
        None,
        "What a reflection that carries nothing earns, blank or the failed answer restated "
        "(spacing and a trailing period ignored), or with max_reflection_repeats a text written "
        "for more problems than that, whatever its retry did and in every group (e.g. -1; a "
        "group of failures becomes learnable where some reflections say something). Held-out, "
        "learning run 71's trained model restated the failed answer in 45 of 59 reflections; "
        "resubmit_reward, keyed on the retry, does not see a restatement whose retry tried "
        "something else. Run 72's, where only blanks and restatements cost, wrote one phrase for "
        "76 of 77. None: off. Must be below 1, a passing retry's reward.",
    )
    anchor: str | None = _f(
        None,
        "Offline mode: a task set of another skill whose texts (each task's messages, and its "
        "reference solution where the set has one, e.g. gsm8k-test) hold the policy to the "
        "reference model: a full-vocabulary KL(reference || policy) on every token, weighted by "
        "anchor_beta. The reward reaches only reflection tokens, but the LoRA changes every "
        "token; the anchor keeps the rest of the model where it was, as InstructGPT's PPO-ptx "
        "does with pretraining data. Never the set the forgetting is measured on.",
    )
    anchor_beta: float = _f(1.0, "Weight of the anchor's KL (with `anchor`).")
    anchor_batch: int = _f(1, "Anchor texts per micro-batch (each at most 256 tokens).")
    retry_anchor_beta: float | None = _f(
        None,
        "Offline mode: hold the retry to the reference model. Each group also reads one logged "
        "retry, after one of its reflections, and pays this times the full-vocabulary "
        "KL(reference || policy) over the retry's tokens, so the retry keeps doing with a "
        "reflection what the reference model did (the reward still reaches only reflections). "
        "None: off; 0: measured (metrics' retry_kl), not paid.",
    )
    retry_anchor_rewarded_beta: float | None = _f(
        None,
        "Offline mode: the retry anchor again, over one retry that passed after a reflection "
        "that earned its reward (a group with none pays nothing): it holds the retry where it "
        "followed a reflection to a pass. On its own it leaves the rest of the adapter free "
        "(learning run 35: the retry followed every correct reflection, but reflections and "
        "plain retries drifted to one operator); beside retry_anchor_beta it adds weight where "
        "following matters. None: off; 0: measured (metrics' rewarded_retry_kl), not paid.",
    )
    retry_follow_beta: float | None = _f(
        None,
        "Offline mode: teach the retry to follow a right reflection. Each group also reads one "
        "logged retry that passed after a reflection that itself passes as the answer, and pays "
        "this times the retry's mean negative log-likelihood (its tokens and the end token), "
        "in the conversation that led to it. Unlike the retry anchors it holds the retry to what "
        "it did, not to the reference model, which often resubmits its failed answer after a "
        "right reflection. The reward still reaches only reflections (learning runs 55, 56: "
        "GRPO then paid the safest second attempt, a phrase or the failed answer again). "
        "None: off; 0: measured (metrics' retry_follow_nll), not paid.",
    )
    retry_follow_form: Literal["logged", "bare"] = _f(
        "logged",
        "What the follow term (retry_follow_beta) reads as the retry: 'logged', the retry as it "
        "was written; 'bare', its answer alone: a value claimed after an arithmetic answer and a "
        'trailing period dropped ("91 - 34 = 57." is read as "91 - 34"; other answers as '
        "logged). The Countdown verifier fails an answer whose claimed value is not the target, "
        "and retries copy their reflection's claim: held-out, 8 of run 82's 60 trained retries "
        "hit the target with a false value after it.",
    )
    reflection_temperature: float = _f(1.0, "Sampling temperature of reflections.")
    retry_temperature: float = _f(0.0, "Temperature of the retry (0 = greedy: less reward noise).")
    reflection_stop: Literal["auto", "newline", "eos"] = _f(
        "auto",
        "Where a reflection ends. auto: at a newline for base models with rrr's transcript "
        "template, else at the model's end-of-turn token.",
    )
    # vLLM (GPU machines)
    use_vllm: bool = _f(False, "Generate reflections with vLLM (TRL use_vllm; GPU machines).")
    vllm_mode: Literal["colocate", "server"] = _f("colocate", "TRL vLLM mode.")
    # bookkeeping
    seed: int = _f(42, "Seed for sampling, shuffling and initialisation.")
    logging_steps: int = _f(1, "Log metrics every N steps.")
    save_steps: int = _f(50, "Save a checkpoint every N steps.")
    save_total_limit: int | None = _f(3, "Keep at most N checkpoints.")
    bf16: bool = _f(False, "Train in bfloat16 (GPUs; slow on most CPUs).")
    gradient_checkpointing: bool = _f(False, "Trade compute for memory.")
    merge: bool = _f(True, "With LoRA, also write merged full weights that vLLM loads directly.")
    threads: int | None = _f(None, "torch threads on CPU (default: all cores).")

    #: Settings only online mode reads (offline mode never generates and uses its own loss, which
    #: is the token-level "dapo" mean). An offline config that changes one is refused.
    ONLINE_ONLY = (
        "loss_type",
        "gradient_checkpointing",
        "use_vllm",
        "vllm_mode",
        "reflection_temperature",
        "max_retry_tokens",
        "retry_temperature",
    )

    def resolved_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 2e-5 if self.use_lora else 5e-7

    def validate(self) -> None:
        if self.mode not in ("online", "offline"):
            raise ConfigError(f"mode must be 'online' or 'offline', not {self.mode!r}")
        if self.mode == "offline":
            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            ignored = [n for n in self.ONLINE_ONLY if getattr(self, n) != defaults[n]]
            if ignored:
                raise ConfigError(
                    "offline mode does not use "
                    + ", ".join(f"{n} (set to {getattr(self, n)!r})" for n in ignored)
                    + ": it trains on logged reflections without generating, with the token-level "
                    "'dapo' loss; remove these settings or use mode = 'online'"
                )
        if self.anchor:
            from rrr_agent.tasksets import tasksets

            if self.mode != "offline":
                raise ConfigError(
                    f"anchor ({self.anchor!r}) is a term of offline mode's loss; use mode = "
                    "'offline' or remove it"
                )
            if self.anchor not in (known := tasksets()):
                raise ConfigError(
                    f"anchor: unknown task set {self.anchor!r} (known: {', '.join(known)})"
                )
        if self.resubmit_reward is not None and not self.resubmit_reward < 1.0:
            raise ConfigError(
                f"resubmit_reward ({self.resubmit_reward}) must be below 1, the reward of a "
                "passing retry: resubmitting a failed answer is never worth a pass"
            )
        if self.hollow_reward is not None and not self.hollow_reward < 1.0:
            raise ConfigError(
                f"hollow_reward ({self.hollow_reward}) must be below 1, the reward of a passing "
                "retry: a reflection that carries nothing is never worth a pass"
            )
        if self.resubmit_scope not in ("all", "with_pass"):
            raise ConfigError(
                f"resubmit_scope must be 'all' or 'with_pass', not {self.resubmit_scope!r}"
            )
        if self.retry_follow_form not in ("logged", "bare"):
            raise ConfigError(
                f"retry_follow_form must be 'logged' or 'bare', not {self.retry_follow_form!r}"
            )
        if self.retry_follow_form != "logged" and self.retry_follow_beta is None:
            raise ConfigError(
                f"retry_follow_form ({self.retry_follow_form!r}) is the follow term's text; it "
                "needs retry_follow_beta"
            )
        for name in ("retry_anchor_beta", "retry_anchor_rewarded_beta", "retry_follow_beta"):
            weight = getattr(self, name)
            if weight is None:
                continue
            if self.mode != "offline":
                raise ConfigError(
                    f"{name} is a term of offline mode's loss; use mode = 'offline' or remove it"
                )
            if weight < 0:
                raise ConfigError(f"{name} ({weight}) must be 0 or more")
        if self.anchor_beta < 0 or self.anchor_batch < 1:
            raise ConfigError("anchor_beta must be 0 or more and anchor_batch at least 1")
        if self.lora_layers is not None and (
            not self.lora_layers
            or len(set(self.lora_layers)) != len(self.lora_layers)
            or any(not isinstance(i, int) or isinstance(i, bool) or i < 0 for i in self.lora_layers)
        ):
            raise ConfigError(
                f"lora_layers ({self.lora_layers!r}) must be distinct layer numbers, 0 or more "
                "(or unset: every layer)"
            )
        if self.init_adapter and not self.use_lora:
            raise ConfigError("init_adapter needs use_lora (an adapter is trained, not the model)")
        if self.gradient_accumulation_steps < 1:
            raise ConfigError("gradient_accumulation_steps must be at least 1")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise ConfigError("save_total_limit must be at least 1 (or unset: keep all)")
        if self.num_generations < 2:
            raise ConfigError("num_generations must be at least 2 (GRPO compares within a group)")
        if self.per_device_train_batch_size % self.num_generations:
            raise ConfigError(
                f"per_device_train_batch_size ({self.per_device_train_batch_size}) must be a "
                f"multiple of num_generations ({self.num_generations})"
            )
        if self.max_reflection_repeats < 0:
            raise ConfigError("max_reflection_repeats must be 0 (off) or more")
        if not 0 <= self.holdout_fraction < 1:
            raise ConfigError("holdout_fraction must be in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_sources(cls, toml_path: str | Path | None = None, **overrides: Any) -> RRRTrainConfig:
        """Defaults ← TOML file (top level or a ``[train]`` table) ← overrides that are not None."""

        def pick(data: dict[str, Any]) -> dict[str, Any]:
            return dict(data.get("train", data))  # a [train] table, or the top level

        config = cls(**merge_sources(cls, toml_path, pick, overrides, "training"))
        config.validate()
        return config

    @classmethod
    def help_table(cls) -> list[tuple[str, str, str]]:
        return [
            (f.name, repr(f.default) if f.default is not dataclasses.MISSING else "[...]",
             f.metadata.get("help", ""))
            for f in dataclasses.fields(cls)
        ]  # fmt: skip
