"""The chat: the library (ChatSession, ChatStore, chat_verifier) and the Textual app driven by
Pilot through whole conversations, with snapshots of the main screens. A scripted model here;
tests/test_chat_tmux.py runs ``rrr chat`` for real in tmux on the embedded model."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from rrr_agent import (
    ChatSession,
    ChatStore,
    ModelOutput,
    ScriptedModel,
    Settings,
    TrajectoryStore,
    VerifierSpecError,
    chat_verifier,
    load_settings,
)
from rrr_agent._providers import register_provider

pytest.importorskip("textual")  # the 'tui' extra; make test installs it

from rrr_tui.app import ChatApp, HelpScreen, TextDialog, Turn

PAPER_MATH_START = "You tried solving the problem"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(log_path=tmp_path / "chat.jsonl")


# ------------------------------------------------------------------------------ the library


def test_chat_verifier_kinds_and_errors() -> None:
    assert chat_verifier("none").to_dict() == {"type": "accept"}
    assert chat_verifier("numeric", "42").to_dict()["expected"] == 42.0
    assert chat_verifier("countdown", "3 7 25 = 46").to_dict() == {
        "type": "countdown", "numbers": [3, 7, 25], "target": 46,
    }  # fmt: skip
    assert chat_verifier("json_schema", '{"type": "integer"}').to_dict()["schema"] == {
        "type": "integer"
    }
    assert chat_verifier("spec", '{"type": "exact", "expected": "x"}').type == "exact"
    for kind, arg, message in [
        ("numeric", "lots", "expected number"),
        ("countdown", "3 7 25", "the numbers and the target"),
        ("json_schema", "{oops", "not valid JSON"),
        ("python", "no.such.module:fn", "cannot import"),
        ("spec", '{"type": "nope"}', "unknown verifier type"),
        ("wizard", "", "unknown verifier kind"),
    ]:
        with pytest.raises(VerifierSpecError, match=message):
            chat_verifier(kind, arg)


async def test_session_turns_self_correct_and_persist(settings: Settings) -> None:
    model = ScriptedModel(["41", "I added wrong.", "42", "Yes: 17 + 25 = 42."])
    session = ChatSession(settings, model=model.model, verifier=chat_verifier("numeric", "42"))
    first = await session.send("What is 17 + 25?")
    assert first.outcome.value == "passed_after_retry"
    assert model.requests[1].messages[-1]["content"].startswith(PAPER_MATH_START)
    await session.send("Are you sure?")
    # The second turn saw the clean conversation: the question and the final answer only.
    assert [m["content"] for m in model.requests[3].messages] == [
        "What is 17 + 25?", "42", "Are you sure?",
    ]  # fmt: skip
    logged = list(TrajectoryStore(settings.trajectory_log).read())
    assert [t.task.metadata["chat"] for t in logged] == [
        {"session": session.id, "turn": 0}, {"session": session.id, "turn": 1},
    ]  # fmt: skip
    session.rename("Sums")
    (info,) = ChatStore(settings).sessions()
    assert (info.id, info.title, info.turns) == (session.id, "Sums", 2)
    md = session.markdown()
    assert "**You:** What is 17 + 25?" in md and "**You:** Are you sure?" in md  # each turn's own
    assert "**Answer (failed):** 41" in md and "> reflection: I added wrong." in md
    assert "**Retry (passed):** 42" in md
    # Resumed from the log, the conversation goes on where it stopped.
    again = ChatSession.resume(settings, session.id, model=ScriptedModel(["ok"]).model)
    assert [m["content"] for m in again.history] == [
        "What is 17 + 25?", "42", "Are you sure?", "Yes: 17 + 25 = 42.",
    ]  # fmt: skip
    assert again.verifier.type == "numeric"


async def test_marking_an_answer_wrong_runs_the_human_verifier(settings: Settings) -> None:
    model = ScriptedModel(["The capital of Australia is Sydney.", "Sydney is the largest city, "
                           "not the capital.", "Canberra."])  # fmt: skip
    session = ChatSession(settings, model=model.model)
    await session.send("Capital of Australia?")
    correction = asyncio.create_task(session.mark_wrong("Sydney is not the capital."))
    for _ in range(200):  # until the retry waits for the user's verdict
        if session.review_pending:
            break
        await asyncio.sleep(0.01)
    assert session.review_pending
    # The model saw the user's reason before reflecting.
    assert "Sydney is not the capital." in model.requests[1].messages[-1]["content"]
    session.judge(True, "Right.")
    traj = await correction
    assert [v.passed for v in traj.verdicts] == [False, True]
    assert [v.verifier for v in traj.verdicts] == ["human", "human"]
    assert traj.verdicts[0].feedback == "Sydney is not the capital."
    assert session.history[-1]["content"] == "Canberra."
    logged = list(TrajectoryStore(settings.trajectory_log).read())
    assert len(logged) == 2 and logged[1].task.verifier.type == "human"
    assert logged[1].task.metadata["chat"]["turn"] == 0  # it replaces turn 0
    # Logged as data; the online trainer skips it, naming why (no automatic reward).
    from rrr_trainer import build_failure_set

    _, _, report = build_failure_set([settings.trajectory_log], holdout_fraction=0.0)
    assert report.skipped["judged by a person (no automatic reward for retries)"] == 1


async def test_going_on_accepts_a_pending_retry(settings: Settings) -> None:
    model = ScriptedModel(["A", "Should be B.", "B", "C"])
    session = ChatSession(settings, model=model.model)
    await session.send("first?")
    correction = asyncio.create_task(session.mark_wrong(""))
    for _ in range(200):
        if session.review_pending:
            break
        await asyncio.sleep(0.01)
    await session.send("next?")  # accepts the retry first, then goes on
    traj = await correction
    assert traj.verdicts[-1].passed
    assert traj.verdicts[-1].feedback == "The user went on with the conversation."
    assert [m["content"] for m in session.history] == ["first?", "B", "next?", "C"]


# ------------------------------------------------------------------------------ the app


async def _ready(app: ChatApp, pilot: Any) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause()


async def _say(app: ChatApp, pilot: Any, text: str) -> None:
    app.query_one("#prompt").focus()
    await pilot.press(*text)
    await pilot.press("enter")
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause(0.1)


def _screen_text(app: ChatApp) -> str:
    return "\n".join(str(w.render()) for w in app.query("Static") if w.display)


async def test_app_conversation_with_self_correction_and_wrong_key(settings: Settings) -> None:
    model = ScriptedModel([
        "41", "I added wrong.", "42",                        # turn 1: numeric check, retry
        "Paris is in Italy.",                                  # turn 2
        "Paris is in France, not Italy.", "France.",           # after ctrl+r
    ])  # fmt: skip
    app = ChatApp(settings, model=model.model, verifier_kind="numeric", verifier_arg="42")
    async with app.run_test(size=(80, 24)) as pilot:
        await _ready(app, pilot)
        await _say(app, pilot, "What is 17+25?")
        turn = app.query(Turn).last()
        titles = [c.title for c in turn.query("Collapsible")]
        assert titles == ["✗ attempt 1", "↻ reflection"]
        text = _screen_text(app)
        assert "Retry: 42" in text and "✓ verified (numeric)" in text
        assert "last turn 2 attempt(s)" in text
        # Switch to no check, then tell the model its answer is wrong.
        app.session.configure(verifier=chat_verifier("none"))  # type: ignore[union-attr]
        await _say(app, pilot, "Where is Paris?")
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert isinstance(app.screen, TextDialog)
        await pilot.press(*"wrong country", "enter")
        for _ in range(300):
            await pilot.pause(0.02)
            if app.session is not None and app.session.review_pending:
                break
        assert app.session is not None and app.session.review_pending
        assert "is the retry right?" in _screen_text(app)
        await pilot.press("ctrl+y")
        await app.workers.wait_for_complete()
        await pilot.pause(0.1)
        text = _screen_text(app)
        assert "Retry: France." in text and "✓ you said right" in text
    logged = list(TrajectoryStore(settings.trajectory_log).read())
    assert [t.task.verifier.type for t in logged] == ["numeric", "accept", "human"]
    assert logged[2].verdicts[0].feedback == "wrong country"


async def test_a_message_sent_while_starting_waits_for_the_model(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded model can take minutes to prepare: what is typed meanwhile is kept and sent
    once the session is ready, and a narrow status line still says it is starting."""
    import threading

    import rrr_tui.app as app_module

    gate = threading.Event()

    class SlowSession(ChatSession):
        def __init__(self, *args: Any, **kw: Any) -> None:
            assert gate.wait(30), "the test never let the session start"
            super().__init__(*args, **kw)

    monkeypatch.setattr(app_module, "ChatSession", SlowSession)
    model = ScriptedModel(["Hello there."])
    app = ChatApp(settings, model=model.model)
    async with app.run_test(size=(60, 24)) as pilot:
        await pilot.pause(0.1)
        status = str(app.query_one("#status").render())
        assert status.startswith("starting…"), status
        app.query_one("#prompt").focus()
        await pilot.press(*"hi", "enter")
        await pilot.pause(0.1)
        assert "sent once the model is ready" in str(app.query_one("#status").render())
        assert app.query_one("#prompt").value == ""  # type: ignore[attr-defined]
        assert not list(app.query(Turn))
        gate.set()
        for _ in range(200):
            await pilot.pause(0.05)
            if app.session is not None and app.session.turns:
                break
        await app.workers.wait_for_complete()
        await pilot.pause(0.1)
        assert "Hello there." in _screen_text(app)
        assert "last turn 1 attempt(s)" in str(app.query_one("#status").render())
    (traj,) = TrajectoryStore(settings.trajectory_log).read()
    assert traj.attempts[0].text == "Hello there."


