"""The trainer on a tiny model built here: data from logs, mining, GRPO that changes parameters,
gradient only on reflection tokens, rewards from rebuilt verifiers, checkpoints and resume."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl", reason="needs the 'train' extra")

from rrr_trainer import RRRTrainConfig, build_failure_set, mine_failures, split_of

from rrr_agent import (
    ConfigError,
    Engine,
    LogFileError,
    ScriptedError,
    ScriptedModel,
    Task,
    Trajectory,
    TrajectoryStore,
)

from .conftest import math_task

PAPER_MATH = (
    "You tried solving the problem and got the wrong answer. Reflect on what went wrong and write "
    "a short explanation that will help you do better next time."
)


def parity_task(i: int) -> Task:
    return Task.from_prompt(
        f"Numbers: {i}, 9. Target: {i + 9}.",
        {"type": "python", "path": "tests.helpers:hash_parity"},
        family="math",
        id=f"parity-{i}",
    )


def failures_log(tmp_path: Path, n: int = 4) -> Path:
    """Real trajectories from the engine: every first attempt fails, then a reflection and retry."""
    log = tmp_path / "failures.jsonl"
    model = ScriptedModel(default="odd")  # sha256("odd")[0] is odd: fails hash_parity
    assert not __import__("tests.helpers", fromlist=["x"]).hash_parity("odd")
    engine = Engine(model.model, store=TrajectoryStore(log))
    engine.run_many_sync([parity_task(i) for i in range(n)], concurrency=4)
    return log


def config(tmp_path: Path, tiny: Path, **kw: Any) -> RRRTrainConfig:
    values: dict[str, Any] = dict(
        model=str(tiny), output_dir=str(tmp_path / "out"), max_steps=2, num_generations=4,
        per_device_train_batch_size=4, max_reflection_tokens=8, max_retry_tokens=6,
        retry_temperature=1.0, holdout_fraction=0.0, save_steps=1, learning_rate=1e-2,
        merge=True, seed=3,
    )  # fmt: skip
    if kw.get("mode") == "offline":  # offline mode refuses the settings of online generation
        for name in RRRTrainConfig.ONLINE_ONLY:
            values.pop(name, None)
    values.update(kw)
    return RRRTrainConfig(**values)


# ------------------------------------------------------------------------------ config and data


def test_config_paper_defaults_and_sources(tmp_path: Path) -> None:
    full = RRRTrainConfig(use_lora=False)
    assert full.beta == 0.001 and full.resolved_learning_rate() == 5e-7
    assert full.lr_scheduler_type == "cosine" and full.warmup_ratio == 0.03
    assert RRRTrainConfig().resolved_learning_rate() > 5e-7  # LoRA gets a higher default
    toml = tmp_path / "train.toml"
    toml.write_text("[train]\nmax_steps = 7\nlora_r = 4\n")
    cfg = RRRTrainConfig.from_sources(toml, lora_r=16, beta=None)
    assert (cfg.max_steps, cfg.lora_r, cfg.beta) == (7, 16, 0.001)
    toml.write_text("max_stepz = 1\n")
    with pytest.raises(ConfigError, match="unknown training setting"):
        RRRTrainConfig.from_sources(toml)
    with pytest.raises(ConfigError, match="max_reflection_repeats must be 0"):
        RRRTrainConfig.from_sources(None, max_reflection_repeats=-1)
    with pytest.raises(ConfigError, match="multiple of num_generations"):
        RRRTrainConfig.from_sources(None, num_generations=3, per_device_train_batch_size=4)
    assert all(help_text for _, _, help_text in RRRTrainConfig.help_table())


def test_failure_set_from_logs_alone(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    store = TrajectoryStore(log)
    scripted = ScriptedModel(["42", "7", "my reflection", "8", "7", "again", "9"])
    engine = Engine(scripted.model, store=store)
    engine.run_sync(math_task())  # passes first try: skipped
    engine.run_sync(math_task(prompt="q2"))  # fails: kept
    engine.run_sync(math_task(prompt="q2"))  # same task, same failed answer "7": duplicate
    bad = json.loads(log.read_text().splitlines()[1])
    bad["id"] = "bad-spec"
    bad["task"]["verifier"] = {"type": "no-such-verifier"}
    with log.open("a") as fh:
        fh.write(json.dumps(bad) + "\n")
        fh.write("not json\n")
    with pytest.raises(LogFileError, match=r":5: not valid JSON.*1 unreadable line"):
        build_failure_set([log], holdout_fraction=0.0)  # corruption stops it, with file:line
    train, heldout, report = build_failure_set([log], holdout_fraction=0.0, skip_invalid=True)
    assert report.trajectories == 4 and report.failures == 3
    assert len(train) == 1 and heldout == []
    skipped = report.to_dict()["skipped"]
    assert skipped["first attempt passed"] == 1
    assert skipped["duplicate (same task, same failed answer)"] == 1
    assert any(k.startswith("verifier cannot be rebuilt") for k in skipped)
    assert report.bad_lines and ":5:" in report.bad_lines[0]
    example = train[0]
    # The prompt is the logged conversation up to the paper's reflection instruction.
    assert example.prompt[-1] == {"role": "user", "content": PAPER_MATH}
    assert example.prompt[-2] == {"role": "assistant", "content": "7"}
    assert example.retry_instruction.startswith("Try again")
    assert Task.model_validate_json(example.task_json).verifier.type == "exact"


def test_holdout_split_is_by_task_and_stable() -> None:
    ids = [f"task-{i}" for i in range(400)]
    held = [i for i in ids if split_of(i, 0.25) == "heldout"]
    assert 60 < len(held) < 140
    assert held == [i for i in ids if split_of(i, 0.25) == "heldout"]  # same every time


def test_mine_failures_keeps_distinct_failures(tmp_path: Path) -> None:
    answers = iter(["42", "1", "1", "2", "42", "3"] * 3)
    model = ScriptedModel(default=lambda messages: next(answers))
    out = tmp_path / "mined.jsonl"
    report = mine_failures([math_task()], model.model, out, samples=6, keep_per_task=2,
                           concurrency=1)  # fmt: skip
    assert report.samples == 6 and report.failures_kept == 2
    mined = list(TrajectoryStore(out).read())
    assert [t.attempts[0].text for t in mined] == ["1", "2"]
    assert all(len(t.attempts) == 1 and not t.first_try_passed for t in mined)
    assert report.to_dict()["mean_first_try_pass_rate"] == pytest.approx(2 / 6)
    train, _, _ = build_failure_set([out], holdout_fraction=0.0)
    assert len(train) == 2 and train[0].prompt[-1]["content"] == PAPER_MATH


# ------------------------------------------------------------------------------ training


def _params(model: Any) -> dict[str, Any]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("use_lora", [True, False])
def test_training_changes_parameters(tmp_path: Path, tiny: Path, use_lora: bool) -> None:
    from rrr_trainer.grpo import build_trainer

    train, _, _ = build_failure_set([failures_log(tmp_path)], holdout_fraction=0.0)
    cfg = config(tmp_path, tiny, use_lora=use_lora, max_steps=3)
    trainer, reward, _, _ = build_trainer(cfg, train, tmp_path / "out")
    before = _params(trainer.model)
    trainer.train()
    after = _params(trainer.model)
    changed = [n for n in before if not before[n].equal(after[n])]
    if use_lora:
        assert changed and all("lora" in n for n in changed)
    else:
        assert len(changed) > len(before) // 2
    rewards = [row["reward"] for row in reward.last]
    assert set(rewards) <= {0.0, 1.0}


def test_rewards_come_from_verifiers_rebuilt_from_the_log(tmp_path: Path, tiny: Path) -> None:
    from rrr_trainer.grpo import build_trainer

    from rrr_agent import ModelOutput, build_verifier

    log = failures_log(tmp_path)
    train, _, _ = build_failure_set([log], holdout_fraction=0.0)
    trainer, reward, _, _ = build_trainer(
        config(tmp_path, tiny, max_steps=1), train, tmp_path / "o"
    )
    trainer.train()
    assert len(reward.last) == 4
    spec = next(iter(TrajectoryStore(log).read())).task.verifier  # the spec as logged
    verifier = build_verifier(spec)
    for row in reward.last:
        verdict: Any = verifier.verify(
            ModelOutput(text=row["retry"]), Task.model_validate_json(train[0].task_json)
        )
        assert row["reward"] == (1.0 if verdict.passed else 0.0)


def test_only_reflection_tokens_carry_gradient(tmp_path: Path, tiny: Path) -> None:
    import torch
    from rrr_trainer.grpo import build_trainer

    train, _, _ = build_failure_set([failures_log(tmp_path)], holdout_fraction=0.0)
    cfg = config(tmp_path, tiny, use_lora=False, beta=0.0)
    trainer, reward, tokenizer, _ = build_trainer(cfg, train, tmp_path / "out")
    rows = [train[0].row()] * cfg.num_generations
    for _ in range(20):  # sample until the group's rewards differ (nonzero advantages)
        batch = trainer._generate_and_score_completions(rows)
        if batch["advantages"].abs().sum() > 0:
            break
    assert batch["advantages"].abs().sum() > 0, "no reward variance in 20 groups"

    captured: dict[str, Any] = {}
    original = trainer._get_per_token_logps_and_entropies

    def capture(*args: Any, **kwargs: Any) -> Any:
        logps, entropies, aux = original(*args, **kwargs)
        logps.retain_grad()
        captured["logps"] = logps
        captured["logits_to_keep"] = args[3] if len(args) > 3 else kwargs["logits_to_keep"]
        return logps, entropies, aux

    trainer._get_per_token_logps_and_entropies = capture
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop otherwise
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grad = captured["logps"].grad
    mask = batch["completion_mask"].bool()
    # Only completion (reflection) positions exist in the loss at all: prompt tokens are not scored.
    assert captured["logits_to_keep"] == batch["completion_ids"].shape[1]
    assert grad.shape == batch["completion_ids"].shape
    assert torch.all(grad[~mask] == 0)  # padding after the reflection: no gradient
    nonzero_rows = batch["advantages"] != 0
    assert torch.all(
        grad[nonzero_rows][mask[nonzero_rows]] != 0
    )  # every reflection token: gradient
    # The retry is generated inside the reward and never enters the trained sequences.
    retry_instruction = train[0].retry_instruction
    for prompt_ids, completion_ids in zip(
        batch["prompt_ids"], batch["completion_ids"], strict=True
    ):
        text = tokenizer.decode(torch.cat([prompt_ids, completion_ids]), skip_special_tokens=True)
        assert retry_instruction not in text
    assert reward.last and all(r["retry"] is not None for r in reward.last)


def test_checkpoints_save_reload_and_resume(tmp_path: Path, tiny: Path) -> None:
    from peft import PeftModel
    from rrr_trainer import train as run_training
    from transformers import AutoModelForCausalLM

    log = failures_log(tmp_path)
    cfg = config(tmp_path, tiny, max_steps=2)
    first = run_training(cfg, [log])
    out = Path(cfg.output_dir)
    assert first.steps == 2 and (out / "checkpoint-1").is_dir() and (out / "checkpoint-2").is_dir()
    assert first.adapter_dir and (first.adapter_dir / "adapter_config.json").is_file()
    assert first.merged_dir and (first.merged_dir / "model.safetensors").is_file()
    card = (out / "final" / "README.md").read_text()
    assert "Reflect, Retry, Reward" in card and "base model" in card
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"rrr/retry_success", "rrr/reflection_chars", "frac_reward_zero_std", "kl",
            "grad_norm"} <= set().union(*metrics)  # fmt: skip
    assert first.plot_path and first.plot_path.stat().st_size > 10_000

    base = AutoModelForCausalLM.from_pretrained(str(tiny))
    adapted = PeftModel.from_pretrained(base, str(first.adapter_dir))
    merged = AutoModelForCausalLM.from_pretrained(str(first.merged_dir))
    assert merged.generation_config.eos_token_id == [base.config.eos_token_id]  # restored
    probe = adapted.get_base_model().model.embed_tokens.weight.new_ones(1, 3).long()
    assert adapted(probe).logits.allclose(merged(probe).logits, atol=1e-4)

    # Resume: a longer run picks up at checkpoint-2 instead of starting over.
    resumed = run_training(config(tmp_path, tiny, max_steps=3), [log])
    assert resumed.steps == 3
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    steps_logged = [row["step"] for row in state["log_history"] if "loss" in row]
    assert steps_logged == [1, 2, 3]


def test_no_failures_is_a_clear_error(tmp_path: Path, tiny: Path) -> None:
    from rrr_trainer import train as run_training

    from rrr_agent import DataError

    log = tmp_path / "passes.jsonl"
    TrajectoryStore(log).append(Trajectory(task=math_task(), model="m"))
    with pytest.raises(DataError, match="no trainable failures"):
        run_training(config(tmp_path, tiny), [log])


# ------------------------------------------------------------------------------ offline mode


def groups_log(tmp_path: Path, n_tasks: int = 3) -> Path:
    """Engine runs with k=4 reflections: branches whose reflection says 'add' retry correctly."""
    from rrr_agent import LoopOptions

    log = tmp_path / "groups.jsonl"
    reflections = iter(
        ["I should add.", "Maybe multiply.", "I should add them.", "Divide?"] * n_tasks
    )

    def reply(messages: list[dict[str, Any]]) -> str:
        if messages[-1]["content"] == PAPER_MATH:
            return next(reflections)
        if len(messages) == 1:
            return "7"  # first attempt: wrong
        return "42" if "add" in messages[-2]["content"] else "5"

    model = ScriptedModel(default=reply)
    engine = Engine(model.model, store=TrajectoryStore(log), options=LoopOptions(reflections=4))
    for i in range(n_tasks):
        engine.run_sync(math_task(prompt=f"What is 17 + 25? ({i})"))
    return log


def test_group_advantages() -> None:
    from rrr_trainer.offline import group_advantages

    adv = group_advantages([1.0, 0.0, 1.0, 0.0])
    assert adv[0] == pytest.approx(1.0, abs=1e-3) and adv[1] == pytest.approx(-1.0, abs=1e-3)
    assert sum(adv) == pytest.approx(0.0)


def test_offline_training_on_logged_groups(tmp_path: Path, tiny: Path) -> None:
    from rrr_trainer import train as run_training

    log = groups_log(tmp_path)
    train, _, _ = build_failure_set([log], holdout_fraction=0.0)
    assert [sorted(c["reward"] for c in e.group) for e in train] == [[0.0, 0.0, 1.0, 1.0]] * 3
    cfg = config(tmp_path, tiny, mode="offline", max_steps=3, per_device_train_batch_size=8)
    result = run_training(cfg, [log])
    assert result.steps == 3 and result.adapter_dir is not None
    rows = [
        json.loads(x) for x in (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["grad_norm"] > 0 for r in rows)
    assert all(r["importance_corrected"] == 0.0 for r in rows)  # no logged log-probs here
    # The adapter moved: LoRA B matrices start at zero and are no longer zero.
    from safetensors.torch import load_file

    weights = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    assert any(float(w.abs().sum()) > 0 for k, w in weights.items() if "lora_B" in k)
    # Resume continues from the last checkpoint.
    more = run_training(config(tmp_path, tiny, mode="offline", max_steps=4,
                               per_device_train_batch_size=8), [log])  # fmt: skip
    assert more.steps == 4


def test_offline_uses_logged_logprobs_for_the_ratio(tmp_path: Path, tiny: Path) -> None:
    from rrr_trainer import train as run_training
    from transformers import AutoTokenizer

    log = groups_log(tmp_path, n_tasks=1)
    tok = AutoTokenizer.from_pretrained(str(tiny))
    record = json.loads(log.read_text().splitlines()[0])
    for cand in record["groups"][0]["candidates"]:
        n = len(tok(" " + cand["reflection"]["text"].strip(), add_special_tokens=False).input_ids)
        cand["reflection"]["logprobs"] = [-2.0] * n  # as a server would have logged them
    log.write_text(json.dumps(record) + "\n")
    cfg = config(tmp_path, tiny, mode="offline", max_steps=1, per_device_train_batch_size=4)
    run_training(cfg, [log])
    row = json.loads((Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()[0])
    assert row["importance_corrected"] == 1.0


def test_offline_accumulates_gradients_and_keeps_save_total_limit(
    tmp_path: Path, tiny: Path
) -> None:
    from rrr_trainer import train as run_training

    log = groups_log(tmp_path)
    cfg = config(tmp_path, tiny, mode="offline", max_steps=3, per_device_train_batch_size=4,
                 gradient_accumulation_steps=2, save_total_limit=2)  # fmt: skip
    result = run_training(cfg, [log])
    assert result.steps == 3
    kept = sorted(p.name for p in Path(cfg.output_dir).glob("checkpoint-*"))
    assert kept == ["checkpoint-2", "checkpoint-3"]  # save_steps=1, the oldest pruned
    # --fresh (resume=False) starts over instead of continuing from checkpoint-3.
    again = run_training(cfg, [log], resume=False)
    assert again.steps == 3
    metrics = (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in metrics] == [1, 2, 3, 1, 2, 3]


def paid_and_unpaid(
    tmp_path: Path, tiny: Path, log: Path, metric: str, weight: str, **kw: Any
) -> None:
    """The same seeded offline run with the KL term ``weight`` at 0 (measured, not paid) and at
    50: the term starts at 0 (LoRA B is zero), grows unpaid, and paying it halves it at least."""
    from rrr_trainer import train as run_training

    kl = {}
    for beta in (0.0, 50.0):
        out = str(tmp_path / f"{weight}-{beta}")
        cfg = config(tmp_path, tiny, mode="offline", max_steps=4, per_device_train_batch_size=4,
                     output_dir=out, **{weight: beta}, **kw)  # fmt: skip
        run_training(cfg, [log])
        rows = [json.loads(x) for x in (Path(cfg.output_dir) / "metrics.jsonl").open()]
        assert rows[0][metric] == pytest.approx(0.0, abs=1e-6)  # LoRA B starts at zero
        kl[beta] = rows[-1][metric]
    assert kl[0.0] > 0 and kl[50.0] < 0.5 * kl[0.0], kl


def test_the_anchor_holds_the_policy_to_the_base_model_on_other_work(
    tmp_path: Path, tiny: Path
) -> None:
    """With ``anchor``, each micro-batch also pays the KL to the base model on another task set's
    texts. The control is the same run with ``anchor_beta=0``: the same groups and anchor texts
    (one seed), the KL measured but not paid. Paying it leaves the policy closer to the base
    model on those texts."""
    from rrr_trainer import train as run_training
    from rrr_trainer.offline import ANCHOR_TOKENS, anchor_ids
    from transformers import AutoTokenizer

    from rrr_agent.tasksets import get_taskset

    tok = AutoTokenizer.from_pretrained(str(tiny))
    ids = anchor_ids("gsm8k-test", tok)
    tasks = list(get_taskset("gsm8k-test").load())
    assert len(ids) == len(tasks)
    assert all(2 <= len(x) <= ANCHOR_TOKENS for x in ids)
    assert tasks[0].user_text()[:40] in tok.decode(ids[0])  # the task's messages ...
    short = next(i for i, x in enumerate(ids) if len(x) < ANCHOR_TOKENS)
    solution = tasks[short].metadata["reference_solution"]
    assert solution.split("\n")[0] in tok.decode(ids[short])  # ... and its worked solution

    log = groups_log(tmp_path)
    paid_and_unpaid(tmp_path, tiny, log, "anchor_kl", "anchor_beta",
                    anchor="gsm8k-test", anchor_batch=2)  # fmt: skip

    with pytest.raises(ConfigError, match="anchor"):
        RRRTrainConfig.from_sources(None, mode="online", anchor="gsm8k-test")
    with pytest.raises(ConfigError, match="anchor_beta"):
        config(tmp_path, tiny, mode="offline", anchor_beta=-1.0).validate()
    with pytest.raises(ConfigError, match="unknown task set 'no-such-set'"):
        run_training(config(tmp_path, tiny, mode="offline", anchor="no-such-set",
                            output_dir=str(tmp_path / "bad")), [log])  # fmt: skip
    assert not (tmp_path / "bad").exists()  # refused before anything was written


def test_the_retry_anchor_holds_the_retry_that_follows_a_reflection(
    tmp_path: Path, tiny: Path
) -> None:
    """With ``retry_anchor_beta``, each group also pays the KL to the base model over one logged
    retry's tokens, in the conversation that led to it (prompt, reflection, retry instruction).
    The control is the same seeded run with ``retry_anchor_beta=0``: the KL measured, not paid.
    Paying it leaves the retry closer to the base model's. ``retry_anchor_rewarded_beta`` does
    the same over a retry that passed after a rewarded reflection, alone or beside it."""
    from rrr_trainer.offline import OfflineGroup, retry_anchor_choices, retry_anchor_ids
    from transformers import AutoTokenizer

    log = groups_log(tmp_path)
    train, _, _ = build_failure_set([log], holdout_fraction=0.0)
    e = train[0]
    assert sorted(c["retry"] for c in e.group) == ["42", "42", "5", "5"]  # logged with the group
    group = OfflineGroup(
        prompt=e.prompt, reflections=[c["text"] for c in e.group],
        rewards=[c["reward"] for c in e.group], retries=[c["retry"] for c in e.group],
        retry_instruction=e.retry_instruction, chat_template_kwargs=e.chat_template_kwargs,
    )  # fmt: skip
    tok = AutoTokenizer.from_pretrained(str(tiny))
    cfg = config(tmp_path, tiny, mode="offline")
    i = group.reflections.index("Maybe multiply.")
    found = retry_anchor_ids(group, i, tok, cfg, tok.eos_token_id)
    assert found is not None
    ids, n = found
    assert ids[-1] == tok.eos_token_id and tok.decode(ids[-n:-1]).strip() == "5"  # its retry
    head = tok.decode(ids[:-n])
    assert e.prompt[-1]["content"] in head  # the reflection prompt, then ...
    assert head.rindex("Maybe multiply.") < head.rindex(e.retry_instruction)  # its reflection
    assert "I should add." not in head  # ... and no other branch's
    rewarded = [j for j, r in enumerate(group.rewards) if r > 0]
    assert rewarded and len(rewarded) < 4  # the group's passing retries, not all four
    assert retry_anchor_choices(group) == [0, 1, 2, 3]
    assert retry_anchor_choices(group, "rewarded") == rewarded
    assert all(group.retries[j] == "42" for j in rewarded)  # the retries that passed
    group.retries[i] = None  # a retry that never finished holds nothing
    assert retry_anchor_ids(group, i, tok, cfg, tok.eos_token_id) is None
    assert i not in retry_anchor_choices(group)

    paid_and_unpaid(tmp_path, tiny, log, "retry_kl", "retry_anchor_beta")
    # the rewarded term, beside the first (measured there, not paid): paid, it holds the
    # retries that passed after a rewarded reflection
    paid_and_unpaid(tmp_path / "rewarded", tiny, log, "rewarded_retry_kl",
                    "retry_anchor_rewarded_beta", retry_anchor_beta=0.0)  # fmt: skip

    with pytest.raises(ConfigError, match="retry_anchor_beta"):
        RRRTrainConfig.from_sources(None, mode="online", retry_anchor_beta=1.0)
    with pytest.raises(ConfigError, match="retry_anchor_beta"):
        config(tmp_path, tiny, mode="offline", retry_anchor_beta=-1.0).validate()
    with pytest.raises(ConfigError, match="retry_anchor_rewarded_beta is a term of offline"):
        RRRTrainConfig.from_sources(None, mode="online", retry_anchor_rewarded_beta=1.0)
    with pytest.raises(ConfigError, match=r"retry_anchor_rewarded_beta \(-1.0\) must be 0"):
        config(tmp_path, tiny, mode="offline", retry_anchor_rewarded_beta=-1.0).validate()


def test_the_follow_term_teaches_the_retry_to_carry_out_a_right_reflection(
    tmp_path: Path, tiny: Path
) -> None:
    """With ``retry_follow_beta``, each group also pays the negative log-likelihood of one logged
    retry that passed after a reflection that passes as the answer itself. Which retries those
    are is judged by the task's verifier; a retry that passed after a reflection without the
    answer is not one. The control is the same seeded run with the term measured, not paid:
    paying it makes those retries more likely."""
    from rrr_trainer import train as run_training
    from rrr_trainer.offline import _groups, retry_anchor_choices

    from rrr_agent import LoopOptions

    log = tmp_path / "follow.jsonl"
    reflections = iter(["42", "Maybe multiply.", "I should add them.", "Divide?"] * 3)

    def reply(messages: list[dict[str, Any]]) -> str:
        if messages[-1]["content"] == PAPER_MATH:
            return next(reflections)
        if len(messages) == 1:
            return "7"  # first attempt: wrong
        said = messages[-2]["content"]
        return "42" if "add" in said or "42" in said else "5"

    model = ScriptedModel(default=reply)
    engine = Engine(model.model, store=TrajectoryStore(log), options=LoopOptions(reflections=4))
    for i in range(3):
        engine.run_sync(math_task(prompt=f"What is 17 + 25? ({i})"))
    train, _, _ = build_failure_set([log], holdout_fraction=0.0)
    groups, _ = _groups(train, judge_following=True)
    assert len(groups) == 3
    for g in groups:
        right = [j for j, text in enumerate(g.reflections) if "42" in text]
        assert len(right) == 1 and g.followed == [j in right for j in range(4)]
        assert retry_anchor_choices(g, "followed") == right
        # "I should add them." led to a passing retry too, but does not hold the answer
        assert len(retry_anchor_choices(g, "rewarded")) == 2
        g.retries[right[0]] = None  # a retry that never finished is never read
        assert retry_anchor_choices(g, "followed") == []
    unjudged, _ = _groups(train)  # judged only when the term is on
    assert unjudged[0].followed == [] and retry_anchor_choices(unjudged[0], "followed") == []

    nll = {}
    for beta in (0.0, 50.0):
        out = str(tmp_path / f"follow-{beta}")
        cfg = config(tmp_path, tiny, mode="offline", max_steps=4, per_device_train_batch_size=4,
                     output_dir=out, retry_follow_beta=beta)  # fmt: skip
        run_training(cfg, [log])
        rows = [json.loads(x) for x in (Path(cfg.output_dir) / "metrics.jsonl").open()]
        assert all("retry_follow_nll" in r for r in rows)
        nll[beta] = (rows[0]["retry_follow_nll"], rows[-1]["retry_follow_nll"])
    assert nll[0.0][0] == pytest.approx(nll[50.0][0], rel=1e-4)  # the same start, measured
    drop = {beta: start - end for beta, (start, end) in nll.items()}
    assert drop[50.0] > 2 * max(drop[0.0], 0.05), nll  # paid, it falls at least twice as far

    with pytest.raises(ConfigError, match="retry_follow_beta is a term of offline"):
        RRRTrainConfig.from_sources(None, mode="online", retry_follow_beta=1.0)
    with pytest.raises(ConfigError, match=r"retry_follow_beta \(-1.0\) must be 0"):
        config(tmp_path, tiny, mode="offline", retry_follow_beta=-1.0).validate()


def test_the_follow_term_bare_form_reads_the_answer_without_its_claimed_value(
    tmp_path: Path, tiny: Path
) -> None:
    """With ``retry_follow_form='bare'`` the follow term reads a followed retry as its answer
    alone: "17 + 25 = 42." as "17 + 25", the value a retry copied from its reflection dropped
    (the Countdown verifier fails an answer whose claimed value is not the target). The retry
    anchors still read the retry as logged. Through the real engine and Countdown verifier, then
    the training loop: the measured follow term differs between the forms from the first step."""
    from rrr_trainer import train as run_training
    from rrr_trainer.data import bare_answer
    from rrr_trainer.offline import _groups, retry_anchor_choices, retry_anchor_ids
    from transformers import AutoTokenizer

    from rrr_agent import LoopOptions

    assert bare_answer("91 - 34 = 57.") == "91 - 34"
    assert bare_answer(" 91 - 34. ") == "91 - 34"
    assert bare_answer("(4 + 5) * 2 = 18") == "(4 + 5) * 2"
    assert bare_answer("31 + 62 = 103.") == "31 + 62"  # a false claim goes with the rest
    assert bare_answer("42") == "42" and bare_answer(None) == "" and bare_answer("  ") == ""
    assert bare_answer("x = 5") == "x = 5"  # not arithmetic: as written
    assert bare_answer("The answer is 7 = 7.") == "The answer is 7 = 7."

    log = tmp_path / "bare.jsonl"
    reflections = iter(["17 + 25 = 42.", "Maybe multiply.", "I should add them.", "Divide?"] * 3)

    def reply(messages: list[dict[str, Any]]) -> str:
        if messages[-1]["content"] == PAPER_MATH:
            return next(reflections)
        if len(messages) == 1:
            return "17 * 25"  # first attempt: wrong
        said = messages[-2]["content"]
        return "17 + 25 = 42." if "add" in said or "42" in said else "25 - 17"

    engine = Engine(ScriptedModel(default=reply).model, store=TrajectoryStore(log),
                    options=LoopOptions(reflections=4))  # fmt: skip
    for i in range(3):
        spec = {"type": "countdown", "numbers": [17, 25], "target": 42}
        engine.run_sync(Task.from_prompt(f"Make 42 from 17 and 25 ({i}).", spec, family="math"))
    train, _, _ = build_failure_set([log], holdout_fraction=0.0)
    groups, _ = _groups(train, judge_following=True)
    assert len(groups) == 3
    g = groups[0]
    (j,) = retry_anchor_choices(g, "followed")
    assert g.reflections[j] == "17 + 25 = 42." and g.retries[j] == "17 + 25 = 42."
    tok = AutoTokenizer.from_pretrained(str(tiny))
    cfg = config(tmp_path, tiny, mode="offline", retry_follow_beta=1.0, retry_follow_form="bare",
                 max_reflection_tokens=32)  # fmt: skip
    logged = retry_anchor_ids(g, j, tok, cfg, tok.eos_token_id)
    bare = retry_anchor_ids(g, j, tok, cfg, tok.eos_token_id, bare=True)
    assert logged is not None and bare is not None
    assert tok.decode(logged[0][-logged[1] : -1]).strip() == "17 + 25 = 42."
    assert tok.decode(bare[0][-bare[1] : -1]).strip() == "17 + 25"
    assert bare[0][: -bare[1]] == logged[0][: -logged[1]]  # the same conversation before it

    first = {}
    for form in ("logged", "bare"):
        cfg = config(tmp_path, tiny, mode="offline", max_steps=1, per_device_train_batch_size=4,
                     output_dir=str(tmp_path / form), retry_follow_beta=0.0,
                     retry_follow_form=form)  # fmt: skip
        run_training(cfg, [log])
        rows = [json.loads(x) for x in (Path(cfg.output_dir) / "metrics.jsonl").open()]
        first[form] = rows[0]["retry_follow_nll"]
    assert first["logged"] != pytest.approx(first["bare"], rel=1e-3), first

    with pytest.raises(ConfigError, match=r"retry_follow_form \('bare'\) is the follow term's"):
        config(tmp_path, tiny, mode="offline", retry_follow_form="bare").validate()
    with pytest.raises(ConfigError, match="retry_follow_form must be 'logged' or 'bare'"):
        config(tmp_path, tiny, mode="offline", retry_follow_beta=1.0,
               retry_follow_form="stripped").validate()  # fmt: skip


def test_offline_refuses_settings_it_would_ignore(tmp_path: Path, tiny: Path) -> None:
    with pytest.raises(ConfigError) as info:
        RRRTrainConfig.from_sources(None, mode="offline", loss_type="grpo",
                                    gradient_checkpointing=True)  # fmt: skip
    assert "loss_type" in str(info.value) and "gradient_checkpointing" in str(info.value)
    with pytest.raises(ConfigError, match="retry_temperature"):
        config(tmp_path, tiny, mode="offline", retry_temperature=0.7).validate()
    # The same settings are fine online, and an offline config without them validates.
    RRRTrainConfig.from_sources(None, mode="online", loss_type="grpo", gradient_checkpointing=True)
    config(tmp_path, tiny, mode="offline").validate()
    with pytest.raises(ConfigError, match="mode must be"):
        RRRTrainConfig.from_sources(None, mode="sideways")


def test_offline_without_groups_is_a_clear_error(tmp_path: Path, tiny: Path) -> None:
    from rrr_trainer import train as run_training

    from rrr_agent import DataError

    with pytest.raises(DataError, match="needs logged k-reflection groups"):
        run_training(config(tmp_path, tiny, mode="offline"), [failures_log(tmp_path)])


# ------------------------------------------------------------------------------ command line


def test_train_cli_data_config_and_run(tmp_path: Path, tiny: Path) -> None:
    import subprocess
    import sys

    from typer.testing import CliRunner

    from rrr_agent.cli import app

    runner = CliRunner()
    log = failures_log(tmp_path)
    data = runner.invoke(app, ["train", "data", str(log), "--holdout", "0", "--json"])
    assert data.exit_code == 0 and json.loads(data.stdout)["train_examples"] == 4
    shown = runner.invoke(app, ["train", "config"])
    assert shown.exit_code == 0 and "num_generations" in shown.stdout
    toml = tmp_path / "train.toml"
    toml.write_text(
        f'[train]\nmodel = "{tiny}"\nmax_reflection_tokens = 8\nmax_retry_tokens = 6\n'
        "holdout_fraction = 0.0\nretry_temperature = 1.0\n"
    )
    run = runner.invoke(app, ["train", "run", str(log), "--config", str(toml), "--output-dir",
                              str(tmp_path / "cli-out"), "--max-steps", "1", "--num-generations",
                              "2", "--batch-size", "2", "--json"])  # fmt: skip
    assert run.exit_code == 0, run.output
    summary = json.loads(run.stdout)
    assert summary["steps"] == 1 and Path(summary["adapter"]).is_dir()
    bad = runner.invoke(
        app, ["train", "run", str(log), "--num-generations", "3", "--batch-size", "4"]
    )
    assert bad.exit_code == 1 and "multiple of num_generations" in bad.output
    module = subprocess.run([sys.executable, "-m", "rrr_trainer", "--help"], capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert module.returncode == 0 and "mine" in module.stdout


def test_training_goes_on_from_an_adapter(tmp_path: Path, tiny: Path) -> None:
    """init_adapter: the promoted checkpoint's LoRA weights are where the next run starts."""
    from peft import get_peft_model_state_dict
    from rrr_trainer import train as run_training
    from rrr_trainer.policy import load_policy, with_adapter
    from safetensors.torch import load_file

    log = failures_log(tmp_path)
    first = run_training(config(tmp_path, tiny, max_steps=2), [log])
    assert first.adapter_dir is not None
    saved = load_file(str(first.adapter_dir / "adapter_model.safetensors"))
    cfg = config(tmp_path, tiny, output_dir=str(tmp_path / "second"), max_steps=1,
                 init_adapter=str(first.adapter_dir))  # fmt: skip
    model, _, _ = load_policy(tiny, cfg)
    started = get_peft_model_state_dict(with_adapter(model, cfg))
    assert any("lora_B" in k for k in started)
    for key, value in started.items():
        match = [v for k, v in saved.items() if k.endswith(key.split("base_model.model.")[-1])]
        assert match and bool((match[0] == value).all()), key
    second = run_training(cfg, [log])
    assert second.steps == 1 and second.adapter_dir is not None
    with pytest.raises(ConfigError, match="init_adapter needs use_lora"):
        config(tmp_path, tiny, init_adapter=str(first.adapter_dir), use_lora=False).validate()


