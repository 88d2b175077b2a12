"""The one small error tree of rrr.

Every error rrr raises on purpose derives from :class:`RRRError`::

    RRRError
    ├── ConfigError ............. a settings file, env var or flag is invalid
    ├── DataError ............... bad input data, always named by file and line
    │   ├── TaskFileError ....... a task file line is not a valid task
    │   └── LogFileError ........ a trajectory log line is not a valid record
    ├── VerifierSpecError ....... a verifier spec cannot be built (unknown type, bad fields)
    ├── VerifierError ........... a verifier crashed while judging (a bug, not a verdict)
    ├── ToolError ............... raised by a tool the SDK runs: the call failed, with this message
    │                             as the attempt's feedback (any other exception from a tool does
    │                             the same, with its type named)
    ├── MissingExtraError ....... an optional part needs an extra that is not installed
    ├── ServeError .............. a model server could not start, was refused, or died
    ├── InfrastructureError ..... calling the model failed; says nothing about the task
    │   ├── ModelTimeout ........ the call did not finish in time           (retryable)
    │   ├── RateLimited ......... HTTP 429                                  (retryable)
    │   ├── ServerError ......... HTTP 5xx                                  (retryable)
    │   ├── ModelConnectionError  refused / reset / DNS                     (retryable)
    │   ├── MalformedResponse ... the reply could not be understood         (retryable)
    │   └── ModelRequestError ... HTTP 4xx other than 429: our request is wrong (not retried)
    └── VerificationFailed ...... raised only on request: every attempt failed verification;
                                  carries the trajectory (attempts, verdicts, usage)

An :class:`InfrastructureError` is never turned into a failed attempt or a verdict: it travels as an
exception, so it can never become training data.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._types import Trajectory

__all__ = [
    "ConfigError",
    "DataError",
    "InfrastructureError",
    "LogFileError",
    "MalformedResponse",
    "MissingExtraError",
    "ModelConnectionError",
    "ModelRequestError",
    "ModelTimeout",
    "RRRError",
    "RateLimited",
    "ServeError",
    "ServerError",
    "TaskFileError",
    "ToolError",
    "VerificationFailed",
    "VerifierError",
    "VerifierSpecError",
]


class RRRError(Exception):
    """Base class of every error rrr raises on purpose."""


class ConfigError(RRRError):
    """A setting is invalid (file, env var or flag)."""


class DataError(RRRError):
    """Bad input data. ``path`` and ``line`` (1-based) say where."""

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        self.reason = message
        super().__init__(self._format())

    def _format(self) -> str:
        if self.path is None:
            return self.reason
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.reason}"


class TaskFileError(DataError):
    """A task file (JSONL) has a line that is not a valid task."""


class LogFileError(DataError):
    """A trajectory log has a line that is not a valid record."""


class VerifierSpecError(RRRError):
    """A verifier spec cannot be turned into a verifier."""


class VerifierError(RRRError):
    """A verifier raised while judging. This is a bug in the verifier, not a failed attempt."""


class ToolError(RRRError):
    """Raise it from a tool to declare that the call failed: the attempt fails, and the message
    is its feedback (shown to the model before it reflects)."""


class MissingExtraError(RRRError, ImportError):
    """An optional component needs packages from an extra that is not installed."""

    def __init__(self, extra: str, package: str, what: str):
        self.extra = extra
        self.package = package
        super().__init__(
            f"{what} needs the '{package}' package, which is not installed. "
            f"Install it with: pip install 'rrr-agent[{extra}]'"
        )


class ServeError(RRRError):
    """A managed model server (vLLM) could not start, its port was busy, or it died."""


class InfrastructureError(RRRError):
    """Calling the model failed for a reason that says nothing about the task.

    ``retryable`` tells the transport whether trying again may help; ``status_code`` is the HTTP
    status when there was one.
    """

    retryable: bool = True

    def __init__(self, message: str, *, status_code: int | None = None, model: str | None = None):
        self.status_code = status_code
        self.model = model
        super().__init__(message)


class ModelTimeout(InfrastructureError):
    """The model call did not finish within its timeout."""


class RateLimited(InfrastructureError):
    """The provider answered 429. ``retry_after`` is the delay it asked for, if any."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = 429,
        model: str | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, status_code=status_code, model=model)
        self.retry_after = retry_after


class ServerError(InfrastructureError):
    """The provider answered with a 5xx status."""


class ModelConnectionError(InfrastructureError):
    """The provider could not be reached (refused, reset, DNS)."""


class MalformedResponse(InfrastructureError):
    """The provider answered, but the reply could not be understood."""


class ModelRequestError(InfrastructureError):
    """The provider rejected the request (4xx other than 429): fix the request, do not retry."""

    retryable = False


class VerificationFailed(RRRError):
    """Every attempt failed verification (raised only when the caller asks for it).

    ``trajectory`` carries every attempt, verdict and reflection, and the total token usage.
    ``trajectories`` holds every trajectory of the turn, the failed one last (an agent's earlier
    steps come first).
    """

    def __init__(self, trajectory: Trajectory, *, earlier: list[Trajectory] | None = None):
        self.trajectory = trajectory
        self.trajectories = [*(earlier or []), trajectory]
        n = len(trajectory.attempts)
        last = trajectory.verdicts[-1].feedback if trajectory.verdicts else ""
        usage = trajectory.total_usage()
        super().__init__(
            f"task {trajectory.task.id}: all {n} attempt(s) failed verification "
            f"({usage.total_tokens} tokens used); last feedback: {last or '(none)'}"
        )
