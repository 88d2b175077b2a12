"""Runtime overhead: the rrr engine vs the raw ``openai`` client against an instant local server.

Both arms send the same chat requests to the same OpenAI-compatible stub server (a separate process
on 127.0.0.1 that answers at once), in the same run, alternating rounds so machine noise hits both:

* ``openai``  — ``openai.AsyncOpenAI`` issuing the requests directly (the baseline);
* ``rrr``     — ``Engine.run_many`` on single-attempt tasks: litellm ``hosted_vllm/`` model string,
  exact verifier, JSONL trajectory logging, events — everything a real run does;
* ``litellm`` — ``litellm.acompletion`` alone, to separate litellm's cost from ours;
* ``engine-only`` — the engine with an in-process client that returns at once and the same logging:
  no network, so its CPU time is the orchestration + verification + logging cost per trajectory.

Prints throughput ratio rrr/openai (target ≥ 0.95) and CPU ms per trajectory of the orchestration
and logging (target ≤ 1 ms). Usage: ``python benchmarks/runtime_overhead.py [--requests 512]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rrr_agent import Engine, ModelOutput, Task, TrajectoryStore, Usage


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rrr_agent.testing", "--port", str(port), "--reply", "ok"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("stub server did not start")


def make_tasks(n: int) -> list[Task]:
    return [
        Task.from_prompt(f"Say ok. (request {i})", {"type": "exact", "expected": "ok"}, id=f"b{i}")
        for i in range(n)
    ]


class InstantClient:
    """An in-process ModelClient that answers at once: isolates the engine's own cost."""

    model = "instant/ok"

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        params: dict[str, Any],
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | None = None,
        timeout: float | None = None,
    ) -> ModelOutput:
        return ModelOutput(text="ok", finish_reason="stop", usage=Usage(total_tokens=5))


async def bounded(n: int, concurrency: int, fn: Callable[[int], Awaitable[Any]]) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await fn(i)

    await asyncio.gather(*(one(i) for i in range(n)))


async def arm_openai(base_url: str, tasks: list[Task], concurrency: int) -> None:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0)

    async def call(i: int) -> None:
        reply = await client.chat.completions.create(
            model="stub",
            messages=tasks[i].openai_messages(),  # type: ignore[arg-type]
            timeout=60,
        )
        assert reply.choices[0].message.content == "ok"

    await bounded(len(tasks), concurrency, call)
    await client.close()


async def arm_litellm(base_url: str, tasks: list[Task], concurrency: int) -> None:
    from rrr_agent._providers import import_litellm

    litellm = import_litellm()

    async def call(i: int) -> None:
        reply = await litellm.acompletion(
            model="hosted_vllm/stub",
            messages=tasks[i].openai_messages(),
            api_base=base_url,
            timeout=60,
            max_retries=0,
        )
        assert reply.choices[0].message.content == "ok"

    await bounded(len(tasks), concurrency, call)


async def arm_engine(engine: Engine, tasks: list[Task], concurrency: int) -> None:
    passed = 0
    async for result in engine.run_many(tasks, concurrency=concurrency):
        assert result.trajectory is not None, result.error
        passed += result.trajectory.first_try_passed
    assert passed == len(tasks)


def measure(fn: Callable[[], Coroutine[Any, Any, None]]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for one round."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    asyncio.run(fn())
    return time.perf_counter() - wall0, time.process_time() - cpu0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=512)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per arm")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args()

    port = free_port()
    server = start_server(port)
    base_url = f"http://127.0.0.1:{port}/v1"
    tasks = make_tasks(args.requests)
    tmp = Path(tempfile.mkdtemp(prefix="rrr-bench-"))
    results: dict[str, list[tuple[float, float]]] = {}
    try:

        def rrr_round(r: int) -> Callable[[], Coroutine[Any, Any, None]]:
            store = TrajectoryStore(tmp / f"rrr-{r}.jsonl")
            engine = Engine("hosted_vllm/stub", api_base=base_url, store=store, timeout_s=60)
            return lambda: arm_engine(engine, tasks, args.concurrency)

        def engine_only_round(r: int) -> Callable[[], Coroutine[Any, Any, None]]:
            store = TrajectoryStore(tmp / f"engine-{r}.jsonl")
            engine = Engine(InstantClient(), store=store)
            return lambda: arm_engine(engine, tasks, args.concurrency)

        arms: dict[str, Callable[[int], Callable[[], Coroutine[Any, Any, None]]]] = {
            "openai": lambda r: lambda: arm_openai(base_url, tasks, args.concurrency),
            "rrr": rrr_round,
            "litellm": lambda r: lambda: arm_litellm(base_url, tasks, args.concurrency),
            "engine-only": engine_only_round,
        }
        # Warm-up: imports, connection set-up, litellm's first-call work.
        warm = tasks[: min(64, len(tasks))]
        asyncio.run(arm_openai(base_url, warm, args.concurrency))
        asyncio.run(arm_litellm(base_url, warm, args.concurrency))
        asyncio.run(arm_engine(Engine(InstantClient()), warm, args.concurrency))
        for r in range(args.rounds):
            for name, make in arms.items():
                results.setdefault(name, []).append(measure(make(r)))
    finally:
        server.kill()
        server.wait()

    n = args.requests
    summary: dict[str, dict[str, float]] = {}
    for name, rounds in results.items():
        wall = statistics.median(w for w, _ in rounds)
        cpu = statistics.median(c for _, c in rounds)
        summary[name] = {
            "requests_per_s": n / wall,
            "wall_s": wall,
            "cpu_ms_per_request": 1000 * cpu / n,
        }
    ratio = summary["rrr"]["requests_per_s"] / summary["openai"]["requests_per_s"]
    engine_cpu = summary["engine-only"]["cpu_ms_per_request"]
    over_litellm = summary["rrr"]["cpu_ms_per_request"] - summary["litellm"]["cpu_ms_per_request"]
    report = {
        "requests": n,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "arms": summary,
        "throughput_ratio_rrr_vs_openai": ratio,
        "orchestration_logging_cpu_ms_per_trajectory": engine_cpu,
        "rrr_cpu_ms_over_litellm_per_trajectory": over_litellm,
        "targets": {"throughput_ratio": ">= 0.95", "cpu_ms_per_trajectory": "<= 1.0"},
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"runtime overhead: {n} single-attempt tasks, concurrency {args.concurrency}, "
        f"median of {args.rounds} alternating rounds, instant server on 127.0.0.1"
    )
    print(f"{'arm':<12} {'req/s':>9} {'wall s':>8} {'CPU ms/req':>11}")
    for name, row in summary.items():
        print(
            f"{name:<12} {row['requests_per_s']:>9.1f} {row['wall_s']:>8.2f} "
            f"{row['cpu_ms_per_request']:>11.3f}"
        )
    ok = "meets" if ratio >= 0.95 else "MISSES"
    print(f"throughput ratio rrr / raw openai: {ratio:.3f} ({ok} target >= 0.95)")
    ok = "meets" if engine_cpu <= 1.0 else "MISSES"
    print(
        f"orchestration + logging CPU per trajectory (engine-only arm): {engine_cpu:.3f} ms "
        f"({ok} target <= 1 ms)"
    )
    print(f"rrr CPU over bare litellm per trajectory: {over_litellm:.3f} ms")


if __name__ == "__main__":
    main()