def test_lora_layers_adapt_only_the_layers_named(tmp_path: Path, tiny: Path) -> None:
    """lora_layers places the adapter on some decoder layers only: training, saving and merging
    touch those and no other; a layer the model lacks, or a bad list, is a ConfigError."""
    from rrr_trainer import train as run_training
    from rrr_trainer.policy import load_policy, with_adapter
    from safetensors.torch import load_file

    cfg = config(tmp_path, tiny, mode="offline", lora_layers=[1], max_steps=1)
    cfg.validate()
    model, _, _ = load_policy(tiny, cfg)
    adapted = [n for n, p in with_adapter(model, cfg).named_parameters() if p.requires_grad]
    assert adapted and all(".layers.1." in n and "lora_" in n for n in adapted), adapted
    result = run_training(cfg, [groups_log(tmp_path)])  # rewards differ within each group
    assert result.steps == 1 and result.adapter_dir is not None
    saved = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    assert saved and all(".layers.1." in k for k in saved), sorted(saved)
    assert any(not bool((v == 0).all()) for k, v in saved.items() if "lora_B" in k)
    model, _, _ = load_policy(tiny, cfg)
    with pytest.raises(ConfigError, match=r"the model has 2 decoder layers \(0-1\)"):
        with_adapter(model, config(tmp_path, tiny, lora_layers=[2]))
    for bad in ([], [-1], [1, 1]):
        with pytest.raises(ConfigError, match="lora_layers"):
            config(tmp_path, tiny, lora_layers=bad).validate()


