"""The proxy under load: 64 concurrent clients for a bounded time, through ``rrr proxy`` (its own
process) to a local upstream (its own process), with malformed requests and abrupt disconnects
mixed in. Every request must be answered or cleanly refused, the proxy's memory must stay flat,
and the figures (requests, errors by kind, p50/p99 latency, memory) are recorded. Full duration
with ``make reliability``."""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from rrr_agent import TrajectoryStore

from .reliability import record, scale

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

CLIENTS = 64
SECONDS = scale(ci=20, full=120)
PASS = {"model": "stub", "messages": [{"role": "user", "content": "Say ok."}], "max_tokens": 8}
LOOP = {  # a JSON-schema request: the stub's "ok" fails the schema, so the loop retries
    **PASS,
    "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {
        "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}},
}  # fmt: skip
KINDS = ["pass"] * 12 + ["loop"] * 3 + ["malformed"] * 3 + ["disconnect"] * 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120  # start-up wait, not a timing
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited with {proc.returncode}"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


async def _disconnect(port: int, rng: random.Random) -> None:
    """Send a whole request, then drop the connection before the answer (RST on close)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = json.dumps(PASS if rng.random() < 0.5 else LOOP).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()
    await asyncio.sleep(rng.uniform(0.0, 0.05))
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    writer.close()
    del reader


async def _load(port: int, seconds: float) -> tuple[Counter[str], list[float], list[float]]:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    outcomes: Counter[str] = Counter()
    latencies: list[float] = []
    loop_latencies: list[float] = []
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    end = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def worker(n: int) -> None:
            rng = random.Random(n)
            while time.monotonic() < end:
                kind = rng.choice(KINDS)
                if kind == "disconnect":
                    await _disconnect(port, rng)
                    outcomes["disconnect: sent and dropped"] += 1
                    continue
                start = time.perf_counter()
                try:
                    if kind == "malformed":
                        resp = await client.post(url, content=b'{"model": "m", "messages": [')
                    else:
                        resp = await client.post(url, json=PASS if kind == "pass" else LOOP)
                except httpx.HTTPError as exc:
                    outcomes[f"{kind}: {type(exc).__name__}"] += 1
                    continue
                took = time.perf_counter() - start
                outcomes[f"{kind}: {resp.status_code}"] += 1
                if kind == "malformed":
                    assert resp.json()["error"]["type"] == "invalid_request_error"
                elif resp.status_code == 200:
                    (latencies if kind == "pass" else loop_latencies).append(took)

        await asyncio.gather(*(worker(n) for n in range(CLIENTS)))
    return outcomes, latencies, loop_latencies


def _idle_connection_kept(port: int) -> bool:
    """Whether a connection left idle a little longer than clients keep theirs (httpx, openai:
    5 s) still serves a request. A server that closes first races the client's next request."""
    request = b"GET /v1/models HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for round_ in range(2):
            if round_:
                time.sleep(6.0)  # idle past the clients' expiry
            try:
                sock.sendall(request)
                head = sock.recv(65536)
                while head and b"\r\n\r\n" not in head:
                    head += sock.recv(65536)
            except OSError:
                return False
            if not head.startswith(b"HTTP/1.1 200"):
                return False
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            body = head.split(b"\r\n\r\n", 1)[1]
            while len(body) < length:
                body += sock.recv(65536)
    return True


def _pct(values: list[float], q: float) -> float:
    return round(1000 * statistics.quantiles(values, n=100)[q - 1], 1)


def test_proxy_under_load_answers_everything_and_stays_flat(tmp_path: Path) -> None:
    up_port, port = _free_port(), _free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "rrr_agent.testing", "--port", str(up_port), "--delay", "0.02"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    env = {**os.environ, "RRR_HOME": str(tmp_path), "RRR_TRANSPORT_TRIES": "1"}
    rrr = str(Path(sys.executable).with_name("rrr"))
    proxy = subprocess.Popen(
        [rrr, "proxy", "--upstream", "hosted_vllm/stub", "--port", str(port),
         "--api-base", f"http://127.0.0.1:{up_port}/v1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        _wait_ready(f"http://127.0.0.1:{up_port}/v1/models", upstream)
        _wait_ready(f"http://127.0.0.1:{port}/v1/models", proxy)
        asyncio.run(_load(port, min(5.0, SECONDS / 4)))  # warm-up: pools, caches, imports
        rss_warm = _rss_mb(proxy.pid)
        outcomes, latencies, loop_latencies = asyncio.run(_load(port, SECONDS))
        time.sleep(1.0)  # let dropped connections finish on the server side
        rss_end = _rss_mb(proxy.pid)
        healthy = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).status_code
        kept = _idle_connection_kept(port)
        assert proxy.poll() is None, "the proxy died under load"
    finally:
        for p in (proxy, upstream):
            p.terminate()
        stderr = proxy.communicate(timeout=30)[1].decode(errors="replace")
        upstream.wait(30)

    bad = {k: v for k, v in outcomes.items()
           if not k.endswith((": 200", ": 400", "dropped"))}  # fmt: skip
    assert not bad, f"requests neither answered nor cleanly refused: {bad}"
    assert outcomes["malformed: 200"] == 0 and outcomes["pass: 400"] == 0
    assert healthy == 200
    assert kept, "the proxy closed an idle connection before clients' 5 s keep-alive expiry"
    assert "Traceback" not in stderr, stderr[-3000:]
    growth = rss_end - rss_warm
    assert growth < max(30.0, 0.25 * rss_warm), f"memory grew {rss_warm:.0f} → {rss_end:.0f} MB"
    logged = len(list(TrajectoryStore(tmp_path / "trajectories.jsonl").read()))
    assert logged >= outcomes["loop: 200"]  # every answered loop request is training data
    total = sum(outcomes.values())
    record(
        "proxy_load",
        {
            "clients": CLIENTS, "seconds": SECONDS, "requests": total,
            "requests_per_s": round(total / SECONDS, 1), "outcomes": dict(sorted(outcomes.items())),
            "pass_through_p50_ms": _pct(latencies, 50), "pass_through_p99_ms": _pct(latencies, 99),
            "loop_p50_ms": _pct(loop_latencies, 50), "loop_p99_ms": _pct(loop_latencies, 99),
            "rss_after_warm_up_mb": round(rss_warm, 1), "rss_at_end_mb": round(rss_end, 1),
            "trajectories_logged": logged,
        },
    )  # fmt: skip
