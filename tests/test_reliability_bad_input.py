"""Bad input, end to end through the CLI: malformed task files, unknown or invalid verifier specs,
bad JSONL logs, wrong schema versions, bad TOML, missing or corrupted model files, a corrupted
checkpoint registry. Each must give a clear error naming the file (and the line, for data), a
non-zero exit code, and leave nothing half-written."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rrr_agent.cli import app

pytestmark = pytest.mark.reliability

runner = CliRunner()
TASK = {"id": "a", "messages": [{"role": "user", "content": "hi"}],
        "verifier": {"type": "exact", "expected": "x"}}  # fmt: skip


def _lines(*rows: object) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def _traj_line() -> dict[str, object]:
    from rrr_agent import Task, Trajectory

    t = Trajectory(task=Task.from_prompt("q", {"type": "exact", "expected": "x"}), model="m")
    return json.loads(t.model_dump_json())


@dataclass
class Case:
    name: str
    files: dict[str, str | bytes]
    args: Callable[[Path], list[str]]
    #: substrings the error must hold ({d} is the case's folder)
    says: list[str]
    exit_codes: tuple[int, ...] = (1,)
    #: paths (relative to the case folder) that must not exist afterwards
    absent: list[str] = field(default_factory=lambda: ["out", "trajectories.jsonl"])


def _registry(d: Path, manifest: str | None, current: str | None = "ck1") -> None:
    folder = d / "home" / "checkpoints" / "ck1"
    folder.mkdir(parents=True)
    if manifest is not None:
        (folder / "manifest.json").write_text(manifest)
    (folder / "adapter_model.safetensors").write_bytes(b"\0" * 10)
    if current is not None:
        (d / "home" / "checkpoints" / "CURRENT").write_text(current)


CASES = [
    Case("task file: line is not JSON",
         {"t.jsonl": _lines(TASK, '{"id": "b",')},
         lambda d: ["run", "--tasks", str(d / "t.jsonl"), "-m", "scripted/x"],
         ["t.jsonl:2:", "not valid JSON"]),
    Case("task file: not a task",
         {"t.jsonl": _lines(TASK, {**TASK, "id": "b"}, {"id": "c", "messages": "hi"})},
         lambda d: ["run", "--tasks", str(d / "t.jsonl"), "-m", "scripted/x"],
         ["t.jsonl:3:", "messages"]),
    Case("task file: unknown verifier",
         {"t.jsonl": _lines({**TASK, "verifier": {"type": "nope"}})},
         lambda d: ["run", "--tasks", str(d / "t.jsonl"), "-m", "scripted/x"],
         ["t.jsonl:1:", "unknown verifier type 'nope'"]),
    Case("task file: invalid verifier spec",
         {"t.jsonl": _lines(TASK, {**TASK, "verifier": {"type": "numeric"}})},
         lambda d: ["run", "--tasks", str(d / "t.jsonl"), "-m", "scripted/x"],
         ["t.jsonl:2:", "invalid spec for verifier 'numeric'", "expected"]),
    Case("verifier spec on the command line: invalid",
         {},
         lambda d: ["verify", "--spec", '{"type": "regex", "pattern": "("}', "--response", "x"],
         ["regex"], exit_codes=(1,)),
    Case("verifier spec file: not JSON",
         {"spec.json": '{"type": "exact",\n "expected": }\n'},
         lambda d: ["verify", "--spec", str(d / "spec.json"), "--response", "x"],
         ["spec.json:2:"], exit_codes=(1,)),
    Case("trajectory log: a corrupt line",
         {"log.jsonl": _lines(_traj_line(), "garbage")},
         lambda d: ["train", "data", str(d / "log.jsonl")],
         ["log.jsonl:2:", "not valid JSON"]),
    Case("trajectory log: newer schema version",
         {"log.jsonl": _lines({**_traj_line(), "schema_version": 99})},
         lambda d: ["logs", "list", "--log", str(d / "log.jsonl")],
         ["log.jsonl:1:", "schema_version 99 is newer"]),
    Case("settings TOML: syntax",
         {"rrr.toml": 'model = "x"\nmax_retries = = 2\n', "t.jsonl": _lines(TASK)},
         lambda d: ["run", "--tasks", str(d / "t.jsonl"), "--config", str(d / "rrr.toml")],
         ["rrr.toml:2:", "invalid TOML"]),
    Case("settings TOML: unknown key",
         {"rrr.toml": 'model = "x"\n\nmax_retry = 2\n', "t.jsonl": _lines(TASK)},
         lambda d: ["run", "--tasks", str(d / "t.jsonl"), "--config", str(d / "rrr.toml")],
         ["rrr.toml:3:", "unknown setting(s) max_retry"]),
    Case("settings TOML: bad value",
         {"rrr.toml": 'max_retries = -3\n', "t.jsonl": _lines(TASK)},
         lambda d: ["run", "--tasks", str(d / "t.jsonl"), "--config", str(d / "rrr.toml")],
         ["max_retries"]),
    Case("training TOML: unknown key",
         {"train.toml": "[train]\nmax_steps = 3\nlr = 0.1\n", "log.jsonl": _lines(_traj_line())},
         lambda d: ["train", "run", str(d / "log.jsonl"), "--config", str(d / "train.toml"),
                    "--output-dir", str(d / "out")],
         ["train.toml:3:", "unknown training setting(s): lr"]),
    Case("model folder: missing",
         {"t.jsonl": _lines(TASK)},
         lambda d: ["run", "--tasks", str(d / "t.jsonl"), "-m", f"local/{d / 'no-model'}"],
         ["no such model"], exit_codes=(3,), absent=["out"]),
    Case("model folder: corrupted weights",
         {"t.jsonl": _lines(TASK), "m/config.json": '{"model_type": "gemma3_text"}',
          "m/model.safetensors": b"not a safetensors file"},
         lambda d: ["run", "--tasks", str(d / "t.jsonl"), "-m", f"local/{d / 'm'}"],
         ["cannot load the model", "m"], exit_codes=(3,), absent=["out"]),
    Case("registry: manifest not JSON",
         {},
         lambda d: (_registry(d, '{"format": 1,'), ["checkpoints", "show", "ck1"])[1],
         ["manifest.json:1:", "not valid JSON"]),
    Case("registry: manifest missing (half-written checkpoint)",
         {},
         lambda d: (_registry(d, None), ["checkpoints", "show", "ck1"])[1],
         ["ck1/manifest.json:", "checkpoint has no manifest (half-written?)"]),
    Case("registry: current points at garbage",
         {},
         lambda d: (_registry(d, "{}", current="../../etc"), ["checkpoints", "list"])[1],
         ["CURRENT", "not a checkpoint name"]),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_a_clear_error(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RRR_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    for rel, content in case.files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    before = {p for p in tmp_path.rglob("*")}
    result = runner.invoke(app, case.args(tmp_path))
    out = result.output
    assert result.exit_code in case.exit_codes, (result.exit_code, out)
    assert "Traceback" not in out, out
    for fragment in case.says:
        assert fragment.format(d=tmp_path) in out, (fragment, out)
    for rel in case.absent:
        assert not (tmp_path / rel).exists(), f"{rel} was (half-)written"
        assert not (tmp_path / "home" / rel).exists(), f"home/{rel} was (half-)written"
    created = {p for p in tmp_path.rglob("*")} - before
    assert not [p for p in created if p.suffix in (".tmp", ".partial")], created


ROOT = Path(__file__).resolve().parents[1]


def _run_learning_benchmark(*flags: str, out: Path, work: Path) -> subprocess.CompletedProcess[str]:
    """`benchmarks/learning.py` with these flags, as a user runs it (it fails before any work)."""
    args = [*flags, "--out", str(out), "--work", str(work)]
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "learning.py"), *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_learning_benchmark_refuses_a_missing_prompts_folder_before_writing(tmp_path: Path) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    result = _run_learning_benchmark("--prompts", str(tmp_path / "nope"), out=out, work=work)
    assert result.returncode != 0
    assert f"--prompts {tmp_path / 'nope'}: no such folder of prompt files" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() and not work.exists()


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--lora-layers", "3,1-4"], "lora_layers ([3, 1, 2, 3, 4]) must be distinct"),
        (["--lora-layers", "twelve"], "'twelve' is not layer numbers like 12-17 or 0,5,11"),
        (["--k", "1"], "training settings: num_generations must be at least 2"),
        (["--train", "nope"], "task sets: unknown task set 'nope' (known: arithmetic-test"),
        (["--also", "countdown2-test,nope"], "task sets: unknown task set 'nope'"),
        (["--anchor", "nope"], "task sets: unknown task set 'nope'"),
        (["--anchor", "arithmetic-train"], "--anchor arithmetic-train: the anchor is trained on"),
        (["--blend", "0.5,1"], "'0.5,1': give distinct weights strictly between 0 and 1"),
        (["--blend", "half"], "'half' is not weights like 0.5,0.75"),
        (
            ["--probe-concurrency", "0"],
            "--probe-concurrency 0: requests in flight must be at least 1",
        ),
        (
            ["--guard-concurrency", "0"],
            "--guard-concurrency 0: requests in flight must be at least 1",
        ),
        (["--gate-first-try", "1.5"], "--gate-first-try 1.5: a share of the gate's score, 0 to 1"),
        (
            ["--gate-first-try", "0.5", "--no-round-gate"],
            "--gate-first-try weighs the round gate's score: drop --no-round-gate",
        ),
    ],
)
def test_learning_benchmark_refuses_bad_flags_before_writing(
    tmp_path: Path, flags: list[str], says: str
) -> None:
    """The task sets and the training config a run names are loaded and validated before the
    server starts: a bad flag fails at once, with the library's own message (the trainer's
    config check, the task-set registry), and leaves no scratch or result folder."""
    out, work = tmp_path / "out", tmp_path / "work"
    result = _run_learning_benchmark(*flags, out=out, work=work)
    assert result.returncode != 0
    assert says in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() and not work.exists()


def test_a_prompts_folder_overrides_only_the_files_it_holds() -> None:
    """Run 31's folder: the retry after a reflection changes; the reflection prompt and the
    plain-retry control stay the shipped wording, so vanilla and trained meet the same control."""
    from rrr_agent import PromptLibrary, load_settings

    settings = load_settings(prompts_dir=ROOT / "benchmarks" / "prompts" / "use-reflection")
    over, shipped = PromptLibrary(settings.prompts_dir), PromptLibrary()
    assert over.get("retry", "countdown2").text == "Use the reflection. Equation:"
    assert shipped.get("retry", "countdown2").text == "Try again. Equation:"
    for kind in ("reflection", "plain_retry"):
        assert over.get(kind, "countdown2") == shipped.get(kind, "countdown2")
    assert over.get("retry", "countdown2").version != shipped.get("retry", "countdown2").version