def _separate_logps(model: Any, prompt: list[int], completion: list[int]) -> Any:
    """The reference computation: one full forward pass over prompt + completion."""
    import torch

    ids = torch.tensor([prompt + completion])
    logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1]
    return torch.log_softmax(logits.float(), -1).gather(-1, ids[0, len(prompt) :, None])[:, 0]


def test_offline_logps_with_a_shared_prompt_equal_separate_passes(
    tmp_path: Path, tiny: Path
) -> None:
    """Offline training runs a group's prompt once and repeats its cache for the k completions;
    each completion's log-probs are those of its own full forward pass, position by position."""
    import torch
    from rrr_trainer.offline import _encode, _group_logps, _groups
    from rrr_trainer.policy import load_policy, reflection_end_token

    train, _, _ = build_failure_set([groups_log(tmp_path, n_tasks=2)], holdout_fraction=0.0)
    groups, _ = _groups(train)
    cfg = config(tmp_path, tiny, mode="offline")
    model, tok, eos = load_policy(tiny, cfg)
    end = reflection_end_token(tok, eos, "auto")
    prompts, comps, _, _ = _encode(groups, tok, cfg, end)
    assert len(prompts) == 2 and all(len(c) >= 2 for c in comps)
    with torch.no_grad():
        logps, mask = _group_logps(model, prompts, comps, tok.pad_token_id)
    rows = [(p, c) for p, cs in zip(prompts, comps, strict=True) for c in cs]
    assert logps.shape == mask.shape == (len(rows), max(len(c) for _, c in rows))
    for i, (p, c) in enumerate(rows):
        with torch.no_grad():
            expected = _separate_logps(model, p, c)
        assert int(mask[i].sum()) == len(c)
        assert torch.allclose(logps[i, : len(c)], expected, atol=1e-5)
        assert float(logps[i, len(c) :].abs().sum()) == 0.0  # padding carries nothing


