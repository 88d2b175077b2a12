"""Chat sessions: the library behind ``rrr chat`` (the terminal app is a shell over it).

A :class:`ChatSession` is one conversation with one model and one verifier. Each message the user
sends is one engine run (``Engine.from_settings(..., stream=True)``): the conversation so far plus
the new message, judged by the session's verifier; a failed answer is reflected on and retried in
the same conversation. The user can mark the last answer wrong (:meth:`ChatSession.mark_wrong`):
that reruns the last turn from the same answer through the ``human`` verifier, whose first
verdict is the user's ("wrong", with the reason shown to the model), so the model reflects and
retries; the retry waits for the user's verdict in turn (:meth:`ChatSession.judge`; going on with
the conversation accepts it). Every turn is a trajectory in the log, tagged
``metadata["chat"] = {"session", "turn"}``, so chat use becomes data; sessions are listed,
resumed, renamed and exported from the log (:class:`ChatStore`).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ._engine import Engine
from ._errors import ConfigError, VerifierSpecError
from ._events import Event
from ._files import write_text_atomic
from ._settings import Settings
from ._store import TrajectoryFilter, read_trajectories
from ._types import LoopOptions, Message, Task, Trajectory, VerifierSpec
from .verifiers import build_verifier, load_spec
from .verifiers.human import HumanVerdicts, PendingReview, set_broker

__all__ = [
    "VERIFIER_KINDS",
    "ChatSession",
    "ChatStore",
    "SessionInfo",
    "chat_verifier",
]

EventCallback = Callable[[Event], Awaitable[None] | None]

#: The verifiers a chat can use: kind → what its argument is.
VERIFIER_KINDS: dict[str, str] = {
    "none": "no check: every answer is accepted",
    "json_schema": "a JSON schema the answer must match",
    "tool_schema": "tool calls must name an offered tool with valid arguments",
    "countdown": "the numbers and the target, e.g. 3 7 25 = 46",
    "numeric": "the expected number, e.g. 42",
    "code": "Python tests (assert lines) the answer's code must pass",
    "python": "a dotted path to a check function, e.g. mypkg.checks:is_polite",
    "spec": "any verifier spec, as JSON",
}


def chat_verifier(kind: str, argument: str = "") -> VerifierSpec:
    """The spec a chat's verifier picker makes of ``kind`` and the text typed for it. Raises
    :class:`VerifierSpecError` saying what is wrong with the argument."""
    arg = argument.strip()
    spec: dict[str, Any]
    if kind == "none":
        spec = {"type": "accept"}
    elif kind == "tool_schema":
        spec = {"type": "tool_schema"}
    elif kind == "json_schema":
        try:
            schema = json.loads(arg) if arg else {"type": "object"}
        except json.JSONDecodeError as exc:
            raise VerifierSpecError(f"the JSON schema is not valid JSON: {exc.msg}") from None
        spec = {"type": "json_schema", "schema": schema}
    elif kind == "countdown":
        numbers, sep, target = arg.partition("=")
        try:
            values = [int(x) for x in numbers.replace(",", " ").split()]
            goal = float(target) if "." in target else int(target)
        except ValueError:
            raise VerifierSpecError(
                f"countdown wants the numbers and the target, e.g. '3 7 25 = 46'; got {arg!r}"
            ) from None
        if not sep or not values:
            raise VerifierSpecError(f"countdown wants 'numbers = target'; got {arg!r}")
        spec = {"type": "countdown", "numbers": values, "target": goal}
    elif kind == "numeric":
        try:
            spec = {"type": "numeric", "expected": float(arg)}
        except ValueError:
            raise VerifierSpecError(f"numeric wants the expected number; got {arg!r}") from None
    elif kind == "code":
        if not arg:
            raise VerifierSpecError("code wants the tests the answer's code must pass")
        spec = {"type": "code_tests", "tests": arg}
    elif kind == "python":
        spec = {"type": "python", "path": arg}
    elif kind == "spec":
        return _checked(load_spec(arg))
    else:
        raise VerifierSpecError(
            f"unknown verifier kind {kind!r} (known: {', '.join(VERIFIER_KINDS)})"
        )
    return _checked(VerifierSpec(**spec))


def _checked(spec: VerifierSpec) -> VerifierSpec:
    build_verifier(spec)  # a bad spec fails here, with the reason
    return spec


def _family(spec: VerifierSpec) -> str:
    return {"countdown": "math", "numeric": "math", "tool_schema": "tool_call"}.get(
        spec.type, "default"
    )


def _answer(traj: Trajectory) -> dict[str, Any]:
    final = traj.attempts[-1]
    msg: dict[str, Any] = {"role": "assistant", "content": final.text or ""}
    if final.tool_calls:
        msg["tool_calls"] = [tc.model_dump() for tc in final.tool_calls]
    return msg


@dataclass
class SessionInfo:
    id: str
    title: str
    turns: int
    model: str
    updated: datetime


class ChatStore:
    """Where chat sessions live: turns in the trajectory log, titles in a small JSON file beside
    it (``<log name>.chats.json``, written atomically)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        log = settings.trajectory_log
        self.titles_path = log.with_name(log.stem + ".chats.json")

    def _titles(self) -> dict[str, str]:
        if not self.titles_path.is_file():
            return {}
        try:
            data = json.loads(self.titles_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{self.titles_path}: cannot read chat titles: {exc}") from exc
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def rename(self, session_id: str, title: str) -> None:
        titles = self._titles()
        titles[session_id] = title.strip() or "untitled"
        write_text_atomic(self.titles_path, json.dumps(titles, indent=2))

    def turns(self, session_id: str | None = None) -> dict[str, list[Trajectory]]:
        """Every chat turn in the log, by session, oldest first (unreadable lines skipped)."""
        out: dict[str, list[Trajectory]] = {}
        path = self.settings.trajectory_log
        if not path.exists():
            return out
        filt = TrajectoryFilter(metadata_key="chat")
        for traj in read_trajectories(path, filt, on_error="skip"):
            sid = str(traj.task.metadata["chat"].get("session", ""))
            if session_id is None or sid == session_id:
                out.setdefault(sid, []).append(traj)
        return out

    def sessions(self) -> list[SessionInfo]:
        """The sessions, most recently used first."""
        titles = self._titles()
        infos = []
        for sid, trajs in self.turns().items():
            first = next((m for m in trajs[0].task.messages if m.role == "user"), None)
            default = str(first.content or "")[:40] if first else "untitled"
            infos.append(
                SessionInfo(
                    sid,
                    titles.get(sid, default),
                    len({_turn(t) for t in trajs}),
                    trajs[-1].model,
                    trajs[-1].finished_at,
                )
            )
        return sorted(infos, key=lambda i: i.updated, reverse=True)


def _turn(traj: Trajectory) -> int:
    return int(traj.task.metadata["chat"].get("turn", 0))


@dataclass
class _Correction:
    """A "that was wrong" run in progress: the user's reason, then the retry's pending review."""

    why: str
    first_done: bool = False
    review: PendingReview | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class ChatSession:
    """One conversation through the engine; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        model: str | None = None,
        verifier: VerifierSpec | None = None,
        system: str | None = None,
        session_id: str | None = None,
        on_prepare: Callable[[str], None] | None = None,
    ):
        self.settings = settings
        self.id = session_id or uuid.uuid4().hex[:12]
        self.system = system
        self.verifier = verifier or VerifierSpec(type="accept")
        self.store = ChatStore(settings)
        self.history: list[dict[str, Any]] = []
        self.turns: list[Trajectory] = []
        self.engine = Engine.from_settings(
            settings, model=model, stream=True, on_prepare=on_prepare
        )
        # "That was wrong": one retry after the user's reason, shown to the model.
        self._corrector = Engine.from_settings(
            settings, model=self.engine.client, stream=True,
            options=LoopOptions(max_retries=1, show_feedback=True),
        )  # fmt: skip
        self._correction: _Correction | None = None
        set_broker(HumanVerdicts(on_pending=self._on_review))

    @property
    def model(self) -> str:
        return self.engine.model

    def configure(self, *, model: str | None = None, verifier: VerifierSpec | None = None) -> None:
        """Switch the model or the verifier; the conversation goes on from the next message."""
        if verifier is not None:
            self.verifier = _checked(verifier)
        if model is not None and model != self.model:
            self.engine = Engine.from_settings(self.settings, model=model, stream=True)
            self._corrector = Engine.from_settings(
                self.settings, model=self.engine.client, stream=True,
                options=LoopOptions(max_retries=1, show_feedback=True),
            )  # fmt: skip

    # ------------------------------------------------------------------ loading

    @classmethod
    def resume(cls, settings: Settings, session_id: str, **kw: Any) -> ChatSession:
        """A session rebuilt from the log: its conversation continues where it stopped."""
        trajs = ChatStore(settings).turns(session_id).get(session_id)
        if not trajs:
            raise ConfigError(f"no chat session {session_id!r} in {settings.trajectory_log}")
        last = trajs[-1]
        session = cls(settings, model=kw.pop("model", None) or last.model,
                      verifier=kw.pop("verifier", None) or last.task.verifier,
                      session_id=session_id, **kw)  # fmt: skip
        if session.verifier.type == "human":  # a correction run: keep the chat's own checks
            session.verifier = VerifierSpec(type="accept")
        by_turn: dict[int, Trajectory] = {}
        for t in trajs:
            by_turn[_turn(t)] = t  # a correction replaces its turn
        session.turns = [by_turn[n] for n in sorted(by_turn)]
        final = session.turns[-1]
        session.history = [m.to_openai() for m in final.task.messages if m.role != "system"]
        session.history.append(_answer(final))
        system = next((m for m in final.task.messages if m.role == "system"), None)
        session.system = str(system.content) if system is not None else None
        return session

    # ------------------------------------------------------------------ turns

    def _task(self, messages: list[dict[str, Any]], verifier: VerifierSpec, turn: int) -> Task:
        full = ([{"role": "system", "content": self.system}] if self.system else []) + messages
        return Task(
            family=_family(self.verifier),
            messages=[Message.model_validate(m) for m in full],
            verifier=verifier,
            metadata={"chat": {"session": self.id, "turn": turn}},
        )

    async def send(self, text: str, *, on_event: EventCallback | None = None) -> Trajectory:
        """One user message → one engine run; the answer joins the conversation."""
        if not text.strip():
            raise ConfigError("the message is empty")
        correction = self._correction
        if correction is not None:  # going on with the conversation accepts the retry
            if correction.review is not None:
                self.judge(True, "The user went on with the conversation.")
            await correction.done.wait()
        messages = [*self.history, {"role": "user", "content": text}]
        traj = await self.engine.run(
            self._task(messages, self.verifier, len(self.turns)), on_event=on_event
        )
        self.history = [*messages, _answer(traj)]
        self.turns.append(traj)
        return traj

    async def regenerate(self, *, on_event: EventCallback | None = None) -> Trajectory:
        """Answer the last message again (the previous answer is dropped from the conversation)."""
        if not self.turns:
            raise ConfigError("nothing to regenerate yet")
        user = self.history[-2]
        self.history = self.history[:-2]
        self.turns.pop()
        return await self.send(str(user["content"]), on_event=on_event)

    async def mark_wrong(
        self, why: str = "", *, on_event: EventCallback | None = None
    ) -> Trajectory:
        """The user says the last answer is wrong: the model reflects (seeing ``why``) and
        retries in the same conversation; the retry then waits for :meth:`judge`."""
        if not self.turns:
            raise ConfigError("there is no answer to mark wrong yet")
        last = self.turns[-1]
        question = "Is this answer right?"
        task = last.task.model_copy(
            update={"verifier": VerifierSpec(type="human", question=question)}
        )
        correction = _Correction(why.strip() or "The user marked this answer as wrong.")
        self._correction = correction
        try:
            traj = await self._corrector.run(
                task, on_event=on_event, first_attempt=last.attempts[-1]
            )
            self.turns[-1] = traj
            self.history[-1] = _answer(traj)
            return traj
        finally:
            self._correction = None
            correction.done.set()

    def _on_review(self, review: PendingReview) -> None:
        correction = self._correction
        if correction is None:
            return
        broker_submit = _broker_submit(review.key)
        if not correction.first_done:  # the answer the user just called wrong
            correction.first_done = True
            broker_submit(False, correction.why)
        else:  # the retry: the user decides
            correction.review = review

    @property
    def review_pending(self) -> bool:
        return self._correction is not None and self._correction.review is not None

    def judge(self, passed: bool, feedback: str = "") -> None:
        """The user's verdict on the retry after :meth:`mark_wrong`."""
        correction = self._correction
        if correction is None or correction.review is None:
            raise ConfigError("no answer is waiting for your verdict")
        key, correction.review = correction.review.key, None
        _broker_submit(key)(passed, feedback)

    def clear(self) -> None:
        """Forget the conversation (the log keeps it); the next message starts a new turn list."""
        self.history = []
        self.turns = []
        self.id = uuid.uuid4().hex[:12]

    def rename(self, title: str) -> None:
        self.store.rename(self.id, title)

    # ------------------------------------------------------------------ export

    def markdown(self) -> str:
        """The session as Markdown: every message, and each self-correction in full."""
        lines = [
            f"# Chat with {self.model}",
            "",
            f"Verifier: `{json.dumps(self.verifier.to_dict())}`",
            "",
        ]
        for traj in self.turns:
            lines += [f"**You:** {traj.task.user_text()}", ""]
            for i, (attempt, verdict) in enumerate(zip(traj.attempts, traj.verdicts, strict=False)):
                mark = "passed" if verdict.passed else "failed"
                label = "Answer" if i == 0 else "Retry"
                lines += [f"**{label} ({mark}):** {attempt.text or ''}", ""]
                if not verdict.passed and verdict.feedback:
                    lines += [f"> verifier: {verdict.feedback}", ""]
                if i < len(traj.reflections):
                    lines += [f"> reflection: {traj.reflections[i].text or ''}", ""]
        return "\n".join(lines)


def _broker_submit(key: str) -> Callable[[bool, str], None]:
    from .verifiers.human import get_broker

    def submit(passed: bool, feedback: str) -> None:
        get_broker().submit(key, passed, feedback)

    return submit