def _slow_provider(pieces: list[str], delay: float) -> str:
    """A provider that streams pieces with a delay between them (a real socket is not needed to
    watch the app draw tokens as they come)."""

    async def complete(name: str, messages: Any, **kw: Any) -> ModelOutput:
        return ModelOutput(text="".join(pieces))

    async def stream(name: str, messages: Any, *, on_delta: Any, **kw: Any) -> ModelOutput:
        for piece in pieces:
            await asyncio.sleep(delay)
            sent = on_delta(piece)
            if asyncio.iscoroutine(sent):
                await sent
        return ModelOutput(text="".join(pieces))

    register_provider("slow", complete, stream)
    return "slow/model"


async def test_app_streams_tokens_and_escape_cancels(settings: Settings) -> None:
    model = _slow_provider(
        ["Once ", "upon ", "a ", "time ", "there ", "was ", "a ", "model."], 0.15
    )
    app = ChatApp(settings, model=model)
    async with app.run_test(size=(80, 24)) as pilot:
        await _ready(app, pilot)
        app.query_one("#prompt").focus()
        await pilot.press(*"story", "enter")
        for _ in range(100):  # partial text is on screen before the answer is done
            await pilot.pause(0.05)
            live = str(app.query(Turn).last().live.render())
            if "upon" in live:
                break
        assert "upon" in live and "model." not in live
        await app.workers.wait_for_complete()
        await pilot.pause(0.1)
        assert "Once upon a time there was a model." in _screen_text(app)
        # A second request, cancelled with escape: nothing typed is lost.
        await pilot.press(*"again", "enter")
        await pilot.pause(0.3)
        await pilot.press("escape")
        await app.workers.wait_for_complete()
        await pilot.pause(0.1)
        assert "cancelled" in str(app.query(Turn).last().live.render())
        assert app.query_one("#prompt").value == "again"  # type: ignore[attr-defined]
    assert len(list(TrajectoryStore(settings.trajectory_log).read())) == 1


