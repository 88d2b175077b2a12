"""Events the engine emits at every stage, and the hook registry that delivers them.

The TUI, the proxy, progress bars and evaluation all subscribe to this one stream instead of
reaching into the loop. Every event names its ``trajectory_id`` and ``task_id`` so one subscriber
can follow many concurrent runs.

Order for one task (k = 1)::

    RunStarted
    AttemptStarted(0) → AttemptFinished(0) → Verified(0)
    [ReflectionStarted → ReflectionFinished → RetryStarted(1) → AttemptFinished(1) → Verified(1)]*
    RunFinished            (or RunFailed when an infrastructure error ended the run)

``TransportRetry`` may appear between a ``...Started`` and its ``...Finished``.

With token streaming on (``Engine(stream=True)``), ``TokenDelta`` events carry the text of an
attempt or a reflection as it is generated, between its ``...Started`` and ``...Finished``. A
``TransportRetry`` after some deltas means the call starts over: discard that call's deltas.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from ._types import Attempt, Reflection, ReflectionGroup, Trajectory, Verdict, utcnow

__all__ = [
    "AttemptFinished",
    "AttemptStarted",
    "Event",
    "EventHandler",
    "GroupFinished",
    "Hooks",
    "ReflectionFinished",
    "ReflectionStarted",
    "RetryStarted",
    "RunFailed",
    "RunFinished",
    "RunStarted",
    "TokenDelta",
    "TransportRetry",
    "TurnFinished",
    "Verified",
]

logger = logging.getLogger("rrr_agent")


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    trajectory_id: str
    task_id: str
    at: Any = field(default_factory=utcnow)

    @property
    def name(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (pydantic values dumped), for proxies and UIs that ship events."""
        out: dict[str, Any] = {"event": self.name}
        for key, value in asdict(self).items():
            if hasattr(value, "model_dump"):
                out[key] = value.model_dump(mode="json")
            elif key == "at":
                out[key] = value.isoformat()
            else:
                out[key] = value
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted(Event):
    model: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptStarted(Event):
    index: int
    branch: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryStarted(AttemptStarted):
    """An attempt after a reflection (index ≥ 1). Also delivered to ``AttemptStarted`` handlers."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptFinished(Event):
    attempt: Attempt


@dataclass(frozen=True, slots=True, kw_only=True)
class Verified(Event):
    verdict: Verdict


@dataclass(frozen=True, slots=True, kw_only=True)
class ReflectionStarted(Event):
    after_attempt: int
    branch: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ReflectionFinished(Event):
    reflection: Reflection


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupFinished(Event):
    """All k branches after one failure are done (only when k > 1)."""

    group: ReflectionGroup


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenDelta(Event):
    """New text of the call in progress (token streaming). ``stage`` is "attempt" or
    "reflection"; ``index`` is the attempt's index, or for a reflection the attempt it follows."""

    stage: str
    index: int
    branch: int = 0
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportRetry(Event):
    """A model call failed with a retryable infrastructure error and will be retried."""

    stage: str  # "attempt" | "reflection"
    error: str
    error_type: str
    try_number: int
    delay_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished(Event):
    trajectory: Trajectory


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFailed(Event):
    """The run ended on an error that is not a verdict (infrastructure, verifier bug)."""

    error: str
    error_type: str
    stage: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnFinished(Event):
    """An SDK turn is over (``Agent.stream``): ``result`` is the ``AgentResult``; the ids are
    those of its last step."""

    result: Any


E = TypeVar("E", bound=Event)
EventHandler = Callable[[Any], Awaitable[None] | None]


class Hooks:
    """Handlers by event type; a handler for ``Event`` receives everything.

    Handlers may be sync or async. A handler that raises is logged and skipped: a broken progress
    bar must not lose a run. Set ``raise_errors=True`` (tests) to propagate instead.
    """

    def __init__(self, *, raise_errors: bool = False):
        self._handlers: list[tuple[type[Event], EventHandler]] = []
        self.raise_errors = raise_errors
        self.errors = 0

    def on(self, event_type: type[E], handler: Callable[[E], Awaitable[None] | None]) -> None:
        self._handlers.append((event_type, handler))

    def off(self, handler: EventHandler) -> None:
        self._handlers = [(t, h) for t, h in self._handlers if h is not handler]

    def __bool__(self) -> bool:
        return bool(self._handlers)

    def __call__(self, event_type: type[E]) -> Callable[[Callable[[E], Any]], Callable[[E], Any]]:
        """Decorator form: ``@hooks(Verified)``."""

        def deco(fn: Callable[[E], Any]) -> Callable[[E], Any]:
            self.on(event_type, fn)
            return fn

        return deco

    async def emit(self, event: Event) -> None:
        for event_type, handler in self._handlers:
            if not isinstance(event, event_type):
                continue
            try:
                result = handler(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self.errors += 1
                if self.raise_errors:
                    raise
                logger.exception("event handler %r failed on %s", handler, event.name)
