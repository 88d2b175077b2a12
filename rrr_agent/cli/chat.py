"""``rrr chat``: the terminal chat (``rrr_tui``, extra ``tui``)."""

from __future__ import annotations

from typing import Annotated

import typer

from .._chat import VERIFIER_KINDS
from .._extras import require_extra
from .._settings import load_settings
from ._common import ConfigOpt, errors_exit


def chat(
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Model string (default: the settings', else embedded)."),
    ] = None,
    api_base: Annotated[str | None, typer.Option(help="OpenAI-compatible base URL.")] = None,
    verifier: Annotated[
        str,
        typer.Option(help=f"How answers are checked: {', '.join(VERIFIER_KINDS)} (F3 in the app)."),
    ] = "none",
    verifier_arg: Annotated[
        str, typer.Option(help="The verifier's argument, e.g. 42 for numeric, a schema, tests.")
    ] = "",
    session: Annotated[
        str | None, typer.Option(help="Resume this session (its id; ctrl+b lists them).")
    ] = None,
    system: Annotated[str | None, typer.Option(help="System message of a new chat.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Chat in the terminal and watch the model correct itself.

    Each reply shows its verdict; a failed attempt, the reflection and the retry appear as
    blocks. ctrl+r tells the model an answer is wrong. F1 lists every key.

    Every turn is logged as a trajectory (training data). Needs the 'tui' extra.
    """
    with errors_exit():
        require_extra("textual", "rrr chat")
        settings = load_settings(config, model=model, api_base=api_base)
        from .._chat import chat_verifier

        chat_verifier(verifier, verifier_arg)  # a bad verifier fails here, before the app starts
    from rrr_tui.app import ChatApp

    ChatApp(
        settings, model=model, verifier_kind=verifier, verifier_arg=verifier_arg,
        session_id=session, system=system,
    ).run()  # fmt: skip
