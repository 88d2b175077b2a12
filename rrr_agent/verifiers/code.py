"""Run model-written Python against unit tests in a sandboxed subprocess (HumanEval style).

``{"type": "code_tests", "tests": "def check(c): ...\\ncheck(fn)", "entry_point": "fn",
"timeout_s": 10, "prompt": "<optional prefix, e.g. the function signature and docstring>"}``

The candidate is the first fenced code block that defines ``entry_point`` (else the last fenced
block, else the whole text). When it defines ``entry_point`` itself it runs after ``prompt`` (so the
prompt's imports and helpers exist); otherwise it is taken as the body that continues ``prompt``.
``tests`` then runs in the same namespace; the attempt passes only when the tests finish without an
exception. A secret nonce, printed by the trusted runner after the tests return, tells a real pass
from a candidate that exits early with status 0 (a determined candidate that inspects the runner's
memory could still find it: this defends against accidents and easy reward hacks, not against a
targeted attack on this runner).

The sandbox (what each run gets):

- a fresh temporary working directory, deleted afterwards; an empty environment; the interpreter
  started as ``python -I -S -B`` (no site-packages, no user site, no ``PYTHON*`` variables);
- ``resource`` limits: RLIMIT_CPU, RLIMIT_AS (memory), RLIMIT_FSIZE (files and the captured
  stdout/stderr), RLIMIT_NPROC, RLIMIT_NOFILE, RLIMIT_CORE = 0;
- its own session and process group, killed as a whole at the wall-clock timeout;
- **when running as root** (as in this project's containers), also: new network, mount, IPC and UTS
  namespaces (no network at all: even 127.0.0.1 is unreachable), private size-limited tmpfs over
  ``/tmp``, ``/var/tmp`` and ``/dev/shm``, and a drop to a fresh unprivileged uid/gid
  (``UID_BASE`` + random, with no supplementary groups) before the candidate's interpreter starts.
  A uid of its own (not the shared ``nobody``) makes RLIMIT_NPROC count this run's processes only,
  and lets a reaper kill every process of that uid afterwards, including any that escaped the
  process group. The Python installation is bind-mounted read-only at a path that uid can reach;
- **when not root**: the same limits, and the candidate runs as the calling user inside an
  unprivileged user namespace with its own PID, mount and network namespaces where the kernel
  allows them (``unshare(CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNS|CLONE_NEWNET)``): a private
  ``/proc`` (no other process is visible or can be signalled, so no ``/proc/<pid>/environ`` of the
  user's other processes), private tmpfs over ``/tmp``, ``/var/tmp`` and ``/dev/shm``, no network,
  and a namespace init whose end kills everything the run left behind. RLIMIT_NPROC is the user's
  process count at the start plus the run's budget. Files the user can write outside the
  temporary folders (the home directory) stay writable. Where the kernel forbids the namespaces,
  a user + network namespace is tried, then none. ``details["sandbox"]`` says what was applied
  (``pid_isolated``, ``network_isolated``, ``mount_isolated``).

A candidate's failure (syntax error, exception, failed assertion, timeout, memory or CPU limit,
signal, early exit) is always a failing verdict whose ``feedback`` says which; the test source and
its expected values are never put in ``feedback`` (they go to ``details``). Failing to build the
sandbox itself raises :class:`~rrr_agent.VerifierError`: it says nothing about the candidate.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from .._errors import VerifierError
from .._types import ModelOutput, Task, Verdict
from ._base import Verifier, register_verifier

__all__ = ["CodeTestsVerifier", "SandboxResult", "extract_code", "run_sandboxed"]

#: Fresh uids are drawn from [UID_BASE, UID_BASE + UID_SPAN).
UID_BASE = 1_800_000_000
UID_SPAN = 100_000_000
#: Longest candidate accepted (characters).
MAX_CODE_CHARS = 200_000
#: How much of stdout/stderr is kept in details.
OUTPUT_TAIL = 4_000

_SANDBOX_TAG = "RRR-SANDBOX "
_STARTED_TAG = "RRR-RUNNER-STARTED"
_RESULT_TAG = "RRR-RESULT "
_PASS_TAG = "RRR-PASS "

# The first program: runs as the caller (root here), builds the sandbox, then execs the runner.
# Arguments: one JSON object. It writes exactly one status line to stderr before exec'ing.
_BOOTSTRAP = r"""
import ctypes, json, os, resource, signal, sys
cfg = json.loads(sys.argv[1])
info = {"root": os.geteuid() == 0, "network_isolated": False, "mount_isolated": False,
        "uid": os.geteuid(), "privileges_dropped": False}
