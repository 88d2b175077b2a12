"""The `rrr` command line, run as a real console script (subprocess) and through CliRunner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rrr_agent import Trajectory, TrajectoryStore
from rrr_agent.cli import app

from .conftest import REPO, math_task

runner = CliRunner()
DEMO_TASKS = REPO / "examples" / "demo_tasks.jsonl"
DEMO_SCRIPT = REPO / "examples" / "demo_script.json"


def rrr(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("rrr")
    return subprocess.run(
        [str(exe), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def write_script(tmp_path: Path, replies: list[object]) -> Path:
    path = tmp_path / "script.json"
    path.write_text(json.dumps(replies))
    return path


def test_help_reads_well() -> None:
    result = rrr("--help")
    assert result.returncode == 0
    for command in ("run", "logs", "config", "verify", "tasks"):
        assert command in result.stdout
    run_help = rrr("run", "--help").stdout
    assert "--tasks" in run_help and "--concurrency" in run_help and "--json" in run_help


def test_demo_job_end_to_end(rrr_home: Path) -> None:
    result = rrr("run", "--tasks", str(DEMO_TASKS), "--script", str(DEMO_SCRIPT), "-c", "1")
    assert result.returncode == 0, result.stderr
    assert "first-try success" in result.stdout and "1/3 (33.3%)" in result.stdout
    assert "second-try success" in result.stdout and "2/3 (66.7%)" in result.stdout
    logged = list(TrajectoryStore(rrr_home / "trajectories.jsonl").read())
    assert [t.outcome.value for t in logged] == ["passed_after_retry", "passed_first_try", "failed"]


def test_run_json_summary(tmp_path: Path) -> None:
    script = write_script(tmp_path, ["3", "I misread.", "4"])
    result = runner.invoke(
        app,
        [
            "run",
            "2+2?",
            "--verifier",
            '{"type": "exact", "expected": "4"}',
            "--script",
            str(script),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["passed_first_try"] == 0 and summary["passed_second_try"] == 1
    assert summary["tokens"]["reflections"]["completion_tokens"] == 2


def test_run_single_prompt_prints_the_conversation(tmp_path: Path) -> None:
    script = write_script(tmp_path, ["3", "I misread the question.", "4"])
    result = runner.invoke(
        app,
        [
            "run",
            "2+2?",
            "--verifier",
            '{"type": "exact", "expected": "4"}',
            "--family",
            "math",
            "--script",
            str(script),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "reflection" in result.stdout and "I misread the question." in result.stdout


def test_run_infra_errors_exit_3_and_stay_out_of_the_log(tmp_path: Path, rrr_home: Path) -> None:
    script = write_script(tmp_path, ["42"] + [{"error": "server"}] * 10)
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(
        "\n".join(
            json.dumps(
                {"id": f"t{i}", "prompt": f"p{i}", "verifier": {"type": "exact", "expected": "42"}}
            )
            for i in range(2)
        )
        + "\n"
    )
    env = {"RRR_TRANSPORT_TRIES": "2"}
    result = rrr("run", "--tasks", str(tasks), "--script", str(script), "-c", "1", env=env)
    assert result.returncode == 3, result.stderr
    assert "not run" in result.stderr
    assert len(list(TrajectoryStore(rrr_home / "trajectories.jsonl").read())) == 1
    assert "1 trajectory appended to" in result.stderr  # the one that ran, not "appended"
    errors = runner.invoke(app, ["logs", "errors", "--json"])
    rows = [json.loads(x) for x in errors.stdout.splitlines()]
    assert [r["task_id"] for r in rows] == ["t1"] and rows[0]["error_type"] == "ServerError"
    # The readable form: one block per error, the whole message on its own line(s), not a column
    # squeezed to a few characters.
    shown = rrr("logs", "errors", env={"COLUMNS": "80"})
    assert shown.returncode == 0 and "1 run error" in shown.stdout
    assert "ServerError: " + rows[0]["error"][:60] in " ".join(shown.stdout.split())
    assert "task t1" in shown.stdout and "stage attempt" in shown.stdout


def test_run_says_when_nothing_was_appended(tmp_path: Path) -> None:
    script = write_script(tmp_path, [{"error": "server"}] * 4)
    result = rrr("run", "x", "--verifier", '{"type": "exact", "expected": "1"}', "--script",
                 str(script), env={"RRR_TRANSPORT_TRIES": "1"})  # fmt: skip
    assert result.returncode == 3
    assert "0 trajectories appended to" in result.stderr
    quiet = rrr("run", "x", "--verifier", '{"type": "exact", "expected": "1"}', "--script",
                str(write_script(tmp_path, ["1"])), "--no-log")  # fmt: skip
    assert quiet.returncode == 0 and "appended" not in quiet.stderr


def test_serve_passes_unknown_flags_to_vllm_and_keeps_subcommands(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`rrr serve --enforce-eager` reaches the server's command line; `rrr serve load-adapter`
    is still a subcommand (the group parses without click internals)."""
    started: list[list[str]] = []

    def fake_serve(server: object, **_: object) -> None:
        started.append(list(server.extra_args))  # type: ignore[attr-defined]

    monkeypatch.setattr("rrr_agent.serving.serve_until_stopped", fake_serve)
    result = runner.invoke(app, ["serve", "--port", "0", "--enforce-eager", "--dtype", "bfloat16"])
    assert result.exit_code == 0, result.output
    assert started == [["--enforce-eager", "--dtype", "bfloat16"]]
    missing = runner.invoke(app, ["serve", "load-adapter", "a", str(tmp_path)])
    assert missing.exit_code == 1 and "adapter_config.json" in missing.output
    assert started == [["--enforce-eager", "--dtype", "bfloat16"]]  # the server was not started


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        (
            '{"prompt": "a", "verifier": {"type": "exact", "expected": "1"}}\n{oops\n',
            2,
            "not valid JSON",
        ),
        ('{"prompt": "a"}\n', 1, "missing 'verifier'"),
        (
            '\n\n{"prompt": "a", "verifier": {"type": "nosuch"}}\n',
            3,
            "unknown verifier type 'nosuch'",
        ),
        ('{"prompt": "a", "verifier": {"type": "exact"}}\n', 1, "expected: Field required"),
        ('{"prompt": "a", "verifier": {"type": "exact", "expected": "1", "typo": 1}}\n', 1, "typo"),
        (
            '{"id": "x", "prompt": "a", "verifier": {"type": "exact", "expected": "1"}}\n'
            '{"id": "x", "prompt": "b", "verifier": {"type": "exact", "expected": "1"}}\n',
            2,
            "duplicate task id 'x' (first on line 1)",
        ),
        ('{"messages": [], "verifier": {"type": "exact", "expected": "1"}}\n', 1, "messages"),
        (
            '{"prompt": "a", "verifier": {"type": "regex", "pattern": "("}}\n',
            1,
            "invalid regular expression",
        ),
        ("[1, 2]\n", 1, "expected a JSON object"),
    ],
)
def test_bad_task_files_name_file_and_line(
    tmp_path: Path, rrr_home: Path, content: str, line: int, message: str
) -> None:
    tasks = tmp_path / "bad.jsonl"
    tasks.write_text(content)
    result = rrr("run", "--tasks", str(tasks), "--script", str(DEMO_SCRIPT))
    assert result.returncode == 1
    assert f"{tasks}:{line}:" in result.stderr and message in result.stderr, result.stderr
    assert not (rrr_home / "trajectories.jsonl").exists()  # nothing half-done


