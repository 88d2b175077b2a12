"""The nightly job on a tiny local model: promote, skip, reject, lock, dry run, and kill -9 at
each stage followed by a rerun. tests/test_nightly_serve.py adds a live vLLM server."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

from rrr_agent import ConfigError, Engine, Registry, ScriptedModel, Task, TrajectoryStore

from .conftest import REPO

pytestmark = pytest.mark.slow

pytest.importorskip("trl")


def parity_task(i: int) -> Task:
    return Task.from_prompt(
        f"Numbers: {i}, 9. Target: {i + 9}.",
        {"type": "python", "path": "tests.helpers:hash_parity"},
        family="math",
    )


def add_failures(log: Path, first: int, n: int) -> None:
    """Real engine runs whose first attempt fails (the scripted answer fails hash_parity)."""
    model = ScriptedModel(default="odd")
    engine = Engine(model.model, store=TrajectoryStore(log))
    engine.run_many_sync([parity_task(i) for i in range(first, first + n)], concurrency=4)


def config_values(tmp_path: Path, tiny: Path, log: Path, **kw: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "logs": [str(log)],
        "registry": str(tmp_path / "registry"),
        "base_model": str(tiny),
        "min_failures": 2,
        "heldout_taskset": "countdown2-test",
        "heldout_limit": 2,
        "forgetting_taskset": "arithmetic-test",
        "forgetting_limit": 2,
        "eval_max_tokens": 4,
        "eval_concurrency": 4,
        "margin": -1.0,  # a random tiny model cannot improve: let the gate pass
        "max_forgetting": 1.0,
        "train": {
            "max_steps": 2, "num_generations": 2, "per_device_train_batch_size": 2,
            "max_reflection_tokens": 6, "max_retry_tokens": 4, "retry_temperature": 1.0,
            "save_steps": 1, "learning_rate": 1e-2, "seed": 3,
        },
    }  # fmt: skip
    values.update(kw)
    return values


def write_toml(path: Path, values: dict[str, Any]) -> Path:
    def fmt(v: Any) -> str:
        return json.dumps(v)

    train = values.pop("train")
    lines = ["[nightly]"] + [f"{k} = {fmt(v)}" for k, v in values.items() if v is not None]
    lines += ["", "[train]"] + [f"{k} = {fmt(v)}" for k, v in train.items()]
    path.write_text("\n".join(lines) + "\n")
    values["train"] = train
    return path


def test_promote_skip_reject_lock_and_dry_run(tmp_path: Path, tiny: Path) -> None:
    from rrr_trainer.nightly import NightlyConfig, run_nightly

    log = tmp_path / "logs" / "app.jsonl"
    add_failures(log, 0, 4)
    config = NightlyConfig(**config_values(tmp_path, tiny, log))
    reg = Registry(config.registry)

    plan = run_nightly(config, dry_run=True)
    assert (plan.exit_code, plan.outcome) == (0, "dry_run")
    assert plan.figures["would_train_on"] == 4 and reg.names() == []

    first = run_nightly(config)
    assert (first.exit_code, first.outcome) == (0, "promoted"), first
    assert reg.current_name() == first.candidate and reg.problems(first.candidate) == []
    manifest = reg.get(first.candidate).manifest  # type: ignore[arg-type]
    assert manifest["parent"] is None and manifest["train"]["failures"] == 4
    assert manifest["watermark"][str(log.resolve())] == log.stat().st_size
    assert "heldout" in manifest["metrics"]
    report = first.report_dir
    assert report is not None
    for name in ("report.json", "report.md", "report.png"):
        assert (report / name).is_file(), name
    stages = [s["stage"] for s in json.loads((report / "report.json").read_text())["stages"]]
    assert stages == ["collect", "train", "evaluate", "promote"]

    again = run_nightly(config)  # nothing new since the watermark
    assert (again.exit_code, again.outcome) == (5, "skipped")
    assert reg.current_name() == first.candidate

    add_failures(log, 10, 4)
    strict = NightlyConfig(**config_values(tmp_path, tiny, log, margin=1.0))
    rejected = run_nightly(strict)
    assert (rejected.exit_code, rejected.outcome) == (0, "rejected")
    assert reg.current_name() == first.candidate  # unchanged
    child = reg.get(rejected.candidate).manifest  # type: ignore[arg-type]
    assert child["parent"] == first.candidate  # trained on from the promoted adapter

    lock = reg.root / "nightly" / "lock"
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        refused = run_nightly(config)
    assert (refused.exit_code, refused.outcome) == (6, "locked")


def _state(reg: Registry) -> dict[str, Any]:
    path = reg.root / "nightly" / "state.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _nightly(toml: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    rrr = str(Path(sys.executable).with_name("rrr"))
    # The logged verifier spec names tests.helpers: the job must be able to import it.
    extra = {"PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.Popen([rrr, "nightly", "--config", str(toml), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env={**os.environ, **extra})  # fmt: skip


def _kill_when(proc: subprocess.Popen[str], ready: Any, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds  # waiting for the stage, not timing it
    while time.monotonic() < deadline and proc.poll() is None:
        if ready():
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    assert proc.wait(timeout=60) == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""


def _consistent(reg: Registry) -> None:
    """After any crash and rerun: current names a complete, intact checkpoint; nothing is half
    written; no run is left open."""
    current = reg.current_name()
    assert current is None or reg.problems(current) == []
    assert not list(reg.root.glob(".incoming-*"))
    assert _state(reg).get("run") is None


@pytest.mark.parametrize("stage", ["train", "evaluate", "promoted"])
def test_kill_9_at_each_stage_then_rerun(tmp_path: Path, tiny: Path, stage: str) -> None:
    log = tmp_path / "logs" / "app.jsonl"
    add_failures(log, 0, 4)
    values = config_values(tmp_path, tiny, log)
    toml = write_toml(tmp_path / "nightly.toml", values)
    reg = Registry(values["registry"])
    if stage == "promoted":  # right after the pointer switch, before the reload and the report
        proc = _nightly(toml, {"RRR_NIGHTLY_KILL_AT": "promoted"})
        assert proc.wait(timeout=600) == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
        killed = _state(reg)["run"]["candidate"]
        assert reg.current_name() == killed
    else:

        def ready() -> bool:
            run = _state(reg).get("run") or {}
            if run.get("stage") != stage:
                return False
            if stage == "train":  # mid-training: its first checkpoint is on disk
                return any(Path(run["scratch"]).glob("train/checkpoint-*"))
            return True

        proc = _nightly(toml)
        _kill_when(proc, ready)
        assert _state(reg)["run"]["stage"] == stage
    rerun = _nightly(toml)
    out, errs = rerun.communicate(timeout=900)
    summary = json.loads(out)
    report = json.loads((Path(summary["report"]) / "report.json").read_text())
    assert "recovered" in report["notes"], report
    _consistent(reg)
    if stage == "promoted":
        # The promotion stood and its data counts as used: the rerun has nothing new to train on.
        assert rerun.returncode == 5 and summary["outcome"] == "skipped"
        assert reg.current_name() == killed and reg.names() == [killed]
    else:
        # Rolled back: the rerun trained again from the same data and promoted its candidate.
        assert rerun.returncode == 0 and summary["outcome"] == "promoted", errs[-2000:]
        assert reg.names() == [summary["candidate"]] == [reg.current_name()]
    watermark = _state(reg)["watermark"]
    assert watermark[str(log.resolve())] == log.stat().st_size


def test_shipped_examples_are_valid() -> None:
    from rrr_trainer.nightly import NightlyConfig

    examples = REPO / "examples" / "nightly"
    config = NightlyConfig.from_sources(examples / "nightly.toml")
    assert config.serve_url == "http://127.0.0.1:8000/v1" and config.train["max_steps"] == 30
    service = (examples / "rrr-nightly.service").read_text()
    assert "SuccessExitStatus=5 6" in service and "rrr nightly --config" in service
    assert "OnCalendar=" in (examples / "rrr-nightly.timer").read_text()
    assert "rrr nightly --config" in (examples / "rrr-nightly.cron").read_text()
    with pytest.raises(Exception, match="unknown nightly setting"):
        NightlyConfig.from_sources(None, nonsense=1)
    assert config.forgetting_concurrency == 1  # the forgetting gate measures one at a time
    for name in ("forgetting_concurrency", "eval_concurrency"):
        with pytest.raises(ConfigError, match=f"{name} \\(0\\) must be at least 1"):
            NightlyConfig.from_sources(None, **{name: 0})


class _Replies:
    """A model client for the probe's unit test: each model string answers by a rule."""

    rules: ClassVar[dict[str, Any]] = {}

    def __init__(self, model: str, **_: Any) -> None:
        self.model = model

    async def complete(self, messages: list[dict[str, Any]], **_: Any) -> Any:
        from types import SimpleNamespace

        block = str(messages[-1]["content"])
        return SimpleNamespace(text=self.rules[self.model](block))


