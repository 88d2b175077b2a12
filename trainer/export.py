"""What training leaves behind: a PEFT adapter (loadable at run time by vLLM or ``local/``), merged
full weights that vLLM serves directly, and a model card."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .config import RRRTrainConfig
from .data import DataReport

__all__ = ["export_model", "write_model_card"]


def _restore_generation(model: Any, original_eos: list[int]) -> None:
    # Training ended reflections at newlines; the served model keeps its own end-of-turn ids.
    model.generation_config.eos_token_id = list(original_eos)


def export_model(
    model: Any,
    tokenizer: Any,
    output_dir: Path,
    config: RRRTrainConfig,
    original_eos: list[int],
    report: DataReport,
    state: Any,
) -> tuple[Path | None, Path | None]:
    """(adapter_dir, merged_dir) under ``output_dir/final``."""
    final = output_dir / "final"
    final.mkdir(parents=True, exist_ok=True)
    tokenizer.padding_side = "right"
    adapter_dir: Path | None = None
    merged_dir: Path | None = None
    is_peft = hasattr(model, "peft_config")
    if is_peft:
        adapter_dir = final / "adapter"
        _restore_generation(model, original_eos)
        model.save_pretrained(str(adapter_dir))
        if config.merge:
            merged = model.merge_and_unload()
            merged_dir = final / "merged"
            _restore_generation(merged, original_eos)
            merged.save_pretrained(str(merged_dir), safe_serialization=True)
            tokenizer.save_pretrained(str(merged_dir))
    else:
        merged_dir = final / "model"
        _restore_generation(model, original_eos)
        model.save_pretrained(str(merged_dir), safe_serialization=True)
        tokenizer.save_pretrained(str(merged_dir))
    write_model_card(final / "README.md", config, report, state, adapter_dir, merged_dir)
    (final / "rrr_train_config.json").write_text(json.dumps(config.to_dict(), indent=2))
    return adapter_dir, merged_dir


def _last_metrics(state: Any) -> dict[str, Any]:
    history = list(getattr(state, "log_history", []) or [])
    merged: dict[str, Any] = {}
    for row in history:
        merged.update({k: v for k, v in row.items() if isinstance(v, int | float)})
    return merged


def write_model_card(
    path: Path,
    config: RRRTrainConfig,
    report: DataReport,
    state: Any,
    adapter_dir: Path | None,
    merged_dir: Path | None,
) -> None:
    metrics = _last_metrics(state)
    keys = ["reward", "rrr/retry_success", "rrr/reflection_chars", "rrr/reflection_holds_answer",
            "frac_reward_zero_std", "kl", "grad_norm", "train_loss"]  # fmt: skip
    rows = "\n".join(f"| {k} | {metrics[k]:.4g} |" for k in keys if k in metrics)
    lines = [
        "# rrr-trained model",
        "",
        "Trained with Reflect, Retry, Reward (arXiv 2505.24726): GRPO over logged failures, "
        "reward on the reflection tokens only, reward = the retry passes the task's verifier.",
        "",
        f"- base model: `{config.model}`",
        f"- mode: {config.mode}; {'LoRA r=' + str(config.lora_r) if config.use_lora else 'full'}",
        f"- steps: {getattr(state, 'global_step', 0)}; learning rate "
        f"{config.resolved_learning_rate():g}; KL beta {config.beta}; group size "
        f"{config.num_generations}",
        f"- data: {report.train} training failures from {report.tasks_train} tasks "
        f"({report.trajectories} trajectories read; {report.heldout} held out)",
        f"- adapter: `{adapter_dir}`" if adapter_dir else "- adapter: none (full fine-tune)",
        f"- full weights (vLLM loads directly): `{merged_dir}`" if merged_dir else "",
        f"- written: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        "| last logged metric | value |",
        "|---|---|",
        rows,
        "",
        "Serve it: `rrr serve --checkpoint <merged>` or `rrr serve load-adapter NAME <adapter>`.",
        "",
    ]
    path.write_text("\n".join(line for line in lines if line is not None), encoding="utf-8")
