"""Serving throughput: the in-process backend vs vLLM, 1 and 16 concurrent requests, one run.

Every request generates exactly ``--tokens`` tokens (``ignore_eos``), greedy, from the same
prompt, so tokens/s compare like for like. Then, on vLLM, the same load through a LoRA adapter
(rank 8, loaded at start) vs the base model: the ratio is the cost of serving an adapter.

Usage: ``python benchmarks/serving.py [--tokens 64] [--json]``. Needs the ``model`` and
``serve-cpu`` (or ``serve``) extras. Run it on a quiet machine: it measures wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

MESSAGES = [
    {"role": "system", "content": "You are a storyteller."},
    {"role": "user", "content": "Tell a long story about a lighthouse keeper and a storm."},
]


def bench_local(tokens: int, repeats: int) -> dict[str, float]:
    from rrr_agent import embedded
    from rrr_agent.local import LocalModel

    model = LocalModel(embedded.prepare(), name="bench")
    params = {"max_tokens": tokens, "ignore_eos": True, "stop": []}

    async def run(concurrency: int) -> float:
        start = time.perf_counter()
        outs = await asyncio.gather(
            *(model.complete(MESSAGES, params=params) for _ in range(concurrency))
        )
        elapsed = time.perf_counter() - start
        assert all(o.usage.completion_tokens == tokens for o in outs)
        return concurrency * tokens / elapsed

    asyncio.run(run(1))  # warm-up
    result = {
        "1": max(asyncio.run(run(1)) for _ in range(repeats)),
        "16": max(asyncio.run(run(16)) for _ in range(repeats)),
    }
    model.close()
    return result


def bench_vllm(tokens: int, repeats: int) -> dict[str, float]:
    import openai

    from rrr_agent import embedded
    from rrr_agent.serving import VLLMServer

    sys_path = Path(__file__).resolve().parents[1]
    import sys

    sys.path.insert(0, str(sys_path))
    from tests.lora import make_noisy_adapter

    checkpoint = embedded.prepare()
    adapter = make_noisy_adapter(checkpoint, Path(tempfile.mkdtemp()) / "bench-adapter")
    server = VLLMServer(name="base", loras={"adapter": adapter}, max_lora_rank=8)
    print("starting vLLM (about a minute on CPU)...", flush=True)
    with server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="none", max_retries=0)
        extra = {"ignore_eos": True, "min_tokens": tokens}

        async def one(model: str) -> int:
            r = await client.chat.completions.create(
                model=model,
                messages=MESSAGES,  # type: ignore[arg-type]
                max_tokens=tokens,
                temperature=0,
                extra_body=extra,
            )
            assert r.usage is not None
            return r.usage.completion_tokens

        async def run(model: str, concurrency: int) -> float:
            start = time.perf_counter()
            counts = await asyncio.gather(*(one(model) for _ in range(concurrency)))
            elapsed = time.perf_counter() - start
            assert all(c == tokens for c in counts)
            return sum(counts) / elapsed

        async def all_runs() -> dict[str, float]:
            await run("base", 2)
            await run("adapter", 2)  # warm-ups
            out: dict[str, float] = {}
            for model in ("base", "adapter"):
                for concurrency in (1, 16):
                    out[f"{model}-{concurrency}"] = max(
                        [await run(model, concurrency) for _ in range(repeats)]
                    )
            await client.close()
            return out

        return asyncio.run(all_runs())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    local = bench_local(args.tokens, args.repeats)
    vllm = bench_vllm(args.tokens, args.repeats)
    report: dict[str, Any] = {
        "tokens_per_request": args.tokens,
        "tokens_per_s": {
            "in-process, 1 request": local["1"],
            "in-process, 16 concurrent": local["16"],
            "vLLM, 1 request": vllm["base-1"],
            "vLLM, 16 concurrent": vllm["base-16"],
            "vLLM + LoRA, 1 request": vllm["adapter-1"],
            "vLLM + LoRA, 16 concurrent": vllm["adapter-16"],
        },
        "ratios": {
            "vLLM / in-process, 1 request": vllm["base-1"] / local["1"],
            "vLLM / in-process, 16 concurrent": vllm["base-16"] / local["16"],
            "adapter / base on vLLM, 1 request": vllm["adapter-1"] / vllm["base-1"],
            "adapter / base on vLLM, 16 concurrent": vllm["adapter-16"] / vllm["base-16"],
        },
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"serving throughput, {args.tokens} generated tokens per request, best of {args.repeats}")
    for name, value in report["tokens_per_s"].items():
        print(f"  {name:<30} {value:8.1f} tok/s")
    for name, value in report["ratios"].items():
        print(f"  {name:<38} {value:6.2f}")


if __name__ == "__main__":
    main()
