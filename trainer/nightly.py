"""The nightly self-training job: new logs → failure set → train → evaluation gate → atomic
promotion → the served model reloaded and checked.

``rrr nightly [--config rrr.toml] [--dry-run]``. One run:

1. **collect**: the trajectory lines appended to the configured logs since the last successful
   run (a byte-offset watermark per log, persisted; only whole lines count);
2. **failures**: the failure set built from them; too few is a clean skip (exit 5);
3. **train**: GRPO from the promoted checkpoint (its LoRA adapter goes on training; online or
   offline, as configured), the result added to the registry as a candidate;
4. **evaluate**: candidate and current on a fixed held-out task set and a forgetting set;
5. **gate**: promote only when the candidate's second try beats the current model's by
   ``margin`` and its first try on the forgetting set drops by less than ``max_forgetting``;
6. **promote**: the registry's ``current`` pointer is switched atomically; a running ``rrr serve``
   (``serve_url``) loads the adapter in place under the served name (no restart, no downtime),
   and a fixed greedy probe checks that the server now answers like the candidate, not like the
   old model; if it does not, ``current`` is rolled back (exit 7).

Every run writes a report (Markdown, JSON, PNG) under ``<registry>/nightly/reports/<run>/``,
whether it promotes, rejects or skips. A lock makes a second concurrent run refuse (exit 6). A run
killed at any stage is rolled back by the next one (its scratch folder and half-added candidate
are removed, the watermark never moved); a run killed after the pointer switch has its reload and
probe redone. Exit codes: 0 ran (promoted or rejected), 1 bad configuration or data, 3 the model
or server failed, 5 skipped (too few new failures), 6 another run holds the lock, 7 the served
model did not match the promoted candidate (rolled back).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rrr_agent import (
    ConfigError,
    DataError,
    InfrastructureError,
    LiteLLMClient,
    Registry,
    RRRError,
    Task,
    embedded,
    load_settings,
    redact,
    write_text_atomic,
)

from .config import RRRTrainConfig, merge_sources

__all__ = [
    "EXIT_ERROR",
    "EXIT_INFRA",
    "EXIT_LOCKED",
    "EXIT_OK",
    "EXIT_PROBE_FAILED",
    "EXIT_SKIPPED",
    "NightlyConfig",
    "NightlyResult",
    "init_registry",
    "run_nightly",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INFRA = 3
EXIT_SKIPPED = 5
EXIT_LOCKED = 6
EXIT_PROBE_FAILED = 7

Progress = Callable[[str], None]


def _f(default: Any, help: str) -> Any:  # help text on every field, as RRRTrainConfig
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class NightlyConfig:
    """The job's settings: a ``[nightly]`` table (and ``[train]`` for the training itself)."""

    logs: list[str] = _f([], "Trajectory logs to learn from (default: the settings' log).")
    registry: str | None = _f(None, "Checkpoint registry (default: <data dir>/checkpoints).")
    base_model: str = _f("gemma-3-270m", "The base model every adapter sits on.")
    min_failures: int = _f(8, "Fewer new training failures than this: skip (exit 5).")
    heldout_taskset: str = _f("countdown2-test", "Fixed held-out task set of the gate.")
    heldout_limit: int = _f(100, "Tasks of the held-out set.")
    forgetting_taskset: str | None = _f("arithmetic-test", "Untouched set for forgetting.")
    forgetting_limit: int = _f(100, "Tasks of the forgetting set.")
    margin: float = _f(0.0, "Promote when candidate second try − current second try ≥ this.")
    max_forgetting: float = _f(0.02, "Reject when forgetting first try drops by more than this.")
    eval_max_tokens: int = _f(32, "Max tokens per call during evaluation.")
    eval_concurrency: int = _f(16, "Tasks in flight during evaluation.")
    forgetting_concurrency: int = _f(
        1,
        "Forgetting-set tasks in flight. 1 gives a model the same answers every time: batched "
        "bf16 serving on CPU changed 7-17 of 200 greedy answers to two-digit sums between two "
        "evaluations of one model, more than max_forgetting.",
    )
    serve_url: str | None = _f(None, "A running `rrr serve` (…/v1) to reload after promotion.")
    served_name: str = _f("rrr", "The adapter name apps use on that server.")
    probe_prompts: int = _f(8, "Held-out prompts tried by the reload probe.")
    probe_pool: int = _f(
        32,
        "Held-out prompts searched for ones the candidate and the previous model answer "
        "differently (the probe asks the server those first).",
    )
    train: dict[str, Any] = _f({}, "Training settings ([train] table; see `rrr train config`).")

    @classmethod
    def from_sources(cls, path: str | Path | None = None, **overrides: Any) -> NightlyConfig:
        """Defaults ← the TOML file's ``[nightly]`` (and ``[train]``) tables ← overrides."""

        def pick(data: dict[str, Any]) -> dict[str, Any]:
            values = dict(data.get("nightly", {}))
            if "train" in data:  # the [train] table is the training itself
                values["train"] = {**values.get("train", {}), **data["train"]}
            return values

        config = cls(**merge_sources(cls, path, pick, overrides, "nightly"))
        if config.min_failures < 1:
            raise ConfigError("min_failures must be at least 1")
        for name in ("eval_concurrency", "forgetting_concurrency"):
            if getattr(config, name) < 1:
                raise ConfigError(f"{name} ({getattr(config, name)}) must be at least 1")
        RRRTrainConfig.from_sources(None, **config.train)  # a bad [train] table fails now
        return config


