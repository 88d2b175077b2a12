"""JSONL store: round trip, filters, torn lines, corruption, concurrent writers, kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rrr_agent import (
    LogFileError,
    Outcome,
    ReadReport,
    Trajectory,
    TrajectoryFilter,
    TrajectoryStore,
    read_trajectories,
)
from rrr_agent._store import TORN_MARK

from .conftest import REPO, math_task


def traj(i: int = 0, **kw: object) -> Trajectory:
    return Trajectory(task=math_task(prompt=f"q{i}"), model=str(kw.pop("model", "m")), **kw)  # type: ignore[arg-type]


def test_append_and_read_back(tmp_path: Path) -> None:
    store = TrajectoryStore(tmp_path / "deep" / "t.jsonl")
    written = [traj(i) for i in range(5)]
    for t in written:
        store.append(t)
    assert list(store.read()) == written
    lines = (tmp_path / "deep" / "t.jsonl").read_text().splitlines()
    assert len(lines) == 5 and all(json.loads(x)["kind"] == "trajectory" for x in lines)


def test_missing_file_reads_as_empty(tmp_path: Path) -> None:
    assert list(read_trajectories(tmp_path / "none.jsonl")) == []


def test_filters(tmp_path: Path) -> None:
    store = TrajectoryStore(tmp_path / "t.jsonl")
    now = datetime.now(UTC)
    store.append(traj(1, model="a", outcome=Outcome.FAILED, started_at=now - timedelta(days=2)))
    store.append(traj(2, model="b", outcome=Outcome.PASSED_FIRST_TRY, started_at=now))
    store.append(traj(3, model="a", outcome=Outcome.PASSED_AFTER_RETRY, started_at=now))

    def ids(f: TrajectoryFilter) -> list[str]:
        return [str(t.task.messages[0].content) for t in store.read(f)]

    assert ids(TrajectoryFilter(model="a")) == ["q1", "q3"]
    assert ids(TrajectoryFilter(outcome=Outcome.FAILED)) == ["q1"]
    assert ids(TrajectoryFilter(since=now - timedelta(days=1))) == ["q2", "q3"]
    assert ids(TrajectoryFilter(until=now - timedelta(days=1))) == ["q1"]
    assert ids(TrajectoryFilter(family="math", model="b")) == ["q2"]
    assert ids(TrajectoryFilter(family="code")) == []


def test_get_by_id_and_prefix(tmp_path: Path) -> None:
    store = TrajectoryStore(tmp_path / "t.jsonl")
    t = traj(1)
    store.append(t)
    assert store.get(t.id) == t
    assert store.get(t.id[:8]) == t
    assert store.get("zzz") is None


def test_torn_tail_is_reported_not_read(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    store = TrajectoryStore(path)
    store.append(traj(1))
    full = traj(2).model_dump_json()
    with path.open("a") as fh:
        fh.write(full[: len(full) // 2])  # a writer died mid-record
    report = ReadReport()
    got = list(read_trajectories(path, report=report))
    assert [t.task.messages[0].content for t in got] == ["q1"]
    [problem] = report.problems
    assert problem.torn and problem.line == 2 and str(path) in str(problem)


def test_next_writer_terminates_torn_line_and_reads_stay_strict_clean(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    store = TrajectoryStore(path)
    store.append(traj(1))
    with path.open("a") as fh:
        fh.write('{"kind": "trajectory", "id": "half')
    store2 = TrajectoryStore(path)  # another process, say
    store2.append(traj(3))
    lines = path.read_text().splitlines()
    assert lines[1].endswith(TORN_MARK)
    report = ReadReport()
    got = list(read_trajectories(path, report=report))  # strict mode: still no error
    assert [t.task.messages[0].content for t in got] == ["q1", "q3"]
    assert [(p.line, p.torn) for p in report.problems] == [(2, True)]


def test_corrupt_line_raises_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    store = TrajectoryStore(path)
    store.append(traj(1))
    with path.open("a") as fh:
        fh.write("this is not json\n")
    store.append(traj(3))
    with pytest.raises(LogFileError) as info:
        list(read_trajectories(path))
    assert info.value.line == 2 and info.value.path == str(path)
    assert f"{path}:2: not valid JSON" in str(info.value)
    report = ReadReport()
    got = list(read_trajectories(path, on_error="skip", report=report))
    assert len(got) == 2 and [p.line for p in report.invalid] == [2]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"kind": "other"}', "not a trajectory record"),
        ("[1, 2]", "not a trajectory record"),
        ('{"kind": "trajectory", "model": "m"}', "invalid trajectory: task"),
    ],
)
def test_invalid_records_name_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(traj(1).model_dump_json() + "\n" + line + "\n")
    with pytest.raises(LogFileError, match=f"{path}:2: {message}"):
        list(read_trajectories(path))


def test_newer_schema_version_is_named(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    record = json.loads(traj(1).model_dump_json())
    record["schema_version"] = 7
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(LogFileError, match=r":1: invalid trajectory: schema_version: .*newer"):
        list(read_trajectories(path))


def test_fsync_mode_writes(tmp_path: Path) -> None:
    store = TrajectoryStore(tmp_path / "t.jsonl", fsync=True)
    store.append(traj(1))
    assert len(list(store.read())) == 1


def test_record_with_newline_in_text_stays_one_line(tmp_path: Path) -> None:
    store = TrajectoryStore(tmp_path / "t.jsonl")
    t = Trajectory(task=math_task(prompt="line one\nline two"), model="m")
    store.append(t)
    assert (tmp_path / "t.jsonl").read_text().count("\n") == 1
    assert list(store.read()) == [t]


def _writer(path: Path, writer_id: str, count: int, pad: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.store_writer", str(path), writer_id, str(count), str(pad)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_concurrent_writer_processes_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    # Varied record sizes, up to ~200 kB: well past the pipe-atomicity size.
    procs = [
        _writer(path, f"w{n}", 60, pad) for n, pad in enumerate([10, 5_000, 70_000, 200_000, 300])
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    report = ReadReport()
    got = list(read_trajectories(path, report=report))
    assert report.problems == []
    assert len(got) == 5 * 60
    per_writer: dict[str, list[int]] = {}
    for t in got:
        writer, i = str(t.task.messages[0].content).split("-")
        per_writer.setdefault(writer, []).append(int(i))
    # Every record arrived whole and each writer's records are in its own order.
    assert {w: sorted(v) for w, v in per_writer.items()} == {
        f"w{n}": list(range(60)) for n in range(5)
    }
    assert all(v == sorted(v) for v in per_writer.values())


def _kill_mid_write(path: Path, proc: subprocess.Popen[str]) -> None:
    """SIGKILL the writer, aimed at a moment when its current record is only partly in the file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        deadline = time.monotonic() + 10  # only a wait for the condition, not a speed check
        while time.monotonic() < deadline:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                break  # a write is in progress: its record is on disk only in part
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        os.close(fd)
    assert proc.wait(timeout=10) == -signal.SIGKILL


