"""``rrr train``: data, mine, run, config. Needs the ``train`` extra (torch, TRL, PEFT)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .._settings import load_settings
from ._common import (
    EXIT_INFRA,
    ConfigOpt,
    JsonOpt,
    err,
    errors_exit,
    load_task_source,
    out,
    preparing,
)

app = typer.Typer(
    help="Train reflections with GRPO (needs the 'train' extra): data, mine, run, config.",
    no_args_is_help=True,
)

LogsArg = Annotated[list[Path], typer.Argument(help="Trajectory logs (JSONL) to learn from.")]


SkipInvalidOpt = Annotated[
    bool,
    typer.Option(
        "--skip-invalid",
        help="Skip corrupt log lines (listed in the report) instead of stopping at the first.",
    ),
]


@app.command("data")
def train_data(
    logs: LogsArg,
    holdout: Annotated[float, typer.Option(help="Share of tasks held out.")] = 0.1,
    skip_invalid: SkipInvalidOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Report what the logs give as training data: failures kept, skipped and why, splits."""
    from rrr_trainer.data import build_failure_set

    with errors_exit():
        _, _, report = build_failure_set(logs, holdout_fraction=holdout, skip_invalid=skip_invalid)
    data = report.to_dict()
    if as_json:
        print(json.dumps(data, indent=2))
        return
    table = Table(show_header=False, title="training data")
    for key, value in data.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict | list) else str(value))
    out.print(table)


@app.command("mine")
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
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Sample first attempts (up to N per task) and keep the failures: the dataset of failures.

    The model, API key and base, timeout and transport retries come from the settings (flags,
    RRR_* variables, the TOML file); with no model configured, the embedded one.
    """
    from rich.progress import Progress
    from rrr_trainer.mine import mine_failures

    with errors_exit():
        settings = load_settings(config, model=model, api_base=api_base)
        tasks = load_task_source(taskset, tasks_file, limit, "--taskset")
        with Progress(console=err, disable=as_json) as progress:
            bar = progress.add_task("mining", total=len(tasks) * samples)
            report = mine_failures(
                tasks, None, output, settings=settings, samples=samples, keep_per_task=keep,
                temperature=temperature, max_tokens=max_tokens, concurrency=concurrency,
                on_result=lambda: progress.advance(bar), on_prepare=preparing(),
            )  # fmt: skip
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        for key, value in report.to_dict().items():
            out.print(f"{key}: {value}")
        err.print(f"failures appended to {output}")
    if report.infrastructure_errors:
        raise typer.Exit(EXIT_INFRA)


@app.command("run")
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
    skip_invalid: SkipInvalidOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Train with RRR GRPO on the failures in LOGS; resumes from the last checkpoint."""
    from rrr_trainer import RRRTrainConfig, train

    with errors_exit():
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

            result = train(
                config, list(logs), resume=not fresh, progress=on_step, skip_invalid=skip_invalid
            )
    if not result.main:  # another rank of `accelerate launch`: rank 0 reports
        return
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


@app.command("config")
def train_config(as_json: JsonOpt = False) -> None:
    """Every training setting with its default and help (for a TOML file's \\[train] table)."""
    from rrr_trainer import RRRTrainConfig

    rows = RRRTrainConfig.help_table()
    if as_json:
        for name, default, help_text in rows:
            print(json.dumps({"setting": name, "default": default, "help": help_text}))
        return
    table = Table(title="rrr train settings")
    for col in ("setting", "default", "help"):
        table.add_column(col)
    for name, default, help_text in rows:
        table.add_row(name, default, help_text)
    out.print(table)
