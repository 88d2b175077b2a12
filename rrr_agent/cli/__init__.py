"""The ``rrr`` command line: a thin shell over the library, one module per command group.

Every command builds what it needs through the library (``Engine.from_settings``, task sets,
``evaluate``, ``rrr_trainer``) and only parses flags and prints. Exit codes are the same for every
command (see :mod:`rrr_agent.cli._common`): 0 success; 1 bad input or configuration; 2 usage
error; 3 some tasks were not run because of infrastructure errors; 4 ``rrr verify`` judged the
response invalid; ``rrr nightly`` adds 5 skipped, 6 locked, 7 probe failed.
"""

from __future__ import annotations

import sys

import typer

from . import checkpoints, config, logs, model, serve, tasks, train, verify
from ._common import err
from .chat import chat
from .eval import eval_command
from .nightly import nightly
from .proxy import proxy
from .run import run

__all__ = ["app", "main"]

app = typer.Typer(
    name="rrr",
    help=(
        "Reflect, Retry, Reward: run models in an attempt → verify → reflect → retry loop, "
        "log every trajectory, and (with rrr_trainer) train better reflections.\n\n"
        "Exit codes: 0 success · 1 bad input or configuration · 2 usage error · "
        "3 tasks not run (infrastructure errors) · 4 `rrr verify`: response invalid."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
app.command()(run)
app.command("eval")(eval_command)
app.command("proxy")(proxy)
app.command("chat")(chat)
app.command("nightly")(nightly)
app.add_typer(logs.app, name="logs")
app.add_typer(config.app, name="config")
app.add_typer(tasks.app, name="tasks")
app.add_typer(model.app, name="model")
app.add_typer(serve.app, name="serve")
app.add_typer(train.app, name="train")
app.add_typer(checkpoints.app, name="checkpoints")
app.add_typer(verify.app, name="verify")


@app.command()
def version() -> None:
    """Print rrr's version."""
    from .._engine import rrr_version

    print(rrr_version())


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
