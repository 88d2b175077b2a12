"""Append-only JSONL logs: trajectories (training data) and run errors (never training data).

Durability rules, and why:

* One record is one line, written with a single ``write(2)`` on an ``O_APPEND`` descriptor while
  holding an exclusive ``flock``: concurrent writers (threads or processes) never interleave, and
  nothing sits in a user-space buffer, so a crash of the writing process loses at most the record
  being written.
* A process killed in the middle of a write can leave a *torn* line without its newline. The next
  writer notices (the file does not end in ``\\n``), terminates the fragment with
  :data:`TORN_MARK` + ``\\n`` and then appends its own record, so a good record is never glued to
  a fragment. Readers skip marked fragments and report them with file and line.
* A last line without a newline is never read as data: it is either torn or still being written.
  Readers report it and move on.
* Any other unreadable line is corruption: the reader raises :class:`LogFileError` naming file and
  line (``on_error="raise"``, the default) or skips and reports it (``on_error="skip"``).
* ``fsync=True`` additionally survives power loss, at the cost of a disk flush per record.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from ._errors import LogFileError
from ._secrets import redact
from ._types import Outcome, Task, Trajectory, utcnow

__all__ = [
    "TORN_MARK",
    "ErrorLog",
    "JsonlAppender",
    "LineProblem",
    "ReadReport",
    "TrajectoryFilter",
    "TrajectoryStore",
    "iter_jsonl",
    "read_trajectories",
]

#: Appended to a torn fragment by the next writer; no JSON object line can end with it.
TORN_MARK = " #rrr-torn"
_TORN_MARK_B = TORN_MARK.encode()


class JsonlAppender:
    """Appends one JSON line per record; safe for concurrent threads and processes."""

    def __init__(self, path: str | Path, *, fsync: bool = False):
        self.path = Path(path)
        self.fsync = fsync
        self._fd: int | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a forked child opens its own
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            self._pid = os.getpid()
        return self._fd

    def append_line(self, line: str) -> None:
        if "\n" in line:
            raise ValueError("a JSONL record must not contain a newline")
        data = line.encode("utf-8") + b"\n"
        with self._lock:
            fd = self._descriptor()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = _TORN_MARK_B + b"\n" + data
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                if self.fsync:
                    os.fsync(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def append(self, record: BaseModel | dict[str, Any]) -> None:
        if isinstance(record, BaseModel):
            line = record.model_dump_json()
        else:
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
        self.append_line(line)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


class TrajectoryStore(JsonlAppender):
    """The trajectory log: write with :meth:`append`, read with :meth:`read`."""

    def read(
        self,
        filt: TrajectoryFilter | None = None,
        *,
        on_error: Literal["raise", "skip"] = "raise",
        report: ReadReport | None = None,
    ) -> Iterator[Trajectory]:
        return read_trajectories(self.path, filt, on_error=on_error, report=report)

    def __iter__(self) -> Iterator[Trajectory]:
        return self.read()

    def get(self, trajectory_id: str) -> Trajectory | None:
        """The trajectory with this id (or a unique id prefix), else None."""
        found: Trajectory | None = None
        for traj in self.read(on_error="skip"):
            if traj.id == trajectory_id:
                return traj
            if traj.id.startswith(trajectory_id):
                if found is not None:
                    raise LogFileError(f"id prefix {trajectory_id!r} is ambiguous", path=self.path)
                found = traj
        return found


class ErrorLog(JsonlAppender):
    """Runs stopped by an infrastructure or verifier error: kept to inspect, never trained on."""

    def append_error(
        self, *, task: Task, model: str, error: BaseException, stage: str, run_id: str
    ) -> None:
        self.append(
            {
                "kind": "run_error",
                "run_id": run_id,
                "at": utcnow().isoformat(),
                "model": model,
                "task_id": task.id,
                "stage": stage,
                "error_type": type(error).__name__,
                "error": redact(str(error)),
                "status_code": getattr(error, "status_code", None),
            }
        )

    def read(self, *, report: ReadReport | None = None) -> Iterator[dict[str, Any]]:
        for _lineno, obj in iter_jsonl(self.path, on_error="skip", report=report):
            if isinstance(obj, dict) and obj.get("kind") == "run_error":
                yield obj


@dataclass(frozen=True, slots=True)
class LineProblem:
    path: str
    line: int
    reason: str
    torn: bool = False

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass(slots=True)
class ReadReport:
    """Collects lines that were not read as data, so callers can show them."""

    problems: list[LineProblem] = field(default_factory=list)
    records: int = 0

    @property
    def torn(self) -> list[LineProblem]:
        return [p for p in self.problems if p.torn]

    @property
    def invalid(self) -> list[LineProblem]:
        return [p for p in self.problems if not p.torn]


def iter_jsonl(
    path: str | Path,
    *,
    on_error: Literal["raise", "skip"] = "raise",
    report: ReadReport | None = None,
    error_cls: type[LogFileError] = LogFileError,
) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, parsed_json)`` for every complete, valid line of a JSONL file."""
    p = Path(path)
    try:
        handle = p.open("rb")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise error_cls(f"cannot open: {exc.strerror}", path=p) from exc

    def problem(lineno: int, reason: str, *, torn: bool) -> None:
        if report is not None:
            report.problems.append(LineProblem(str(p), lineno, reason, torn))
        if not torn and on_error == "raise":
            raise error_cls(reason, path=p, line=lineno)

    with handle:
        for lineno, raw in enumerate(handle, start=1):
            if not raw.endswith(b"\n"):
                problem(
                    lineno,
                    "incomplete last line (a write was interrupted or is in progress); not read",
                    torn=True,
                )
                continue
            body = raw.rstrip(b"\r\n")
            if body.endswith(_TORN_MARK_B):
                problem(lineno, "line cut short by an interrupted write; not read", torn=True)
                continue
            if not body.strip():
                continue
            try:
                obj = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
                col = f" (column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
                problem(lineno, f"not valid JSON: {reason}{col}", torn=False)
                continue
            yield lineno, obj