@dataclass
class NightlyResult:
    exit_code: int
    outcome: str  # promoted | rejected | skipped | locked | probe_failed | error
    run_id: str
    report_dir: Path | None = None
    candidate: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------- state


class _State:
    """``<registry>/nightly/state.json``: the watermark and the run in progress (atomic)."""

    def __init__(self, folder: Path):
        self.path = folder / "state.json"
        self.data: dict[str, Any] = {"watermark": {}, "run": None, "last_success": None}
        if self.path.is_file():
            try:
                self.data.update(json.loads(self.path.read_text(encoding="utf-8")))
            except json.JSONDecodeError as exc:
                raise DataError(f"unreadable nightly state: {exc.msg}", path=self.path) from None

    def save(self) -> None:
        write_text_atomic(self.path, json.dumps(self.data, indent=2), fsync=True)

    def stage(self, name: str, **extra: Any) -> None:
        self.data["run"] = {**(self.data.get("run") or {}), "stage": name, **extra}
        self.save()


@contextlib.contextmanager
def _lock(folder: Path) -> Iterator[bool]:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "lock").open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _collect(logs: list[Path], watermark: dict[str, int], out: Path) -> tuple[dict[str, int], int]:
    """Copy every whole line appended since ``watermark`` into ``out``; the new watermark and
    the number of lines copied."""
    new: dict[str, int] = {}
    copied = 0
    with out.open("wb") as sink:
        for log in logs:
            key = str(log.resolve())
            start = int(watermark.get(key, 0))
            if not log.is_file():
                new[key] = start
                continue
            size = log.stat().st_size
            if size < start:  # the log was replaced or truncated: read it from the start
                start = 0
            with log.open("rb") as fh:
                fh.seek(start)
                data = fh.read(size - start)
            whole = data[: data.rfind(b"\n") + 1] if b"\n" in data else b""
            sink.write(whole)
            copied += whole.count(b"\n")
            new[key] = start + len(whole)
    return new, copied


# ---------------------------------------------------------------------------------- setup


