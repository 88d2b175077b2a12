"""``rrr tasks``: the task sets built from the packaged data (or ``$RRR_DATASETS``)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .._tasks import write_tasks
from ._common import JsonOpt, err, errors_exit, out

app = typer.Typer(help="Task sets from real data: list, export to JSONL.", no_args_is_help=True)


@app.command("list")
def tasks_list(as_json: JsonOpt = False) -> None:
    """List the task sets, with how many tasks each holds and where its data comes from."""
    from ..tasksets import datasets_root, tasksets

    with errors_exit():
        root = datasets_root()
        rows: list[dict[str, Any]] = [
            {
                "name": ts.name,
                "family": ts.family,
                "tasks": ts.count(root),
                "source": ts.source,
                "description": ts.description,
            }
            for ts in tasksets().values()
        ]
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table(title=f"{len(rows)} task sets (data: {root})")
    for col in ("name", "family", "tasks", "source", "description"):
        table.add_column(col, justify="right" if col == "tasks" else "left")
    for row in rows:
        table.add_row(*(str(row[c]) for c in ("name", "family", "tasks", "source", "description")))
    out.print(table)


@app.command("export")
def tasks_export(
    name: Annotated[str, typer.Argument(help="Task set name (see `rrr tasks list`).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (default: stdout).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Export only the first N tasks.")] = None,
    data: Annotated[
        Path | None,
        typer.Option(help="Data sets folder (default: $RRR_DATASETS, else the packaged data)."),
    ] = None,
) -> None:
    """Write a task set as JSONL tasks with verifier specs (atomically: all or nothing)."""
    from ..tasksets import get_taskset

    with errors_exit():
        tasks = itertools.islice(get_taskset(name).load(data), limit)
        count = write_tasks(tasks, output)
    if output is not None:
        err.print(f"wrote {count} tasks to {output}")
