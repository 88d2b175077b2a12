"""Proxy overhead: the same pass-through requests sent to ``rrr proxy`` and directly upstream.

Three processes on 127.0.0.1: an OpenAI-compatible stub upstream, ``rrr proxy`` in front of it
(pass-through path: no tools, forwarded as the same HTTP request), and this client. Each round
sends N identical chat requests to one arm, alternating arms, at concurrency 1 and 32; the
medians of the rounds are compared in the same run:

* latency ratio (proxy p50 / direct p50), target at most 1.05;
* throughput ratio (proxy req/s / direct req/s), target at least 0.95.

The upstream answers after ``--delay`` seconds (default 0.1, a fast model's time to answer). With
``--delay 0`` it answers at once and the ratios show the proxy's bare per-request cost instead;
both are printed when ``--delays`` lists several. Usage:
``python benchmarks/proxy_overhead.py [--requests 512] [--rounds 3] [--delays 0.1 0] [--json]``.
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
import time
from pathlib import Path

import httpx

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

BODY = {"model": "stub", "messages": [{"role": "user", "content": "Say ok."}], "max_tokens": 8}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not start")


def start(delay: float, home: Path) -> tuple[list[subprocess.Popen[bytes]], str, str]:
    up_port, proxy_port = free_port(), free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "rrr_agent.testing", "--port", str(up_port), "--delay", str(delay)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    up_url = f"http://127.0.0.1:{up_port}/v1"
    wait_ready(f"{up_url}/models", upstream, "the upstream stub")
    rrr = str(Path(sys.executable).with_name("rrr"))
    proxy = subprocess.Popen(
        [rrr, "proxy", "--upstream", "hosted_vllm/stub", "--api-base", up_url,
         "--port", str(proxy_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "RRR_HOME": str(home)},
    )  # fmt: skip
    proxy_url = f"http://127.0.0.1:{proxy_port}/v1"
    wait_ready(f"{proxy_url}/models", proxy, "rrr proxy")
    return [upstream, proxy], up_url, proxy_url


async def one_round(url: str, n: int, concurrency: int) -> tuple[float, list[float]]:
    """(wall seconds, per-request latencies) for n requests at the given concurrency."""
    latencies: list[float] = []
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def request() -> None:
            async with sem:
                t = time.perf_counter()
                resp = await client.post(f"{url}/chat/completions", json=BODY)
                resp.raise_for_status()
                latencies.append(time.perf_counter() - t)

        await request()  # warm the connection pool
        latencies.clear()
        start = time.perf_counter()
        await asyncio.gather(*(request() for _ in range(n)))
        return time.perf_counter() - start, latencies


def measure(
    urls: dict[str, str], n: int, concurrency: int, rounds: int
) -> dict[str, dict[str, float]]:
    walls: dict[str, list[float]] = {k: [] for k in urls}
    p50s: dict[str, list[float]] = {k: [] for k in urls}
    for r in range(rounds):
        order = list(urls) if r % 2 == 0 else list(reversed(urls))
        for arm in order:
            wall, lat = asyncio.run(one_round(urls[arm], n, concurrency))
            walls[arm].append(wall)
            p50s[arm].append(statistics.median(lat))
    return {
        arm: {"requests_per_s": n / statistics.median(walls[arm]),
              "p50_ms": 1000 * statistics.median(p50s[arm])}
        for arm in urls
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--delays", type=float, nargs="+", default=[0.1, 0.0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import tempfile

    report: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as home:
        for delay in args.delays:
            procs, up_url, proxy_url = start(delay, Path(home))
            try:
                for concurrency in (1, 32):
                    n = args.requests if concurrency > 1 else max(16, args.requests // 4)
                    arms = measure({"direct": up_url, "proxy": proxy_url}, n, concurrency,
                                   args.rounds)  # fmt: skip
                    report.append({
                        "upstream_delay_s": delay, "concurrency": concurrency, "requests": n,
                        "arms": arms,
                        "latency_ratio": arms["proxy"]["p50_ms"] / arms["direct"]["p50_ms"],
                        "throughput_ratio": arms["proxy"]["requests_per_s"]
                        / arms["direct"]["requests_per_s"],
                    })  # fmt: skip
            finally:
                for proc in procs:
                    proc.terminate()
                    proc.wait(timeout=30)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"proxy overhead: pass-through requests, median of {args.rounds} alternating rounds")
    head = (
        f"{'upstream':>9} {'conc':>5} {'direct p50 ms':>14} {'proxy p50 ms':>13} "
        f"{'latency x':>10} {'direct req/s':>13} {'proxy req/s':>12} {'throughput x':>13}"
    )
    print(head)
    for row in report:
        d, p = row["arms"]["direct"], row["arms"]["proxy"]  # type: ignore[index]
        print(f"{row['upstream_delay_s']:>8.2f}s {row['concurrency']:>5} {d['p50_ms']:>14.2f} "
              f"{p['p50_ms']:>13.2f} {row['latency_ratio']:>10.3f} {d['requests_per_s']:>13.1f} "
              f"{p['requests_per_s']:>12.1f} {row['throughput_ratio']:>13.3f}")  # fmt: skip
    print("targets: latency x <= 1.05, throughput x >= 0.95")


if __name__ == "__main__":
    main()