def init_registry(registry: Registry, base_model: str, name: str = "base") -> str:
    """Give an empty registry its first checkpoint: an identity LoRA adapter (B = 0, so it
    answers exactly like the base model), promoted as current. A server started on it can then
    load every later adapter in place under the same name."""
    if registry.current_name() is not None:
        return str(registry.current_name())
    from .policy import lora_config, resolve_model_path, torch_env

    torch_env(None)
    transformers = _require("transformers")
    peft = _require("peft")
    base = resolve_model_path(base_model)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(base))
    adapted = peft.get_peft_model(model, lora_config(RRRTrainConfig()))
    scratch = registry.root / ".init-scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        adapted.save_pretrained(str(scratch))
        registry.add(
            scratch,
            name,
            kind="adapter",
            base_model=str(base),
            extra={"note": "identity adapter (LoRA B = 0): the base model itself"},
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    registry.promote(name, reason="initial checkpoint: the base model")
    return name


def _base_path(config: NightlyConfig) -> str:
    if config.base_model in (embedded.EMBEDDED_MODEL, embedded.EMBEDDED_MODEL_STRING):
        return str(embedded.checkpoint_dir())
    return config.base_model


def _require(module: str) -> Any:
    from rrr_agent import require_extra

    return require_extra(module, "the nightly job")


# ---------------------------------------------------------------------------------- the run


def run_nightly(
    config: NightlyConfig, *, dry_run: bool = False, progress: Progress | None = None
) -> NightlyResult:
    """One nightly run; see the module docstring. Never raises for an expected outcome: the
    result carries the exit code and the report."""
    say = progress or (lambda _m: None)
    registry = Registry(config.registry)
    folder = registry.root / "nightly"
    run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    with _lock(folder) as held:
        if not held:
            say("another nightly run holds the lock; refusing")
            return NightlyResult(EXIT_LOCKED, "locked", run_id)
        state = _State(folder)
        report = _Report(folder / "reports" / run_id, run_id)
        try:
            return _run(config, registry, state, report, run_id, dry_run, say)
        except InfrastructureError as exc:
            report.fail(f"{type(exc).__name__}: {exc}")
            return NightlyResult(EXIT_INFRA, "error", run_id, report.folder)
        except RRRError as exc:
            report.fail(f"{type(exc).__name__}: {exc}")
            return NightlyResult(EXIT_ERROR, "error", run_id, report.folder)


def _fault_point(stage: str) -> None:
    """Fault injection for the crash tests: ``RRR_NIGHTLY_KILL_AT=<stage>`` makes the job
    SIGKILL itself at that point, exactly as a ``kill -9`` would."""
    if os.environ.get("RRR_NIGHTLY_KILL_AT") == stage:
        os.kill(os.getpid(), signal.SIGKILL)


def _recover(registry: Registry, state: _State, say: Progress) -> str | None:
    """Roll back or finish what a killed run left; return what was done, for the report."""
    run = state.data.get("run")
    removed = registry.cleanup()
    if not run:
        return f"removed leftovers {removed}" if removed else None
    stage, candidate = run.get("stage"), run.get("candidate")
    scratch = run.get("scratch")
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    if stage == "promote" and candidate and registry.current_name() == candidate:
        note = f"run {run.get('id')} was killed after promoting {candidate}: reload redone"
        state.data["pending_reload"] = candidate
        # The promotion stands, so the data it was trained on counts as used.
        state.data["watermark"] = registry.get(candidate).manifest.get("watermark") or {}
        state.data["last_success"] = run.get("id")
    else:
        note = f"run {run.get('id')} was killed at stage {stage!r}: rolled back"
        if (
            candidate
            and registry.current_name() != candidate
            and (registry.root / candidate).exists()
        ):
            shutil.rmtree(registry.root / candidate, ignore_errors=True)
            note += f"; removed its unpromoted candidate {candidate}"
    state.data["run"] = None
    state.save()
    say(note)
    return note


def _run(
    config: NightlyConfig,
    registry: Registry,
    state: _State,
    report: _Report,
    run_id: str,
    dry_run: bool,
    say: Progress,
) -> NightlyResult:
    from rrr_trainer import build_failure_set

    recovered = None if dry_run else _recover(registry, state, say)
    if recovered:
        report.note("recovered", recovered)
    settings = load_settings()
    logs = [Path(p).expanduser() for p in (config.logs or [str(settings.trajectory_log)])]
    scratch = report.folder / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)

    # 1-2. collect and build the failure set
    t = report.stage("collect")
    new_log = scratch / "new.jsonl"
    watermark, lines = _collect(logs, state.data.get("watermark", {}), new_log)
    train_set, _, data_report = build_failure_set(
        [new_log], holdout_fraction=0.0, skip_invalid=True
    )
    report.done(t, lines=lines, failures=len(train_set), data=data_report.to_dict())
    say(f"collected {lines} new trajectory lines; {len(train_set)} training failures")
    if pending := state.data.pop("pending_reload", None):
        _reload_and_probe(config, registry, pending, None, report, say)
        state.save()
    if len(train_set) < config.min_failures:
        report.finish(
            "skipped", f"{len(train_set)} new failures < min_failures {config.min_failures}"
        )
        shutil.rmtree(scratch, ignore_errors=True)
        return NightlyResult(EXIT_SKIPPED, "skipped", run_id, report.folder,
                             figures={"failures": len(train_set)})  # fmt: skip
    current = registry.current()
    if dry_run:
        plan = {
            "would_train_on": len(train_set),
            "from_checkpoint": current.name if current else None,
            "heldout": f"{config.heldout_taskset} (first {config.heldout_limit})",
            "forgetting": config.forgetting_taskset,
            "train": config.train,
        }
        report.finish("dry_run", json.dumps(plan))
        shutil.rmtree(scratch, ignore_errors=True)
        return NightlyResult(EXIT_OK, "dry_run", run_id, report.folder, figures=plan)

    # 3. train from the promoted checkpoint
    candidate = f"nightly-{run_id}"
    state.data["run"] = {"id": run_id, "stage": "train", "candidate": candidate,
                         "scratch": str(scratch)}  # fmt: skip
    state.save()
    t = report.stage("train")
    from .run import train

    overrides = dict(config.train)
    overrides.update(model=config.base_model, output_dir=str(scratch / "train"), merge=False,
                     holdout_fraction=0.0, use_lora=True)  # fmt: skip
    if current is not None and current.kind == "adapter":
        overrides["init_adapter"] = str(current.path)
    train_config = RRRTrainConfig.from_sources(None, **overrides)
    result = train(train_config, [new_log], resume=False)
    assert result.adapter_dir is not None
    for kept in (result.metrics_path, result.plot_path):  # the scratch folder goes; these stay
        if kept is not None and kept.is_file():
            shutil.copyfile(kept, report.folder / f"training-{kept.name}")
    trained = {"steps": result.steps, "seconds": round(result.seconds, 1),
               "failures": len(train_set), "mode": train_config.mode}  # fmt: skip
    registry.add(
        result.adapter_dir, candidate, kind="adapter", base_model=_base_path(config),
        parent=current.name if current else None, watermark=watermark, extra={"train": trained},
    )  # fmt: skip
    report.done(t, steps=result.steps, seconds=round(result.seconds, 1), candidate=candidate)
    say(f"trained {result.steps} steps in {result.seconds:.0f}s → candidate {candidate}")

    # 4-5. evaluate and gate
    state.stage("evaluate")
    t = report.stage("evaluate")
    figures = _evaluate(config, registry, current, candidate, scratch, say)
    report.done(t, **figures)
    gain = figures["candidate"]["second_try"] - figures["current"]["second_try"]
    forgetting = figures.get("forgetting_delta")
    passed = gain >= config.margin and (forgetting is None or forgetting >= -config.max_forgetting)
    registry.update_metrics(candidate, {"heldout": figures["candidate"], "gain_vs_parent": gain,
                                        "forgetting_delta": forgetting})  # fmt: skip
    if not passed:
        why = (f"second-try gain {gain:+.3f} (margin {config.margin}) / forgetting "
               f"{forgetting if forgetting is None else f'{forgetting:+.3f}'} "
               f"(bound -{config.max_forgetting})")  # fmt: skip
        state.data.update(watermark=watermark, run=None, last_success=run_id)
        state.save()
        report.finish("rejected", why, figures)
        shutil.rmtree(scratch, ignore_errors=True)
        say(f"candidate rejected: {why}")
        return NightlyResult(EXIT_OK, "rejected", run_id, report.folder, candidate, figures)

    # 6. promote, reload the server, probe it
    state.stage("promote")
    t = report.stage("promote")
    previous = registry.promote(candidate, reason=f"nightly {run_id}: gain {gain:+.3f}")
    _fault_point("promoted")
    report.done(t, previous=previous)
    probe_ok = _reload_and_probe(config, registry, candidate, previous, report, say)
    if not probe_ok:
        registry.rollback(previous, reason=f"nightly {run_id}: the served model did not change")
        if previous is not None and config.serve_url:
            _load(config, registry.get(previous))
        state.data.update(run=None)
        state.save()
        report.finish("probe_failed", "the server did not answer like the candidate", figures)
        return NightlyResult(EXIT_PROBE_FAILED, "probe_failed", run_id, report.folder, candidate,
                             figures)  # fmt: skip
    state.data.update(watermark=watermark, run=None, last_success=run_id)
    state.save()
    report.finish("promoted", f"gain {gain:+.3f}", figures)
    shutil.rmtree(scratch, ignore_errors=True)
    say(f"promoted {candidate}")
    return NightlyResult(EXIT_OK, "promoted", run_id, report.folder, candidate, figures)


