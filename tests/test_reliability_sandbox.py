"""Hostile code in the sandbox: escape attempts, each contained and each reported.

The same attempts run on both paths of ``rrr_agent/verifiers/code.py``: as root (namespaces and a
drop to a fresh uid) and, through ``test_escape_suite_as_an_unprivileged_user``, as an unprivileged
user (an unprivileged user namespace with its own PID, mount and network namespaces). Each attempt
is a candidate that tries something; the check proves the attempt got nowhere (not only that the
verdict failed), and the outcome of each is recorded.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rrr_agent._types import ModelOutput, Task, Verdict
from rrr_agent.verifiers.code import CodeTestsVerifier

from .conftest import REPO
from .reliability import record

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

IS_ROOT = os.geteuid() == 0
SECRET = "rrr-planted-secret-4c1d"
FN = "def f(x):\n    return x + 1\n"


def _verify(code: str, tests: str = "assert f(2) == 3\n", **kw: Any) -> Verdict:
    v = CodeTestsVerifier(tests=tests, entry_point="f", **kw)
    return v.verify(ModelOutput(text=code), Task.from_prompt("write f", v.to_spec()))


def _processes_of(uid: int) -> list[int]:
    """Live (non-zombie) processes of ``uid``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if entry.stat().st_uid == uid and state not in ("Z", "X"):
                    pids.append(int(entry.name))
            except (OSError, IndexError):
                pass
    return pids


def _my_processes() -> int:
    return len(_processes_of(os.getuid()))


@dataclass
class Attempt:
    name: str
    code: Callable[[Path], str]
    #: returns (contained, what happened); gets the verdict and the attempt's scratch folder
    check: Callable[[Verdict, Path], tuple[bool, str]]
    tests: str = "assert f(2) == 3\n"
    timeout_s: float = 5.0


def _reason(v: Verdict) -> str:
    return str(v.details.get("reason"))


def _listener() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(5)
    s.setblocking(False)
    return s


LISTENER: socket.socket | None = None


def _net_code(_: Path) -> str:
    global LISTENER
    LISTENER = _listener()
    port = LISTENER.getsockname()[1]
    return f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)\n" + FN


def _net_check(v: Verdict, _: Path) -> tuple[bool, str]:
    assert LISTENER is not None
    try:
        LISTENER.accept()
        connected = True
    except BlockingIOError:
        connected = False
    finally:
        LISTENER.close()
    return (not connected and not v.passed), f"{_reason(v)}; nobody connected: {not connected}"


def _outside(work: Path) -> Path:
    target = work / "open" / "escaped.txt"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.parent.chmod(0o777)
    return target


def _secret_file(work: Path) -> Path:
    path = work / "secret.txt"
    path.write_text(SECRET)
    path.chmod(0o600)
    return path


ATTEMPTS = [
    Attempt(
        "infinite loop",
        lambda w: "def f(x):\n    while True:\n        pass\n",
        lambda v, w: (_reason(v) == "timeout", f"{_reason(v)} after {v.details.get('wall_s')} s"),
        timeout_s=1.5,
    ),
    Attempt(
        "memory hog",
        lambda w: "b = []\nwhile True:\n    b.append(bytearray(50 * 1024 * 1024))\n",
        lambda v, w: (_reason(v) == "memory", _reason(v)),
        # The memory limit, not the clock, must stop it: one CI run on a clean clone of
        # c3c8e87 saw this attempt reach the 5 s default (it takes well under a second alone).
        timeout_s=15,
    ),
    Attempt(
        "fork bomb",
        lambda w: (
            "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n"
            "        pass\n"
        ),
        lambda v, w: (not v.passed and _settled(v), f"{_reason(v)}; no process left behind"),
        timeout_s=2,
    ),
    Attempt(
        "escaped daemon (new session, outlives the run)",
        lambda w: (
            "import os, time\nif os.fork() == 0:\n    os.setsid()\n"
            f"    time.sleep(30)\n    open({str(w / 'daemon.txt')!r}, 'w').write('alive')\n"
            "    os._exit(0)\n" + FN
        ),
        lambda v, w: (_settled(v), "the daemon was killed with the run"),
    ),
    Attempt("network: connect to 127.0.0.1", _net_code, _net_check),
    Attempt(
        "write outside its folder",
        lambda w: f"open({str(_outside(w))!r}, 'w').write('pwned')\n" + FN,
        lambda v, w: (not _outside(w).exists(), f"{_reason(v)}; file absent"),
    ),
    Attempt(
        "symlink out of its temp dir (read a 0600 file)",
        lambda w: (
            f"import os\nos.symlink({str(_secret_file(w))!r}, 'link')\ntry:\n"
            "    DATA = open('link').read()\nexcept OSError as exc:\n    DATA = repr(exc)\n" + FN
        ),
        lambda v, w: (v.passed, "the link led nowhere readable"),
        tests=f"assert {SECRET!r} not in DATA\n",
    ),
    Attempt(
        "read a secret from its environment",
        lambda w: f"import os\nSEEN = {SECRET!r} in repr(dict(os.environ))\n" + FN,
        lambda v, w: (v.passed, "not in the environment"),
        tests="assert not SEEN\n",
    ),
    Attempt(
        "read the parent's and every process's environ",
        lambda w: (
            "import os\nSEEN = []\nfor p in os.listdir('/proc'):\n    try:\n"
            f"        if {SECRET!r}.encode() in open('/proc/%s/environ' % p, 'rb').read():\n"
            "            SEEN.append(p)\n    except OSError:\n        pass\n" + FN
        ),
        lambda v, w: (v.passed, "no environ with the secret was readable"),
        tests="assert SEEN == [], SEEN\n",
    ),
    Attempt(
        "signal the parent and everyone (kill -9 ppid, kill -9 -1)",
        lambda w: (
            "import os, signal\nfor pid in (os.getppid(), -1):\n    try:\n"
            "        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\n" + FN
        ),
        lambda v, w: (True, f"the test process survived ({_reason(v)})"),
    ),
    Attempt(
        "huge output (1 GB to stdout)",
        lambda w: "import sys\nfor _ in range(1000):\n    sys.stdout.write('x' * 1_000_000)\n",
        lambda v, w: (
            _reason(v) == "file_size" and len(v.details.get("stdout_tail", "")) < 20_000,
            f"{_reason(v)}; {len(v.details.get('stdout_tail', ''))} chars kept",
        ),
    ),
    Attempt(
        "fake a pass (print the marker, exit 0)",
        lambda w: "print('RRR-PASS 0000')\nimport os\nos._exit(0)\n",
        lambda v, w: (not v.passed, _reason(v)),
    ),
    Attempt(
        "regain privileges (setuid 0)",
        lambda w: (
            "import os\ntry:\n    os.setuid(0)\n    ROOT = os.getuid() == 0 and "
            "os.access('/etc/shadow', os.W_OK)\nexcept OSError:\n    ROOT = False\n" + FN
        ),
        lambda v, w: (v.passed, "no real root"),
        tests="assert not ROOT\n",
    ),
]


