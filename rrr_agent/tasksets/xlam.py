"""The 5-row xLAM function-calling sample (``xlam_sample/example.jsonl``) as ``xlam-sample``.

Rows come from NeMo Gym's xlam_fc resource server; each task is judged by the ``xlam`` verifier,
which is the reward that server uses (same number of calls; each expected call matched, in any
order, by a call with the same name whose arguments include every expected one with an equal
value). Tools arrive in the Responses API's flat form and are stored in chat-completions form.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._errors import DataError
from .._types import Message, Task, VerifierSpec
from . import register_taskset

__all__ = ["xlam_tasks"]

SOURCE = "xlam_sample/example.jsonl"


def _chat_tool(tool: dict[str, Any]) -> dict[str, Any]:
    if isinstance(tool.get("function"), dict):
        return tool
    fn = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
    return {"type": "function", "function": fn}


@register_taskset(
    "xlam-sample",
    description="5 rows of Salesforce xlam-function-calling-60k (via NeMo Gym), exact-call match",
    family="tool_call",
    source=SOURCE,
)
def xlam_tasks(root: Path) -> Iterator[Task]:
    path = root / SOURCE
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                params = row["responses_create_params"]
                messages = [Message(role=m["role"], content=m["content"]) for m in params["input"]]
                tools = [_chat_tool(t) for t in params.get("tools") or []]
                expected = row["expected_answers"]
                task = Task(
                    id=f"xlam-{row['id']}",
                    family="tool_call",
                    messages=messages,
                    tools=tools or None,
                    verifier=VerifierSpec(type="xlam", expected=expected),
                    metadata={"source": "xlam-function-calling-60k (NeMo Gym sample)"},
                )
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise DataError(f"not a valid xlam row: {exc}", path=path, line=lineno) from None
            yield task
