"""One training run: failure set from the logs → the chosen mode → export → metrics plot.

The mode dispatch lives here and only here: :func:`rrr_trainer.grpo.train_online` (the paper:
reflections sampled from the current policy, retries generated inside the reward) or
:func:`rrr_trainer.offline.train_offline` (logged k-reflection groups). Both hand back a
:class:`~rrr_trainer.policy.TrainedPolicy`, and the export that follows is the same for both.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from rrr_agent import ConfigError, DataError

from .config import RRRTrainConfig
from .data import DataReport, build_failure_set
from .export import export_model
from .plots import plot_metrics
from .policy import ProgressHook, is_main_process, torch_env, world_size

__all__ = ["TrainResult", "train"]


@dataclass
class TrainResult:
    output_dir: Path
    adapter_dir: Path | None
    merged_dir: Path | None
    metrics_path: Path
    plot_path: Path | None
    report: DataReport
    steps: int
    seconds: float
    #: False on the other ranks of a multi-process run (they export and print nothing)
    main: bool = True


def train(
    config: RRRTrainConfig,
    data: list[str | Path],
    *,
    resume: bool = True,
    progress: ProgressHook | None = None,
    skip_invalid: bool = False,
) -> TrainResult:
    """Build the failure set from ``data`` logs, train in ``config.mode``, export the result.

    ``resume`` continues from the newest checkpoint in ``config.output_dir`` (both modes).
    """
    config.validate()
    if config.mode == "offline" and world_size() > 1:
        raise ConfigError(
            "offline mode trains in one process; launch it without several processes, or use "
            "online mode (GRPO under accelerate)"
        )
    torch_env(config.threads)
    main = is_main_process()  # under accelerate, only rank 0 writes files
    started = time.perf_counter()
    output_dir = Path(config.output_dir)
    train_set, heldout, report = build_failure_set(
        data, holdout_fraction=config.holdout_fraction, max_examples=config.max_examples,
        skip_invalid=skip_invalid,
    )  # fmt: skip
    if not train_set:  # bad or empty data: nothing is written
        raise DataError(
            f"no trainable failures in {', '.join(map(str, data))}: {report.to_dict()['skipped']}"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    if main:
        (output_dir / "data_report.json").write_text(json.dumps(report.to_dict(), indent=2))
    if main:
        (output_dir / "heldout.jsonl").write_text(
            "".join(json.dumps({"task": json.loads(e.task_json)}) + "\n" for e in heldout)
        )
        config_row = {**config.to_dict(), "world_size": world_size()}
        (output_dir / "rrr_train_config.json").write_text(json.dumps(config_row, indent=2))
    if config.mode == "offline":
        from .offline import train_offline

        trained = train_offline(config, train_set, output_dir, resume=resume, progress=progress)
    else:
        from .grpo import train_online

        trained = train_online(config, train_set, output_dir, resume=resume, progress=progress)
    metrics = output_dir / "metrics.jsonl"
    if not main:  # rank > 0: the model is the same; rank 0 exports it
        return TrainResult(
            output_dir=output_dir, adapter_dir=None, merged_dir=None, metrics_path=metrics,
            plot_path=None, report=report, steps=int(trained.state.global_step),
            seconds=time.perf_counter() - started, main=False,
        )  # fmt: skip
    adapter_dir, merged_dir = export_model(
        trained.model,
        trained.tokenizer,
        output_dir,
        config,
        trained.original_eos,
        report,
        trained.state,
    )
    plot = plot_metrics(metrics, output_dir / "metrics.png")
    return TrainResult(
        output_dir=output_dir,
        adapter_dir=adapter_dir,
        merged_dir=merged_dir,
        metrics_path=metrics,
        plot_path=plot,
        report=report,
        steps=int(trained.state.global_step),
        seconds=time.perf_counter() - started,
    )