def test_group_logps_and_gradients_hold_with_sliding_window_layers() -> None:
    """Gemma 3 (the embedded model) mixes sliding-window and full attention, and its cache keeps
    only the window on sliding layers. With a prompt longer than the window, the shared-prompt
    log-probs and the gradient through the repeated cache equal k separate passes."""
    import torch
    from rrr_trainer.offline import _group_logps
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    cfg = Gemma3TextConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=4,
        layer_types=["sliding_attention", "full_attention"], max_position_embeddings=128,
    )  # fmt: skip
    model = Gemma3ForCausalLM(cfg).float().eval()
    prompt = list(range(3, 20))  # 17 tokens, more than the window of 4
    comps = [[21, 22, 23], [30, 31], [40, 41, 42, 43, 44]]
    params = [p for p in model.parameters() if p.requires_grad]

    logps, mask = _group_logps(model, [prompt], [comps], pad=0)
    shared_grads = torch.autograd.grad((logps * mask).sum(), params, allow_unused=True)
    separate = [_separate_logps(model, prompt, c) for c in comps]
    separate_grads = torch.autograd.grad(sum(s.sum() for s in separate), params, allow_unused=True)
    for i, s in enumerate(separate):
        assert torch.allclose(logps[i, : len(comps[i])], s, atol=1e-5)
    compared = 0
    for a, b in zip(shared_grads, separate_grads, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
            compared += int(a.abs().sum() > 0)
    assert compared > 10  # gradients reached the layers, not only the head


def test_retry_terms_in_one_pass_equal_a_full_pass_each() -> None:
    """A group's retry terms run in one pass (the shared reflection prompt once, logits only
    where retry tokens are predicted): each value and the gradient of their weighted sum equal
    those of one full forward pass per term, on Gemma 3 (sliding-window layers, final logit
    soft-capping) under LoRA with the adapter disabled as the reference, and without a shared
    prefix against a separate reference model."""
    import copy
    import operator

    import torch
    from peft import LoraConfig, get_peft_model
    from rrr_trainer.offline import RetryTerm, _retry_terms
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    cfg = Gemma3TextConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=4,
        layer_types=["sliding_attention", "full_attention"], max_position_embeddings=128,
        final_logit_softcapping=3.0,
    )  # fmt: skip
    base = Gemma3ForCausalLM(cfg).float().eval()
    reference = copy.deepcopy(base)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"])
    model = get_peft_model(copy.deepcopy(base), lora)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # B starts at zero: the adapter would change nothing
            torch.nn.init.normal_(p, std=0.5)
    prompt = list(range(3, 20))  # longer than the window of 4
    terms = [
        RetryTerm([*prompt, 21, 22, 23, 5, 6, 7], 3, kl=True),
        RetryTerm([*prompt, 30, 31, 8, 9], 2, kl=True),
        RetryTerm([*prompt, 40, 41, 42, 43, 44, 5, 6, 7], 3, kl=False),
        RetryTerm([*prompt, 21, 22, 23, 5, 6, 7], 3, kl=True),  # the same reflection drawn twice
    ]
    weights = [1.0, 3.0, 0.3, 2.0]

    def full(m: Any, ref: Any, t: RetryTerm) -> Any:
        batch = torch.tensor([t.ids])
        logp = torch.log_softmax(m(input_ids=batch).logits[0, -t.last - 1 : -1].float(), -1)
        if not t.kl:
            return -logp.gather(-1, batch[0, -t.last :, None]).mean()
        with torch.no_grad(), contextlib.ExitStack() as stack:
            if ref is None:
                stack.enter_context(m.disable_adapter())
            logits = (ref or m)(input_ids=batch).logits[0, -t.last - 1 : -1]
            ref_logp = torch.log_softmax(logits.float(), -1)
        return (ref_logp.exp() * (ref_logp - logp)).sum(-1).mean()

    def check(m: Any, ref: Any, ts: list[RetryTerm]) -> None:
        params = [p for p in m.parameters() if p.requires_grad]
        values = _retry_terms(m, ref, ts)
        grads = torch.autograd.grad(sum(map(operator.mul, weights, values)), params)
        expected = [full(m, ref, t) for t in ts]
        expected_grads = torch.autograd.grad(sum(map(operator.mul, weights, expected)), params)
        assert all(float(e.detach()) > 1e-3 for e in expected)  # terms that measure something
        for v, e in zip(values, expected, strict=True):
            assert torch.allclose(v, e, atol=1e-5, rtol=1e-4), (v, e)
        for a, b in zip(grads, expected_grads, strict=True):
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
        assert sum(int(g.abs().sum() > 0) for g in grads) >= 4  # the adapter's layers moved

    check(model, None, terms)  # LoRA: the adapter disabled is the reference
    moved = copy.deepcopy(base)
    for p in moved.parameters():
        p.data += 0.05 * torch.randn_like(p)
    no_prefix = [RetryTerm([1, *t.ids], t.last, t.kl) for t in terms[:3]]
    no_prefix.append(RetryTerm([2, *terms[3].ids], 3, kl=True))  # differs at the first token
    check(moved.train(), reference, no_prefix)  # full training: a separate reference model


