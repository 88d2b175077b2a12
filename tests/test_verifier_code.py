"""code_tests verifier: HumanEval canonical solutions pass; hostile code is contained."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from rrr_agent._types import ModelOutput, Task
from rrr_agent.tasksets import get_taskset
from rrr_agent.verifiers import build_verifier
from rrr_agent.verifiers.code import CodeTestsVerifier, extract_code

pytestmark = pytest.mark.slow

IS_ROOT = os.geteuid() == 0
TESTS = "assert f(2) == 3\n"


def _verify(code: str, tests: str = TESTS, **kw: Any) -> Any:
    v = CodeTestsVerifier(tests=tests, entry_point=kw.pop("entry_point", "f"), **kw)
    return v.verify(ModelOutput(text=code), Task.from_prompt("write f", v.to_spec()))


def _uid_processes(uid: int) -> list[int]:
    """Live (non-zombie) processes owned by ``uid``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid != uid:
                    continue
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state not in ("Z", "X"):
                pids.append(int(entry.name))
    return pids


def _wait_gone(uid: int, seconds: float = 5.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while _uid_processes(uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _uid_processes(uid)


def test_every_humaneval_canonical_solution_passes() -> None:
    tasks = list(get_taskset("humaneval").load())
    assert len(tasks) == 164

    def run(task: Task) -> tuple[str, Any]:
        verifier = build_verifier(task.verifier)
        output = ModelOutput(text=task.metadata["canonical_solution"])
        return task.id, verifier.verify(output, task)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run, tasks))
    assert [tid for tid, _ in results] == [t.id for t in tasks]
    failed = [(tid, v.feedback) for tid, v in results if not v.passed]
    assert failed == []


def test_humaneval_full_function_in_a_fence_and_a_wrong_body() -> None:
    task = next(iter(get_taskset("humaneval").load()))
    verifier = build_verifier(task.verifier)
    prompt, body = task.verifier.params()["prompt"], task.metadata["canonical_solution"]
    fenced = f"Here you go:\n```python\n{prompt}{body}```\nDone."
    assert verifier.verify(ModelOutput(text=fenced), task).passed
    wrong = verifier.verify(ModelOutput(text="    return False\n"), task)
    assert not wrong.passed
    assert wrong.details["reason"] == "assertion"
    assert "assert candidate" not in wrong.feedback  # the tests are not shown to the model


def test_extract_code_prefers_block_defining_entry_point() -> None:
    text = "```python\nprint(1)\n```\n```python\ndef f(x):\n    return x\n```\n```\nf(1)\n```"
    assert extract_code(text, "f").startswith("def f")
    assert extract_code(text, None) == "f(1)\n"
    assert extract_code("def f(): pass", "f") == "def f(): pass"


@pytest.mark.parametrize(
    ("code", "reason", "fragment"),
    [
        ("def f(x):\n    return x + 1\n", None, ""),
        ("def f(x):\n    return x\n", "assertion", "test assertion failed"),
        ("def f(x)\n    return x\n", "syntax_error", "syntax error"),
        ("def g(x):\n    return x + 1\n", "missing_entry_point", "does not define f()"),
        ("def f(x):\n    return x / 0\n", "exception", "ZeroDivisionError"),
        ("raise ValueError('boom')\n", "load_error", "ValueError while being defined: boom"),
        ("import sys\nsys.exit(0)\n", "early_exit", "exit(0)"),
        ("import os\nos._exit(0)\n", "early_exit", "exited with status 0"),
        ("import os\nos.kill(os.getpid(), 11)\n", "signal:SIGSEGV", "segmentation fault"),
        ("while True:\n    print('x' * 100000)\n", "file_size", "size limit"),
    ],
)
def test_failure_reasons(code: str, reason: str | None, fragment: str) -> None:
    verdict = _verify(code, timeout_s=5)
    assert verdict.passed is (reason is None), verdict
    if reason is not None:
        assert verdict.details["reason"] == reason, verdict
        assert fragment in verdict.feedback


def test_infinite_loop_times_out() -> None:
    verdict = _verify("def f(x):\n    while True:\n        pass\n", timeout_s=1.5)
    assert not verdict.passed
    # Stopped by its own wall-clock limit (not the CPU limit, not a crash): the whole process
    # group was killed when the 1.5 s were up.
    assert verdict.details["reason"] == "timeout"
    assert verdict.feedback == "The code did not finish within 1.5 s (timed out)."
    assert verdict.details["returncode"] == -signal.SIGKILL
    assert "error" not in verdict.details  # no result came back from the tests


def test_memory_hog_is_stopped() -> None:
    code = "blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 1024 * 1024))\n"
    verdict = _verify(code, timeout_s=10, memory_mb=256)
    assert not verdict.passed
    assert verdict.details["reason"] == "memory"
    assert "ran out of memory" in verdict.feedback


