"""``rrr nightly``: the self-training job (see :mod:`rrr_trainer.nightly`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._common import JsonOpt, err, errors_exit


def nightly(
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML file with [nightly] and [train] tables.")
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Say what would be trained and evaluated; change nothing."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """New logs → failure set → train → gate → promote → reload the server, once.

    Exit codes: 0 ran (promoted or rejected; the report says which), 1 bad configuration or
    data, 3 the model or server failed, 5 skipped (too few new failures), 6 another run holds the
    lock, 7 the served model did not match the promoted candidate (rolled back). Safe from cron or
    a systemd timer (examples/nightly/).
    """
    from rrr_trainer.nightly import NightlyConfig, run_nightly

    with errors_exit():
        cfg = NightlyConfig.from_sources(config)

        def say(message: str) -> None:
            err.print(f"[dim]{message}[/dim]", highlight=False)

        result = run_nightly(cfg, dry_run=dry_run, progress=say)
    summary = {
        "outcome": result.outcome,
        "exit_code": result.exit_code,
        "run": result.run_id,
        "candidate": result.candidate,
        "report": str(result.report_dir) if result.report_dir else None,
        "figures": result.figures,
    }
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        err.print(f"nightly {result.run_id}: {result.outcome}"
                  + (f" (report: {result.report_dir})" if result.report_dir else ""))  # fmt: skip
    raise typer.Exit(result.exit_code)