def test_round_reports_count_reflections_repeated_across_problems(tmp_path: Path) -> None:
    """A round's report counts groups as training sees them: with ``max_repeats``, a phrase that
    follows failures of more than that many problems earns 0, so a group whose only passing
    retries came after it has nothing to learn."""
    from rrr_trainer.rounds import sample_groups

    from rrr_agent import load_settings

    per_task: dict[str, Any] = {}

    def reply(messages: list[dict[str, Any]]) -> str:
        problem = messages[0]["content"]
        if messages[-1]["content"] == PAPER_MATH:
            if problem not in per_task:
                specific = "Add them." if "(0)" in problem else "Divide?"
                texts = ["Numbers are the same.", "numbers are the SAME", specific]
                per_task[problem] = iter(texts)
            return str(next(per_task[problem]))
        if len(messages) == 1:
            return "7"  # every first attempt fails
        helped = any(w in messages[-2]["content"].lower() for w in ("same", "add"))
        return "42" if helped else "5"

    scripted = ScriptedModel(default=reply)
    tasks = [math_task(prompt=f"What is 17 + 25? ({i})") for i in range(3)]

    def sample(max_repeats: int, name: str) -> Any:
        per_task.clear()
        settings = load_settings(log_path=tmp_path / f"{name}-x.jsonl")
        return sample_groups(tasks, scripted.model, tmp_path / f"{name}.jsonl", k=3,
                             settings=settings, max_repeats=max_repeats, concurrency=1)  # fmt: skip

    off = sample(0, "off")
    assert (off.failures, off.reflections, off.retries_passed) == (3, 9, 7)
    assert (off.learnable, off.all_passed, off.repeated_reflections) == (2, 1, 0)
    on = sample(2, "on")  # the phrase follows three problems' failures: more than 2
    assert (on.reflections, on.repeated_reflections, on.retries_passed) == (9, 6, 1)
    assert (on.learnable, on.all_passed, on.all_failed) == (1, 0, 2)
    assert sample(3, "three").repeated_reflections == 0


def test_round_greedy_branch_puts_the_greedy_reflection_in_each_group(tmp_path: Path) -> None:
    """With ``greedy_branch`` branch 0 of each group is written at temperature 0, the others at
    the reflection temperature. The evaluation reads greedy reflections: a phrase the greedy model
    writes after every failure is then in every group, paid as a repeated text, and the report
    counts the greedy reflections that carry something (learning run 74: one phrase for 64 of 67
    held-out failures, spread over dozens of wordings in its samples)."""
    from rrr_trainer.rounds import sample_groups

    from rrr_agent import load_settings

    greedy_text = "Numbers are the same."

    def reply(messages: list[dict[str, Any]]) -> str:
        params = next(r.params for r in reversed(scripted.requests) if r.messages is messages)
        if messages[-1]["content"] == PAPER_MATH:
            if params.get("temperature") == 0.0:
                return greedy_text.format(messages[0]["content"][-3:])
            return f"Add the numbers of {messages[0]['content'][-3:]} seed {params['seed']}"
        return "7" if len(messages) == 1 else "42"  # every first attempt fails, retries pass

    scripted = ScriptedModel(default=reply)
    tasks = [math_task(prompt=f"What is 17 + 25? ({i})") for i in range(3)]

    def sample(name: str, greedy: bool, **kw: Any) -> Any:
        scripted.requests.clear()
        settings = load_settings(log_path=tmp_path / f"{name}-x.jsonl")
        return sample_groups(tasks, scripted.model, tmp_path / f"{name}.jsonl", k=3,
                             settings=settings, reflection_temperature=1.0, greedy_branch=greedy,
                             concurrency=1, **kw)  # fmt: skip

    def reflection_temperatures() -> list[float]:
        asked = [r for r in scripted.requests if r.messages[-1]["content"] == PAPER_MATH]
        return sorted(r.params["temperature"] for r in asked)

    off = sample("off", False, max_repeats=1, hollow_reward=-1.0)
    assert reflection_temperatures() == [1.0] * 9
    assert (off.greedy_reflections, off.repeated_reflections, off.learnable) == (0, 0, 0)
    on = sample("on", True, max_repeats=1, hollow_reward=-1.0)
    assert reflection_temperatures() == [0.0] * 3 + [1.0] * 6  # one greedy branch per group
    assert (on.greedy_reflections, on.greedy_carrying) == (3, 0)
    assert (on.repeated_reflections, on.learnable, on.retries_passed) == (3, 3, 6)
    for line in (tmp_path / "on.jsonl").read_text().splitlines():
        [group] = json.loads(line)["groups"]
        texts = {c["branch"]: c["reflection"]["text"] for c in group["candidates"]}
        assert texts[0] == greedy_text and greedy_text not in (texts[1], texts[2])
    greedy_text = "Add 17 and 25 of problem {}"
    specific = sample("specific", True)  # a greedy text of each problem's own carries something
    assert (specific.greedy_reflections, specific.greedy_carrying) == (3, 3)