@pytest.mark.skipif(not IS_ROOT, reason="RLIMIT_NPROC only binds after the drop to a fresh uid")
def test_fork_bomb_is_contained_and_reaped() -> None:
    # Proven harmless first: the limit is in place (16 processes) before anything forks.
    probe = _verify(
        "import resource\nLIMIT = resource.getrlimit(resource.RLIMIT_NPROC)[0]\n"
        "def f(x):\n    return x + 1\n",
        tests="assert LIMIT == 16, LIMIT\nassert f(2) == 3\n",
        timeout_s=5,
    )
    assert probe.passed, probe
    bomb = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    verdict = _verify(bomb, timeout_s=2)
    assert not verdict.passed
    assert verdict.details["reason"] == "timeout"
    uid = verdict.details["sandbox"]["uid"]
    assert uid != 0
    assert _wait_gone(uid) == []
    # The test process is unharmed: it can still start processes.
    assert subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True).stdout == b"1\n"


def test_escaped_daemon_is_killed() -> None:
    if not IS_ROOT:
        pytest.skip("the reaper needs the drop to a fresh uid")
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    time.sleep(60)\n"
        "    os._exit(0)\n"
        "def f(x):\n    return x + 1\n"
    )
    verdict = _verify(code, timeout_s=5)
    assert verdict.passed
    assert _wait_gone(verdict.details["sandbox"]["uid"]) == []


def test_network_is_unreachable() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        code = (
            "import socket\n"
            f"s = socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
            "s.sendall(b'hello')\n"
            "def f(x):\n    return x + 1\n"
        )
        verdict = _verify(code, timeout_s=8)
        if not verdict.details["sandbox"].get("network_isolated"):
            pytest.skip("this kernel does not allow a network namespace here")
        assert not verdict.passed
        assert verdict.details["reason"] == "load_error"
        assert "OSError" in verdict.feedback or "unreachable" in verdict.feedback
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
    finally:
        listener.close()


def test_writes_outside_the_workdir_do_not_land(tmp_path: Path) -> None:
    target_dir = tmp_path / "open"
    target_dir.mkdir()
    target_dir.chmod(0o777)
    os.chmod(tmp_path, 0o755)
    target = target_dir / "escaped.txt"
    code = f"open({str(target)!r}, 'w').write('pwned')\ndef f(x):\n    return x + 1\n"
    verdict = _verify(code, timeout_s=5)
    assert not verdict.passed
    assert verdict.details["reason"] == "load_error"
    assert not target.exists()
    # Inside its own working directory writing works, and the directory is removed afterwards.
    inside = (
        "open('notes.txt', 'w').write('ok')\nimport os\nWD = os.getcwd()\n"
        "def f(x):\n    return x + 1\n"
    )
    ok = _verify(inside, tests="assert open('notes.txt').read() == 'ok'\nprint('WD', WD)\n")
    assert ok.passed, ok
    workdir = ok.details["stdout_tail"].split("WD ", 1)[1].split()[0]
    assert not Path(workdir).exists()
    if IS_ROOT:  # not even as root-owned repo files
        repo_file = Path(__file__).resolve()
        attack = f"open({str(repo_file)!r}, 'a').write('# pwned')\ndef f(x):\n    return x + 1\n"
        before = repo_file.read_bytes()
        assert not _verify(attack, timeout_s=5).passed
        assert repo_file.read_bytes() == before


def test_environment_secrets_are_invisible(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "rrr-fake-secret-7f3a9c"
    monkeypatch.setenv("RRR_FAKE_SECRET", secret)
    code = (
        "import os\n"
        "SEEN = []\n"
        f"if {secret!r} in repr(dict(os.environ)):\n"
        "    SEEN.append('environ')\n"
        "try:\n"
        f"    if {secret!r}.encode() in open('/proc/%d/environ' % os.getppid(), 'rb').read():\n"
        "        SEEN.append('parent environ')\n"
        "except OSError:\n"
        "    pass\n"
        "def f(x):\n    return SEEN\n"
    )
    # The tests pass only if the child found the secret somewhere.
    verdict = _verify(code, tests="assert f(0) != []\n", timeout_s=5)
    assert not verdict.passed
    assert verdict.details["reason"] == "assertion"
    # Control: the same probe finds a value that is really in the child's environment.
    control = code.replace(secret, "C.UTF-8")
    assert _verify(control, tests="assert f(0) != []\n", timeout_s=5).passed


def test_candidate_cannot_fake_a_pass_by_printing() -> None:
    code = "print('RRR-PASS 0000')\nimport os\nos._exit(0)\n"
    assert not _verify(code, timeout_s=5).passed


def test_spec_round_trip() -> None:
    v = CodeTestsVerifier(tests="pass", entry_point="f", prompt="def f():\n", timeout_s=3)
    assert build_verifier(v.to_spec()) == v
