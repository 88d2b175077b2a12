"""rrr_trainer: GRPO over logged reflections (reward on reflection tokens only).

Needs the ``train`` extra (torch, transformers, trl, peft, datasets, accelerate). The trainer reads
trajectories written by ``rrr_agent`` and never the runtime's internals.
"""

from rrr_agent._extras import require_extra

__all__ = ["require_extra"]
