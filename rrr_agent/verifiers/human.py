"""A person decides: ``{"type": "human", "question": "Is the tone polite?", "timeout_s": null}``.

``verify`` registers a :class:`PendingReview` with an in-process broker and waits until someone
calls :meth:`HumanVerdicts.submit` with its key (a TUI lists :meth:`HumanVerdicts.pending`). With
``timeout_s`` set, no answer in time raises :class:`HumanReviewTimeout`: a missing answer is not a
verdict. Cancelling the waiting task withdraws the review. ``submit`` may be called from any thread.

The verifier uses the process-wide broker :data:`human_verdicts` (specs are plain JSON, so they
cannot carry a broker); tests and apps may swap it with :func:`set_broker`.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from pydantic import Field

from .._errors import RRRError
from .._types import ModelOutput, Task, Verdict, utcnow
from ._base import Verifier, register_verifier

__all__ = [
    "HumanReviewTimeout",
    "HumanVerdicts",
    "HumanVerifier",
    "PendingReview",
    "get_broker",
    "human_verdicts",
    "set_broker",
]


class HumanReviewTimeout(RRRError):
    """Nobody answered a human review within its timeout."""


@dataclass(frozen=True, slots=True)
class PendingReview:
    key: str
    task: Task
    output: ModelOutput
    question: str | None
    created_at: datetime = field(default_factory=utcnow)


class HumanVerdicts:
    """Broker between waiting verifiers and whoever gives the verdicts. ``on_pending(review)`` is
    called (in the waiting task's event loop) as soon as a review starts waiting."""

    def __init__(self, on_pending: Callable[[PendingReview], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[PendingReview, asyncio.Future[Verdict]]] = {}
        self.on_pending = on_pending

    def pending(self) -> list[PendingReview]:
        """Reviews waiting for a verdict, oldest first."""
        with self._lock:
            return sorted((r for r, _ in self._waiting.values()), key=lambda r: r.created_at)

    def submit(self, key: str, passed: bool, feedback: str = "") -> None:
        """Give the verdict for ``key``. Raises ``KeyError`` when nothing waits under that key."""
        with self._lock:
            entry = self._waiting.pop(key, None)
        if entry is None:
            raise KeyError(f"no human review is waiting under key {key!r}")
        future = entry[1]
        verdict = Verdict(passed=passed, feedback=feedback, details={"review_key": key})

        def resolve() -> None:
            if not future.done():
                future.set_result(verdict)

        future.get_loop().call_soon_threadsafe(resolve)

    async def wait(
        self,
        task: Task,
        output: ModelOutput,
        question: str | None = None,
        timeout_s: float | None = None,
    ) -> Verdict:
        """Register a review and wait for its verdict."""
        review = PendingReview(uuid.uuid4().hex, task, output, question)
        future: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._waiting[review.key] = (review, future)
        if self.on_pending is not None:
            self.on_pending(review)
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise HumanReviewTimeout(
                f"no human verdict for task {task.id} within {timeout_s:g} s"
            ) from None
        finally:
            with self._lock:
                self._waiting.pop(review.key, None)


#: The broker :class:`HumanVerifier` uses.
human_verdicts = HumanVerdicts()


def get_broker() -> HumanVerdicts:
    return human_verdicts


def set_broker(broker: HumanVerdicts) -> HumanVerdicts:
    """Make ``broker`` the one verifiers use; returns the previous one."""
    global human_verdicts
    previous, human_verdicts = human_verdicts, broker
    return previous


@register_verifier
class HumanVerifier(Verifier):
    """Waits for a person's verdict through :data:`human_verdicts`."""

    type: ClassVar[str] = "human"

    question: str | None = None
    timeout_s: float | None = Field(default=None, gt=0)

    async def verify(self, output: ModelOutput, task: Task) -> Verdict:
        return await get_broker().wait(task, output, self.question, self.timeout_s)