async def test_app_shows_errors_as_notifications(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = load_settings(log_path=tmp_path / "chat.jsonl", api_base=f"http://127.0.0.1:{port}/v1",
                             transport_tries=1, timeout_s=5)  # fmt: skip
    app = ChatApp(settings, model="hosted_vllm/down")
    async with app.run_test(size=(80, 24)) as pilot:
        await _ready(app, pilot)
        await _say(app, pilot, "hello?")
        notes = [(n.title, n.message) for n in app._notifications]
        assert any(title == "ModelConnectionError" for title, _ in notes), notes
        assert app.query_one("#prompt").value == "hello?"  # type: ignore[attr-defined]
        assert app.is_running  # no crash
        # A bad verifier spec is refused with a notification too; the chat goes on.
        await pilot.press("f3")
        await pilot.pause()
        app.screen.query_one("#kind").value = "numeric"  # type: ignore[attr-defined]
        app.screen.query_one("#arg").focus()
        await pilot.press(*"lots", "enter")
        await pilot.pause()
        bad = [n for n in app._notifications if n.title == "bad verifier"]
        assert bad and "expected number" in bad[0].message
        assert app.session is not None and app.session.verifier.type == "accept"
    assert not (tmp_path / "chat.jsonl").exists()  # an infrastructure error is never a turn


async def test_app_resumes_a_session_and_exports_it(settings: Settings, tmp_path: Path) -> None:
    first = ChatApp(settings, model=ScriptedModel(["hello there"]).model)
    async with first.run_test(size=(80, 24)) as pilot:
        await _ready(first, pilot)
        await _say(first, pilot, "hi")
        session_id = first.session.id  # type: ignore[union-attr]
    again = ChatApp(settings, model=ScriptedModel(["still here"]).model, session_id=session_id)
    async with again.run_test(size=(100, 30)) as pilot:
        await _ready(again, pilot)
        await pilot.pause(0.2)
        assert "hello there" in _screen_text(again)
        await pilot.press("ctrl+b")  # the sessions panel lists it
        await pilot.pause()
        assert len(again.query("#sessions ListItem")) == 1
        await _say(again, pilot, "still there?")
        assert "still here" in _screen_text(again)
        again.action_export()
        await pilot.pause()
    export = settings.trajectory_log.parent / "exports" / f"chat-{session_id}.md"
    text = export.read_text()
    assert "**You:** hi" in text and "**You:** still there?" in text


async def test_app_help_and_history_recall(settings: Settings) -> None:
    app = ChatApp(settings, model=ScriptedModel(["one", "two"]).model)
    async with app.run_test(size=(80, 24)) as pilot:
        await _ready(app, pilot)
        await _say(app, pilot, "first")
        await _say(app, pilot, "second")
        await pilot.press("up")
        assert app.query_one("#prompt").value == "second"  # type: ignore[attr-defined]
        await pilot.press("up")
        assert app.query_one("#prompt").value == "first"  # type: ignore[attr-defined]
        await pilot.press("down", "down")
        assert app.query_one("#prompt").value == ""  # type: ignore[attr-defined]
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)