def _evaluate(
    config: NightlyConfig,
    registry: Registry,
    current: Any,
    candidate: str,
    scratch: Path,
    say: Progress,
) -> dict[str, Any]:
    import itertools

    from rrr_agent.evaluation import evaluate
    from rrr_agent.tasksets import get_taskset

    tasks = list(itertools.islice(get_taskset(config.heldout_taskset).load(),
                                  config.heldout_limit))  # fmt: skip
    forgetting = None
    if config.forgetting_taskset:
        forgetting = (config.forgetting_taskset,
                      list(itertools.islice(get_taskset(config.forgetting_taskset).load(),
                                            config.forgetting_limit)))  # fmt: skip
    base = current.model_string if current else f"local/{_base_path(config)}"
    models = [base, registry.get(candidate).model_string]
    say(f"evaluating {len(tasks)} held-out tasks: current vs candidate")
    settings = load_settings(log_path=scratch / "eval.jsonl")
    report = evaluate(tasks, models, settings=settings, taskset=config.heldout_taskset,
                      concurrency=config.eval_concurrency, max_tokens=config.eval_max_tokens,
                      control=False, forgetting=forgetting,
                      forgetting_concurrency=config.forgetting_concurrency)  # fmt: skip
    summary = [m.summary() for m in report.models]
    figures: dict[str, Any] = {
        "n": summary[0]["n"],
        "current": {"first_try": summary[0]["first_try"]["rate"],
                    "second_try": summary[0]["second_try"]["rate"]},
        "candidate": {"first_try": summary[1]["first_try"]["rate"],
                      "second_try": summary[1]["second_try"]["rate"]},
        "errors": sum(m.errors for m in report.models),
    }  # fmt: skip
    rows = report.forgetting()
    if len(rows) == 2:
        figures["forgetting_delta"] = rows[1]["delta_vs_baseline"]["mean"]
    if figures["errors"]:
        raise InfrastructureError(f"{figures['errors']} evaluation runs failed (see the error log)")
    return figures


