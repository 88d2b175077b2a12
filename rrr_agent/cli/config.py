"""``rrr config``: the merged settings."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from .._settings import load_settings
from ._common import ConfigOpt, JsonOpt, errors_exit, out

app = typer.Typer(help="Inspect the merged settings.", no_args_is_help=True)


@app.command("show")
def config_show(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Print the settings after merging flags, env vars, the TOML file and defaults (secrets
    masked)."""
    with errors_exit():
        settings = load_settings(config)
    data = settings.model_dump(mode="json")
    if settings.api_key is not None:
        data["api_key"] = "********"
    data["trajectory_log"] = str(settings.trajectory_log)
    if as_json:
        print(json.dumps(data, indent=2))
        return
    table = Table(show_header=False)
    for k, v in data.items():
        table.add_row(k, "" if v is None else str(v))
    out.print(table)