def test_missing_and_empty_task_files(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["run", "--tasks", str(tmp_path / "none.jsonl"), "--script", str(DEMO_SCRIPT)]
    )
    assert result.exit_code == 1 and "cannot open task file" in result.output
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    result = runner.invoke(app, ["run", "--tasks", str(empty), "--script", str(DEMO_SCRIPT)])
    assert result.exit_code == 1 and "has no tasks" in result.output


def test_run_usage_errors_exit_2() -> None:
    assert runner.invoke(app, ["run"]).exit_code == 2
    assert runner.invoke(app, ["run", "hi"]).exit_code == 2  # no verifier
    result = runner.invoke(app, ["run", "hi", "--verifier", "{bad", "--script", str(DEMO_SCRIPT)])
    assert result.exit_code == 2 and "not valid JSON" in result.output
    both = runner.invoke(app, ["run", "hi", "--taskset", "countdown2-test"])
    assert both.exit_code == 2 and "exactly one of" in both.output


def _fill_log(rrr_home: Path) -> list[Trajectory]:
    store = TrajectoryStore(rrr_home / "trajectories.jsonl")
    trajs = [
        Trajectory(task=math_task(prompt=f"q{i}"), model="m1" if i % 2 else "m2") for i in range(4)
    ]
    for t in trajs:
        store.append(t)
    return trajs


def test_logs_list_show_stats(rrr_home: Path) -> None:
    trajs = _fill_log(rrr_home)
    listed = runner.invoke(app, ["logs", "list", "--json", "--model", "m1"])
    assert listed.exit_code == 0
    rows = [json.loads(x) for x in listed.stdout.splitlines()]
    assert [r["id"] for r in rows] == [trajs[1].id, trajs[3].id]
    assert runner.invoke(app, ["logs", "list", "-n", "1", "--json"]).stdout.count("\n") == 1
    table = runner.invoke(app, ["logs", "list"])
    assert table.exit_code == 0 and "4 trajectories" in table.stdout
    shown = runner.invoke(app, ["logs", "show", trajs[2].id[:10], "--json"])
    assert Trajectory.model_validate_json(shown.stdout) == trajs[2]
    assert runner.invoke(app, ["logs", "show", "nope"]).exit_code == 1
    stats = json.loads(runner.invoke(app, ["logs", "stats", "--json"]).stdout)
    assert stats["trajectories"] == 4 and stats["models"] == {"m1": 2, "m2": 2}
    assert runner.invoke(app, ["logs", "list", "--since", "yesterday"]).exit_code == 2


