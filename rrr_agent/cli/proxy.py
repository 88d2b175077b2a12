"""``rrr proxy``: the OpenAI-compatible self-correcting proxy (see :mod:`rrr_agent.proxy`)."""

from __future__ import annotations

from typing import Annotated

import typer

from .._settings import load_settings
from ._common import ConfigOpt, err, errors_exit, preparing


def proxy(
    upstream: Annotated[
        str | None,
        typer.Option(help="Upstream model string (default: the settings' model, else embedded)."),
    ] = None,
    api_base: Annotated[
        str | None, typer.Option(help="Upstream OpenAI-compatible base URL (…/v1).")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to bind (keep 127.0.0.1 unless needed).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8100,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="RRR_PROXY_TOKEN", help="Require 'Authorization: Bearer TOKEN' from clients."
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """An OpenAI-compatible proxy in which tool and JSON-schema requests self-correct.

    Requests with tools or a JSON-schema response_format run through the loop and are logged as
    trajectories; the rest pass through. Point any OpenAI client at http://HOST:PORT/v1.
    Upstream keys come from the settings (RRR_API_KEY or the provider's variable) and are never
    logged.
    """
    import uvicorn

    from ..embedded import model_or_embedded, prepare_for
    from ..proxy import KEEP_ALIVE_S, create_app

    with errors_exit():
        settings = load_settings(config, model=upstream, api_base=api_base)
        model = model_or_embedded(settings.model)
        prepare_for(model, preparing())
        app = create_app(settings, upstream=model, token=token)
    if host not in ("127.0.0.1", "localhost", "::1") and token is None:
        err.print(f"[yellow]warning:[/] listening on {host} without --token: anyone can use it")
    err.print(f"rrr proxy → {model} on http://{host}:{port}/v1 (log: {settings.trajectory_log})")
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=KEEP_ALIVE_S)
