"""The terminal chat: watch the model correct itself, and tell it when it is wrong.

A shell over :class:`rrr_agent.ChatSession` (the library holds the logic): it sends messages,
renders the engine's events as they come (tokens in batches, each attempt's verdict, a failed
attempt, its reflection and the retry as collapsible blocks with badges) and never blocks: every
model call runs in a worker, and Esc cancels it.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.command import Hit, Hits, Provider
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import (
    Button,
    Collapsible,
    Footer,
    Input,
    Label,
    ListItem,
    ListView,
    Select,
    Static,
)
from textual.worker import Worker, WorkerState

from rrr_agent import (
    VERIFIER_KINDS,
    AttemptFinished,
    ChatSession,
    ChatStore,
    Event,
    ReflectionFinished,
    ReflectionStarted,
    RetryStarted,
    RRRError,
    Settings,
    TokenDelta,
    Trajectory,
    TransportRetry,
    Verified,
    chat_verifier,
)

__all__ = ["ChatApp"]

KEYS: list[tuple[str, str]] = [
    ("enter", "send the message"),
    ("↑ / ↓", "earlier / later prompts"),
    ("escape", "cancel the answer being written; close a dialog; go back"),
    ("ctrl+r", "the last answer is wrong: say why (optional); the model reflects and retries"),
    ("ctrl+y", "the retry is right (going on with the conversation says so too)"),
    ("ctrl+n", "new chat"),
    ("ctrl+b", "show or hide the sessions"),
    ("f2", "pick the model"),
    ("f3", "pick the verifier"),
    ("f5", "copy the last answer"),
    ("ctrl+p", "commands: new chat, rename, export, regenerate, clear, ..."),
    ("f1", "this help"),
    ("ctrl+q", "quit"),
]


def help_text() -> Text:
    intro = ("rrr chat: the model answers, its answer is checked, and a wrong one is reflected on "
             "and retried in the same conversation.\n\n")  # fmt: skip
    parts: list[Any] = [intro]
    for key, what in KEYS:
        parts += [(f"{key:<9}", "bold"), f"{what}\n"]
    parts.append("\nEvery turn is logged as a trajectory, so chat use becomes training data.")
    return Text.assemble(*parts)


# ---------------------------------------------------------------------------------- messages


class Turn(Vertical):
    """One user message and everything the model did about it."""

    DEFAULT_CSS = """
    Turn { height: auto; margin: 0 0 1 0; }
    Turn .body { height: auto; }
    Turn .user { color: $text; background: $boost; padding: 0 1; }
    Turn .live { color: $text-muted; padding: 0 1; }
    Turn .answer { padding: 0 1; }
    Turn .badge { padding: 0 1; color: $text-muted; }
    Turn .badge.ok { color: $success; }
    Turn .badge.bad { color: $error; }
    Turn Collapsible { padding: 0; margin: 0; border: none; }
    """

    def __init__(self, text: str, **kw: Any):
        super().__init__(**kw)
        self.text = text
        self.buffers: dict[tuple[str, int], str] = {}
        self.live_key: tuple[str, int] | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text.assemble(("You: ", "bold"), self.text), classes="user")
        with Vertical(classes="body"):
            yield Static("", classes="live")

    @property
    def body(self) -> Vertical:
        return self.query_one(".body", Vertical)

    @property
    def live(self) -> Static:
        """The text being written; made again when a finished turn is reopened (ctrl+r)."""
        found = self.body.query(".live")
        if found:
            return found.first(Static)
        live = Static("", classes="live")
        self.body.mount(live)
        return live

    def note(self, text: Text) -> None:
        """Put a note where the text was being written, and stop drawing tokens there."""
        self.live_key = None
        if self.is_attached and self.query(".body"):  # not while the app is closing
            self.live.update(text)

    def start(self, stage: str, index: int) -> None:
        self.live_key = (stage, index)
        self.buffers[self.live_key] = ""
        label = "thinking about what went wrong…" if stage == "reflection" else "answering…"
        self.live.update(Text(label, style="dim"))

    def add(self, stage: str, index: int, text: str) -> None:
        key = (stage, index)
        self.buffers[key] = self.buffers.get(key, "") + text
        self.live_key = key

    def flush(self) -> None:
        if self.live_key is not None and self.buffers.get(self.live_key):
            self.live.update(Text(self.buffers[self.live_key]))

    def show(self, traj: Trajectory, *, pending_review: bool = False) -> None:
        """Replace the live text with the finished turn: attempts, verdicts, reflections."""
        self.live_key = None
        self.buffers.clear()
        self.body.remove_children()
        blocks: list[Any] = []
        last = len(traj.attempts) - 1
        for i, (attempt, verdict) in enumerate(zip(traj.attempts, traj.verdicts, strict=False)):
            text = attempt.text or ""
            if attempt.tool_calls:
                calls = ", ".join(f"{c.function.name}({c.function.arguments})"
                                  for c in attempt.tool_calls)  # fmt: skip
                text = (text + "\n" if text else "") + f"[tool calls] {calls}"
            badge = _badge(verdict.passed, verdict.verifier, verdict.feedback)
            if i < last:
                title = f"✗ attempt {i + 1}" if not verdict.passed else f"attempt {i + 1}"
                blocks.append(Collapsible(Static(Text(text), classes="answer"),
                                          Static(badge, classes="badge bad"), title=title,
                                          collapsed=True, classes="failed"))  # fmt: skip
                if i < len(traj.reflections):
                    reflection = traj.reflections[i].text or "(empty)"
                    blocks.append(Collapsible(Static(Text(reflection), classes="answer"),
                                              title="↻ reflection", collapsed=False,
                                              classes="reflection"))  # fmt: skip
            else:
                answer = Text.assemble(("Retry: ", "bold") if i > 0 else "", text)
                blocks.append(Static(answer, classes="answer final"))
                if pending_review:
                    badge = Text("? is this right? ctrl+y yes · ctrl+r no", style="yellow")
                ok = "ok" if verdict.passed else "bad"
                blocks.append(Static(badge, classes=f"badge {ok}"))
        self.body.mount(*blocks)


def _badge(passed: bool, verifier: str, feedback: str) -> Text:
    if verifier == "accept":
        return Text("– no check", style="dim")
    if verifier == "human":
        return (
            Text("✓ you said right", style="green")
            if passed
            else Text.assemble(("✗ you said wrong ", "red"), feedback)
        )
    if passed:
        return Text.assemble(("✓ verified ", "green"), (f"({verifier})", "dim"))
    return Text.assemble(("✗ failed ", "red"), (f"({verifier}) ", "dim"), feedback)


# ---------------------------------------------------------------------------------- dialogs


class TextDialog(ModalScreen[str | None]):
    """Ask for one line of text; escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "cancel")]
    DEFAULT_CSS = """
    TextDialog { align: center middle; }
    TextDialog > Vertical { width: 70; height: auto; border: round $accent; padding: 1 2;
                            background: $surface; }
    """

    def __init__(self, title: str, placeholder: str = "", value: str = ""):
        super().__init__()
        self.title_text = title
        self.placeholder = placeholder
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text)
            yield Input(value=self.value, placeholder=self.placeholder, id="dialog-input")

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)