def test_logs_bad_line_fails_with_file_line_unless_skipped(rrr_home: Path) -> None:
    _fill_log(rrr_home)
    log = rrr_home / "trajectories.jsonl"
    with log.open("a") as fh:
        fh.write("garbage\n")
    result = rrr("logs", "list", "--json")
    assert result.returncode == 1 and f"{log}:5: not valid JSON" in result.stderr
    result = rrr("logs", "list", "--json", "--skip-invalid")
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 4
    assert f"{log}:5" in result.stderr


def test_settings_precedence_file_env_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "rrr.toml"
    cfg.write_text('model = "from-file"\nconcurrency = 3\nmax_retries = 2\n')
    shown = json.loads(
        runner.invoke(app, ["config", "show", "--config", str(cfg), "--json"]).stdout
    )
    assert (shown["model"], shown["concurrency"], shown["max_retries"]) == ("from-file", 3, 2)
    monkeypatch.setenv("RRR_CONCURRENCY", "5")
    monkeypatch.setenv("RRR_CONFIG", str(cfg))
    shown = json.loads(runner.invoke(app, ["config", "show", "--json"]).stdout)
    assert (shown["model"], shown["concurrency"]) == ("from-file", 5)


def test_bad_config_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "rrr.toml"
    cfg.write_text("concurrency = \n")
    result = runner.invoke(app, ["config", "show", "--config", str(cfg)])
    assert result.exit_code == 1 and "invalid TOML" in result.output
    cfg.write_text("concurency = 3\n")
    result = runner.invoke(app, ["config", "show", "--config", str(cfg)])
    assert result.exit_code == 1 and "unknown setting(s) concurency" in result.output
    cfg.write_text("concurrency = 0\n")
    result = runner.invoke(app, ["config", "show", "--config", str(cfg)])
    assert result.exit_code == 1 and "concurrency" in result.output
    monkeypatch.setenv("RRR_MAX_RETRIES", "-1")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 1 and "env RRR_MAX_RETRIES" in result.output
    result = runner.invoke(app, ["config", "show", "--config", str(tmp_path / "missing.toml")])
    assert result.exit_code == 1 and "does not exist" in result.output


def test_verify_generic_spec(tmp_path: Path) -> None:
    ok = runner.invoke(
        app,
        ["verify", "--spec", '{"type": "regex", "pattern": "^4$"}', "--response", "4", "--json"],
    )
    assert ok.exit_code == 0 and json.loads(ok.stdout)["valid"] is True
    spec = tmp_path / "spec.json"
    spec.write_text('{"type": "exact", "expected": "4"}')
    bad = runner.invoke(app, ["verify", "--spec", str(spec), "--response", "5", "--json"])
    assert bad.exit_code == 4 and json.loads(bad.stdout)["valid"] is False
    broken = runner.invoke(app, ["verify", "--spec", '{"type": "nosuch"}', "--response", "5"])
    assert broken.exit_code == 1 and "unknown verifier type" in broken.output


def test_verify_countdown_spec_from_the_issue() -> None:
    spec = '{"type": "countdown", "numbers": [14, 9], "target": 23}'
    ok = runner.invoke(
        app, ["verify", "--spec", spec, "--response", "<answer>14 + 9</answer>", "--json"]
    )
    assert ok.exit_code == 0 and json.loads(ok.stdout)["valid"] is True
    bad = runner.invoke(app, ["verify", "--spec", spec, "--response", "14 * 9", "--json"])
    data = json.loads(bad.stdout)
    assert bad.exit_code == 4 and data["valid"] is False and "126" in data["feedback"]


def test_tasks_list_json_names_every_set() -> None:
    result = runner.invoke(app, ["tasks", "list", "--json"])
    assert result.exit_code == 0
    names = {json.loads(line)["name"] for line in result.stdout.splitlines()}
    assert {
        "countdown-test",
        "gsm8k-test",
        "humaneval",
        "bfcl-simple_python",
        "xlam-sample",
    } <= names


def test_tasks_export_unknown_set_and_atomic_output(tmp_path: Path) -> None:
    result = runner.invoke(app, ["tasks", "export", "nosuch", "-o", str(tmp_path / "x.jsonl")])
    assert result.exit_code == 1 and "unknown task set 'nosuch'" in result.output
    assert not (tmp_path / "x.jsonl").exists()
    missing = runner.invoke(
        app,
        ["tasks", "export", "gsm8k-test", "--data", str(tmp_path), "-o", str(tmp_path / "y.jsonl")],
    )
    assert missing.exit_code == 1 and "does not exist" in missing.output
    assert list(tmp_path.iterdir()) == []  # nothing half-written