def fail(msg):
    info["error"] = msg
    os.write(2, ("RRR-SANDBOX " + json.dumps(info) + "\n").encode())
    os._exit(97)
libc = None
try:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                           ctypes.c_char_p]
except Exception as exc:
    info["libc_error"] = repr(exc)
NEWNS, NEWUTS, NEWIPC, NEWUSER, NEWNET = 0x20000, 0x4000000, 0x8000000, 0x10000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1, 2, 4, 32, 4096, 16384, 1 << 18)
python = cfg["python"]
prefix = cfg["prefix"]
def reachable(path):
    # True when every directory from / down to path exists and others may traverse it.
    parts = path.split("/")
    for i in range(2, len(parts) + 1):
        p = "/".join(parts[:i])
        try:
            st = os.stat(p)
        except OSError:
            return p
        if not st.st_mode & 0o001:
            return p
    return None
if info["root"]:
    if libc is None:
        fail("cannot load libc to build namespaces")
    prefix_fd = -1
    if libc.unshare(NEWNS | NEWNET | NEWIPC | NEWUTS) != 0:
        info["unshare_errno"] = ctypes.get_errno()
    else:
        info["network_isolated"] = True
        if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) == 0:
            # Opened inside the new namespace (a bind source must belong to it), before any
            # tmpfs below can hide it.
            prefix_fd = os.open(prefix, os.O_RDONLY | os.O_DIRECTORY)
            opts = ("size=%dk,mode=1777" % cfg["tmpfs_kib"]).encode()
            for d in ("/tmp", "/var/tmp", "/dev/shm"):
                if os.path.isdir(d) and not os.path.islink(d):
                    if libc.mount(b"tmpfs", d.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, opts):
                        fail("cannot mount tmpfs on %s (errno %d)" % (d, ctypes.get_errno()))
            info["mount_isolated"] = True
            # Make the Python installation reachable at its own path (its RUNPATH and stdlib
            # paths are absolute) without exposing what else its blocked ancestor holds.
            blocked = reachable(prefix)
            if blocked is not None:
                if os.path.isdir(blocked):
                    if libc.mount(b"tmpfs", blocked.encode(), b"tmpfs", MS_NOSUID | MS_NODEV,
                                  b"size=64k,mode=0755"):
                        fail("cannot mount tmpfs on %s (errno %d)" % (blocked, ctypes.get_errno()))
                    info["hidden"] = blocked
                os.makedirs(prefix, 0o755, exist_ok=True)
                src = ("/proc/self/fd/%d" % prefix_fd).encode()
                if libc.mount(src, prefix.encode(), None, MS_BIND | MS_REC, None) != 0:
                    fail("cannot bind-mount %s (errno %d)" % (prefix, ctypes.get_errno()))
                libc.mount(None, prefix.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)
        else:
            info["mount_errno"] = ctypes.get_errno()
    if prefix_fd >= 0:
        os.close(prefix_fd)