class ModelDialog(ModalScreen[tuple[str, str] | None]):
    """Pick the model string and, optionally, an OpenAI-compatible base URL."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "cancel")]
    DEFAULT_CSS = """
    ModelDialog { align: center middle; }
    ModelDialog > Vertical { width: 72; height: auto; border: round $accent; padding: 1 2;
                             background: $surface; }
    """

    def __init__(self, model: str, api_base: str):
        super().__init__()
        self.model, self.api_base = model, api_base

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Model (litellm string, e.g. local/gemma-3-270m, hosted_vllm/rrr)")
            yield Input(value=self.model, id="model")
            yield Label("API base (empty: the provider's default)")
            yield Input(value=self.api_base, id="api-base")
            yield Button("Use this model", id="ok", variant="primary")

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def done(self) -> None:
        model = self.query_one("#model", Input).value.strip()
        if model:
            self.dismiss((model, self.query_one("#api-base", Input).value.strip()))


class VerifierDialog(ModalScreen[tuple[str, str] | None]):
    """Pick how answers are checked."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "cancel")]
    DEFAULT_CSS = """
    VerifierDialog { align: center middle; }
    VerifierDialog > Vertical { width: 76; height: auto; border: round $accent; padding: 1 2;
                                background: $surface; }
    """

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Verifier")
            options = [(f"{k}: {v}", k) for k, v in VERIFIER_KINDS.items()]
            yield Select(options, value=self.kind, allow_blank=False, id="kind")
            yield Label(VERIFIER_KINDS[self.kind], id="hint")
            yield Input(placeholder="argument (see above)", id="arg")
            yield Button("Use this verifier", id="ok", variant="primary")

    @on(Select.Changed)
    def changed(self, event: Select.Changed) -> None:
        self.query_one("#hint", Label).update(VERIFIER_KINDS[str(event.value)])

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def done(self) -> None:
        kind = str(self.query_one("#kind", Select).value)
        self.dismiss((kind, self.query_one("#arg", Input).value))


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "back"),
        Binding("f1", "dismiss", "back"),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 80; max-height: 22; border: round $accent; padding: 0 1;
                                  background: $surface; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(help_text())


