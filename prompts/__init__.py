"""rrr's prompt files, shipped as package data.

Layout: ``<kind>/<family>.txt`` where kind is ``reflection`` (asks for a self-reflection after a
failed attempt), ``retry`` (asks for the next attempt) or ``feedback`` (wraps the verifier's
feedback when it is shown to the model). ``reflection/tool_call.txt`` and ``reflection/math.txt``
are the paper's wording verbatim. ``$name`` placeholders are filled with ``string.Template``.
Load them through ``rrr_agent.PromptLibrary``, which records each file's content hash.
"""

from pathlib import Path

#: Folder holding the prompt files.
PROMPTS_DIR = Path(__file__).resolve().parent

__all__ = ["PROMPTS_DIR"]