else:
    # Not root. Count this user's processes first (RLIMIT_NPROC counts all of them).
    me = os.getuid()
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                count += os.stat("/proc/" + entry).st_uid == me
            except OSError:
                pass
    info["user_processes"] = count
    NEWPID = 0x20000000
    if libc is not None and libc.unshare(NEWUSER | NEWNET | NEWPID | NEWNS) == 0:
        # A PID namespace: the candidate sees and signals no process outside its run, and when
        # its init (the first child) ends, the kernel kills whatever the run left behind.
        info["network_isolated"] = True
        info["pid_isolated"] = True
        status_r, status_w = os.pipe()
        init = os.fork()
        if init:  # outside: wait for the namespace's init, then end the way the candidate ended
            os.close(status_w)
            os.waitpid(init, 0)
            report = os.read(status_r, 64).decode() or "E:1"
            kind, value = report.split(":")
            if kind == "S":
                signal.signal(int(value), signal.SIG_DFL)
                os.kill(os.getpid(), int(value))
            os._exit(int(value))
        os.close(status_r)
        # pid 1: a private /proc and private temporary folders, then the candidate as pid 2.
        libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None)
        if libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV, None) != 0:
            fail("cannot mount a private /proc (errno %d)" % ctypes.get_errno())
        opts = ("size=%dk,mode=1777" % cfg["tmpfs_kib"]).encode()
        for d in ("/tmp", "/var/tmp", "/dev/shm"):
            if os.path.isdir(d) and not os.path.islink(d):
                if libc.mount(b"tmpfs", d.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, opts) == 0:
                    info["mount_isolated"] = True
        child = os.fork()
        if child:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            while True:  # reap everything; the candidate's end is the run's end
                pid, status = os.waitpid(-1, 0)
                if pid == child:
                    break
            if os.WIFSIGNALED(status):
                os.write(status_w, ("S:%d" % os.WTERMSIG(status)).encode())
            else:
                os.write(status_w, ("E:%d" % os.WEXITSTATUS(status)).encode())
            os._exit(0)
        os.close(status_w)
    elif libc is not None and libc.unshare(NEWUSER | NEWNET) == 0:
        info["network_isolated"] = True
def limit(kind, soft, hard=None):
    hard = soft if hard is None else hard
    try:
        old_soft, old_hard = resource.getrlimit(kind)
        if old_hard != resource.RLIM_INFINITY:
            hard = min(hard, old_hard)
            soft = min(soft, hard)
        resource.setrlimit(kind, (soft, hard))
    except (ValueError, OSError) as exc:
        fail("cannot set resource limit %r: %s" % (kind, exc))
limit(resource.RLIMIT_CPU, cfg["cpu_s"], cfg["cpu_s"] + 1)
limit(resource.RLIMIT_AS, cfg["memory_bytes"])
limit(resource.RLIMIT_FSIZE, cfg["fsize_bytes"])
limit(resource.RLIMIT_NOFILE, cfg["nofile"])
limit(resource.RLIMIT_CORE, 0)
if not info["root"]:
    # The user's processes at the start plus this run's budget (and its init).
    limit(resource.RLIMIT_NPROC, info["user_processes"] + cfg["nproc"] + 2)
if info["root"]:
    uid = cfg["uid"]
    limit(resource.RLIMIT_NPROC, cfg["nproc"])
    try:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    except OSError as exc:
        fail("cannot drop privileges: %s" % exc)
    try:
        os.setuid(0)
    except OSError:
        pass
    else:
        fail("privileges could be regained after the drop")
    info["uid"] = uid
    info["privileges_dropped"] = True
    if reachable(prefix) is not None or not os.access(python, os.X_OK):
        fail("the Python interpreter is not reachable after dropping privileges")
os.write(2, ("RRR-SANDBOX " + json.dumps(info) + "\n").encode())
try:
    os.execv(python, [python, "-I", "-S", "-B", "-c", cfg["runner"]])
except OSError as exc:
    os.write(2, ("RRR-EXEC-FAILED %s\n" % exc).encode())
    os._exit(97)
