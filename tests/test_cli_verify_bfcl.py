"""``rrr verify bfcl`` end to end on real BFCL lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rrr_agent.cli import app
from rrr_agent.tasksets import datasets_root
from rrr_agent.verifiers.bfcl_ast import format_python_calls, openai_tool_name, reference_calls

runner = CliRunner()


@pytest.fixture
def bfcl() -> Path:
    return datasets_root() / "bfcl"


def _lines(path: Path, n: int) -> list[dict[str, Any]]:
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()[:n]]
    assert len(rows) == n, path
    return rows


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def files(bfcl: Path, tmp_path: Path) -> dict[str, Path]:
    """3 simple_python + 3 parallel questions; predictions: right, wrong, missing, dict-form."""
    questions, answers = [], []
    for cat in ("simple_python", "parallel"):
        questions += _lines(bfcl / f"BFCL_v4_{cat}.json", 3)
        answers += _lines(bfcl / "possible_answer" / f"BFCL_v4_{cat}.json", 3)
    gt = {a["id"]: a["ground_truth"] for a in answers}
    fns = {q["id"]: q["function"] for q in questions}

    def ref(qid: str) -> list[tuple[str, dict[str, Any]]]:
        return reference_calls(fns[qid], gt[qid])

    preds = [
        {"id": "simple_python_0", "result": format_python_calls(ref("simple_python_0"))},
        {"id": "simple_python_1", "result": "[math.factorial(number='five')]"},
        # simple_python_2: no prediction
        {"id": "parallel_0", "result": [{openai_tool_name(n): a} for n, a in ref("parallel_0")]},
        {
            "id": "parallel_1",
            "result": [{n: json.dumps(a)} for n, a in reversed(ref("parallel_1"))],
        },
        {"id": "parallel_2", "result": format_python_calls(ref("parallel_2")[:1])},
    ]
    return {
        "q": _write(tmp_path / "q.json", questions),
        "a": _write(tmp_path / "a.json", answers),
        "p": _write(tmp_path / "p.json", preds),
    }


def _invoke(*args: str | Path) -> Any:
    return runner.invoke(app, ["verify", "bfcl", *map(str, args)])


def test_json_rows(files: dict[str, Path]) -> None:
    res = _invoke(
        "--questions", files["q"], "--answers", files["a"], "--predictions", files["p"], "--json"
    )
    assert res.exit_code == 0, res.output
    rows = {r["id"]: r for r in map(json.loads, res.stdout.splitlines())}
    assert list(rows) == [
        "simple_python_0",
        "simple_python_1",
        "simple_python_2",
        "parallel_0",
        "parallel_1",
        "parallel_2",
    ]
    assert rows["simple_python_0"]["valid"] is True
    assert rows["simple_python_1"]["error_type"] == "type_error:simple"
    assert rows["simple_python_2"] == {
        **rows["simple_python_2"],
        "valid": False,
        "error_type": "missing_prediction",
    }
    assert rows["parallel_0"]["valid"] is True
    assert rows["parallel_1"]["valid"] is True
    assert rows["parallel_2"]["error_type"] == "parallel_function_checker_no_order:wrong_count"
    assert rows["parallel_0"]["category"] == "parallel"


def test_table(files: dict[str, Path]) -> None:
    res = _invoke("--questions", files["q"], "--answers", files["a"], "--predictions", files["p"])
    assert res.exit_code == 0, res.output
    assert "simple_python" in res.stdout and "parallel" in res.stdout
    assert "33.33%" in res.stdout  # 1 of 3 simple_python
    assert "66.67%" in res.stdout  # 2 of 3 parallel
    assert "50.00%" in res.stdout  # 3 of 6 overall


def test_category_override_and_irrelevance_without_answers(bfcl: Path, tmp_path: Path) -> None:
    questions = _lines(bfcl / "BFCL_v4_irrelevance.json", 2)
    for q in questions:
        q["id"] = "custom_" + q["id"]
    q = _write(tmp_path / "q.json", questions)
    name = questions[1]["function"][0]["name"]
    p = _write(
        tmp_path / "p.json",
        [
            {"id": questions[0]["id"], "result": "I cannot answer that with these tools."},
            {"id": questions[1]["id"], "result": f"[{name}(x=1)]"},
        ],
    )
    res = _invoke("--questions", q, "--predictions", p, "--json")
    assert res.exit_code == 1
    assert "--category" in res.output
    res = _invoke("--questions", q, "--predictions", p, "--json", "--category", "irrelevance")
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in res.stdout.splitlines()]
    assert [r["valid"] for r in rows] == [True, False]
    assert rows[1]["error_type"] == "irrelevance_error:decoder_success"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": "simple_python_0", "result": "[f()]"}\n{broken\n', "p.json:2: not valid JSON"),
        ('{"id": "nope_1", "result": "[f()]"}\n', "p.json:1: prediction for unknown id"),
        ('{"id": "simple_python_0"}\n', "p.json:1: a prediction needs a 'result'"),
        ('{"id": "simple_python_0", "result": 5}\n', "p.json:1:"),
        (
            '{"id": "simple_python_0", "result": "[f()]"}\n' * 2,
            "p.json:2: duplicate prediction",
        ),
    ],
)
def test_bad_prediction_files_fail_cleanly(
    files: dict[str, Path], content: str, message: str
) -> None:
    files["p"].write_text(content, encoding="utf-8")
    res = _invoke(
        "--questions", files["q"], "--answers", files["a"], "--predictions", files["p"], "--json"
    )
    assert res.exit_code == 1
    assert res.stdout == ""  # nothing half-written
    assert message in " ".join(res.stderr.split())


def test_missing_answer_file_entries(files: dict[str, Path], tmp_path: Path) -> None:
    res = _invoke("--questions", files["q"], "--predictions", files["p"])
    assert res.exit_code == 1
    assert "no ground truth" in res.stderr
    res = _invoke("--questions", tmp_path / "absent.json", "--predictions", files["p"])
    assert res.exit_code == 1
    assert "absent.json" in res.stderr
