"""``rrr checkpoints``: the registry of trained checkpoints and its ``current`` pointer."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from ..registry import Registry
from ._common import JsonOpt, err, errors_exit, out

app = typer.Typer(
    help="Trained checkpoints: list, show, promote, rollback, init.", no_args_is_help=True
)

RootOpt = Annotated[
    str | None,
    typer.Option("--registry", help="Registry folder (default: $RRR_CHECKPOINTS or "
                 "<data dir>/checkpoints)."),
]  # fmt: skip


@app.command("list")
def checkpoints_list(registry: RootOpt = None, as_json: JsonOpt = False) -> None:
    """Every checkpoint, oldest first; the current one is marked."""
    with errors_exit():
        reg = Registry(registry)
        current = reg.current_name()
        rows = [{**reg.get(n).summary(), "current": n == current} for n in reg.names()]
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table(title=f"{len(rows)} checkpoints in {reg.root}")
    for col in ("", "name", "kind", "parent", "created", "second try"):
        table.add_column(col)
    for row in rows:
        second = (row["metrics"].get("heldout") or {}).get("second_try")
        table.add_row("→" if row["current"] else "", row["name"], row["kind"],
                      row["parent"] or "", str(row["created_at"])[:19],
                      "" if second is None else f"{100 * second:.1f}%")  # fmt: skip
    out.print(table)


@app.command("show")
def checkpoints_show(
    name: Annotated[str, typer.Argument(help="Checkpoint name, or 'current'.")] = "current",
    registry: RootOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One checkpoint's manifest: parent, watermark, metrics, files."""
    with errors_exit():
        reg = Registry(registry)
        chosen = reg.current_name() if name == "current" else name
        if chosen is None:
            raise typer.BadParameter("no checkpoint is current yet")
        checkpoint = reg.get(chosen)
        problems = reg.problems(chosen)
    data = {**checkpoint.manifest, "path": str(checkpoint.path), "problems": problems}
    if as_json:
        print(json.dumps(data, indent=2))
        return
    table = Table(show_header=False, title=f"checkpoint {checkpoint.name}")
    for key, value in data.items():
        if key == "files":
            value = f"{len(value)} files"
        table.add_row(key, json.dumps(value) if isinstance(value, dict | list) else str(value))
    out.print(table)


@app.command("promote")
def checkpoints_promote(
    name: Annotated[str, typer.Argument(help="Checkpoint to make current.")],
    registry: RootOpt = None,
) -> None:
    """Make a checkpoint current (atomically)."""
    with errors_exit():
        previous = Registry(registry).promote(name, reason="rrr checkpoints promote")
    err.print(f"current: {name} (was {previous or 'none'})")


@app.command("rollback")
def checkpoints_rollback(
    to: Annotated[
        str | None,
        typer.Argument(help="Checkpoint to go back to (default: the current one's parent)."),
    ] = None,
    registry: RootOpt = None,
) -> None:
    """Make an earlier checkpoint current again."""
    with errors_exit():
        name = Registry(registry).rollback(to, reason="rrr checkpoints rollback")
    err.print(f"current: {name}")


@app.command("init")
def checkpoints_init(
    base_model: Annotated[str, typer.Option(help="Base model of every adapter.")] = "gemma-3-270m",
    registry: RootOpt = None,
) -> None:
    """Give an empty registry its first checkpoint (the base model, as an identity adapter) so a
    server can load every later adapter in place. Needs the 'train' extra."""
    with errors_exit():
        from rrr_trainer.nightly import init_registry

        name = init_registry(Registry(registry), base_model)
    err.print(f"current: {name}")
