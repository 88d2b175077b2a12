"""``rrr run``: tasks through attempt → verify → reflect → retry, with a live progress bar."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from .._engine import Engine, RunResult
from .._errors import VerifierSpecError
from .._settings import load_settings
from .._summary import Summary
from .._tasks import load_tasks, task_from_obj
from .._types import Task
from ..verifiers import build_verifier, load_spec
from ._common import (
    EXIT_INFRA,
    ConfigOpt,
    JsonOpt,
    LogOpt,
    err,
    errors_exit,
    preparing,
    print_summary,
    print_trajectory,
    unescape,
)

__all__ = ["run"]


def run(
    prompt: Annotated[
        str | None, typer.Argument(help="One task's prompt (or use --tasks).")
    ] = None,
    tasks_file: Annotated[
        Path | None, typer.Option("--tasks", "-t", help="JSONL task file: one task per line.")
    ] = None,
    taskset: Annotated[
        str | None, typer.Option(help="A task set by name (see `rrr tasks list`).")
    ] = None,
    verifier: Annotated[
        str | None,
        typer.Option(
            help='Verifier spec for PROMPT: JSON text (\'{"type": "exact", "expected": "4"}\') '
            "or a file holding it."
        ),
    ] = None,
    family: Annotated[
        str,
        typer.Option(
            help="Task family for PROMPT: picks the reflection prompt (math, tool_call, default)."
        ),
    ] = "default",
    system: Annotated[str | None, typer.Option(help="System message for PROMPT.")] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="litellm model string.")
    ] = None,
    api_base: Annotated[
        str | None, typer.Option(help="Base URL of an OpenAI-compatible server.")
    ] = None,
    script: Annotated[
        Path | None,
        typer.Option(help="Run on a scripted model: a JSON list of canned replies (demos, tests)."),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", "-c", help="Tasks in flight.")
    ] = None,
    max_retries: Annotated[
        int | None, typer.Option(help="Retries after the first attempt.")
    ] = None,
    feedback: Annotated[
        bool | None,
        typer.Option("--feedback/--no-feedback", help="Show verifier feedback to the model."),
    ] = None,
    reflect: Annotated[
        bool | None,
        typer.Option(
            "--reflect/--plain-retry",
            help="Reflect before retrying, or the control: 'That was wrong. Try again.'",
        ),
    ] = None,
    reflections: Annotated[
        int | None, typer.Option("-k", "--reflections", help="Reflections per failure.")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds per model call.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Max tokens per call.")] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed.")] = None,
    stop: Annotated[
        list[str] | None,
        typer.Option(help="Stop string (repeatable); e.g. '\\nUser:' for a base model on vLLM."),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Run only the first N tasks.")] = None,
    log: LogOpt = None,
    no_log: Annotated[bool, typer.Option("--no-log", help="Do not write trajectories.")] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run tasks through attempt → verify → reflect → retry and print success rates and tokens.

    One task from PROMPT + --verifier, many from --tasks FILE, or a task set (--taskset). Every
    trajectory is appended to the log; runs stopped by infrastructure errors go to a separate
    error log and exit with code 3.
    """
    with errors_exit():
        settings = load_settings(
            config,
            model=model,
            api_base=api_base,
            concurrency=concurrency,
            max_retries=max_retries,
            show_feedback=feedback,
            reflections=reflections,
            reflect=reflect,
            timeout_s=timeout,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            stop=unescape(stop),
            log_path=log,
            log=False if no_log else None,
        )
        tasks = _gather_tasks(prompt, tasks_file, taskset, verifier, family, system, limit)
        model_ref: Any = None
        if script is not None:
            from .._scripted import ScriptedModel

            model_ref = ScriptedModel.from_file(script).model
        engine = Engine.from_settings(settings, model=model_ref, on_prepare=preparing())
        results, summary = _run_with_progress(engine, tasks, settings.concurrency, show=not as_json)
    if as_json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        if len(tasks) == 1 and results[0].trajectory is not None:
            print_trajectory(results[0].trajectory)
        print_summary(summary, engine.model)
        for r in results:
            if r.error is not None:
                err.print(
                    f"[yellow]not run[/] task {r.task.id}: {type(r.error).__name__}: {r.error}"
                )
        if engine.store is not None:
            n = summary.trajectories
            err.print(
                f"{n} trajector{'y' if n == 1 else 'ies'} appended to {engine.store.path}",
                style="dim",
            )
    if summary.errors:
        raise typer.Exit(EXIT_INFRA)


def _gather_tasks(
    prompt: str | None,
    tasks_file: Path | None,
    taskset: str | None,
    verifier: str | None,
    family: str,
    system: str | None,
    limit: int | None,
) -> list[Task]:
    if sum(x is not None for x in (prompt, tasks_file, taskset)) != 1:
        raise typer.BadParameter("give exactly one of PROMPT, --tasks FILE or --taskset NAME")
    if verifier is not None and prompt is None:
        raise typer.BadParameter("--verifier applies to PROMPT; task files carry their own")
    if taskset is not None:
        from ..tasksets import get_taskset

        return list(itertools.islice(get_taskset(taskset).load(), limit))
    if tasks_file is not None:
        return load_tasks(tasks_file)[:limit]
    if verifier is None:
        raise typer.BadParameter("PROMPT needs --verifier (a JSON spec)")
    try:
        spec = load_spec(verifier)
    except VerifierSpecError as exc:
        raise typer.BadParameter(f"--verifier: {exc}") from exc
    obj: dict[str, Any] = {"prompt": prompt, "verifier": spec, "family": family}
    if system:
        obj["system"] = system
    try:
        task = task_from_obj(obj)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    build_verifier(task.verifier)  # a bad spec fails here, before any model call
    return [task]


def _run_with_progress(
    engine: Engine, tasks: list[Task], concurrency: int, *, show: bool
) -> tuple[list[RunResult], Summary]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    summary = Summary()

    def fields() -> dict[str, Any]:
        return {
            "first": summary.passed_first_try,
            "retry": summary.passed_final - summary.passed_first_try,
            "failed": summary.trajectories - summary.passed_final,
            "errors": summary.errors,
        }

    async def go() -> list[RunResult]:
        results: list[RunResult] = []
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "first try {task.fields[first]} · after retry {task.fields[retry]} · "
                "failed {task.fields[failed]} · errors {task.fields[errors]}"
            ),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=not show or len(tasks) < 2,
        )
        with progress:
            bar = progress.add_task("tasks", total=len(tasks), **fields())
            async for result in engine.run_many(tasks, concurrency=concurrency):
                results.append(result)
                if result.trajectory is None:
                    summary.errors += 1
                else:
                    summary.add(result.trajectory)
                progress.update(bar, advance=1, **fields())
        return results

    return asyncio.run(go()), summary
