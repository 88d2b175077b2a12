"""Evaluation: statistics, the plain-retry control from the same failure, tables, chart, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rrr_agent import ScriptedModel, Task, TrajectoryStore, load_settings
from rrr_agent.cli import app
from rrr_agent.evaluation import evaluate, paired_mean_ci, wilson_interval

PAPER_MATH_START = "You tried solving the problem"


def test_wilson_interval_known_values() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(5, 10)
    assert (lo, hi) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    lo, hi = wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(0.7225, abs=1e-4)
    lo, hi = wilson_interval(40, 100)
    assert lo < 0.4 < hi and hi - lo == pytest.approx(0.19, abs=0.01)


def test_paired_mean_ci() -> None:
    assert paired_mean_ci([]) == (0.0, 0.0, 0.0)
    assert paired_mean_ci([1.0]) == (1.0, 1.0, 1.0)
    mean, lo, hi = paired_mean_ci([1, 0, 1, 0] * 25)
    assert mean == 0.5 and lo == pytest.approx(0.5 - 1.96 * 0.5025 / 10, abs=1e-3)
    assert hi - mean == pytest.approx(mean - lo)


def tasks(n: int = 8) -> list[Task]:
    return [
        Task.from_prompt(
            f"q{i}: what is {i} + {i}?", {"type": "exact", "expected": str(2 * i)},
            family="math", id=f"q{i}", metadata={"category": "odd" if i % 2 else "even"},
        )
        for i in range(n)
    ]  # fmt: skip


def scripted_policy(
    fix_by_reflection: set[int],
    fix_by_plain: set[int],
    first_right: set[int],
    reflections: dict[int, str] | None = None,
) -> Any:
    """Answers: right first for `first_right`; after a reflection right for `fix_by_reflection`;
    after a plain "try again" right for `fix_by_plain`. Reflects "I should double it.", or
    `reflections[i]` where given."""

    def reply(messages: list[dict[str, Any]]) -> str:
        q = messages[0]["content"]
        i = int(q[1 : q.index(":")])
        last = messages[-1]["content"]
        if len(messages) == 1:
            return str(2 * i) if i in first_right else "wrong"
        if last.startswith(PAPER_MATH_START):
            return (reflections or {}).get(i, "I should double it.")
        if last == "That was wrong. Try again.":
            return str(2 * i) if i in fix_by_plain else "wrong again"
        return str(2 * i) if i in fix_by_reflection else "still wrong"

    return reply


def test_evaluate_reflection_vs_plain_control(tmp_path: Path) -> None:
    a = ScriptedModel(default=scripted_policy({1, 2, 3}, {1}, {0, 4}))
    b = ScriptedModel(default=scripted_policy({1, 2, 3, 5, 6}, {1, 2}, {0, 4, 7}))
    store = TrajectoryStore(tmp_path / "eval.jsonl")
    settings = load_settings(log_path=store.path)
    report = evaluate(tasks(), [a.model, b.model], taskset="toy", concurrency=4, settings=settings)
    sa, sb = report.models[0].summary(), report.models[1].summary()
    assert (sa["n"], sa["first_try"]["k"], sa["second_try"]["k"]) == (8, 2, 5)
    assert sa["second_try_plain_retry"]["k"] == 3  # first-try passes + task 1
    assert sa["reflection_minus_plain"]["mean"] == pytest.approx(2 / 8)
    assert sa["retry_success_given_reflection"]["k"] == 3 and sa["trigger_rate"]["k"] == 6
    assert (sb["first_try"]["k"], sb["second_try"]["k"]) == (3, 8)
    by_cat = report.models[0].summary("even")
    assert by_cat["n"] == 4 and by_cat["first_try"]["k"] == 2
    # The control retried exactly the failed first attempt the reflection run saw.
    plain_requests = [
        r for r in a.requests if r.messages[-1]["content"] == "That was wrong. Try again."
    ]
    assert len(plain_requests) == 6
    assert all(r.messages[-2]["content"] == "wrong" for r in plain_requests)
    first_calls = [r for r in a.requests if len(r.messages) == 1]
    assert len(first_calls) == 8  # the control did not sample new first attempts
    md = report.markdown()
    assert "| | vanilla 1st try | vanilla 2nd try | trained 1st try | trained 2nd try |" in md
    assert "2nd try (plain retry)" in md and "reflection − plain" in md
    data = json.loads(json.dumps(report.to_dict()))
    assert data["models"][1]["overall"]["second_try"]["rate"] == 1.0
    chart = report.plot(tmp_path / "chart.png")
    assert chart.stat().st_size > 5_000
    assert len(list(store.read())) == 16 + 6 + 5  # reflection runs, then control runs (a: 6, b: 5)


def test_chart_of_a_model_at_zero_and_one_hundred_percent(tmp_path: Path) -> None:
    """Wilson bounds at 0 % and 100 % sit on the rate (or a rounding error past it): the chart's
    error bars must still draw (a real 0 % BFCL run on 25 tasks once crashed here after a
    12-minute eval: the lower bound came out as 1.4e-17, above the rate)."""
    for n in range(1, 120):
        for k in range(n + 1):
            low, high = wilson_interval(k, n)
            assert 0.0 <= low <= k / n <= high <= 1.0, (k, n, low, high)
    never = ScriptedModel(default="wrong")
    always = ScriptedModel(
        default=lambda messages: str(2 * int(messages[0]["content"].split(":")[0][1:]))
    )
    settings = load_settings(log_path=tmp_path / "eval.jsonl")
    report = evaluate(tasks(25), [never.model, always.model], taskset="toy", settings=settings)
    rates = [m.summary()["second_try"]["rate"] for m in report.models]
    assert rates == [0.0, 1.0]
    assert report.plot(tmp_path / "chart.png").stat().st_size > 5_000


def test_reflection_metrics_count_answers_inside_reflections() -> None:
    def reply(messages: list[dict[str, Any]]) -> str:
        if len(messages) == 1:
            return "wrong"
        if messages[-1]["content"].startswith(PAPER_MATH_START):
            return "0"  # the reflection is itself the right answer for q0
        return "0"

    model = ScriptedModel(default=reply)
    report = evaluate(tasks(2), [model.model], control=False)
    metrics = report.models[0].reflection_metrics()
    assert metrics["reflections"] == 2
    assert metrics["reflection_holds_full_answer"]["k"] == 1  # "0" answers q0 but not q1


def test_forgetting_delta(tmp_path: Path) -> None:
    base = ScriptedModel(default=scripted_policy(set(), set(), {0, 1, 2, 3}))
    tuned = ScriptedModel(default=scripted_policy(set(), set(), {0, 1}))
    report = evaluate(tasks(4), [base.model, tuned.model], control=False,
                      forgetting=("toy-untouched", tasks(4)))  # fmt: skip
    rows = report.forgetting()
    assert rows[0]["delta_vs_baseline"]["mean"] == 0.0
    assert rows[1]["delta_vs_baseline"]["mean"] == pytest.approx(-0.5)
    assert "Forgetting check on toy-untouched" in report.markdown()


def test_forgetting_set_runs_at_its_own_concurrency() -> None:
    """``forgetting_concurrency=1`` sends the forgetting set one request at a time (batched bf16
    serving changed near-tie answers from one evaluation to the next); the held-out tasks keep
    ``concurrency``."""
    import itertools
    import time

    from rrr_agent import ScriptedReply

    starts: dict[str, list[float]] = {"held-out": [], "untouched": []}

    def policy(messages: list[dict[str, Any]]) -> ScriptedReply:
        q = messages[0]["content"]
        starts["untouched" if q.startswith("u") else "held-out"].append(time.monotonic())
        return ScriptedReply(text=q.split(":")[0], delay_s=0.1)

    untouched = [
        Task.from_prompt(f"u{i}: say u{i}", {"type": "exact", "expected": f"u{i}"}, id=f"u{i}")
        for i in range(5)
    ]
    model = ScriptedModel(default=policy)
    report = evaluate(
        tasks(5), [model.model], control=False, concurrency=8,
        forgetting=("toy-untouched", untouched), forgetting_concurrency=1,
    )  # fmt: skip
    assert report.forgetting()[0]["first_try"]["k"] == 5
    one_by_one = starts["untouched"]
    assert all(b - a >= 0.09 for a, b in itertools.pairwise(one_by_one))
    together = starts["held-out"][:5]  # first attempts, all sent before the first reply came
    assert together[-1] - together[0] < 0.09


def test_eval_cli_json_markdown_png(tmp_path: Path) -> None:
    model = ScriptedModel(default=scripted_policy({1}, set(), {0}))
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(t.model_dump_json() + "\n" for t in tasks(4)))
    result = CliRunner().invoke(app, [
        "eval", "--tasks", str(path), "--model", model.model, "--json",
        "--png", str(tmp_path / "e.png"), "--markdown", str(tmp_path / "e.md"),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    overall = data["models"][0]["overall"]
    assert (overall["first_try"]["k"], overall["second_try"]["k"]) == (1, 2)
    assert (tmp_path / "e.png").stat().st_size > 5_000
    assert "1st try" in (tmp_path / "e.md").read_text()
    bad = CliRunner().invoke(app, ["eval", "nosuch-set", "--model", model.model])
    assert bad.exit_code == 1 and "unknown task set" in bad.output


def test_eval_cli_forgetting_concurrency(tmp_path: Path) -> None:
    """`rrr eval --forgetting-concurrency 1` sends the forgetting set (real arithmetic-test sums)
    one request at a time while the held-out tasks keep --concurrency; 0 is refused."""
    import itertools
    import time

    from rrr_agent import ScriptedReply

    starts: dict[str, list[float]] = {"held-out": [], "forgetting": []}

    def policy(messages: list[dict[str, Any]]) -> ScriptedReply:
        toy = messages[0]["content"].startswith("q")
        starts["held-out" if toy else "forgetting"].append(time.monotonic())
        return ScriptedReply(text="0", delay_s=0.1)

    model = ScriptedModel(default=policy)
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(t.model_dump_json() + "\n" for t in tasks(4)))
    base = ["eval", "--tasks", str(path), "--model", model.model, "--no-control", "--json",
            "--concurrency", "8", "--forgetting", "arithmetic-test",
            "--forgetting-limit", "4"]  # fmt: skip
    result = CliRunner().invoke(app, [*base, "--forgetting-concurrency", "1"])
    assert result.exit_code == 0, result.output
    forgetting = json.loads(result.stdout)["forgetting"]
    assert forgetting["taskset"] == "arithmetic-test"
    assert (forgetting["rows"][0]["first_try"]["k"], forgetting["rows"][0]["first_try"]["n"]) == (
        0, 4,
    )  # fmt: skip
    assert all(b - a >= 0.09 for a, b in itertools.pairwise(starts["forgetting"]))
    assert starts["held-out"][3] - starts["held-out"][0] < 0.09  # first attempts: together
    bad = CliRunner().invoke(app, [*base, "--forgetting-concurrency", "0"])
    assert bad.exit_code == 2 and "forgetting-concurrency" in bad.output


@pytest.fixture(scope="module")
def learning() -> Any:
    """`benchmarks/learning.py` as a module (it is a script, not part of the package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "learning.py"
    spec = importlib.util.spec_from_file_location("learning_benchmark", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_learning_benchmark_keeps_every_plain_retry(tmp_path: Path, learning: Any) -> None:
    """`benchmarks/learning.py` copies each held-out plain retry out of the scratch store into
    `plain_retries.jsonl` (the scratch folder is not kept): exactly the control runs, each with
    the failed first try it retried, and not the reflection runs of the same evaluation."""
    a = ScriptedModel(default=scripted_policy({1, 2, 3}, {1}, {0, 4}))
    store = TrajectoryStore(tmp_path / "eval-after.jsonl")
    evaluate(tasks(), [a.model], taskset="toy", concurrency=4,
             settings=load_settings(log_path=store.path))  # fmt: skip
    reflected, plain = learning._retried(store.path)
    assert sorted(plain) == ["q1", "q2", "q3", "q5", "q6", "q7"]  # the six failed first tries
    assert sorted(reflected) == sorted(plain)
    assert all(t.options.reflect for t in reflected.values())
    assert not any(t.options.reflect for t in plain.values())
    out = tmp_path / "plain_retries.jsonl"
    learning._plain_dump({"trained": plain}, out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["task"] for r in rows] == ["q1", "q2", "q3", "q5", "q6", "q7"]
    assert {r["task"] for r in rows if r["retry_passed"]} == {"q1"}
    assert all(r["model"] == "trained" and r["first_try"] == "wrong" for r in rows)
    assert {r["retry"] for r in rows} == {"2", "wrong again"}
    assert all(list(r) == ["model", "task", "first_try", "retry", "retry_passed"] for r in rows)


def test_learning_benchmark_counts_reflections_that_restate_the_failed_answer(
    tmp_path: Path, learning: Any
) -> None:
    """`benchmarks/learning.py`'s reflection summary counts the reflections that only restate the
    failed first try (runs 56 and 58: most trained reflections did), by the trainer's one
    `resubmits` (spacing and a trailing period ignored; a blank reflection never counts), and
    `results.md`'s variety table shows the count."""
    said = {1: "wrong", 3: " wrong.", 5: "", 7: "Wrong"}
    model = ScriptedModel(default=scripted_policy({1, 2}, set(), {0, 4}, reflections=said))
    store = TrajectoryStore(tmp_path / "eval.jsonl")
    evaluate(tasks(), [model.model], taskset="toy", concurrency=4,
             settings=load_settings(log_path=store.path))  # fmt: skip
    reflected, _ = learning._retried(store.path)
    summary = learning._reflection_dump({"trained": reflected}, tmp_path / "reflections.jsonl")
    s = summary["trained"]
    assert s["reflections"] == 6  # q1, q2, q3, q5, q6, q7 failed first
    assert s["reflection_restates_failed_answer"] == 2  # q1 and q3; not blank q5, not "Wrong"
    assert s["retry_resubmits_failed_answer"] == 0 and s["reflection_passes"] == 0
    table = learning._variety_md(summary)
    assert "reflection restates the failed answer" in table
    assert "| trained | 6 | 5 |" in table and "| 2 | 0 | 0 | 0 |" in table
    assert s["carries_something"] == 0  # restated, blank, or "wrong" said for q1, q3 and q7


def test_learning_benchmark_checks_that_the_reflection_carries_something(
    tmp_path: Path, learning: Any
) -> None:
    """The goal's seventh check reads the share of the trained model's held-out reflections that
    carry something (`carries_something`: not blank, not the failed answer restated, written for
    one problem), at least half; `reflections.jsonl` marks each, `results.md` counts them."""
    said = {1: "wrong", 2: "Double 2.", 3: "", 5: "Say so.", 6: "say so", 7: "7 + 7 is 14"}
    model = ScriptedModel(default=scripted_policy({1, 2}, set(), {0, 4}, reflections=said))
    store = TrajectoryStore(tmp_path / "eval.jsonl")
    report = evaluate(tasks(), [model.model, model.model], taskset="toy", concurrency=4,
                      settings=load_settings(log_path=store.path))  # fmt: skip
    reflected, _ = learning._retried(store.path)
    out = tmp_path / "reflections.jsonl"
    summary = learning._reflection_dump({"trained": reflected}, out)
    assert summary["trained"]["carries_something"] == 2  # q2 and q7 of six
    marked = {json.loads(line)["task"]: json.loads(line)["carries_something"]
              for line in out.read_text().splitlines()}  # fmt: skip
    assert {t for t, c in marked.items() if c} == {"q2", "q7"}
    table = learning._variety_md(summary)
    row = next(line for line in table.splitlines() if line.startswith("| trained |"))
    assert "| carries something |" in table and row.endswith("| 2 |")
    share = learning._carrying_share(reflected)
    assert share == pytest.approx(2 / 6)
    goal = learning._goal(report, 12.0, share)

    def check(share: float | None) -> dict[str, Any]:
        return dict(
            learning._goal(report, 12.0, share)["checks"]["reflection_carries_something_pct"]
        )

    assert check(share) == {"value": 33.33, "met": False} and not goal["met"]
    assert check(0.5) == {"value": 50.0, "met": True}  # half is enough
    assert check(None) == {"value": None, "met": False}  # no reflection at all
    assert "33 % (at least 50 %)" in learning._goal_md(goal)
    # Points are compared without the float noise of a difference: 46.5 % → 56.5 % is 10 points.
    assert 100 * (0.565 - 0.465) < 10.0 and learning._points(0.565, 0.465) == 10.0
    assert learning._points(0.70, 0.70) == 0.0 and learning._points(0.2, 0.215) == -1.5