class ChatCommands(Provider):
    """The command palette's chat commands."""

    COMMANDS: ClassVar[list[tuple[str, str, str]]] = [
        ("New chat", "new_chat", "start a new conversation"),
        ("Rename chat", "rename", "give this conversation a title"),
        ("Export chat to Markdown", "export", "write the conversation to a Markdown file"),
        ("Regenerate last answer", "regenerate", "answer the last message again"),
        ("Clear chat", "clear", "clear the screen and start over"),
        ("Pick model", "pick_model", "change the model"),
        ("Pick verifier", "pick_verifier", "change how answers are checked"),
        ("Copy last answer", "copy_last", "copy the last answer to the clipboard"),
        ("Mark last answer wrong", "wrong", "the model reflects and retries"),
    ]

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        app = self.app
        assert isinstance(app, ChatApp)
        for name, action, help_text in self.COMMANDS:
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), getattr(app, f"action_{action}"),
                          help=help_text)  # fmt: skip


# ---------------------------------------------------------------------------------- the app


class ChatApp(App[None]):
    """``rrr chat``."""

    TITLE = "rrr chat"
    COMMANDS = App.COMMANDS | {ChatCommands}
    CSS = """
    Screen { layout: vertical; }
    #main { height: 1fr; }
    #sessions { width: 28; border-right: solid $panel; }
    #sessions.hidden { display: none; }
    #chat { height: 1fr; padding: 0 1; }
    #prompt { dock: bottom; }
    #status { height: 1; background: $panel; color: $text-muted; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "quit", priority=True),
        Binding("f1", "help", "help"),
        Binding("ctrl+n", "new_chat", "new chat"),
        Binding("escape", "cancel", "cancel", show=False),
        Binding("ctrl+r", "wrong", "wrong"),
        Binding("ctrl+y", "right", "right", show=False),
        Binding("ctrl+b", "toggle_sessions", "sessions", show=False),
        Binding("f2", "pick_model", "model"),
        Binding("f3", "pick_verifier", "verifier"),
        Binding("f5", "copy_last", "copy", show=False),
    ]

    def __init__(
        self,
        settings: Settings,
        *,
        model: str | None = None,
        verifier_kind: str = "none",
        verifier_arg: str = "",
        session_id: str | None = None,
        system: str | None = None,
    ):
        super().__init__()
        self.settings = settings
        self.start_model = model
        self.verifier_kind = verifier_kind
        self.verifier_arg = verifier_arg
        self.start_session = session_id
        self.system = system
        self.session: ChatSession | None = None
        self.store = ChatStore(settings)
        self.history: list[str] = []
        self.history_pos = 0
        self.turn: Turn | None = None
        self.tokens = 0
        self.last_attempts = 0
        self.worker: Worker[Any] | None = None
        #: The turn being corrected after ctrl+r (its retry may wait for the user's verdict).
        self.correcting: Turn | None = None
        self.correction: Worker[Any] | None = None
        self.asked = False
        #: True while the session is being built; a message sent then waits in ``queued``.
        self.starting = False
        self.queued: str | None = None

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield ListView(id="sessions", classes="hidden")
            with Vertical():
                yield VerticalScroll(id="chat")
                yield Input(placeholder="Message (enter to send, F1 for help)", id="prompt")
        yield Static("", id="status")
        yield Footer()

    async def on_mount(self) -> None:
        self.set_interval(1 / 15, self._draw_tokens)  # tokens are drawn in batches
        self.query_one("#prompt", Input).focus()
        self._start_session()

    @work(exclusive=True, group="session", thread=False)
    async def _start_session(self) -> None:
        """Build (or resume) the session without blocking the screen: the embedded model may
        have to be prepared first."""
        self.starting = True
        self._status("starting…")
        try:
            spec = chat_verifier(self.verifier_kind, self.verifier_arg)
            if self.start_session:
                session = await asyncio.to_thread(
                    ChatSession.resume, self.settings, self.start_session, model=self.start_model
                )
            else:
                session = await asyncio.to_thread(
                    ChatSession, self.settings, model=self.start_model, verifier=spec,
                    system=self.system,
                )  # fmt: skip
        except RRRError as exc:
            self.starting = False
            self.queued = None
            self.notify(str(exc), title="cannot start the chat", severity="error", timeout=15)
            self._status("no session: pick a model with F2")
            return
        self.starting = False
        self.session = session
        self._render_history()
        self._status()
        if self.queued is not None:  # typed while the model was being prepared
            text, self.queued = self.queued, None
            self._send(text)

    # ------------------------------------------------------------------ status

    def _status(self, extra: str = "") -> None:
        s = self.session
        model = s.model if s else (self.start_model or "…")
        verifier = s.verifier.type if s else self.verifier_kind
        # What is happening now comes first, so a narrow terminal still shows it.
        parts = [extra] if extra else []
        parts += [
            model,
            f"verifier {verifier}",
            f"{self.tokens} tokens",
            f"last turn {self.last_attempts} attempt(s)",
        ]
        self.query_one("#status", Static).update(Text(" · ".join(parts)))

    def _draw_tokens(self) -> None:
        if self.turn is not None:
            self.turn.flush()
        session, turn = self.session, self.correcting
        if session is not None and turn is not None and session.review_pending and not self.asked:
            self.asked = True
            turn.flush()
            self._show_pending(turn)

    def _busy(self) -> bool:
        return self.worker is not None and self.worker.state == WorkerState.RUNNING

    def _render_history(self) -> None:
        chat = self.query_one("#chat", VerticalScroll)
        chat.remove_children()
        if self.session is None:
            return
        for traj in self.session.turns:
            turn = Turn(traj.task.user_text())
            chat.mount(turn)
            turn.call_after_refresh(turn.show, traj)
            self.tokens += traj.total_usage().total_tokens
        chat.scroll_end(animate=False)

    # ------------------------------------------------------------------ sending

    @on(Input.Submitted, "#prompt")
    def submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        if self.session is None and self.starting and self.queued is None:
            event.input.value = ""
            self.queued = text
            self._status("starting… your message is sent once the model is ready")
            return
        if self.session is None:
            self.notify("no model yet: pick one with F2", severity="warning")
            return
        if self._busy():
            self.notify("still answering: wait, or press escape to cancel", severity="warning")
            return
        event.input.value = ""
        self._send(text)

    def _send(self, text: str) -> None:
        self.history.append(text)
        self.history_pos = len(self.history)
        self.turn = Turn(text)
        chat = self.query_one("#chat", VerticalScroll)
        chat.mount(self.turn)
        chat.scroll_end(animate=False)
        self.worker = self._run_turn(text, self.turn, "send")

    def _run_turn(self, text: str, turn: Turn, mode: str, why: str = "") -> Worker[None]:
        if mode == "wrong":  # its own group: going on with the chat must not cancel it
            return self._correct(turn, why)
        return self._answer(text, turn, mode)

    @work(exclusive=True, group="correction")
    async def _correct(self, turn: Turn, why: str) -> None:
        self.correcting, self.asked = turn, False
        try:
            await self._turn_body("", turn, "wrong", why)
        finally:
            self.correcting = None

    @work(exclusive=True, group="turn")
    async def _answer(self, text: str, turn: Turn, mode: str) -> None:
        await self._turn_body(text, turn, mode, "")

    async def _turn_body(self, text: str, turn: Turn, mode: str, why: str) -> None:
        session = self.session
        assert session is not None

        async def on_event(event: Event) -> None:
            self._on_engine_event(turn, event)

        try:
            if mode == "send":
                traj = await session.send(text, on_event=on_event)
            elif mode == "regenerate":
                traj = await session.regenerate(on_event=on_event)
            else:
                traj = await session.mark_wrong(why, on_event=on_event)
        except asyncio.CancelledError:
            turn.note(Text("cancelled", style="dim"))
            if mode == "send" and not self.query_one("#prompt", Input).value:
                self.query_one("#prompt", Input).value = text  # nothing typed is lost
            raise
        except RRRError as exc:
            turn.note(Text("no answer", style="red"))
            self.notify(str(exc), title=type(exc).__name__, severity="error", timeout=15)
            if mode == "send" and not self.query_one("#prompt", Input).value:
                self.query_one("#prompt", Input).value = text
            return
        self.tokens += traj.total_usage().total_tokens
        self.last_attempts = len(traj.attempts)
        turn.show(traj)
        self._status()
        chat = self.query_one("#chat", VerticalScroll)
        self.call_after_refresh(chat.scroll_end, animate=False)

    def _on_engine_event(self, turn: Turn, event: Event) -> None:
        if isinstance(event, TokenDelta):
            turn.add(event.stage, event.index, event.text)
        elif isinstance(event, ReflectionStarted):
            turn.start("reflection", event.after_attempt)
        elif isinstance(event, RetryStarted):
            turn.start("attempt", event.index)
        elif isinstance(event, TransportRetry):
            self._status(f"retrying after {event.error_type}")
        elif isinstance(event, Verified) and not event.verdict.passed:
            self._status(f"attempt {event.verdict.attempt_index + 1} failed; reflecting")
        elif isinstance(event, AttemptFinished | ReflectionFinished):
            turn.flush()

    def _show_pending(self, turn: Turn) -> None:
        retry = turn.buffers.get(turn.live_key, "") if turn.live_key else ""
        question = ("? is the retry right? ctrl+y yes · ctrl+r no", "yellow")
        turn.note(Text.assemble(("Retry: ", "bold"), retry, "\n", question))
        self._status("waiting for your verdict")

    # ------------------------------------------------------------------ actions

    def action_cancel(self) -> None:
        for worker in (self.worker, self.correction):
            if worker is not None and worker.state == WorkerState.RUNNING:
                worker.cancel()
                self._status("cancelled")

    def action_wrong(self) -> None:
        session = self.session
        if session is None or not session.turns:
            self.notify("there is no answer to mark wrong yet", severity="warning")
            return
        if session.review_pending:
            session.judge(False, "The user said the retry is wrong too.")
            return
        if self._busy() or (self.correction is not None and self.correction.is_running):
            self.notify("still answering: wait, or press escape to cancel", severity="warning")
            return

        def go(why: str | None) -> None:
            if why is None or self.session is None:
                return
            self.turn = self.screen_stack[0].query(Turn).last()
            self.correction = self._run_turn("", self.turn, "wrong", why)

        self.push_screen(TextDialog("Why is it wrong? (optional; enter to go on)",
                                    "e.g. the total is 42, not 41"), go)  # fmt: skip

    def action_right(self) -> None:
        if self.session is not None and self.session.review_pending:
            self.session.judge(True, "The user said the retry is right.")

    def action_regenerate(self) -> None:
        if self.session is None or not self.session.turns:
            self.notify("nothing to regenerate yet", severity="warning")
            return
        turns = self.query(Turn)
        if turns:
            turns.last().remove()
        user = self.session.history[-2]["content"]
        self.turn = Turn(str(user))
        self.query_one("#chat", VerticalScroll).mount(self.turn)
        self.worker = self._run_turn(str(user), self.turn, "regenerate")

    def action_new_chat(self) -> None:
        self.action_cancel()
        self.start_session = None
        self.tokens = self.last_attempts = 0
        self.query_one("#chat", VerticalScroll).remove_children()
        if self.session is not None:
            self.session.clear()
            self._status("new chat")
        else:
            self._start_session()

    def action_clear(self) -> None:
        self.action_new_chat()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_toggle_sessions(self) -> None:
        panel = self.query_one("#sessions", ListView)
        panel.toggle_class("hidden")
        if not panel.has_class("hidden"):
            self._fill_sessions()

    def _fill_sessions(self) -> None:
        panel = self.query_one("#sessions", ListView)
        panel.clear()
        try:
            sessions = self.store.sessions()
        except RRRError as exc:
            self.notify(str(exc), severity="error")
            return
        for info in sessions:
            item = ListItem(Label(Text(f"{info.title}\n{info.turns} turn(s)")))
            item.session_id = info.id  # type: ignore[attr-defined]
            panel.append(item)

    @on(ListView.Selected, "#sessions")
    def session_selected(self, event: ListView.Selected) -> None:
        sid = getattr(event.item, "session_id", None)
        if sid:
            self.start_session = sid
            self.tokens = 0
            self._start_session()

    def action_rename(self) -> None:
        if self.session is None:
            return

        def go(title: str | None) -> None:
            if title and self.session is not None:
                try:
                    self.session.rename(title)
                except RRRError as exc:
                    self.notify(str(exc), severity="error")
                    return
                self.notify(f"renamed to {title!r}")

        self.push_screen(TextDialog("Title of this chat"), go)

    def action_export(self) -> None:
        if self.session is None or not self.session.turns:
            self.notify("nothing to export yet", severity="warning")
            return
        out = self.settings.trajectory_log.parent / "exports" / f"chat-{self.session.id}.md"
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(self.session.markdown(), encoding="utf-8")
        except OSError as exc:
            self.notify(f"cannot write {out}: {exc.strerror}", severity="error")
            return
        self.notify(f"exported to {out}")

    def action_copy_last(self) -> None:
        if self.session is None or not self.session.turns:
            return
        text = self.session.turns[-1].attempts[-1].text or ""
        self.copy_to_clipboard(text)
        self.notify("last answer copied")

    def action_pick_model(self) -> None:
        current = self.session.model if self.session else (self.start_model or "")

        def go(result: tuple[str, str] | None) -> None:
            if result is None:
                return
            model, api_base = result
            self.settings = self.settings.model_copy(update={"api_base": api_base or None})
            self.start_model = model
            if self.session is None:
                self._start_session()
                return
            self.session.settings = self.settings
            try:
                self.session.configure(model=model)
            except RRRError as exc:
                self.notify(str(exc), severity="error")
                return
            self._status()

        self.push_screen(ModelDialog(current, self.settings.api_base or ""), go)

    def action_pick_verifier(self) -> None:
        def go(result: tuple[str, str] | None) -> None:
            if result is None:
                return
            kind, arg = result
            try:
                spec = chat_verifier(kind, arg)
            except RRRError as exc:
                self.notify(str(exc), title="bad verifier", severity="error", timeout=10)
                return
            self.verifier_kind, self.verifier_arg = kind, arg
            if self.session is not None:
                self.session.configure(verifier=spec)
            self._status()

        self.push_screen(VerifierDialog(self.verifier_kind), go)

    # ------------------------------------------------------------------ prompt history

    def on_key(self, event: Any) -> None:
        prompt = self.query_one("#prompt", Input)
        if not prompt.has_focus or not self.history or event.key not in ("up", "down"):
            return
        step = -1 if event.key == "up" else 1
        self.history_pos = max(0, min(len(self.history), self.history_pos + step))
        prompt.value = (
            self.history[self.history_pos] if self.history_pos < len(self.history) else ""
        )
        prompt.cursor_position = len(prompt.value)
        event.stop()
