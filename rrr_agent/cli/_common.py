"""What every command shares: consoles, exit codes, error handling, options, progress displays.

Exit codes (the same for every command):

* 0: success;
* 1: bad input or configuration (the message names what and where: file:line for data);
* 2: usage error (an unknown flag, a missing argument);
* 3: some tasks could not be run because of infrastructure errors (they are in the error log,
  never in the trajectory log);
* 4: ``rrr verify`` judged the response invalid (the verdict, not an error).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .._errors import RRRError
from .._secrets import redact
from .._summary import Summary
from .._tasks import load_tasks
from .._types import Task, Trajectory

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_INFRA",
    "EXIT_INVALID",
    "EXIT_USAGE",
    "ConfigOpt",
    "JsonOpt",
    "LogOpt",
    "err",
    "errors_exit",
    "load_task_source",
    "out",
    "preparing",
    "print_summary",
    "print_trajectory",
    "table_of",
    "unescape",
]

out = Console()
# soft_wrap: a "file:line: reason" message must stay on one line for grep and editors.
err = Console(stderr=True, soft_wrap=True)

EXIT_BAD_INPUT = 1
EXIT_USAGE = 2
EXIT_INFRA = 3
EXIT_INVALID = 4


@contextlib.contextmanager
def errors_exit() -> Iterator[None]:
    """Turn rrr's typed errors into one clear line on stderr and exit code 1."""
    try:
        yield
    except RRRError as exc:
        err.print(
            f"[bold red]error:[/] {escape(redact(str(exc)))}",
            highlight=False, markup=True, soft_wrap=True,
        )  # fmt: skip
        raise typer.Exit(EXIT_BAD_INPUT) from None


ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", help="TOML settings file (default: $RRR_CONFIG or <data dir>/config.toml)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
LogOpt = Annotated[
    Path | None,
    typer.Option("--log", help="Trajectory log file (default: <data dir>/trajectories.jsonl)."),
]


def unescape(values: list[str] | None) -> list[str] | None:
    """Flag values with backslash escapes typed on a shell (``--stop '\\nUser:'``)."""
    return [v.encode().decode("unicode_escape") for v in values] if values else None


def preparing() -> Callable[[str], None]:
    """A progress callback for preparing the embedded model: one line per step on stderr (none
    when the model is ready). Plain lines, so it works beside a live progress bar and with --json
    (whose output is on stdout)."""
    started = False

    def say(message: str) -> None:
        nonlocal started
        if not started:
            err.print("[bold]preparing the embedded model[/] (one time, about a minute)")
            started = True
        err.print(f"[dim]  {message}[/]", highlight=False)

    return say


def load_task_source(
    taskset: str | None, tasks_file: Path | None, limit: int | None, taskset_flag: str
) -> list[Task]:
    """Tasks from a task set name or a JSONL task file (exactly one), the first ``limit``."""
    if (taskset is None) == (tasks_file is None):
        raise typer.BadParameter(f"give exactly one of {taskset_flag} or --tasks")
    if taskset is not None:
        from ..tasksets import get_taskset

        return list(itertools.islice(get_taskset(taskset).load(), limit))
    assert tasks_file is not None
    return load_tasks(tasks_file)[:limit]


def _pct(n: int, d: int) -> str:
    return f"{n}/{d} ({100 * n / d:.1f}%)" if d else "0/0"


def print_summary(summary: Summary, model: str) -> None:
    n = summary.trajectories
    table = Table(title=f"rrr run · {model}", show_header=False, title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    table.add_row("tasks run", str(n))
    table.add_row("first-try success", _pct(summary.passed_first_try, n))
    table.add_row("second-try success (after 1 reflection)", _pct(summary.passed_second_try, n))
    if summary.passed_final != summary.passed_second_try:
        table.add_row("success after all retries", _pct(summary.passed_final, n))
    table.add_row("not run (infrastructure errors)", str(summary.errors))
    table.add_row("tokens: first attempts", str(summary.usage_first_attempt.total_tokens))
    table.add_row("tokens: reflections", str(summary.usage_reflections.total_tokens))
    table.add_row("tokens: retries", str(summary.usage_retries.total_tokens))
    table.add_row("tokens: total", str(summary.usage_total.total_tokens))
    out.print(table)


def _short(text: str | None, width: int = 400) -> str:
    text = (text or "").strip()
    return text if len(text) <= width else text[: width - 1] + "…"


def print_trajectory(traj: Trajectory) -> None:
    out.print(
        f"[bold]task[/] {traj.task.id} · [bold]model[/] {traj.model} · "
        f"[bold]outcome[/] {traj.outcome.value}"
    )
    for i, attempt in enumerate(traj.attempts):
        verdict = traj.verdicts[i]
        mark = "[green]pass[/]" if verdict.passed else "[red]fail[/]"
        label = "attempt" if i == 0 else "retry"
        body = _short(attempt.text)
        if attempt.tool_calls:
            calls = ", ".join(
                f"{c.function.name}({c.function.arguments})" for c in attempt.tool_calls
            )
            body = (body + " " if body else "") + f"[tool calls] {calls}"
        out.print(f"  [bold]{label} {i}[/] {mark}: {body}", highlight=False)
        if verdict.feedback and not verdict.passed:
            out.print(f"    [dim]verifier: {verdict.feedback}[/]", highlight=False)
        if i < len(traj.reflections):
            out.print(
                f"  [bold cyan]reflection[/]: {_short(traj.reflections[i].text)}", highlight=False
            )


def table_of(rows: list[dict[str, Any]], columns: list[str], title: str) -> Table:
    """A rich table of ``rows`` (dicts), one column per key in ``columns``."""
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    return table