def _load(config: NightlyConfig, checkpoint: Any) -> float:
    from rrr_agent.serving import load_adapter

    assert config.serve_url is not None
    started = time.perf_counter()
    load_adapter(config.serve_url, config.served_name, checkpoint.path, inplace=True)
    return time.perf_counter() - started


def _reload_and_probe(
    config: NightlyConfig,
    registry: Registry,
    name: str,
    previous: str | None,
    report: _Report,
    say: Progress,
) -> bool:
    """Load ``name`` into the running server in place, then check with greedy probes that it
    answers like the candidate and no longer like the previous model (tried twice: a request
    already in flight may still finish on the old weights)."""
    if not config.serve_url:
        report.note("reload", "no serve_url configured: nothing to reload")
        return True
    t = report.stage("reload")
    checkpoint = registry.get(name)
    seconds = _load(config, checkpoint)
    say(f"adapter loaded in place into {config.serve_url} as {config.served_name!r} "
        f"({seconds:.2f}s)")  # fmt: skip
    old = registry.get(previous) if previous else None
    probe = _probe(config, checkpoint, old)
    if not probe["passed"]:
        time.sleep(2.0)
        probe = _probe(config, checkpoint, old)
    report.done(t, reload_seconds=round(seconds, 3), **probe)
    if probe["passed"] and not probe["probe_conclusive"]:
        report.note(
            "probe",
            f"inconclusive: the candidate and the previous model answer all {probe['probe_pool']} "
            "searched held-out prompts alike, so the probe shows that the server answers, not "
            "which adapter it serves (raise probe_pool to search further)",
        )
        say("probe inconclusive: no held-out prompt tells the candidate from the previous model")
    return bool(probe["passed"])


