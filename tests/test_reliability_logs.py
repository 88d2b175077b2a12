"""Log durability under load: 8 writer processes append trajectories to one log while writers are
killed with SIGKILL at random moments (and restarted where they stopped).

Committed = acknowledged: a writer notes a record's number in its own file after ``append``
returned. Every committed record must be read back whole; no torn line may be read as data; every
torn line must be reported with file and line. Full counts (8 × 10,000) with ``make reliability``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rrr_agent import ReadReport, read_trajectories
from rrr_agent._store import TORN_MARK

from .conftest import REPO
from .reliability import record, scale

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

WRITERS = 8
PER_WRITER = scale(ci=3_000, full=10_000)
KILLS = scale(ci=12, full=64)


def _acked(path: Path) -> list[int]:
    """Complete acknowledgement lines (a kill can cut the last one: that record is not counted
    as committed, which is the safe side)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    return [int(x) for x in data[: data.rfind(b"\n") + 1].split()]


def _start(log: Path, acks: Path, writer: str, start: int) -> subprocess.Popen[bytes]:
    args = [str(log), str(acks), writer, str(start), str(PER_WRITER)]
    return subprocess.Popen([sys.executable, "-m", "tests.ack_writer", *args], cwd=REPO)


def _mid_write(log: Path, seconds: float) -> None:
    """Wait (briefly) for a moment when some record is only partly in the file."""
    fd = os.open(log, os.O_RDONLY)
    try:
        deadline = time.monotonic() + seconds  # a bounded wait for the condition, not a timing
        while time.monotonic() < deadline:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                return
    finally:
        os.close(fd)


def test_eight_writers_killed_at_random_lose_no_committed_record(tmp_path: Path) -> None:
    log = tmp_path / "trajectories.jsonl"
    rng = random.Random(14)
    acks = {f"w{n}": tmp_path / f"w{n}.acks" for n in range(WRITERS)}
    procs = {w: _start(log, a, w, 0) for w, a in acks.items()}
    began = dict.fromkeys(acks, 0)  # acknowledged records when each writer (re)started
    kills = restarts = 0
    start = time.monotonic()
    while procs:
        for w, p in list(procs.items()):
            if p.poll() is not None:
                assert p.returncode in (0, -signal.SIGKILL), f"writer {w} failed: {p.returncode}"
                done = _acked(acks[w])
                if p.returncode == 0:
                    del procs[w]
                else:  # restart a killed writer after its last committed record
                    began[w] = len(done)
                    procs[w] = _start(log, acks[w], w, (done[-1] + 1) if done else 0)
                    restarts += 1
        # Kill only writers that are writing (past their start-up), at random moments.
        writing = [w for w in sorted(procs) if len(_acked(acks[w])) > began[w]]
        if kills < KILLS and writing:
            time.sleep(rng.uniform(0.0, 0.3))
            victim = rng.choice(writing)
            if rng.random() < 0.7:
                _mid_write(log, 0.5)  # aim most kills at a write in progress
            if procs[victim].poll() is None:
                os.kill(procs[victim].pid, signal.SIGKILL)
                procs[victim].wait(30)
                kills += 1
        else:
            time.sleep(0.05)
    elapsed = time.monotonic() - start

    report = ReadReport()
    got = list(read_trajectories(log, report=report))  # strict: raises on a corrupt line
    read_ids = [str(t.task.messages[0].content) for t in got]
    committed = {f"{w}-{i}" for w, a in acks.items() for i in _acked(a)}
    lines = sum(1 for _ in log.open("rb"))
    torn_lines = []
    with log.open("rb") as fh:
        for n, raw in enumerate(fh, start=1):
            assert raw.endswith(b"\n"), f"{log}:{n} has no newline after every writer ended"
            if raw.rstrip(b"\n").endswith(TORN_MARK.encode()):
                torn_lines.append(n)

    lost = committed - set(read_ids)
    # A writer killed after ``append`` returned but before its acknowledgement is restarted at
    # that record and writes it again (at-least-once): a duplicate is possible only that way,
    # so there are at most as many as kills.
    duplicates = len(read_ids) - len(set(read_ids))
    assert not lost, f"{len(lost)} committed records lost, e.g. {sorted(lost)[:5]}"
    assert 0 <= duplicates <= kills
    assert report.invalid == []
    assert [p.line for p in report.torn] == torn_lines  # every tear reported, with its line
    assert all(str(p).startswith(f"{log}:{p.line}: ") for p in report.torn)
    assert len(got) + len(torn_lines) == lines  # nothing else in the file
    for t in got:  # every record read is whole
        assert set(t.task.metadata["pad"]) == {"x"}
    assert len(committed) == WRITERS * PER_WRITER  # every writer got to the end
    assert set(read_ids) == committed  # every writer finished: every record read was acknowledged
    record(
        "log_durability",
        {
            "writers": WRITERS, "records_per_writer": PER_WRITER, "kills": kills,
            "restarts": restarts, "lines_in_file": lines, "records_read": len(got),
            "committed": len(committed), "committed_lost": len(lost),
            "rewritten_after_kill": duplicates, "torn_lines_reported": len(torn_lines),
            "torn_read_as_data": 0, "seconds": round(elapsed, 1),
        },
    )  # fmt: skip