# ------------------------------------------------------------------------------ snapshots


def _conversation_app(tmp_path: Path) -> ChatApp:
    settings = load_settings(log_path=tmp_path / "snap.jsonl")
    model = ScriptedModel(["41", "I added 17 and 25 wrong: 7 + 5 is 12, so it is 42.", "42"],
                          name="snapshot")  # fmt: skip
    return ChatApp(settings, model=model.model, verifier_kind="numeric", verifier_arg="42")


def test_snapshot_self_correction(snap_compare: Any, tmp_path: Path) -> None:
    async def run(pilot: Any) -> None:
        await _ready(pilot.app, pilot)
        await _say(pilot.app, pilot, "What is 17 + 25?")

    assert snap_compare(_conversation_app(tmp_path), terminal_size=(80, 24), run_before=run)


def test_snapshot_empty_chat_and_help(snap_compare: Any, tmp_path: Path) -> None:
    async def run(pilot: Any) -> None:
        await _ready(pilot.app, pilot)
        await pilot.press("f1")
        await pilot.pause()

    app = ChatApp(load_settings(log_path=tmp_path / "h.jsonl"),
                  model=ScriptedModel([], name="snapshot-help").model)  # fmt: skip
    assert snap_compare(app, terminal_size=(80, 24), run_before=run)


def test_snapshot_verifier_picker(snap_compare: Any, tmp_path: Path) -> None:
    async def run(pilot: Any) -> None:
        await _ready(pilot.app, pilot)
        await pilot.press("f3")
        await pilot.pause()

    app = ChatApp(load_settings(log_path=tmp_path / "v.jsonl"),
                  model=ScriptedModel([], name="snapshot-picker").model)  # fmt: skip
    assert snap_compare(app, terminal_size=(80, 24), run_before=run)


async def _colors(app: ChatApp) -> set[str]:
    import re

    async with app.run_test(size=(80, 24)) as pilot:
        await _ready(app, pilot)
        await _say(app, pilot, "What is 17 + 25?")
        svg = app.export_screenshot()
    grays = {c for c in re.findall(r"#([0-9a-fA-F]{6})\b", svg) if c[0:2] == c[2:4] == c[4:6]}
    # The screenshot's frame: three window dots and its default text color.
    frame = {"ff5f57", "febc2e", "28c840", "c5c8c6"}
    return {c.lower() for c in re.findall(r"#([0-9a-fA-F]{6})\b", svg)} - grays - frame


async def test_no_color_gives_a_grayscale_screen(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert await _colors(_conversation_app(tmp_path / "color"))  # green badges, blue borders...
    monkeypatch.setenv("NO_COLOR", "1")
    app = _conversation_app(tmp_path / "gray")
    assert app.no_color
    assert await _colors(app) == set()
