"""Integration: mine real failures of the embedded model, 2 GRPO steps with LoRA on CPU, then the
result served by the real vLLM server (`rrr serve`) and queried."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("trl", reason="needs the 'train' extra")
pytest.importorskip("vllm", reason="needs the 'serve-cpu' extra")

import openai
from rrr_trainer import RRRTrainConfig, mine_failures

from rrr_agent import Engine, SamplingParams, embedded
from rrr_agent.serving import free_port
from rrr_agent.tasksets import get_taskset

from .conftest import REPO

pytestmark = pytest.mark.slow
RRR = str(Path(sys.executable).with_name("rrr"))


def test_two_lora_steps_on_the_embedded_model_then_served_by_vllm(tmp_path: Path) -> None:
    from rrr_trainer import train

    embedded.prepare()
    tasks = list(get_taskset("countdown2-train").load())[:6]
    failures = tmp_path / "failures.jsonl"
    report = mine_failures(tasks, "local/gemma-3-270m", failures, samples=2, keep_per_task=1,
                           max_tokens=12)  # fmt: skip
    assert report.failures_kept >= 2, report.to_dict()

    config = RRRTrainConfig(
        output_dir=str(tmp_path / "run"), max_steps=2, num_generations=2,
        per_device_train_batch_size=2, max_reflection_tokens=16, max_retry_tokens=12,
        holdout_fraction=0.0, save_steps=1, seed=1,
    )  # fmt: skip
    result = train(config, [failures])
    assert result.steps == 2
    rows = [json.loads(x) for x in result.metrics_path.read_text().splitlines()]
    assert [r["step"] for r in rows if "rrr/retry_success" in r] == [1, 2]
    assert result.adapter_dir is not None and result.merged_dir is not None
    adapter_cfg = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == str(embedded.checkpoint_dir())

    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [RRR, "serve", "--checkpoint", str(result.merged_dir), "--port", str(port), "--name",
         "trained", "--lora", f"trained-adapter={result.adapter_dir}", "--max-lora-rank", "8"],
        stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        base_url = None
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline and base_url is None:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("base URL:"):
                base_url = line.split(":", 1)[1].strip()
        assert base_url, (tmp_path / "serve.log").read_text()[-3000:]
        client = openai.OpenAI(base_url=base_url, api_key="none")
        assert {m.id for m in client.models.list()} == {"trained", "trained-adapter"}
        task = next(iter(get_taskset("countdown2-test").load()))
        for model in ("trained", "trained-adapter"):
            reply = client.chat.completions.create(
                model=model, messages=task.openai_messages(), max_tokens=12, temperature=0,  # type: ignore[arg-type]
                stop=["\nUser:"],
            )  # fmt: skip
            assert reply.choices[0].message.content is not None
        sampling = SamplingParams(max_tokens=16, temperature=0, stop=["\nUser:"])
        engine = Engine("hosted_vllm/trained", api_base=base_url, sampling=sampling)
        traj = engine.run_sync(task)
        assert traj.response_model == "trained" and traj.attempts[0].usage.completion_tokens > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
