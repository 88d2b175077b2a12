"""Task files: JSON Lines, one task per line.

A line is either a full task (``{"messages": [...], "verifier": {...}, ...}``, see
:class:`~rrr_agent.Task`) or the shorthand ``{"prompt": "...", "verifier": {...}}`` with optional
``system``, ``id``, ``family``, ``tools`` and ``metadata``. Every problem is reported as
``file:line: reason``; nothing is run until the whole file has been read and checked.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ._errors import TaskFileError, VerifierSpecError
from ._files import atomic_write
from ._types import Task
from .verifiers import build_verifier

__all__ = ["iter_tasks", "load_tasks", "task_from_obj", "write_tasks"]

_SHORTHAND_KEYS = {"prompt", "system", "id", "family", "tools", "metadata", "verifier"}


def task_from_obj(obj: Any) -> Task:
    """Build a task from a parsed JSON object (full form or shorthand)."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    if "prompt" in obj:
        extra = set(obj) - _SHORTHAND_KEYS
        if extra:
            raise ValueError(f"unknown field(s) {sorted(extra)} in a prompt-style task")
        if "messages" in obj:
            raise ValueError("give either 'prompt' or 'messages', not both")
        if not isinstance(obj["prompt"], str) or not obj["prompt"]:
            raise ValueError("'prompt' must be a non-empty string")
        if "verifier" not in obj:
            raise ValueError("missing 'verifier'")
        return Task.from_prompt(
            obj["prompt"],
            obj["verifier"],
            system=obj.get("system"),
            family=obj.get("family", "default"),
            tools=obj.get("tools"),
            id=str(obj.get("id", "")),
            metadata=obj.get("metadata"),
        )
    return Task.model_validate(obj)


def _describe(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(x) for x in err.get("loc", ())) or "(task)"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{loc}: {err.get('msg')}{more}"


def iter_tasks(path: str | Path, *, check_verifiers: bool = True) -> Iterator[Task]:
    """Yield tasks from a JSONL file, raising :class:`TaskFileError` at the first bad line."""
    p = Path(path)
    try:
        handle = p.open("r", encoding="utf-8")
    except OSError as exc:
        raise TaskFileError(f"cannot open task file: {exc.strerror}", path=p) from exc
    seen: dict[str, int] = {}
    with handle:
        try:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise TaskFileError(
                        f"not valid JSON: {exc.msg} (column {exc.colno})", path=p, line=lineno
                    ) from exc
                try:
                    task = task_from_obj(obj)
                except ValidationError as exc:
                    raise TaskFileError(
                        f"not a valid task: {_describe(exc)}", path=p, line=lineno
                    ) from exc
                except ValueError as exc:
                    raise TaskFileError(f"not a valid task: {exc}", path=p, line=lineno) from exc
                if check_verifiers:
                    try:
                        build_verifier(task.verifier)
                    except VerifierSpecError as exc:
                        raise TaskFileError(str(exc), path=p, line=lineno) from exc
                if task.id in seen:
                    raise TaskFileError(
                        f"duplicate task id {task.id!r} (first on line {seen[task.id]})",
                        path=p,
                        line=lineno,
                    )
                seen[task.id] = lineno
                yield task
        except UnicodeDecodeError as exc:
            raise TaskFileError(f"not UTF-8 text: {exc.reason}", path=p) from exc


def load_tasks(path: str | Path, *, check_verifiers: bool = True) -> list[Task]:
    """Read and check a whole task file."""
    tasks = list(iter_tasks(path, check_verifiers=check_verifiers))
    if not tasks:
        raise TaskFileError("the task file has no tasks", path=path)
    return tasks


def write_tasks(tasks: Iterable[Task], path: str | Path | None = None) -> int:
    """Write tasks as a JSONL task file; return how many. ``path`` None writes to stdout.

    A file is written atomically: to a temporary file beside it, renamed into place only when
    every task was written, so an error (say, bad data halfway through a set) leaves nothing.
    """
    if path is None:
        lines = [t.model_dump_json() + "\n" for t in tasks]  # all read before anything is written
        sys.stdout.write("".join(lines))
        return len(lines)
    count = 0
    with atomic_write(path) as fh:
        for task in tasks:
            fh.write(task.model_dump_json() + "\n")
            count += 1
    return count
