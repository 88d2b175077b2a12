"""``rrr eval``: first-try and second-try accuracy with the plain-retry control."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Annotated

import typer

from .._files import write_text_atomic
from .._settings import load_settings
from ._common import (
    EXIT_INFRA,
    ConfigOpt,
    JsonOpt,
    LogOpt,
    err,
    errors_exit,
    load_task_source,
    preparing,
    unescape,
)

__all__ = ["eval_command"]


def eval_command(
    taskset: Annotated[
        str | None, typer.Argument(help="Task set name (see `rrr tasks list`).")
    ] = None,
    tasks_file: Annotated[
        Path | None, typer.Option("--tasks", help="Or a JSONL task file.")
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="Model string (repeat: side by side; first = baseline). Default: the settings' "
            "model, else the embedded one.",
        ),
    ] = None,
    api_base: Annotated[str | None, typer.Option(help="OpenAI-compatible server.")] = None,
    limit: Annotated[int | None, typer.Option(help="First N tasks (a fixed subset).")] = None,
    concurrency: Annotated[int, typer.Option("-c", "--concurrency")] = 8,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0 = greedy).")] = 0.0,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    max_tokens: Annotated[int | None, typer.Option(help="Max tokens per call.")] = 64,
    stop: Annotated[list[str] | None, typer.Option(help="Stop string (repeatable).")] = None,
    control: Annotated[
        bool, typer.Option("--control/--no-control", help="Run the plain-retry control.")
    ] = True,
    forgetting: Annotated[
        str | None, typer.Option(help="Untouched task set for the forgetting check.")
    ] = None,
    forgetting_limit: Annotated[int, typer.Option(help="Tasks of the forgetting set.")] = 100,
    forgetting_concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="The forgetting set's requests in flight (default: --concurrency). 1 measures "
            "the same model the same twice on a batched CPU server, whose bf16 kernels change "
            "near-tie answers from one batch to another.",
        ),
    ] = None,
    png: Annotated[Path | None, typer.Option(help="Write a bar chart here.")] = None,
    markdown: Annotated[
        Path | None, typer.Option(help="Also write the Markdown table here.")
    ] = None,
    log: LogOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """First-try and second-try accuracy (with the plain-retry control) per category, 95 % CIs.

    Several --model flags give the paper's table side by side (vanilla vs trained). Every
    trajectory is logged, so an evaluation can feed training. API key, timeout and transport
    retries come from the settings.
    """
    from rich.progress import Progress

    from ..evaluation import evaluate
    from ..tasksets import get_taskset

    with errors_exit():
        settings = load_settings(config, api_base=api_base, log_path=log)
        tasks = load_task_source(taskset, tasks_file, limit, "TASKSET")
        name = taskset or str(tasks_file)
        models: list[str | None] = [*model] if model else [None]  # None: the settings' model
        forgetting_set = None
        if forgetting:
            forgetting_set = (
                forgetting,
                list(itertools.islice(get_taskset(forgetting).load(), forgetting_limit)),
            )
        with Progress(console=err, disable=as_json) as bar:
            task_bar = bar.add_task(f"eval {name}", total=len(tasks) * len(models))
            report = evaluate(
                tasks, models, settings=settings, taskset=name, concurrency=concurrency,
                temperature=temperature, seed=seed, max_tokens=max_tokens, stop=unescape(stop),
                control=control, forgetting=forgetting_set,
                forgetting_concurrency=forgetting_concurrency,
                progress=lambda: bar.advance(task_bar), on_prepare=preparing(),
            )  # fmt: skip
    table = report.markdown()
    if markdown is not None:
        write_text_atomic(markdown, table)
    if as_json:  # the figures first: a chart that cannot be drawn must not lose them
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(table)
    if png is not None:
        report.plot(png)
        err.print(f"chart written to {png}")
    if any(m.errors for m in report.models):
        raise typer.Exit(EXIT_INFRA)
