"""The policy being trained, shared by both modes (online GRPO and offline groups).

One place for: the torch environment, which checkpoint a config names, loading model and tokenizer,
the LoRA configuration, the token ids that end a reflection, and :class:`TrainedPolicy` (what a
mode hands back for export). Neither mode module imports the other; :mod:`rrr_trainer.run`
dispatches between them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rrr_agent import ConfigError, DataError, embedded, require_extra

from .config import RRRTrainConfig

__all__ = [
    "ProgressHook",
    "TrainedPolicy",
    "load_policy",
    "lora_config",
    "reflection_end_token",
    "reflection_eos_ids",
    "resolve_model_path",
    "torch_env",
    "uses_transcript_template",
    "with_adapter",
]

#: ``progress(step, total_steps, latest_metrics)``, called after every optimizer step.
ProgressHook = Callable[[int, int, dict[str, Any]], None]


@dataclass
class TrainedPolicy:
    """What a training mode leaves for export: the model (PEFT-wrapped with LoRA), its tokenizer,
    the eos ids the checkpoint had before training changed them, and a trainer-like state
    (``global_step``, ``log_history``)."""

    model: Any
    tokenizer: Any
    original_eos: list[int]
    state: Any


def torch_env(threads: int | None) -> None:
    """Offline, no busy-waiting OpenMP threads (docs/platform-notes.md, "Threads"), then torch."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    torch = require_extra("torch", "training")
    if threads:
        torch.set_num_threads(threads)


def resolve_model_path(model: str) -> Path:
    """The checkpoint folder a config's ``model`` names: the embedded model (prepared on first
    use) or a folder holding ``config.json``."""
    if model in (embedded.EMBEDDED_MODEL, embedded.EMBEDDED_MODEL_STRING):
        return embedded.prepare()
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        raise DataError(f"model {model!r} is neither 'gemma-3-270m' nor a checkpoint folder")
    return path.resolve()


def uses_transcript_template(tokenizer: Any) -> bool:
    return embedded.is_transcript_template(tokenizer.chat_template)


def load_policy(path: Path, config: RRRTrainConfig) -> tuple[Any, Any, list[int]]:
    """(model, tokenizer, original eos ids) for training, left-padded, in the config's dtype."""
    torch = require_extra("torch", "training")
    transformers = require_extra("transformers", "training")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
    embedded.use_shipped_transcript(tokenizer)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.bfloat16 if config.bf16 else torch.float32
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    eos = model.generation_config.eos_token_id
    original = [eos] if isinstance(eos, int) else list(eos or [])
    return model, tokenizer, original


def lora_config(config: RRRTrainConfig) -> Any:
    """The PEFT LoRA configuration of a run, or None for a full fine-tune."""
    if not config.use_lora:
        return None
    peft = require_extra("peft", "LoRA training")
    return peft.LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_target_modules),
        layers_to_transform=sorted(config.lora_layers) if config.lora_layers else None,
        task_type="CAUSAL_LM",
    )


def with_adapter(model: Any, config: RRRTrainConfig) -> Any:
    """The model to train: wrapped in a fresh LoRA adapter (``use_lora``), in the adapter named
    by ``init_adapter`` (training goes on from it, e.g. the promoted checkpoint), or as it is
    (a full fine-tune). Both modes call this, so LoRA is set up in one place."""
    if config.init_adapter:
        peft = require_extra("peft", "LoRA training")
        folder = Path(config.init_adapter).expanduser()
        if not (folder / "adapter_config.json").is_file():
            raise DataError(f"init_adapter {folder} is not a PEFT adapter folder")
        return peft.PeftModel.from_pretrained(model, str(folder), is_trainable=True)
    peft_config = lora_config(config)
    if peft_config is None:
        return model
    layers = getattr(model.config, "num_hidden_layers", None)
    if config.lora_layers and layers is not None and max(config.lora_layers) >= layers:
        raise ConfigError(
            f"lora_layers {sorted(config.lora_layers)}: the model has {layers} decoder layers "
            f"(0-{layers - 1})"
        )
    peft = require_extra("peft", "LoRA training")
    return peft.get_peft_model(model, peft_config)


def _ends_at_newline(tokenizer: Any, policy: str) -> bool:
    # Base models with rrr's transcript template write one-line reflections.
    return policy == "newline" or (policy == "auto" and uses_transcript_template(tokenizer))


def reflection_eos_ids(tokenizer: Any, base_eos: list[int], policy: str) -> list[int]:
    """Every token id that ends a reflection (and a retry) while training online."""
    ids = list(base_eos)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.insert(0, tokenizer.eos_token_id)
    if _ends_at_newline(tokenizer, policy):
        vocab_size = len(tokenizer)
        ids += [i for i in range(vocab_size) if i not in ids and "\n" in tokenizer.decode([i])]
    return ids


def reflection_end_token(tokenizer: Any, base_eos: list[int], policy: str) -> int:
    """The one token appended after a logged reflection (offline mode), by the same rule: a
    newline for transcript-template base models, else the end-of-turn token."""
    if _ends_at_newline(tokenizer, policy):
        return int(tokenizer("\n", add_special_tokens=False).input_ids[-1])
    return int(base_eos[0] if base_eos else tokenizer.eos_token_id)


def world_size() -> int:
    """Processes training together (``accelerate launch``/``torchrun`` set ``WORLD_SIZE``)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 (or a single process): the one that writes files and prints results."""
    return int(os.environ.get("RANK", "0")) == 0
