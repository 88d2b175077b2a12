"""rrr_trainer: GRPO over logged failures, reward on the reflection tokens only.

Needs the ``train`` extra (torch, transformers, trl, peft, datasets, accelerate). The trainer reads
trajectories written by ``rrr_agent`` and never the runtime's internals. Importing this package is
cheap; torch loads when training starts.

    from rrr_trainer import RRRTrainConfig, train
    result = train(RRRTrainConfig(max_steps=50), ["~/.local/share/rrr/trajectories.jsonl"])
"""

from typing import Any

from .config import RRRTrainConfig
from .data import DataReport, FailureExample, build_failure_set, split_of
from .mine import MineReport, mine_failures

__all__ = [
    "DataReport",
    "FailureExample",
    "MineReport",
    "RRRTrainConfig",
    "build_failure_set",
    "mine_failures",
    "split_of",
    "train",
]


def train(*args: Any, **kwargs: Any) -> Any:
    """See :func:`rrr_trainer.run.train` (imported lazily: training loads torch)."""
    from .run import train as _train

    return _train(*args, **kwargs)
