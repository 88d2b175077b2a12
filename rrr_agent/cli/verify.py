"""``rrr verify``: judge one response with any verifier spec; ``rrr verify bfcl``: score a BFCL
prediction file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .._errors import VerifierSpecError
from .._types import ModelOutput, Task
from ..verifiers import build_verifier, load_spec
from ._common import EXIT_INVALID, EXIT_USAGE, err, errors_exit, out

app = typer.Typer(
    help="Judge responses: `rrr verify --spec SPEC --response TEXT`, or a subcommand.",
    invoke_without_command=True,
)


@app.callback()
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
    if spec is None:
        err.print(ctx.get_help())
        raise typer.Exit(EXIT_USAGE)
    if (response is None) == (response_file is None):
        raise typer.BadParameter("give exactly one of --response or --response-file")
    with errors_exit():
        verifier_spec = load_spec(spec)
        if response_file is None:
            text = response or ""
        elif str(response_file) == "-":
            text = sys.stdin.read()
        else:
            try:
                text = response_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise VerifierSpecError(f"{response_file}: cannot read: {exc.strerror}") from exc
        task = Task.from_prompt("(rrr verify)", verifier_spec)
        verdict = build_verifier(verifier_spec).judge_sync(ModelOutput(text=text), task)
    if as_json:
        data = {"valid": verdict.passed, "feedback": verdict.feedback, "details": verdict.details}
        print(json.dumps(data, default=str))
    else:
        mark = "[green]valid[/]" if verdict.passed else "[red]invalid[/]"
        out.print(f"{mark} {verdict.feedback}".rstrip(), highlight=False)
    raise typer.Exit(0 if verdict.passed else EXIT_INVALID)


@app.command("bfcl")
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
        typer.Option(
            help="BFCL category (simple_python, live_simple, ...); default: from each id's prefix."
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Decode text exactly as BFCL does, quirks included (docs/bfcl.md)."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per question.")] = False,
) -> None:
    """Score predictions the way BFCL's AST checker does; print per-category accuracy."""
    from ..tasksets.bfcl import score_predictions

    with errors_exit():
        rows = score_predictions(questions, answers, predictions, category, strict=strict)
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