def _ends_torn(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) != b"\n"


@pytest.mark.slow
def test_kill_9_during_writes_never_yields_a_torn_record(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    # Multi-MB records: a kill can land in the middle of a write. One kill does not always tear
    # a record, so writers are killed again (a bounded number of times) until one did.
    pads = (2_000_000, 4_000_000, 1_000_000)
    max_rounds = 30
    tears = 0
    rounds = 0
    while rounds < max_rounds and (tears == 0 or rounds < len(pads)):
        proc = _writer(path, f"k{rounds}", 0, pads[rounds % len(pads)])
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        _kill_mid_write(path, proc)
        proc.stdout.close()
        tears += _ends_torn(path)  # the writer is dead: a tail without a newline is a tear
        rounds += 1
    assert tears > 0, f"no kill out of {rounds} tore a record; the test proved nothing"
    # A survivor writes after the crashes.
    store = TrajectoryStore(path)
    last = traj(999)
    store.append(last)
    report = ReadReport()
    got = list(read_trajectories(path, report=report))  # strict: must not raise
    assert got[-1] == last
    assert report.invalid == []
    # Every tear was terminated by the next writer and is reported, with file and line.
    marked, complete_lines = [], 0
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, start=1):
            assert raw.endswith(b"\n")
            complete_lines += 1
            if raw.rstrip(b"\n").endswith(TORN_MARK.encode()):
                marked.append(n)
    assert len(marked) == tears
    assert [p.line for p in report.torn] == marked
    for problem in report.torn:
        assert str(problem).startswith(f"{path}:{problem.line}: ")
    assert len(got) + len(report.torn) == complete_lines
    # Every record read is whole, and each killed writer got at least its first record in.
    for t in got[:-1]:
        assert len(t.task.metadata["pad"]) in pads and set(t.task.metadata["pad"]) == {"x"}
    firsts = {str(t.task.messages[0].content) for t in got[:-1]}
    assert {f"k{r}-0" for r in range(rounds)} <= firsts
    print(f"{rounds} kills, {len(got) - 1} whole records, {tears} torn lines reported")
