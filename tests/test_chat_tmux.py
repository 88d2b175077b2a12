"""``rrr chat`` for real: the console script in a tmux session, on the embedded model. Keys go in
with send-keys; the answer is read back with capture-pane."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from rrr_agent import TrajectoryStore

pytestmark = pytest.mark.slow


def _tmux(*args: str) -> str:
    done = subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=30, check=True)
    return done.stdout


def _wait_for(session: str, needle: str, seconds: float, unless: str | None = None) -> str:
    deadline = time.monotonic() + seconds  # waiting for the screen, not timing it
    screen = ""
    while time.monotonic() < deadline:
        screen = _tmux("capture-pane", "-p", "-t", session)
        if needle in screen and (unless is None or unless not in screen):
            return screen
        time.sleep(0.5)
    raise AssertionError(f"{needle!r} never appeared; the screen was:\n{screen}")


def test_rrr_chat_in_tmux_on_the_embedded_model(tmp_path: Path) -> None:
    assert shutil.which("tmux"), "tmux is needed for this test (Debian package tmux)"
    session = f"rrr-chat-{uuid.uuid4().hex[:8]}"
    rrr = Path(sys.executable).with_name("rrr")
    env = " ".join(
        f"{k}={v}"
        for k, v in {
            "RRR_HOME": str(tmp_path),
            "RRR_CACHE_DIR": os.environ["RRR_CACHE_DIR"],
            "HF_HUB_OFFLINE": "1",
            "OMP_WAIT_POLICY": "PASSIVE",
            "TERM": "xterm-256color",
        }.items()
    )
    command = f"env {env} {rrr} chat --model local/gemma-3-270m"
    _tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", command)
    try:
        _wait_for(session, "Message (enter to send", 120)
        # The session is ready once the status line no longer says it is starting (the embedded
        # model may be prepared first).
        _wait_for(session, "last turn 0 attempt(s)", 600, unless="starting")
        _tmux("send-keys", "-t", session, "-l", "What is the capital of France?")
        _tmux("send-keys", "-t", session, "Enter")
        screen = _wait_for(session, "last turn 1 attempt(s)", 600)
        assert "You: What is the capital of France?" in screen
        (traj,) = TrajectoryStore(tmp_path / "trajectories.jsonl").read()
        answer = (traj.attempts[0].text or "").strip()
        assert answer, "the model gave an empty answer"
        first_line = answer.splitlines()[0][:40]
        assert first_line in screen  # the answer, read back from the terminal
        assert traj.task.metadata["chat"]["turn"] == 0 and traj.verdicts[0].verifier == "accept"
        _tmux("send-keys", "-t", session, "C-q")  # ctrl+q quits; the tmux session then ends

        def alive() -> bool:
            probe = ["tmux", "has-session", "-t", session]
            return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and alive():
            time.sleep(0.3)
        assert not alive(), "rrr chat did not quit on ctrl+q"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, timeout=30)
