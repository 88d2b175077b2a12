"""``rrr logs``: read the trajectory log and the error log."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from .._settings import load_settings
from .._store import ErrorLog, ReadReport, TrajectoryFilter, TrajectoryStore, read_trajectories
from .._summary import summarize, trajectory_row
from .._types import Outcome, Trajectory
from ._common import (
    EXIT_BAD_INPUT,
    ConfigOpt,
    JsonOpt,
    LogOpt,
    err,
    errors_exit,
    out,
    print_summary,
    print_trajectory,
)

T = TypeVar("T")

app = typer.Typer(help="Read the trajectory log: list, show, stats, errors.", no_args_is_help=True)


def _parse_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{name} must be an ISO date or time, e.g. 2026-11-21T08:00"
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _log_path(log: Path | None, config: Path | None) -> Path:
    return log or load_settings(config).trajectory_log


def _read(
    log: Path | None, config: Path | None, filt: TrajectoryFilter, skip_invalid: bool
) -> list[Trajectory]:
    report = ReadReport()
    path = _log_path(log, config)
    trajs = list(
        read_trajectories(path, filt, on_error="skip" if skip_invalid else "raise", report=report)
    )
    for problem in report.problems:
        err.print(f"[yellow]skipped[/] {problem}", highlight=False)
    return trajs


ModelFilter = Annotated[str | None, typer.Option("--model", "-m", help="Only this model string.")]
OutcomeFilter = Annotated[
    Outcome | None, typer.Option(help="Only this outcome.", case_sensitive=False)
]
SinceOpt = Annotated[
    str | None, typer.Option(help="Only trajectories started at/after (ISO time).")
]
UntilOpt = Annotated[str | None, typer.Option(help="Only trajectories started before (ISO time).")]
FamilyOpt = Annotated[str | None, typer.Option(help="Only this task family.")]
SkipOpt = Annotated[
    bool,
    typer.Option("--skip-invalid", help="Skip (and report) unreadable lines instead of failing."),
]
LimitOpt = Annotated[int | None, typer.Option("--limit", "-n", help="Show only the newest N.")]


def _filter(
    model: str | None,
    outcome: Outcome | None,
    since: str | None,
    until: str | None,
    family: str | None,
) -> TrajectoryFilter:
    return TrajectoryFilter(
        model=model,
        outcome=outcome,
        since=_parse_time(since, "--since"),
        until=_parse_time(until, "--until"),
        family=family,
    )


def _newest(rows: list[T], limit: int | None) -> list[T]:
    if limit is None:
        return rows
    return rows[-limit:] if limit > 0 else []


@app.command("list")
def logs_list(
    model: ModelFilter = None,
    outcome: OutcomeFilter = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    family: FamilyOpt = None,
    limit: LimitOpt = None,
    log: LogOpt = None,
    config: ConfigOpt = None,
    skip_invalid: SkipOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """List logged trajectories, oldest first (one row or JSON line each)."""
    with errors_exit():
        trajs = _read(log, config, _filter(model, outcome, since, until, family), skip_invalid)
    rows = [trajectory_row(t) for t in _newest(trajs, limit)]
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table(title=f"{len(rows)} trajectories")
    for col in ("id", "started", "model", "task", "family", "outcome", "attempts", "tokens"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["id"][:12], r["started_at"][:19], r["model"], r["task_id"], r["family"],
            r["outcome"], str(r["attempts"]), str(r["tokens"]),
        )  # fmt: skip
    out.print(table)


@app.command("show")
def logs_show(
    trajectory_id: Annotated[str, typer.Argument(help="Trajectory id or a unique prefix.")],
    log: LogOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one trajectory: attempts, verdicts and reflections."""
    with errors_exit():
        store = TrajectoryStore(_log_path(log, config))
        traj = store.get(trajectory_id)
    if traj is None:
        err.print(f"[bold red]error:[/] no trajectory with id {trajectory_id!r} in {store.path}")
        raise typer.Exit(EXIT_BAD_INPUT)
    if as_json:
        print(traj.model_dump_json(indent=2))
    else:
        print_trajectory(traj)


@app.command("stats")
def logs_stats(
    model: ModelFilter = None,
    outcome: OutcomeFilter = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    family: FamilyOpt = None,
    log: LogOpt = None,
    config: ConfigOpt = None,
    skip_invalid: SkipOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """First-try and second-try success and token usage over the (filtered) log."""
    with errors_exit():
        trajs = _read(log, config, _filter(model, outcome, since, until, family), skip_invalid)
    summary = summarize(trajs)
    if as_json:
        print(json.dumps(summary.to_dict(), indent=2))
        return
    print_summary(summary, ", ".join(sorted(summary.models)) or "(no trajectories)")


@app.command("errors")
def logs_errors(
    limit: LimitOpt = None,
    log: LogOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Runs stopped by infrastructure or verifier errors (never used as training data).

    One block per error: when, model, task and stage on the first line, the whole error below.
    """
    with errors_exit():
        settings = load_settings(config, log_path=log)
        rows = _newest(list(ErrorLog(settings.error_log).read()), limit)
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    out.print(f"[bold]{len(rows)} run error{'' if len(rows) == 1 else 's'}[/]", highlight=False)
    for row in rows:
        when = str(row.get("at", ""))[:19].replace("T", " ")
        out.print(
            f"\n[bold]{when}[/]  model [cyan]{row.get('model')}[/]  task {row.get('task_id')}  "
            f"stage {row.get('stage')}",
            highlight=False,
        )
        out.print(f"  [red]{row.get('error_type')}[/]: {row.get('error')}", highlight=False)


@app.command("path")
def logs_path(log: LogOpt = None, config: ConfigOpt = None) -> None:
    """Print the trajectory log's path."""
    with errors_exit():
        print(_log_path(log, config))
