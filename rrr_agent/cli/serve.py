"""``rrr serve``: vLLM on 127.0.0.1, and LoRA adapters loaded into it at run time."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from ._common import err, errors_exit


class _PassThroughGroup(TyperGroup):
    """A group whose extra flags go to the callback when no subcommand is named.

    ``rrr serve --enforce-eager`` passes the flag to vLLM; ``rrr serve load-adapter ...`` still
    runs the subcommand. Without a subcommand name among the arguments, the arguments are parsed
    as the callback's own (a plain command's parsing), and the unknown ones stay in ``ctx.args``.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not any(arg in self.commands for arg in args):
            # A plain command's parsing (the class above TyperGroup): unknown flags stay in
            # ctx.args, no subcommand is recorded, and the callback runs.
            return super(TyperGroup, self).parse_args(ctx, args)
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_PassThroughGroup,
    help="Serve a checkpoint through vLLM on 127.0.0.1; load LoRA adapters at run time.",
    invoke_without_command=True,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)


@app.callback()
def serve(
    ctx: typer.Context,
    checkpoint: Annotated[
        str,
        typer.Option(
            help="A registry checkpoint name, a checkpoint folder, or 'current' (the promoted "
            "checkpoint, else the embedded model).",
        ),
    ] = "current",
    lora: Annotated[
        list[str] | None, typer.Option(help="NAME=PATH of a PEFT adapter to serve (repeatable).")
    ] = None,
    name: Annotated[str, typer.Option(help="Served model name.")] = "rrr",
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 picks a free one).")] = 8000,
    max_model_len: Annotated[int, typer.Option(help="Context length.")] = 2048,
    max_lora_rank: Annotated[int, typer.Option(help="Largest LoRA rank to accept.")] = 16,
) -> None:
    """Start vLLM and keep it running until Ctrl-C or SIGTERM. Extra flags go to vLLM as they are.

    Prints the model string (hosted_vllm/NAME) and base URL to use with `rrr run`.
    """
    if ctx.invoked_subcommand is not None:
        return
    from ..serving import VLLMServer, serve_until_stopped

    loras: dict[str, str | Path] = {}
    for item in lora or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise typer.BadParameter(f"--lora expects NAME=PATH, got {item!r}")
        loras[key] = value
    server = VLLMServer(
        None if checkpoint == "current" else checkpoint,
        name=name,
        port=port or None,
        loras=loras,
        max_model_len=max_model_len,
        max_lora_rank=max_lora_rank,
        extra_args=list(ctx.args),
    )

    def ready(srv: Any) -> None:
        status.stop()
        print(f"model string: {srv.model_string}", flush=True)
        print(f"base URL:     {srv.base_url}", flush=True)
        print(
            f"example:      rrr run --model {srv.model_string} --api-base {srv.base_url} "
            "--stop '\\nUser:' ...",
            flush=True,
        )
        err.print("serving; Ctrl-C to stop")

    with errors_exit(), err.status("starting vLLM") as status:
        serve_until_stopped(server, progress=status.update, on_ready=ready)
    err.print("vLLM stopped")


@app.command("load-adapter")
def serve_load_adapter(
    name: Annotated[str, typer.Argument(help="Name requests will use as the model.")],
    path: Annotated[Path, typer.Argument(help="PEFT adapter folder.")],
    base_url: Annotated[str, typer.Option(help="The running server.")] = "http://127.0.0.1:8000/v1",
) -> None:
    """Load a LoRA adapter into a running server, without a restart."""
    from ..serving import load_adapter

    with errors_exit():
        load_adapter(base_url, name, path)
    err.print(f"adapter {name!r} loaded; use model hosted_vllm/{name}")


@app.command("unload-adapter")
def serve_unload_adapter(
    name: Annotated[str, typer.Argument(help="Adapter name.")],
    base_url: Annotated[str, typer.Option(help="The running server.")] = "http://127.0.0.1:8000/v1",
) -> None:
    """Unload a LoRA adapter from a running server."""
    from ..serving import unload_adapter

    with errors_exit():
        unload_adapter(base_url, name)
    err.print(f"adapter {name!r} unloaded")