def _settled(v: Verdict) -> bool:
    """Every process the run started is gone (within a few seconds). A root run has a fresh uid:
    nothing of that uid may be left. An unprivileged run shares the user's uid: the count of the
    user's processes must be back where it was."""
    uid = v.details["sandbox"]["uid"] if IS_ROOT else None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if (uid is not None and not _processes_of(uid)) or (
            uid is None and _my_processes() <= BASELINE[0]
        ):
            return True
        time.sleep(0.1)
    return False


BASELINE = [0]


def test_escape_attempts_are_contained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RRR_SANDBOX_TEST_SECRET", SECRET)
    BASELINE[0] = _my_processes()
    results = []
    for n, attempt in enumerate(ATTEMPTS):
        work = tmp_path / f"a{n}"
        work.mkdir()
        os.chmod(tmp_path, 0o755)
        verdict = _verify(attempt.code(work), attempt.tests, timeout_s=attempt.timeout_s)
        contained, what = attempt.check(verdict, work)
        results.append({"attempt": attempt.name, "contained": contained, "outcome": what})
    # The test process can still start processes and is unharmed.
    probe = subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True)
    assert probe.stdout == b"1\n"
    sandbox = _verify(FN).details["sandbox"]
    path = "root" if IS_ROOT else "unprivileged"
    record(f"sandbox_{path}", {"path": path, "sandbox": sandbox, "attempts": results})
    failed = [r for r in results if not r["contained"]]
    assert not failed, failed
    assert len(results) >= 10
    if not IS_ROOT:  # the unprivileged path isolates what this kernel allows, and says so
        assert sandbox["pid_isolated"] and sandbox["network_isolated"], sandbox


def _python_prefix() -> tuple[str, str | None]:
    """The interpreter's installation and its first ancestor others cannot enter (or None)."""
    real = os.path.realpath(sys.executable)
    prefix = os.path.dirname(os.path.dirname(real))
    parts = prefix.split("/")
    for i in range(2, len(parts) + 1):
        p = "/".join(parts[:i])
        if not os.stat(p).st_mode & 0o001:
            return prefix, p
    return prefix, None


@pytest.mark.skipif(not IS_ROOT, reason="this run is already the unprivileged path")
def test_escape_suite_as_an_unprivileged_user() -> None:
    """The sandbox tests again as user nobody: the non-root path, in CI (which runs as root).
    A private mount namespace makes the Python installation reachable when it lives under a
    folder nobody cannot enter (pyenv under /root); nothing else is changed."""
    home = Path(tempfile.mkdtemp(prefix="rrr-nobody-"))  # pytest's own tmp is root-only
    try:
        home.chmod(0o777)
        _run_as_nobody(home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _run_as_nobody(home: Path) -> None:
    prefix, blocked = _python_prefix()
    lines = ["set -e"]
    if blocked is not None:
        stage = home / "stage"
        stage.mkdir()
        lines += [
            f"mount --bind '{prefix}' '{stage}'",
            f"mount -t tmpfs -o size=64k,mode=755 tmpfs '{blocked}'",
            f"mkdir -p '{prefix}'",
            f"mount --bind '{stage}' '{prefix}'",
        ]
    tests = ["tests/test_reliability_sandbox.py::test_escape_attempts_are_contained",
             "tests/test_verifier_code.py"]  # fmt: skip
    lines.append(
        f"exec setpriv --reuid=65534 --regid=65534 --clear-groups '{sys.executable}' -m pytest "
        f"-q -s -p no:cacheprovider --basetemp='{home}/bt' " + " ".join(tests)
    )
    env = {
        "PATH": os.environ["PATH"], "HOME": str(home), "TMPDIR": str(home),
        "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8",
    }  # fmt: skip
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(lines)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-5000:]
    assert "[sandbox_unprivileged]" in out, out[-3000:]
    line = next(x for x in out.splitlines() if x.startswith("[sandbox_unprivileged]"))
    assert "failed" not in out.splitlines()[-1], out[-2000:]
    doc = json.loads(line.split("] ", 1)[1])
    record("sandbox_unprivileged", {k: v for k, v in doc.items() if k not in ("scale", "machine")})
