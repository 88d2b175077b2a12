"""In-process transformers backend: ``local/gemma-3-270m`` (the embedded model), ``local/<folder>``.

The folder may be any Hugging Face causal-LM checkpoint or a PEFT adapter folder (its base model is
loaded from ``base_model_name_or_path``, which may itself be ``gemma-3-270m``). The model string
goes through litellm's custom-provider mechanism, so the engine treats it like any other model;
:class:`LocalModel` is also a :class:`~rrr_agent.ModelClient` on its own.

Concurrent requests are batched: one worker thread owns the model, takes every request waiting in
its queue (up to ``max_batch``), groups those with the same generation settings and runs each group
as one left-padded ``generate`` call. Sampling parameters are honoured: ``temperature`` (0 or unset
means greedy), ``top_p``, ``max_tokens``, ``stop``, ``seed``. Models whose chat template is rrr's
transcript (the embedded model and checkpoints trained from it) stop at ``"\\nUser:"`` by default,
or at ``"\\n"`` for tasks rendered in its completion style (``chat_template_kwargs``).

Threads: ``OMP_WAIT_POLICY=PASSIVE`` is set before torch loads (busy-waiting OpenMP threads cost
10-20x on a shared 2-core machine), and ``RRR_THREADS`` picks the torch thread count.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from ._errors import MissingExtraError, ModelRequestError, ModelTimeout, RRRError, ServerError
from ._providers import import_litellm
from ._types import FunctionCall, ModelOutput, ToolCall, Usage

__all__ = ["LocalModel", "complete", "load_local_model", "stream"]

PROVIDER = "local"
TRANSCRIPT_STOP = ["\nUser:", "\nTool:"]
#: The transcript template's completion style writes one-line answers.
COMPLETION_STOP = ["\n"]


@dataclass(slots=True)
class _Request:
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    max_new_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    seed: int | None
    min_tokens: int = 0
    ignore_eos: bool = False
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    future: Future[ModelOutput] = field(default_factory=Future)
    enqueued: float = field(default_factory=time.perf_counter)
    #: Token streaming: called (on the worker thread) with each new piece of the answer's text.
    on_text: Callable[[str], None] | None = None
    sent: str = ""

    def key(self) -> tuple[Any, ...]:
        return (
            self.max_new_tokens, self.temperature, self.top_p, self.stop, self.seed is not None,
            self.min_tokens, self.ignore_eos,
        )  # fmt: skip


def _torch_env() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class LocalModel:
    """A causal LM in this process, served to concurrent callers through a batching worker."""

    def __init__(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        adapter: str | Path | None = None,
        max_batch: int = 16,
        threads: int | None = None,
        default_max_tokens: int = 256,
    ):
        _torch_env()
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise MissingExtraError("model", "transformers", "the local backend") from exc
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # "Loading weights" bars would garble CLI output
        n = threads or int(os.environ.get("RRR_THREADS", "0")) or (os.cpu_count() or 1)
        torch.set_num_threads(n)
        self.path = Path(path)
        self.model = f"{PROVIDER}/{name or path}"
        self.max_batch = max_batch
        self.default_max_tokens = default_max_tokens
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path))
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        lm: Any = AutoModelForCausalLM.from_pretrained(str(self.path), dtype=torch.float32)
        if adapter is not None:
            try:
                from peft import PeftModel
            except ImportError as exc:
                raise MissingExtraError("model", "peft", "loading a LoRA adapter") from exc
            lm = PeftModel.from_pretrained(lm, str(adapter)).merge_and_unload()
        lm.eval()
        self.lm: Any = lm
        self.eos_ids = _as_list(lm.generation_config.eos_token_id)
        from .embedded import use_shipped_transcript

        self.transcript = use_shipped_transcript(self.tokenizer)
        self.default_stop = TRANSCRIPT_STOP if self.transcript else []
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._worker = threading.Thread(target=self._run, name=f"rrr-local-{name}", daemon=True)
        self._worker.start()
        self.batches = 0  # batches run, for tests and benchmarks

    # ------------------------------------------------------------------ public API

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        params: dict[str, Any],
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | None = None,
        timeout: float | None = None,
    ) -> ModelOutput:
        request = self._request(messages, params, tools if tool_choice != "none" else None)
        self._queue.put(request)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(request.future), timeout)
        except TimeoutError:
            raise ModelTimeout(
                f"{self.model}: no reply within {timeout}s", model=self.model
            ) from None

    async def stream(
        self,
        messages: list[dict[str, Any]],
        *,
        params: dict[str, Any],
        on_delta: Callable[[str], Any],
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | None = None,
        timeout: float | None = None,
    ) -> ModelOutput:
        """:meth:`complete`, with ``on_delta(text)`` called as tokens are generated (batched
        requests stream too). Text that a stop string may still cut is held back until it is
        safe, so the deltas always add up to the final text."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        request = self._request(messages, params, tools if tool_choice != "none" else None)

        def on_text(text: str) -> None:
            loop.call_soon_threadsafe(pieces.put_nowait, text)

        request.on_text = on_text
        result = asyncio.wrap_future(request.future)
        # Scheduled after every delta the worker sent before it set the result (FIFO).
        result.add_done_callback(lambda _f: pieces.put_nowait(None))
        self._queue.put(request)
        try:
            async with asyncio.timeout(timeout):
                while (piece := await pieces.get()) is not None:
                    sent = on_delta(piece)
                    if asyncio.iscoroutine(sent):
                        await sent
                return await result
        except TimeoutError:
            raise ModelTimeout(
                f"{self.model}: no reply within {timeout}s", model=self.model
            ) from None

    def generate_sync(self, messages: list[dict[str, Any]], **params: Any) -> ModelOutput:
        request = self._request(messages, params, None)
        self._queue.put(request)
        return request.future.result()

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=30)

    # ------------------------------------------------------------------ internals

    def _request(
        self, messages: list[dict[str, Any]], params: dict[str, Any], tools: Any
    ) -> _Request:
        template_kwargs = dict(params.get("chat_template_kwargs") or {})
        stop = params.get("stop")
        if stop is None:  # unset: the model's default; an explicit [] means "no stop strings"
            completion = self.transcript and template_kwargs.get("style") == "completion"
            stop = COMPLETION_STOP if completion else self.default_stop
        stops = [stop] if isinstance(stop, str) else list(stop)
        temperature = params.get("temperature")
        return _Request(
            messages=messages,
            tools=tools,
            max_new_tokens=int(params.get("max_tokens") or self.default_max_tokens),
            temperature=float(temperature) if temperature is not None else 0.0,
            top_p=float(params.get("top_p") or 1.0),
            stop=tuple(stops),
            seed=params.get("seed"),
            # vLLM's names, so fixed-length benchmarks send the same request to both backends.
            min_tokens=int(params.get("min_tokens") or 0),
            ignore_eos=bool(params.get("ignore_eos", False)),
            chat_template_kwargs=template_kwargs,
        )

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            groups: dict[tuple[Any, ...], list[_Request]] = {}
            for req in batch:
                groups.setdefault(req.key(), []).append(req)
            for group in groups.values():
                try:
                    outputs = self._generate(group)
                except Exception as exc:  # the model failed, not the task
                    err = ServerError(f"{self.model}: generation failed: {exc!r}", model=self.model)
                    for req in group:
                        if not req.future.done():
                            req.future.set_exception(err)
                    continue
                for req, out in zip(group, outputs, strict=True):
                    if not req.future.done():
                        req.future.set_result(out)

    def _generate(self, group: list[_Request]) -> list[ModelOutput]:
        import torch

        start = time.perf_counter()
        first = group[0]
        prompts = [
            self.tokenizer.apply_chat_template(
                r.messages,
                tools=cast(Any, r.tools),
                tokenize=False,
                add_generation_prompt=True,
                **r.chat_template_kwargs,
            )
            for r in group
        ]
        # The template already writes <bos>; do not add a second one.
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        kwargs: dict[str, Any] = {
            "max_new_tokens": first.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if first.ignore_eos:
            kwargs["min_new_tokens"] = first.max_new_tokens
        else:
            kwargs["eos_token_id"] = self.eos_ids
            if first.min_tokens:
                kwargs["min_new_tokens"] = first.min_tokens
        if first.temperature > 0:
            kwargs.update(do_sample=True, temperature=first.temperature, top_p=first.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if first.stop:
            kwargs.update(stop_strings=list(first.stop), tokenizer=self.tokenizer)
        if first.seed is not None:
            # Each request has its own seed (``request_seed``: per task and branch); a batch
            # draws one stream, seeded by its first request.
            torch.manual_seed(int(first.seed))
        prompt_len = enc["input_ids"].shape[1]
        if any(r.on_text is not None for r in group):
            kwargs["logits_processor"] = [self._streamer(group, prompt_len)]
        with torch.inference_mode():
            out = self.lm.generate(**enc, **kwargs)
        self.batches += 1
        latency = time.perf_counter() - start
        results = []
        for i, req in enumerate(group):
            gen = out[i, prompt_len:].tolist()
            finish = "length"
            for j, tok in enumerate(gen):
                if req.ignore_eos:
                    break
                if tok in self.eos_ids or tok == self.tokenizer.pad_token_id:
                    gen = gen[:j]
                    finish = "stop"
                    break
            text, stopped = self._visible(gen, req.stop, cut_eos=False)  # gen is cut already
            if stopped:
                finish = "stop"
            if req.on_text is not None and text.startswith(req.sent) and text != req.sent:
                req.on_text(text[len(req.sent) :])  # what was held back, now final
            calls = _tool_calls(text, req.tools) if req.tools else None
            prompt_tokens = int(enc["attention_mask"][i].sum())
            results.append(
                ModelOutput(
                    text=None if calls else text,
                    tool_calls=calls,
                    finish_reason="tool_calls" if calls else finish,
                    usage=Usage(
                        prompt_tokens=prompt_tokens,
                        completion_tokens=len(gen),
                        total_tokens=prompt_tokens + len(gen),
                    ),
                    latency_s=latency,
                    response_model=self.model,
                )
            )
        return results

    def _visible(
        self, gen: list[int], stops: tuple[str, ...], *, cut_eos: bool = True
    ) -> tuple[str, bool]:
        """The answer's text so far: cut at an end token and at the first stop string, stripped.
        Says whether a stop string cut it."""
        for j, tok in enumerate(gen):
            if cut_eos and (tok in self.eos_ids or tok == self.tokenizer.pad_token_id):
                gen = gen[:j]
                break
        text = str(self.tokenizer.decode(gen, skip_special_tokens=True))
        stopped = False
        for stop in stops:
            cut = text.find(stop)
            if cut != -1:
                text, stopped = text[:cut], True
        return text.strip(), stopped

    def _streamer(self, group: list[_Request], prompt_len: int) -> Any:
        """A logits processor that only watches: each step, it sends every streaming request the
        text its row has gained (minus a tail that a stop string could still cut)."""
        from transformers import LogitsProcessor

        model = self

        class Streamer(LogitsProcessor):
            def __call__(self, input_ids: Any, scores: Any) -> Any:
                for row, req in enumerate(group):
                    if req.on_text is None:
                        continue
                    text, stopped = model._visible(input_ids[row, prompt_len:].tolist(), req.stop)
                    if not stopped:
                        text = _hold_back(text, req.stop)
                    if text.startswith(req.sent) and len(text) > len(req.sent):
                        req.on_text(text[len(req.sent) :])
                        req.sent = text
                return scores

        return Streamer()


def _hold_back(text: str, stops: tuple[str, ...]) -> str:
    """``text`` without a trailing part that could be the start of a stop string (or trailing
    white space, which the final answer strips)."""
    cut = len(text)
    for stop in stops:
        for n in range(min(len(stop), len(text)), 0, -1):
            if text.endswith(stop[:n]):
                cut = min(cut, len(text) - n)
                break
    return text[:cut].rstrip()


def _tool_calls(text: str, tools: list[dict[str, Any]]) -> list[ToolCall] | None:
    """Structured calls from Python-call text (``[get_weather(city="Paris")]``), the way a base
    model writes them and vLLM's ``pythonic`` tool parser reads them; None when the text is not
    a call list of offered tools."""
    import json

    from .verifiers.bfcl_ast import DecodeError, parse_python_calls, resolve_names
    from .verifiers.toolcalls import offered_tools

    offered = offered_tools(tools)
    try:
        calls, _ignored = parse_python_calls(text)
    except (DecodeError, RecursionError, ValueError):
        return None
    calls = resolve_names(calls, [{"name": n} for n in offered])
    if not calls or any(name not in offered for name, _ in calls):
        return None
    try:
        return [
            ToolCall(id=f"call_{i}", function=FunctionCall(name=name, arguments=json.dumps(args)))
            for i, (name, args) in enumerate(calls)
        ]
    except (TypeError, ValueError):  # a value JSON cannot hold
        return None


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, list | tuple) else [int(value)]


_LOADED: dict[str, LocalModel] = {}
_LOAD_LOCK = threading.Lock()


@atexit.register
def _close_all() -> None:
    # Stop worker threads before the interpreter tears torch down under them.
    for model in list(_LOADED.values()):
        model.close()


def load_local_model(name: str) -> LocalModel:
    """The loaded model for ``local/<name>`` (loaded once per process, then shared)."""
    with _LOAD_LOCK:
        if name in _LOADED:
            return _LOADED[name]
        from . import embedded

        if name == embedded.EMBEDDED_MODEL:
            model = LocalModel(embedded.prepare(), name=name)
        else:
            path = Path(name).expanduser()
            if not path.is_dir():
                raise ModelRequestError(
                    f"local/{name}: no such model: not '{embedded.EMBEDDED_MODEL}' and not a "
                    "folder holding a checkpoint or a PEFT adapter",
                    status_code=404,
                    model=f"local/{name}",
                )
            try:
                if (path / "adapter_config.json").is_file():
                    import json

                    base = json.loads((path / "adapter_config.json").read_text())[
                        "base_model_name_or_path"
                    ]
                    base_path = (
                        embedded.prepare() if base == embedded.EMBEDDED_MODEL else Path(base)
                    )
                    model = LocalModel(base_path, name=name, adapter=path)
                else:
                    model = LocalModel(path, name=name)
            except RRRError:
                raise
            except Exception as exc:  # a corrupted or incomplete model folder
                raise ModelRequestError(
                    f"local/{name}: cannot load the model in {path}: {type(exc).__name__}: "
                    f"{str(exc)[:500]}",
                    status_code=422,
                    model=f"local/{name}",
                ) from exc
        _LOADED[name] = model
        return model


async def _load(name: str) -> LocalModel:
    try:
        return await asyncio.to_thread(load_local_model, name)
    except ModelRequestError as exc:
        litellm = import_litellm()
        raise litellm.exceptions.NotFoundError(
            message=str(exc), llm_provider=PROVIDER, model=f"{PROVIDER}/{name}"
        ) from exc


async def complete(
    name: str,
    messages: list[dict[str, Any]],
    *,
    params: dict[str, Any],
    tools: list[dict[str, Any]] | None = None,
    tool_choice: str | None = None,
    timeout: float | None = None,
) -> ModelOutput:
    """The ``local/<name>`` provider (see :mod:`rrr_agent._providers`): load once, then answer.

    A base model writes tool calls as Python-call text in ``text`` (the BFCL verifier reads it),
    never as structured tool calls.
    """
    local = await _load(name)
    out = await local.complete(
        messages, params=params, tools=tools, tool_choice=tool_choice, timeout=timeout
    )
    return out.model_copy(update={"response_model": local.model})


async def stream(
    name: str,
    messages: list[dict[str, Any]],
    *,
    params: dict[str, Any],
    on_delta: Callable[[str], Any],
    tools: list[dict[str, Any]] | None = None,
    tool_choice: str | None = None,
    timeout: float | None = None,
) -> ModelOutput:
    """The ``local/<name>`` provider's streaming call: tokens as they are generated."""
    local = await _load(name)
    out = await local.stream(
        messages, params=params, on_delta=on_delta, tools=tools, tool_choice=tool_choice,
        timeout=timeout,
    )  # fmt: skip
    return out.model_copy(update={"response_model": local.model})