"""

# The trusted runner: compiles and runs the candidate, then the tests, in one namespace.
_RUNNER = r"""
import json, os, sys, traceback
def _rrr_main():
    sys.stderr.write("RRR-RUNNER-STARTED\n")
    sys.stderr.flush()
    nonce = sys.stdin.readline().strip()
    fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(fd, 0)
    os.close(fd)
    def report(phase, exc):
        info = {"phase": phase, "error": type(exc).__name__, "message": str(exc)[:500]}
        line = None
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename in ("solution.py", "tests.py"):
                line = (frame.filename, frame.lineno, (frame.line or "")[:300])
        if isinstance(exc, SyntaxError):
            line = (exc.filename, exc.lineno, (exc.text or "").strip()[:300])
        info["where"] = line
        if isinstance(exc, SystemExit):
            info["message"] = repr(exc.code)[:200]
        try:
            sys.stdout.flush()
        except BaseException:
            pass
        traceback.print_exception(exc, limit=-8)
        sys.stderr.write("\n" + "RRR-RESULT " + json.dumps(info) + "\n")
        sys.stderr.flush()
        os._exit(1)
    namespace = {"__name__": "solution", "__builtins__": __builtins__}
    try:
        with open("solution.py", encoding="utf-8") as f:
            solution = compile(f.read(), "solution.py", "exec")
        with open("tests.py", encoding="utf-8") as f:
            tests = compile(f.read(), "tests.py", "exec")
    except BaseException as exc:
        report("compile", exc)
    try:
        exec(solution, namespace)
    except BaseException as exc:
        report("load", exc)
    try:
        exec(tests, namespace)
    except BaseException as exc:
        report("tests", exc)
    try:
        sys.stdout.flush()
    except BaseException:
        pass
    os.write(1, ("\nRRR-PASS " + nonce + "\n").encode())
    os._exit(0)