def test_round_plain_branch_gives_the_passing_plain_retry_as_a_reflection(tmp_path: Path) -> None:
    """With ``plain_branch`` (and the plain control) a failure whose plain retry passed gets one
    more candidate: that answer, given to the model as a reflection (``Reflection.given``, no
    log-probs, never asked of the model), followed by the model's own retry, generated and
    verified. Groups whose sampled reflections all failed become learnable; the report's
    reflection counts and expected second try stay the model's own; offline training reads the
    given branch as any other."""
    from rrr_trainer.offline import _groups
    from rrr_trainer.rounds import sample_groups

    from rrr_agent import load_settings

    def reply(messages: list[dict[str, Any]]) -> str:
        problem = messages[0]["content"]
        if messages[-1]["content"] == PAPER_MATH:
            return "Maybe divide."  # never helps
        if len(messages) == 1:
            return "7"  # every first attempt fails
        if len(messages) == 3:  # the plain retry: problem, failed attempt, "try again"
            return "5" if "(2)" in problem else "42"
        return "42" if "42" in messages[-2]["content"] else "5"  # the retry copies its reflection

    scripted = ScriptedModel(default=reply)
    tasks = [math_task(prompt=f"What is 17 + 25? ({i})", id=f"t{i}") for i in range(3)]
    settings = load_settings(log_path=tmp_path / "x.jsonl")

    def sample(name: str, **kw: Any) -> Any:
        scripted.requests.clear()
        return sample_groups(tasks, scripted.model, tmp_path / f"{name}.jsonl", k=2,
                             settings=settings, concurrency=1, plain_control=True,
                             **kw)  # fmt: skip

    off = sample("off")
    assert (off.plain_recovered, off.plain_branches, off.learnable, off.all_failed) == (2, 0, 0, 3)
    on = sample("on", plain_branch=True)
    asked = [r for r in scripted.requests if r.messages[-1]["content"] == PAPER_MATH]
    assert len(asked) == 6  # k = 2 reflections per failure, none for the given branch
    assert (on.plain_branches, on.plain_branches_passed) == (2, 2)
    assert (on.learnable, on.all_failed, on.all_passed) == (2, 1, 0)  # as training sees them
    assert (on.reflections, on.retries_passed) == (6, 0)  # the model's own
    assert on.second_try_rate == off.second_try_rate == 0.0  # the gate's score is unchanged
    kept = {t.task.id: t for t in TrajectoryStore(tmp_path / "on.jsonl").read()}
    given = kept["t0"].groups[0].candidates[-1]
    assert given.branch == 2 and given.reflection is not None and given.reflection.given
    assert (given.reflection.text, given.reflection.logprobs) == ("42", None)
    assert given.retry is not None and given.retry.text == "42" and given.reward == 1.0
    assert not any(c.reflection.given for c in kept["t0"].groups[0].candidates[:2])
    assert kept["t0"].outcome == "failed"  # the trajectory is the model's own
    assert len(kept["t2"].groups[0].candidates) == 2  # its plain retry failed: nothing given

    examples, _, _ = build_failure_set([tmp_path / "on.jsonl"], holdout_fraction=0.0)
    groups, skipped = _groups(examples)
    assert sorted(g.rewards for g in groups) == [[0.0, 0.0, 1.0]] * 2
    assert all(g.logprobs[-1] is None for g in groups) and skipped["all rewards equal"] == 1

    with pytest.raises(ConfigError, match="plain_control"):
        sample_groups(tasks, scripted.model, tmp_path / "bad.jsonl", k=2, settings=settings,
                      plain_branch=True)  # fmt: skip
    passed = Engine.from_settings(settings, model=ScriptedModel(default="42").model)
    trajectory = passed.run_sync(tasks[0])
    with pytest.raises(ValueError, match="did not fail"):
        asyncio.run(passed.retry_after(trajectory, "42", branch=1))


def test_round_keeps_only_failures_the_plain_retry_does_not_fix(tmp_path: Path) -> None:
    """With ``beyond_plain`` each failure also gets the plain retry (no reflection, greedy, from
    the same failed attempt). A failure it fixes is counted and not logged, so no reflection is
    paid for what saying nothing would have done; the others are logged with their groups."""
    from rrr_trainer.rounds import sample_groups

    from rrr_agent import load_settings

    plain_asked: list[str] = []

    def reply(messages: list[dict[str, Any]]) -> str:
        problem = messages[0]["content"]
        if messages[-1]["content"] == PAPER_MATH:
            return "Add them." if "(1)" in problem else "Maybe divide."
        if len(messages) == 1:
            return "7"  # every first attempt fails
        if len(messages) == 3:  # the plain retry: problem, failed attempt, "try again"
            assert messages[1]["role"] == "assistant" and messages[1]["content"] == "7"
            plain_asked.append(problem)
            return "42" if "(0)" in problem else "5"
        return "42" if "add" in messages[-2]["content"].lower() else "5"

    scripted = ScriptedModel(default=reply)
    tasks = [math_task(prompt=f"What is 17 + 25? ({i})") for i in range(3)]

    def sample(beyond_plain: bool, name: str, control: bool = False) -> Any:
        plain_asked.clear()
        settings = load_settings(log_path=tmp_path / f"{name}-x.jsonl")
        return sample_groups(tasks, scripted.model, tmp_path / f"{name}.jsonl", k=2,
                             settings=settings, beyond_plain=beyond_plain,
                             plain_control=control)  # fmt: skip

    off = sample(False, "off")
    assert plain_asked == [] and off.plain_recovered == 0
    assert off.plain_second_try_rate is None and off.to_dict()["plain_second_try_rate"] is None
    assert (off.failures, off.all_passed, off.all_failed, off.reflections) == (3, 1, 2, 6)
    assert len(list(TrajectoryStore(tmp_path / "off.jsonl").read())) == 3

    on = sample(True, "on")
    assert sorted(plain_asked) == [f"What is 17 + 25? ({i})" for i in range(3)]  # once each
    assert (on.failures, on.plain_recovered, on.infrastructure_errors) == (3, 1, 0)
    # task 0 (plain retry passes) is dropped; task 1 (reflection helps), task 2 (nothing helps)
    assert (on.all_passed, on.all_failed, on.reflections, on.retries_passed) == (1, 1, 4, 2)
    kept = list(TrajectoryStore(tmp_path / "on.jsonl").read())
    assert sorted(str(t.task.messages[-1].content)[-3:] for t in kept) == ["(1)", "(2)"]
    assert all(len(t.groups[0].candidates) == 2 for t in kept)
    assert on.plain_second_try_rate == pytest.approx(1 / 3)

    # ``plain_control`` asks the same plain retry but keeps every failure: the control of the
    # expected second try (task 0: the plain retry passes; task 1: only the reflection helps).
    control = sample(False, "control", control=True)
    assert sorted(plain_asked) == [f"What is 17 + 25? ({i})" for i in range(3)]
    assert (control.failures, control.plain_asked, control.plain_recovered) == (3, 3, 1)
    assert (control.all_passed, control.all_failed, control.reflections) == (1, 2, 6)
    assert len(list(TrajectoryStore(tmp_path / "control.jsonl").read())) == 3
    assert control.second_try_rate == off.second_try_rate == pytest.approx(1 / 3)
    assert control.to_dict()["plain_second_try_rate"] == pytest.approx(1 / 3)

    # An infrastructure error in the plain retry is never a kept failure (nor a dropped one).
    def broken_plain(messages: list[dict[str, Any]]) -> str:
        if len(messages) == 3:
            raise ScriptedError("server")
        return reply(messages)

    flaky = ScriptedModel(default=broken_plain)
    once = load_settings(log_path=tmp_path / "z.jsonl", transport_tries=1)
    r = sample_groups(tasks, flaky.model, tmp_path / "flaky.jsonl", k=2, settings=once,
                      beyond_plain=True)  # fmt: skip
    assert (r.infrastructure_errors, r.plain_recovered) == (3, 0)
    flaky_log = tmp_path / "flaky.jsonl"
    assert not flaky_log.exists() or not flaky_log.read_text().strip()


def test_guard_runs_at_its_own_concurrency(tmp_path: Path) -> None:
    """``guard_concurrency=1`` sends the forgetting guard's first tries one request at a time
    (batched bf16 serving changed near-tie answers from one batch to the next, so the guard
    measured at 16 could reject a model for noise); the sample itself keeps ``concurrency``."""
    import itertools
    import time

    from rrr_trainer.rounds import sample_groups

    from rrr_agent import ScriptedReply, load_settings

    starts: dict[str, list[float]] = {"sample": [], "guard": []}

    def reply(messages: list[dict[str, Any]]) -> ScriptedReply:
        problem = messages[0]["content"]
        if len(messages) == 1:
            starts["guard" if "2 + 2" in problem else "sample"].append(time.monotonic())
            return ScriptedReply(text="4" if "2 + 2" in problem else "42", delay_s=0.1)
        return ScriptedReply(text="42")

    scripted = ScriptedModel(default=reply)
    tasks = [math_task(prompt=f"What is 17 + 25? ({i})") for i in range(4)]
    guard = [math_task("4", prompt=f"What is 2 + 2? (g{i})") for i in range(4)]

    def sample(name: str, **kw: Any) -> Any:
        for seen in starts.values():
            seen.clear()
        settings = load_settings(log_path=tmp_path / f"{name}-x.jsonl")
        return sample_groups(tasks, scripted.model, tmp_path / f"{name}.jsonl", k=2,
                             settings=settings, concurrency=8, guard=guard, **kw)  # fmt: skip

    one = sample("one", guard_concurrency=1)
    assert (one.guard_tasks, one.guard_passed, one.first_try_passed) == (4, 4, 4)
    assert all(b - a >= 0.09 for a, b in itertools.pairwise(starts["guard"]))
    assert starts["sample"][-1] - starts["sample"][0] < 0.09  # the sample: all at once
    together = sample("together")  # None: the guard goes at ``concurrency`` as before
    assert (together.guard_tasks, together.guard_passed) == (4, 4)
    assert starts["guard"][-1] - starts["guard"][0] < 0.09


