"""``rrr verify`` (judge one response with any verifier spec) and its subcommands."""

from __future__ import annotations

import asyncio
import inspect
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ._errors import RRRError, VerifierSpecError
from ._types import Message, ModelOutput, Task, Verdict, VerifierSpec
from .verifiers import build_verifier

verify_app = typer.Typer(
    help="Judge responses: `rrr verify --spec SPEC --response TEXT`, or a subcommand.",
    invoke_without_command=True,
)


def load_spec(spec: str) -> VerifierSpec:
    """A spec from JSON text or from a file holding JSON."""
    text = spec
    if not spec.lstrip().startswith("{"):
        path = Path(spec)
        if not path.is_file():
            raise VerifierSpecError(f"--spec is neither JSON text nor an existing file: {spec!r}")
        text = path.read_text(encoding="utf-8")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise VerifierSpecError(
            f"--spec is not valid JSON: {exc.msg} (column {exc.colno})"
        ) from exc
    if not isinstance(obj, dict) or "type" not in obj:
        raise VerifierSpecError('a verifier spec is a JSON object with a "type" field')
    return VerifierSpec(**obj)


def judge(spec: VerifierSpec, output: ModelOutput, task: Task | None = None) -> Verdict:
    """Run one verifier on one output, outside the engine (sync or async verifiers)."""
    verifier = build_verifier(spec)
    task = task or Task(messages=[Message(role="user", content="(rrr verify)")], verifier=spec)
    result: Any = verifier.verify(output, task)
    if inspect.isawaitable(result):

        async def _await() -> Any:
            return await result

        result = asyncio.run(_await())
    if not isinstance(result, Verdict):
        raise VerifierSpecError(f"verifier {spec.type!r} returned {type(result).__name__}")
    return result


