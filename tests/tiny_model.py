"""A tiny causal LM built locally: a byte-level BPE tokenizer trained here on rrr-shaped text, and
a randomly initialised 2-layer Llama. Loads in well under a second; used by trainer tests."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "Use both numbers exactly once with one of + - * / to reach the target.",
    "Numbers: 14, 9. Target: 23.",
    "14 + 9",
    "50 / 2",
    "You tried solving the problem and got the wrong answer. Reflect on what went wrong and "
    "write a short explanation that will help you do better next time.",
    "Try again, using your reflection. Give only your new answer.",
    "User: Assistant: abcdefghijklmnopqrstuvwxyz 0123456789",
]


def build_tiny_model(out: Path, *, seed: int = 0, hidden: int = 64) -> Path:
    """``hidden=256`` gives head size 64, which vLLM's CPU kernels serve."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from rrr_agent.embedded import chat_template

    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        unk_token="<unk>",
    )  # fmt: skip
    fast.chat_template = chat_template()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2 if hidden == 64 else 4,
        max_position_embeddings=2048,
        bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id, tie_word_embeddings=False,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = [fast.eos_token_id]
    model.generation_config.pad_token_id = fast.pad_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    fast.save_pretrained(str(out))
    return out
