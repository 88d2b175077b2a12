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