def test_probe_asks_the_telling_prompts_and_says_when_there_are_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from types import SimpleNamespace

    import rrr_trainer.nightly as nightly

    monkeypatch.setattr(nightly, "LiteLLMClient", _Replies)
    config = nightly.NightlyConfig(probe_prompts=4, probe_pool=32, served_name="rrr",
                                   serve_url="http://127.0.0.1:9/v1")  # fmt: skip
    cand, prev = SimpleNamespace(model_string="cand"), SimpleNamespace(model_string="prev")
    pool = [t.messages[-1].content for t in nightly._probe_pool(config)]
    differ = set(pool[20:23])  # the two models differ on 3 prompts deep in the pool

    def new(block: str) -> str:
        return "1 + 2" if block in differ else "3 * 4\ufffd"  # a cut-off character: ignored

    old = lambda block: "3 * 4"  # noqa: E731
    _Replies.rules = {"cand": new, "prev": old, "hosted_vllm/rrr": new}
    probe = nightly._probe(config, cand, prev)
    assert probe["probe_telling_prompts"] == 3 and probe["probe_conclusive"]
    assert [a["candidate"] for a in probe["probe_answers"][:3]] == ["1 + 2"] * 3
    assert probe["passed"] and probe["served_differs_from_previous"]
    _Replies.rules["hosted_vllm/rrr"] = old  # a server still on the previous adapter
    assert not nightly._probe(config, cand, prev)["passed"]
    _Replies.rules = {"cand": old, "prev": old, "hosted_vllm/rrr": old}  # nothing tells them apart
    probe = nightly._probe(config, cand, prev)
    assert probe["passed"] and not probe["probe_conclusive"] and probe["probe_pool"] == 32