def test_rounds_sample_groups_train_and_sample_from_the_new_model(
    tmp_path: Path, tiny: Path
) -> None:
    """Round-based training: each round samples k reflections per failure with the model the
    sampler names, keeps the groups whose retries differ, trains offline from the previous
    round's adapter, and hands the next round the new adapter and its merged weights."""
    from rrr_trainer.rounds import train_rounds

    from rrr_agent import InfrastructureError, load_settings

    def reply(messages: list[dict[str, Any]]) -> str:
        if messages[-1]["content"] == PAPER_MATH:
            return str(next(reflections))
        if len(messages) == 1:
            # first attempts: task 0 fails, task 1 passes; task 2 fails and no reflection helps
            return "42" if "(1)" in messages[0]["content"] else "7"
        helped = "add" in messages[-2]["content"].lower() and "(2)" not in messages[0]["content"]
        return "42" if helped else "5"

    reflections = iter(["I should add.", "Maybe multiply.", "Add them.", "Divide?"] * 4)
    scripted = ScriptedModel(default=reply)
    tasks = [math_task(prompt=f"What is 17 + 25? ({i})") for i in range(3)]
    seen: list[tuple[int, Any]] = []

    def sampler(round_: int, previous: Any) -> str:
        seen.append((round_, previous))
        return scripted.model

    cfg = config(tmp_path, tiny, mode="offline", max_steps=2, per_device_train_batch_size=4,
                 output_dir=str(tmp_path / "unused"))  # fmt: skip
    settings = load_settings(log_path=tmp_path / "x.jsonl")
    results = train_rounds(tasks, cfg, tmp_path / "rounds", rounds=2, sampler=sampler,
                           settings=settings, say=lambda _m: None)  # fmt: skip
    assert [r.round for r in results] == [1, 2]
    first, second = results
    s = first.sampled
    assert (s.tasks, s.first_try_passed, s.failures) == (3, 1, 2)
    assert (s.learnable, s.all_failed, s.all_passed, s.reflections) == (1, 1, 0, 8)
    assert s.retries_passed == 2
    assert first.training["usable_groups"] == 1
    assert first.training["skipped"]["all rewards equal"] == 1
    assert first.steps == 2 and first.adapter and (first.adapter / "adapter_config.json").is_file()
    assert first.merged is not None and (first.merged / "config.json").is_file()
    # Round 2 was sampled from round 1's model and trained on from its adapter.
    assert seen[0] == (1, None) and seen[1][1] is first
    config_2 = json.loads((tmp_path / "rounds/round-02/train/rrr_train_config.json").read_text())
    assert config_2["init_adapter"] == str(first.adapter) and config_2["mode"] == "offline"
    assert second.adapter != first.adapter and second.to_dict()["sampled"]["learnable"] == 1
    logged = list(TrajectoryStore(tmp_path / "rounds/round-02/groups.jsonl").read())
    assert len(logged) == 2 and all(len(t.groups[0].candidates) == 4 for t in logged)

    # A round whose sampling hit infrastructure errors stops: an error is never a failure.
    broken = ScriptedModel(default=ScriptedError("server"))
    once = load_settings(log_path=tmp_path / "y.jsonl", transport_tries=1)
    with pytest.raises(InfrastructureError, match="1 of 1 runs failed on infrastructure"):
        train_rounds(tasks[:1], cfg, tmp_path / "broken", rounds=1,
                     sampler=lambda _r, _p: broken.model, settings=once)  # fmt: skip
    assert not (tmp_path / "broken/round-01/train").exists()  # nothing was trained


def test_round_gate_rolls_back_a_worse_model_and_ends_on_the_best(
    tmp_path: Path, tiny: Path
) -> None:
    """With ``gate``, each round's sample scores the model that drew it (its expected second
    try). A model that scores below the best is not trained on: the next round samples the best
    model again and trains from its adapter; the best model itself is judged by the mean of its
    samples' scores. One more sample scores the last model, and the last result names the best
    one, which is what the run hands on."""
    from rrr_trainer.rounds import train_rounds

    from rrr_agent import ConfigError, load_settings

    behaviour = {"name": "base"}
    asked: dict[str, int] = {}

    def reply(messages: list[dict[str, Any]]) -> str:
        kind, problem = behaviour["name"], messages[0]["content"]
        if messages[-1]["content"] == PAPER_MATH:  # task 0's reflections alternate: learnable
            asked[problem] = asked.get(problem, 0) + 1
            if kind == "phrase":  # one text after every failure, and every retry passes
                return "Add them all."
            helps = kind in ("good", "forgets") or ("(0)" in problem and asked[problem] % 2 == 1)
            return "Add them." if helps else "Divide?"
        if len(messages) == 1 and "2 + 2" in problem:  # the guard: forgotten by one model
            return "5" if kind == "forgets" else "4"
        if len(messages) == 1:  # first tries: task 1 passes, except under the bad model;
            sharp = kind == "sharp" and "(2)" in problem  # the sharp model also answers task 2
            return "42" if ("(1)" in problem and kind != "bad") or sharp else "7"
        return "42" if "add" in messages[-2]["content"].lower() else "5"

    scripted = ScriptedModel(default=reply)
    tasks = [math_task(prompt=f"What is 17 + 25? ({i})") for i in range(3)]
    seen: list[tuple[int, Any]] = []

    def run(
        plan: dict[int, str],
        rounds: int,
        name: str,
        guard: Any = (),
        first_try: float = 0.0,
        min_carrying: float | None = None,
    ) -> list[Any]:
        seen.clear()
        asked.clear()

        def sampler(round_: int, previous: Any) -> str:
            seen.append((round_, previous))
            behaviour["name"] = plan[round_]
            return scripted.model

        cfg = config(tmp_path, tiny, mode="offline", max_steps=1, per_device_train_batch_size=2,
                     num_generations=2, output_dir=str(tmp_path / "unused"))  # fmt: skip
        settings = load_settings(log_path=tmp_path / f"{name}.jsonl")
        return train_rounds(tasks, cfg, tmp_path / name, rounds=rounds, sampler=sampler,
                            settings=settings, gate=0.0, guard=guard,
                            gate_first_try=first_try, greedy_branch=min_carrying is not None,
                            min_carrying=min_carrying, say=lambda _m: None)  # fmt: skip

    # base (task 1's first try + half of task 0's retries: 1.5 of 3) → bad (no first try: 0.5
    # of 3): rejected → base again, trained from the start → good (every retry passes: 3 of 3):
    # the best, so the run ends on round 3's model
    results = run({1: "base", 2: "bad", 3: "base", 4: "good"}, 3, "a")
    assert [(r.round, r.gate) for r in results] == [(1, "kept"), (2, "rejected"), (3, "kept"),
                                                    (4, "scored")]  # fmt: skip
    scores = [round(r.sampled.second_try_rate, 3) for r in results]
    assert scores == [0.5, 0.167, 0.5, 1.0]
    assert results[0].steps == results[2].steps == 1
    assert results[1].steps == 0 and not (tmp_path / "a/round-02/train").exists()
    first, _, third, last = results
    assert [(r, p) for r, p in seen] == [(1, None), (2, first), (3, None), (4, third)]
    config_3 = json.loads((tmp_path / "a/round-03/train/rrr_train_config.json").read_text())
    assert config_3["init_adapter"] is None  # trained from the start again, not from round 1
    assert last.adapter == third.adapter and last.merged == third.merged
    assert last.to_dict()["sampled"]["second_try_rate"] == 1.0

    # The best model is never rejected: sampled again, it adds to its scores and is judged by
    # their mean (0.5 and 0.167: 0.333), and it trains. The last model (0.167) scores below that
    # mean: the run ends on the best, here the base model.
    results = run({1: "base", 2: "bad", 3: "bad", 4: "bad"}, 3, "b")
    assert [(r.round, r.gate, r.steps) for r in results] == [
        (1, "kept", 1), (2, "rejected", 0), (3, "kept", 1), (4, "scored", 0),
    ]  # fmt: skip
    assert [(r, p) for r, p in seen] == [(1, None), (2, results[0]), (3, None), (4, results[2])]
    assert results[-1].adapter is None and results[-1].merged is None

    # The forgetting guard: a model whose first try on the guard tasks falls below the starting
    # model's is rejected and never becomes the best, though it scores highest (1.0 against
    # 0.5). Without the guard the same models end the run on round 3's, which forgets.
    guard = [math_task("4", prompt=f"What is 2 + 2? (g{i})") for i in range(4)]
    plan = {1: "base", 2: "forgets", 3: "base", 4: "forgets"}
    results = run(plan, 3, "g", guard)
    assert [(r.round, r.gate, r.steps) for r in results] == [
        (1, "kept", 1), (2, "rejected", 0), (3, "kept", 1), (4, "scored", 0),
    ]  # fmt: skip
    assert [r.sampled.guard_rate for r in results] == [1.0, 0.0, 1.0, 0.0]
    assert [round(r.sampled.second_try_rate, 3) for r in results] == [0.5, 1.0, 0.5, 1.0]
    assert [(r, p) for r, p in seen] == [(1, None), (2, results[0]), (3, None), (4, results[2])]
    assert results[-1].adapter is None  # back to the start: the one model that kept the guard
    assert results[0].to_dict()["sampled"]["guard_rate"] == 1.0
    logged = "".join(f.read_text() for f in (tmp_path / "g").glob("round-*/groups.jsonl"))
    assert "17 + 25" in logged and "2 + 2" not in logged  # the guard is never training data
    unguarded = run(plan, 3, "u")
    assert [(r.gate, r.sampled.guard_rate) for r in unguarded][:2] == [("kept", None)] * 2
    assert unguarded[-1].adapter == unguarded[2].adapter is not None

    # The carrying floor: a model whose greedy reflections carry nothing (one text after every
    # failure) is rejected and never becomes the best, though every retry after it passes (1.0
    # against 0.5). Without the floor the same models end the run on round 3's, the phrase.
    plan = {1: "base", 2: "phrase", 3: "base", 4: "phrase"}
    floored = run(plan, 3, "f", min_carrying=0.5)
    assert [(r.round, r.gate, r.steps) for r in floored] == [
        (1, "kept", 1), (2, "rejected", 0), (3, "kept", 1), (4, "scored", 0),
    ]  # fmt: skip
    phrase = floored[1].sampled
    assert (phrase.greedy_reflections, phrase.greedy_carrying, phrase.second_try_rate) == (
        2, 0, 1.0,
    )  # fmt: skip
    assert floored[-1].adapter is None  # back to the start: the one model that carried
    unfloored = run(plan, 3, "nf")
    assert [r.gate for r in unfloored][:2] == ["kept", "kept"]
    assert unfloored[1].sampled.greedy_reflections == 0  # no greedy branch: not counted
    assert unfloored[-1].adapter == unfloored[2].adapter is not None

    # The first try's share of the score: the sharp model (first try 2 of 3, expected second
    # try 2.5 of 3) against the good one (1 of 3, 3 of 3). On the expected second try alone
    # the good model (round 2's) ends the run; with the first try at 0.75 of the score, round
    # 1's model (the sharp one: 0.708 against 0.5) does.
    plan = {1: "base", 2: "sharp", 3: "good"}
    alone = run(plan, 2, "s0")
    assert [(r.gate, round(r.sampled.second_try_rate, 3)) for r in alone] == [
        ("kept", 0.5), ("kept", 0.833), ("scored", 1.0),
    ]  # fmt: skip
    assert [round(r.sampled.first_try_rate, 3) for r in alone] == [0.333, 0.667, 0.333]
    assert alone[-1].adapter == alone[1].adapter is not None
    assert [round(r.score, 3) for r in alone] == [0.5, 0.833, 1.0]
    weighed = run(plan, 2, "s1", first_try=0.75)
    assert [(r.gate, r.steps) for r in weighed] == [("kept", 1), ("kept", 1), ("scored", 0)]
    assert [round(r.score, 3) for r in weighed] == [0.375, 0.708, 0.5]
    assert weighed[1].to_dict()["score"] == weighed[1].score
    assert weighed[-1].adapter == weighed[0].adapter is not None
    assert weighed[-1].adapter != weighed[1].adapter

    with pytest.raises(ConfigError, match="beyond_plain"):
        train_rounds(tasks, config(tmp_path, tiny), tmp_path / "c", rounds=1, gate=0.0,
                     sampler=lambda _r, _p: scripted.model, beyond_plain=True)  # fmt: skip
    with pytest.raises(ConfigError, match="guard"):
        train_rounds(tasks, config(tmp_path, tiny), tmp_path / "c", rounds=1, guard=guard,
                     sampler=lambda _r, _p: scripted.model)  # fmt: skip
    with pytest.raises(ConfigError, match="guard_concurrency=0"):
        train_rounds(tasks, config(tmp_path, tiny), tmp_path / "c", rounds=1, guard=guard,
                     gate=0.0, guard_concurrency=0,
                     sampler=lambda _r, _p: scripted.model)  # fmt: skip
    with pytest.raises(ConfigError, match=r"gate_first_try=1\.5"):
        train_rounds(tasks, config(tmp_path, tiny), tmp_path / "c", rounds=1, gate=0.0,
                     gate_first_try=1.5, sampler=lambda _r, _p: scripted.model)  # fmt: skip
    for kwargs in ({"gate": 0.0}, {"greedy_branch": True}):
        with pytest.raises(ConfigError, match="min_carrying judges"):
            train_rounds(tasks, config(tmp_path, tiny), tmp_path / "c", rounds=1,
                         min_carrying=0.5, sampler=lambda _r, _p: scripted.model,
                         **kwargs)  # fmt: skip
    with pytest.raises(ConfigError, match=r"min_carrying=2"):
        train_rounds(tasks, config(tmp_path, tiny), tmp_path / "c", rounds=1, gate=0.0,
                     greedy_branch=True, min_carrying=2,
                     sampler=lambda _r, _p: scripted.model)  # fmt: skip
    with pytest.raises(ConfigError, match="gate_first_try weighs"):
        train_rounds(tasks, config(tmp_path, tiny), tmp_path / "c", rounds=1,
                     gate_first_try=0.5, sampler=lambda _r, _p: scripted.model)  # fmt: skip
    assert not (tmp_path / "c").exists()  # refused before any round folder