def _probe_pool(config: NightlyConfig) -> list[Task]:
    """The held-out prompts the reload probe searches (the first ``probe_pool``, at least
    ``probe_prompts``)."""
    import itertools

    from rrr_agent.tasksets import get_taskset

    size = max(config.probe_pool, config.probe_prompts)
    return list(itertools.islice(get_taskset(config.heldout_taskset).load(), size))


def _probe(config: NightlyConfig, candidate: Any, previous: Any) -> dict[str, Any]:
    """Greedy answers of the server, the candidate (in-process) and the previous model to
    held-out prompts. Passes when the server matches the candidate on at least 3 in 4 prompts
    (a kernel difference can flip a near-tied greedy token) and, wherever candidate and previous
    differ, no longer gives the previous model's answer everywhere.

    Only prompts the two models answer differently can tell them apart, so the candidate and
    the previous model first answer the first ``probe_pool`` held-out prompts in-process, and
    the probe asks the server those *telling* prompts first. With none, the probe is
    inconclusive (``probe_conclusive: false``): it shows the server answers, not which adapter."""
    import asyncio

    pool = _probe_pool(config) if previous else _probe_pool(config)[: config.probe_prompts]

    async def answers(client: LiteLLMClient, tasks: list[Any]) -> list[str]:
        out = []
        for task in tasks:
            params: dict[str, Any] = {"temperature": 0.0, "max_tokens": 16, "stop": ["\n"]}
            if task.chat_template_kwargs:
                params["chat_template_kwargs"] = task.chat_template_kwargs
            reply = await client.complete(task.openai_messages(), params=params, timeout=300)
            # A reply cut mid-character ends in U+FFFD in-process; vLLM's detokenizer holds
            # the incomplete bytes back instead: compare without that tail.
            out.append((reply.text or "").rstrip("\ufffd").strip())
        return out

    mine_pool = asyncio.run(answers(LiteLLMClient(candidate.model_string), pool))
    old_pool = (
        asyncio.run(answers(LiteLLMClient(previous.model_string), pool)) if previous else None
    )
    order = list(range(len(pool)))
    if old_pool is not None:  # telling prompts first, then the rest in their order
        order.sort(key=lambda i: mine_pool[i] == old_pool[i])
    chosen = order[: config.probe_prompts]
    tasks = [pool[i] for i in chosen]
    mine = [mine_pool[i] for i in chosen]
    before: list[str] = [old_pool[i] for i in chosen] if old_pool is not None else []
    served = asyncio.run(answers(LiteLLMClient(f"hosted_vllm/{config.served_name}",
                                               api_base=config.serve_url), tasks))  # fmt: skip
    telling = [i for i in range(len(tasks)) if not before or mine[i] != before[i]]
    matches = sum(served[i] == mine[i] for i in range(len(tasks)))
    still_old = bool(before) and bool(telling) and all(served[i] == before[i] for i in telling)
    return {
        "probe_prompts": len(tasks),
        "probe_pool": len(pool),
        "probe_answers": [{"served": served[i], "candidate": mine[i],
                           "previous": before[i] if before else None} for i in range(len(tasks))],
        "probe_matches": matches,
        "probe_telling_prompts": len(telling),
        "probe_conclusive": not before or bool(telling),
        "matches_candidate": matches == len(tasks),
        "served_differs_from_previous": bool(before)
        and any(served[i] != before[i] for i in telling),
        "passed": 4 * matches >= 3 * len(tasks) and not still_old,
    }  # fmt: skip