@verify_app.callback()
def verify(
    ctx: typer.Context,
    spec: Annotated[
        str | None, typer.Option(help="Verifier spec: JSON text or a file holding it.")
    ] = None,
    response: Annotated[str | None, typer.Option(help="The response text to judge.")] = None,
    response_file: Annotated[
        Path | None, typer.Option(help="Read the response from this file ('-' for stdin).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
) -> None:
    """Judge one response with the verifier a spec describes. Exit 0 when valid, 4 when not."""
    if ctx.invoked_subcommand is not None:
        return
    from .cli import EXIT_BAD_INPUT, err, out

    if spec is None:
        err.print(ctx.get_help())
        raise typer.Exit(2)
    if (response is None) == (response_file is None):
        raise typer.BadParameter("give exactly one of --response or --response-file")
    try:
        verifier_spec = load_spec(spec)
        if response_file is not None:
            if str(response_file) == "-":
                import sys

                text = sys.stdin.read()
            else:
                try:
                    text = response_file.read_text(encoding="utf-8")
                except OSError as exc:
                    raise VerifierSpecError(
                        f"{response_file}: cannot read: {exc.strerror}"
                    ) from exc
        else:
            text = response or ""
        verdict = judge(verifier_spec, ModelOutput(text=text))
    except RRRError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if as_json:
        print(
            json.dumps(
                {"valid": verdict.passed, "feedback": verdict.feedback, "details": verdict.details},
                default=str,
            )
        )
    else:
        mark = "[green]valid[/]" if verdict.passed else "[red]invalid[/]"
        out.print(f"{mark} {verdict.feedback}".rstrip(), highlight=False)
    raise typer.Exit(0 if verdict.passed else 4)


# --------------------------------------------------------------------------------------------
# rrr verify bfcl
# --------------------------------------------------------------------------------------------


def _bfcl_prediction_output(result: Any, where: str) -> ModelOutput:
    """A BFCL result (Python-call text, or a list of ``{name: {args}}``) as a model output."""
    from ._types import FunctionCall, ToolCall

    if isinstance(result, str):
        return ModelOutput(text=result)
    if isinstance(result, list):
        calls = []
        for i, item in enumerate(result):
            if not isinstance(item, dict) or len(item) != 1:
                raise ValueError(f"{where}: result[{i}] must be an object {{name: {{args}}}}")
            name, args = next(iter(item.items()))
            text = args if isinstance(args, str) else json.dumps(args)
            calls.append(
                ToolCall(id=f"call_{i}", function=FunctionCall(name=str(name), arguments=text))
            )
        return ModelOutput(tool_calls=calls) if calls else ModelOutput(text="[]")
    raise ValueError(f"{where}: 'result' must be a string or a list of {{name: {{args}}}}")


def bfcl_verdicts(
    questions: Path,
    answers: Path | None,
    predictions: Path,
    category: str | None = None,
) -> list[dict[str, Any]]:
    """Judge a BFCL prediction file: one result row per question, in question order.

    Raises :class:`DataError` (with path and line) for unreadable or malformed files, unknown
    categories, predictions for unknown ids, duplicate ids, or questions without an answer.
    """
    from ._errors import DataError
    from .tasksets.bfcl import BFCL_CATEGORIES, load_bfcl_jsonl

    def category_of(qid: str, path: Path, line: int) -> str:
        name = category or qid.rsplit("_", 1)[0]
        if name not in BFCL_CATEGORIES:
            known = ", ".join(BFCL_CATEGORIES)
            raise DataError(
                f"cannot tell the BFCL category of {qid!r} (got {name!r}; known: {known}); "
                "pass --category",
                path=path,
                line=line,
            )
        return name

    qrows: list[tuple[str, str, dict[str, Any]]] = []
    seen: set[str] = set()
    for line, record in load_bfcl_jsonl(questions):
        qid = record["id"]
        if qid in seen:
            raise DataError(f"duplicate question id {qid!r}", path=questions, line=line)
        seen.add(qid)
        if not isinstance(record.get("function"), list) or not record["function"]:
            raise DataError("'function' must be a non-empty list", path=questions, line=line)
        qrows.append((qid, category_of(qid, questions, line), record))

    gts: dict[str, list[dict[str, Any]]] = {}
    if answers is not None:
        for line, record in load_bfcl_jsonl(answers):
            gt = record.get("ground_truth")
            if not isinstance(gt, list):
                raise DataError("'ground_truth' must be a list", path=answers, line=line)
            gts[record["id"]] = gt

    preds: dict[str, tuple[int, Any]] = {}
    for line, record in load_bfcl_jsonl(predictions):
        pid = record["id"]
        if pid not in seen:
            raise DataError(f"prediction for unknown id {pid!r}", path=predictions, line=line)
        if pid in preds:
            raise DataError(f"duplicate prediction for {pid!r}", path=predictions, line=line)
        if "result" not in record:
            raise DataError("a prediction needs a 'result'", path=predictions, line=line)
        preds[pid] = (line, record["result"])

    rows: list[dict[str, Any]] = []
    for qid, cat, record in qrows:
        vcat, language, _ = BFCL_CATEGORIES[cat]
        spec: dict[str, Any] = {
            "type": "bfcl",
            "category": vcat,
            "functions": record["function"],
            "language": language,
        }
        if vcat != "irrelevance":
            if qid not in gts:
                where = answers if answers is not None else questions
                raise DataError(f"no ground truth for {qid!r} (use --answers)", path=where)
            spec["ground_truth"] = gts[qid]
        row: dict[str, Any] = {"id": qid, "category": cat}
        if qid not in preds:
            rows.append({**row, "valid": False, "error_type": "missing_prediction",
                         "feedback": "No prediction was given for this question."})  # fmt: skip
            continue
        line, result = preds[qid]
        try:
            output = _bfcl_prediction_output(result, f"id {qid!r}")
        except ValueError as exc:
            raise DataError(str(exc), path=predictions, line=line) from None
        try:
            verdict = judge(VerifierSpec(**spec), output)
        except VerifierSpecError as exc:
            raise DataError(f"bad BFCL record {qid!r}: {exc}", path=questions) from None
        rows.append(
            {
                **row,
                "valid": verdict.passed,
                "error_type": verdict.details.get("error_type"),
                "feedback": verdict.feedback,
            }
        )
    return rows


@verify_app.command("bfcl")
def verify_bfcl(
    questions: Annotated[Path, typer.Option(help="BFCL question file (JSON Lines).")],
    predictions: Annotated[
        Path, typer.Option(help='Predictions: {"id": ..., "result": "[f(a=1)]" or [{f: {...}}]}.')
    ],
    answers: Annotated[
        Path | None,
        typer.Option(help="BFCL possible_answer file (not needed for irrelevance)."),
    ] = None,
    category: Annotated[
        str | None,
        typer.Option(help="BFCL category (e.g. simple_python); default: from each id's prefix."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per question.")] = False,
) -> None:
    """Score predictions the way BFCL's AST checker does; print per-category accuracy."""
    from rich.table import Table

    from .cli import EXIT_BAD_INPUT, err, out

    try:
        rows = bfcl_verdicts(questions, answers, predictions, category)
    except RRRError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if as_json:
        print("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
        return
    by_cat: dict[str, list[bool]] = {}
    for r in rows:
        by_cat.setdefault(r["category"], []).append(bool(r["valid"]))
    table = Table(title="BFCL (AST)")
    table.add_column("category")
    table.add_column("correct", justify="right")
    table.add_column("total", justify="right")
    table.add_column("accuracy", justify="right")
    for cat, oks in by_cat.items():
        table.add_row(cat, str(sum(oks)), str(len(oks)), f"{sum(oks) / len(oks):.2%}")
    if len(by_cat) > 1:
        total = [ok for oks in by_cat.values() for ok in oks]
        table.add_row("all", str(sum(total)), str(len(total)), f"{sum(total) / len(total):.2%}")
    out.print(table)