def test_blend_weights_interpolates_every_tensor_and_loads(tiny: Path, tmp_path: Path) -> None:
    """A blend is base + w·(trained − base), tensor by tensor, in a folder transformers loads; a
    bad weight, a model of another shape or an existing folder is refused with nothing written."""
    import torch
    from rrr_trainer.blend import blend_weights
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from rrr_agent import DataError

    from .tiny_model import build_tiny_model

    trained = build_tiny_model(tmp_path / "trained", seed=1)  # same shapes, other weights
    base_t = load_file(str(tiny / "model.safetensors"))
    trained_t = load_file(str(trained / "model.safetensors"))
    name = next(n for n in trained_t if not torch.equal(base_t[n], trained_t[n]))
    for w in (0.0, 0.25, 1.0):
        out = blend_weights(tiny, trained, tmp_path / f"blend-{w}", w)
        got = load_file(str(out / "model.safetensors"))
        assert set(got) == set(trained_t)
        want = base_t[name].float() + w * (trained_t[name].float() - base_t[name].float())
        assert torch.allclose(got[name].float(), want, atol=1e-6)
        assert got[name].dtype == trained_t[name].dtype
    assert torch.equal(load_file(str(tmp_path / "blend-1.0" / "model.safetensors"))[name],
                       trained_t[name])  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "blend-0.25"))
    assert model(torch.tensor([[1, 2, 3]])).logits.shape[-1] == model.config.vocab_size
    assert (tmp_path / "blend-0.25" / "tokenizer.json").is_file()  # the trained folder's rest

    with pytest.raises(ConfigError, match="between 0"):
        blend_weights(tiny, trained, tmp_path / "bad-weight", 1.5)
    with pytest.raises(ConfigError, match="already exists"):
        blend_weights(tiny, trained, tmp_path / "blend-1.0", 0.5)
    wider = build_tiny_model(tmp_path / "wider", hidden=128)
    with pytest.raises(DataError, match="shape") as err:
        blend_weights(tiny, wider, tmp_path / "bad-shape", 0.5)
    assert "model.safetensors" in str(err.value)  # names the file
    with pytest.raises(DataError, match=r"no \*\.safetensors"):
        blend_weights(tmp_path / "nowhere", trained, tmp_path / "bad-base", 0.5)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["blend-0.0", "blend-0.25", "blend-1.0", "trained", "wider"]  # no half-blend


def test_round_plain_branch_checked_form_writes_the_demonstrated_reflection(tmp_path: Path) -> None:
    """``plain_branch_form="checked"`` gives the passing plain retry in the form the ``-demo``
    prompts demonstrate: the failed equation's value checked against the target, then the
    model's own passing equation. The model's retry after it is its own, and verified; the
    form refuses tasks that are not Countdown and needs ``plain_branch``."""
    from rrr_trainer.rounds import sample_groups

    from rrr_agent import load_settings
    from rrr_agent.tasksets.countdown2 import make_task

    def reply(messages: list[dict[str, Any]]) -> str:
        last = messages[-1]["content"]
        if len(messages) == 2:
            return " 14 * 9"  # every first attempt fails (target 23)
        if last.endswith("That was wrong. Try again. Equation:"):
            return " 14 + 9"  # the plain retry passes
        if last.endswith("Reflection:"):
            return " Multiply again."
        return " 14 + 9" if "14 + 9 = 23" in messages[-2]["content"] else " 14 * 9"

    scripted = ScriptedModel(default=reply)
    tasks = [make_task(14, 9, 23, task_id=f"c{i}") for i in range(2)]
    settings = load_settings(log_path=tmp_path / "x.jsonl")
    report = sample_groups(tasks, scripted.model, tmp_path / "on.jsonl", k=2, settings=settings,
                           concurrency=1, plain_control=True, plain_branch=True,
                           plain_branch_form="checked")  # fmt: skip
    assert (report.plain_branches, report.plain_branches_passed, report.learnable) == (2, 2, 2)
    kept = list(TrajectoryStore(tmp_path / "on.jsonl").read())
    given = kept[0].groups[0].candidates[-1]
    assert given.reflection is not None and given.reflection.given
    assert given.reflection.text == "14 * 9 = 126, not 23. 14 + 9 = 23."
    assert given.retry is not None and given.retry.text == " 14 + 9" and given.reward == 1.0
    sampled = kept[0].groups[0].candidates[0]
    assert sampled.reflection is not None and sampled.reflection.text.strip() == "Multiply again."

    with pytest.raises(ConfigError, match="needs plain_branch"):
        sample_groups(tasks, scripted.model, tmp_path / "bad.jsonl", k=2, settings=settings,
                      plain_control=True, plain_branch_form="checked")  # fmt: skip
    with pytest.raises(ConfigError, match="'exact' verifier"):
        sample_groups([math_task(id="m")], scripted.model, tmp_path / "bad.jsonl", k=2,
                      settings=settings, plain_control=True, plain_branch=True,
                      plain_branch_form="checked")  # fmt: skip
    with pytest.raises(ConfigError, match="one of answer, checked"):
        sample_groups(tasks, scripted.model, tmp_path / "bad.jsonl", k=2, settings=settings,
                      plain_control=True, plain_branch=True, plain_branch_form="shown")  # fmt: skip
    assert not (tmp_path / "bad.jsonl").exists()