_rrr_main()
"""

# Kills every process of one uid (run as that uid: kill(-1) reaches exactly its processes).
_REAPER = r"""
import os, signal, sys
uid = int(sys.argv[1])
os.setgroups([]); os.setgid(uid); os.setuid(uid)
for _ in range(3):
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        break
"""


class SandboxResult:
    """What happened to one sandboxed run (plain attributes; see :func:`run_sandboxed`)."""

    def __init__(self) -> None:
        self.returncode: int | None = None
        self.timed_out = False
        self.passed = False
        self.stdout = ""
        self.stderr = ""
        self.sandbox: dict[str, Any] = {}
        self.result: dict[str, Any] | None = None
        self.wall_s = 0.0
        self.workdir = ""


def _python_paths() -> tuple[str, str]:
    """(base interpreter, the installation folder holding it and its standard library)."""
    exe = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    prefix = os.path.realpath(sys.base_prefix)
    if os.path.commonpath([exe, prefix]) != prefix:
        prefix = os.path.dirname(os.path.dirname(exe))
    return exe, prefix


def _read_capped(path: Path, limit: int) -> str:
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            if size <= 2 * limit:
                f.seek(0)
                data = f.read()
            else:
                f.seek(0)
                head = f.read(limit)
                f.seek(size - limit)
                data = head + b"\n...[output cut]...\n" + f.read(limit)
    except OSError:
        return ""
    return data.decode("utf-8", "replace")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_sandboxed(
    solution: str,
    tests: str,
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    max_processes: int = 16,
    max_file_mb: int = 16,
    max_open_files: int = 64,
) -> SandboxResult:
    """Run ``solution`` then ``tests`` (Python source) in the sandbox described in this module."""
    res = SandboxResult()
    python, prefix = _python_paths()
    is_root = os.geteuid() == 0
    uid = UID_BASE + secrets.randbelow(UID_SPAN)
    nonce = secrets.token_hex(16)
    outer = Path(tempfile.mkdtemp(prefix="rrr-code-"))
    workdir = outer / "work"
    res.workdir = str(workdir)
    try:
        workdir.mkdir(mode=0o700)
        (workdir / "solution.py").write_text(solution, encoding="utf-8")
        (workdir / "tests.py").write_text(tests, encoding="utf-8")
        for p in (workdir / "solution.py", workdir / "tests.py"):
            p.chmod(0o644)
        if is_root:
            os.chown(workdir, uid, uid)
        cfg = {
            "python": python,
            "prefix": prefix,
            "uid": uid,
            "cpu_s": max(1, math.ceil(timeout_s)),
            "memory_bytes": memory_mb * 1024 * 1024,
            "fsize_bytes": max_file_mb * 1024 * 1024,
            "nofile": max_open_files,
            "nproc": max_processes,
            "tmpfs_kib": max_file_mb * 1024,
            "runner": _RUNNER,
        }
        out_path, err_path = outer / "stdout", outer / "stderr"
        start = time.monotonic()
        with out_path.open("wb") as out_f, err_path.open("wb") as err_f:
            try:
                proc = subprocess.Popen(
                    [python, "-I", "-S", "-B", "-c", _BOOTSTRAP, json.dumps(cfg)],
                    stdin=subprocess.PIPE,
                    stdout=out_f,
                    stderr=err_f,
                    cwd=workdir,
                    env={},
                    close_fds=True,
                    start_new_session=True,
                )
            except OSError as exc:
                raise VerifierError(f"cannot start the sandboxed interpreter: {exc}") from exc
            try:
                try:
                    assert proc.stdin is not None
                    proc.stdin.write((nonce + "\n").encode())
                    proc.stdin.close()
                except (BrokenPipeError, OSError):
                    pass
                try:
                    proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    res.timed_out = True
            finally:
                _kill_group(proc)
                proc.wait()
                if is_root:
                    _reap_uid(python, uid)
        res.wall_s = time.monotonic() - start
        res.returncode = proc.returncode
        res.stdout = _read_capped(out_path, OUTPUT_TAIL)
        stderr_full = _read_capped(err_path, OUTPUT_TAIL)
        _parse_streams(res, stderr_full, nonce)
    finally:
        shutil.rmtree(outer, ignore_errors=True)
    return res


def _reap_uid(python: str, uid: int) -> None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            [python, "-I", "-S", "-B", "-c", _REAPER, str(uid)],
            env={},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )


def _parse_streams(res: SandboxResult, stderr: str, nonce: str) -> None:
    lines = stderr.split("\n")
    if not lines or not lines[0].startswith(_SANDBOX_TAG):
        raise VerifierError(f"the code sandbox did not start: {stderr[-1000:]!r}")
    try:
        res.sandbox = json.loads(lines[0][len(_SANDBOX_TAG) :])
    except json.JSONDecodeError as exc:
        raise VerifierError(f"the code sandbox reported garbage: {lines[0][:300]!r}") from exc
    if "error" in res.sandbox:
        raise VerifierError(f"the code sandbox could not be built: {res.sandbox['error']}")
    if len(lines) < 2 or lines[1] != _STARTED_TAG:
        if res.timed_out:
            return  # the runner did not even start within the time limit
        raise VerifierError(f"the sandboxed interpreter did not start: {stderr[-1500:]!r}")
    body = "\n".join(lines[2:])
    res.stderr = body
    for line in reversed(lines[2:]):
        if line.startswith(_RESULT_TAG):
            try:
                res.result = json.loads(line[len(_RESULT_TAG) :])
            except json.JSONDecodeError:
                res.result = None
            break
    res.passed = not res.timed_out and res.returncode == 0 and f"{_PASS_TAG}{nonce}" in res.stdout


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(text: str, entry_point: str | None = None) -> str:
    """The candidate: a fenced block defining ``entry_point``, else the last block, else all."""
    blocks = [
        m.group(2)
        for m in _FENCE.finditer(text)
        if m.group(1).lower() in ("", "python", "py", "python3")
    ]
    if not blocks:
        return text
    if entry_point:
        pattern = re.compile(rf"^\s*(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", re.M)
        for block in blocks:
            if pattern.search(block):
                return block
    return blocks[-1]


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.M) is not None


_SIGNALS: dict[int, str] = {
    signal.SIGXCPU: "CPU time limit exceeded",
    signal.SIGXFSZ: "file or output size limit exceeded",
    signal.SIGSEGV: "crashed (segmentation fault)",
    signal.SIGABRT: "aborted",
    signal.SIGBUS: "crashed (bus error)",
}


@register_verifier
class CodeTestsVerifier(Verifier):
    """Passes when the candidate code, followed by ``tests``, runs without an exception."""

    type: ClassVar[str] = "code_tests"
    blocking: ClassVar[bool] = True

    tests: str = Field(min_length=1)
    entry_point: str | None = None
    prompt: str | None = None
    timeout_s: float = Field(default=10.0, gt=0, le=600)
    memory_mb: int = Field(default=512, ge=64, le=65536)
    max_processes: int = Field(default=16, ge=1, le=4096)

    def build_solution(self, text: str) -> tuple[str, str]:
        """(program, mode): mode is ``full`` (defines the entry point) or ``completion``."""
        code = extract_code(text, self.entry_point)
        if self.entry_point and _defines(code, self.entry_point):
            return ((self.prompt or "") + "\n\n" + code, "full")
        if self.prompt:
            return (self.prompt + code, "completion")
        return (code, "full" if not self.entry_point else "completion")

    def verify(self, output: ModelOutput, task: Task) -> Verdict:
        text = output.text or ""
        if not text.strip():
            return Verdict(passed=False, feedback="The answer contains no code.")
        if len(text) > MAX_CODE_CHARS:
            return Verdict(
                passed=False,
                feedback=f"The answer is too long ({len(text)} characters).",
                details={"reason": "too_long"},
            )
        solution, mode = self.build_solution(text)
        res = run_sandboxed(
            solution,
            self.tests,
            timeout_s=self.timeout_s,
            memory_mb=self.memory_mb,
            max_processes=self.max_processes,
        )
        details: dict[str, Any] = {
            "mode": mode,
            "returncode": res.returncode,
            "wall_s": round(res.wall_s, 3),
            "sandbox": res.sandbox,
            "stdout_tail": res.stdout[-OUTPUT_TAIL:],
            "stderr_tail": res.stderr[-OUTPUT_TAIL:],
        }
        if res.result:
            details["error"] = res.result
        if res.passed:
            return Verdict(passed=True, feedback="", details=details)
        reason, feedback = self._explain(res)
        details["reason"] = reason
        return Verdict(passed=False, feedback=feedback, details=details)

    def _explain(self, res: SandboxResult) -> tuple[str, str]:
        if res.timed_out:
            return "timeout", f"The code did not finish within {self.timeout_s:g} s (timed out)."
        rc = res.returncode or 0
        if rc < 0:
            sig = -rc
            if sig == signal.SIGKILL:
                return "killed", (
                    "The code was killed (signal SIGKILL), most likely by the CPU time limit."
                )
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = str(sig)
            what = _SIGNALS.get(sig, f"was killed by signal {name}")
            return f"signal:{name}", f"The code {what} (signal {name})."
        r = res.result
        if r is None:
            return "early_exit", (f"The program exited with status {rc} before the tests finished.")
        error, phase, message = r.get("error", "Error"), r.get("phase"), r.get("message", "")
        where = r.get("where") or [None, None, None]
        in_solution = where[0] == "solution.py"
        line = f" (line {where[1]} of the program)" if in_solution and where[1] else ""
        if error == "MemoryError":
            return "memory", f"The code ran out of memory (limit {self.memory_mb} MiB)."
        if error == "OSError" and "Errno 27" in message:
            return "file_size", "The code exceeded the file or output size limit."
        if error == "SystemExit":
            return "early_exit", f"The program called exit({message}) before the tests finished."
        if phase == "compile":
            if where[0] == "tests.py":
                return "tests_syntax_error", "The tests could not be compiled."
            return "syntax_error", f"The code has a syntax error: {error}: {message}{line}."
        if phase == "load":
            return "load_error", (f"The code raised {error} while being defined: {message}{line}.")
        if error == "AssertionError" and not in_solution:
            return "assertion", "A test assertion failed: the function returned a wrong result."
        if error == "NameError" and self.entry_point and self.entry_point in message:
            return "missing_entry_point", f"The code does not define {self.entry_point}()."
        return "exception", f"The code raised {error} while the tests ran: {message[:300]}{line}."