@dataclass(frozen=True, slots=True)
class TrajectoryFilter:
    """Cheap filters applied to the raw record before it is validated."""

    model: str | None = None
    outcome: Outcome | None = None
    since: datetime | None = None
    until: datetime | None = None
    family: str | None = None
    task_id: str | None = None
    #: Only tasks whose metadata holds this key (e.g. "chat" for chat turns, "sdk" for SDK steps).
    metadata_key: str | None = None

    def matches(self, obj: dict[str, Any]) -> bool:
        if self.model is not None and obj.get("model") != self.model:
            return False
        if self.outcome is not None and obj.get("outcome") != self.outcome.value:
            return False
        task = obj.get("task") or {}
        if self.family is not None and task.get("family") != self.family:
            return False
        if self.task_id is not None and task.get("id") != self.task_id:
            return False
        if self.metadata_key is not None and self.metadata_key not in (task.get("metadata") or {}):
            return False
        if self.since is not None or self.until is not None:
            try:
                started = datetime.fromisoformat(str(obj.get("started_at")))
            except ValueError:
                return True  # let validation report the bad timestamp
            if self.since is not None and started < self.since:
                return False
            if self.until is not None and started >= self.until:
                return False
        return True


def read_trajectories(
    path: str | Path,
    filt: TrajectoryFilter | None = None,
    *,
    on_error: Literal["raise", "skip"] = "raise",
    report: ReadReport | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[Trajectory]:
    """Stream trajectories from a JSONL file (or every ``*.jsonl`` in a folder), oldest first."""
    p = Path(path)
    files = sorted(p.glob("*.jsonl")) if p.is_dir() else [p]
    for file in files:
        for lineno, obj in iter_jsonl(file, on_error=on_error, report=report):
            if progress is not None:
                progress(lineno)
            if not isinstance(obj, dict) or obj.get("kind") != "trajectory":
                reason = 'not a trajectory record (missing "kind": "trajectory")'
                if report is not None:
                    report.problems.append(LineProblem(str(file), lineno, reason))
                if on_error == "raise":
                    raise LogFileError(reason, path=file, line=lineno)
                continue
            if filt is not None and not filt.matches(obj):
                continue
            try:
                traj = Trajectory.model_validate(obj)
            except ValidationError as exc:
                err = exc.errors()[0]
                loc = ".".join(str(x) for x in err.get("loc", ()))
                reason = f"invalid trajectory: {loc}: {err.get('msg')}"
                if report is not None:
                    report.problems.append(LineProblem(str(file), lineno, reason))
                if on_error == "raise":
                    raise LogFileError(reason, path=file, line=lineno) from exc
                continue
            if report is not None:
                report.records += 1
            yield traj