# ---------------------------------------------------------------------------------- report


class _Report:
    """The run's report: stages with timings and figures, as JSON, Markdown and a PNG."""

    def __init__(self, folder: Path, run_id: str):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.data: dict[str, Any] = {"run": run_id, "stages": [], "notes": {}}

    def stage(self, name: str) -> tuple[str, float]:
        return name, time.perf_counter()

    def done(self, started: tuple[str, float], **figures: Any) -> None:
        name, t0 = started
        self.data["stages"].append({"stage": name, "seconds": round(time.perf_counter() - t0, 2),
                                    **figures})  # fmt: skip
        self._write()

    def note(self, key: str, text: str) -> None:
        self.data["notes"][key] = text
        self._write()

    def fail(self, why: str) -> None:
        self.finish("error", why)

    def finish(self, outcome: str, why: str, figures: dict[str, Any] | None = None) -> None:
        self.data.update(outcome=outcome, reason=why, figures=figures or {})
        self._write()
        if figures and "current" in figures:
            self._plot(figures)

    def _write(self) -> None:
        (self.folder / "report.json").write_text(
            redact(json.dumps(self.data, indent=2, default=str))
        )
        outcome = self.data.get("outcome", "running")
        lines = [f"# Nightly run {self.data['run']}", "",
                 f"Outcome: **{outcome}** {self.data.get('reason', '')}",
                 "", "| stage | seconds | figures |", "|---|---|---|"]  # fmt: skip
        for s in self.data["stages"]:
            rest = {k: v for k, v in s.items() if k not in ("stage", "seconds")}
            lines.append(
                f"| {s['stage']} | {s['seconds']} | `{json.dumps(rest, default=str)[:300]}` |"
            )
        for key, text in self.data["notes"].items():
            lines += ["", f"{key}: {text}"]
        (self.folder / "report.md").write_text(redact("\n".join(lines)) + "\n", encoding="utf-8")

    def _plot(self, figures: dict[str, Any]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        labels = ["first try", "second try"]
        cur = [100 * figures["current"]["first_try"], 100 * figures["current"]["second_try"]]
        cand = [100 * figures["candidate"]["first_try"], 100 * figures["candidate"]["second_try"]]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        xs = range(len(labels))
        ax.bar([x - 0.2 for x in xs], cur, 0.4, label="current")
        ax.bar([x + 0.2 for x in xs], cand, 0.4, label="candidate")
        ax.set_xticks(list(xs), labels)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"nightly {self.data['run']}: {self.data.get('outcome')}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(self.folder / "report.png", dpi=100)
        plt.close(fig)
