"""rrr_tui: the Textual terminal chat that shows attempts, reflections and retries live.

Needs the ``tui`` extra (textual). It subscribes to the engine's events and has no loop of its own.
"""

from rrr_agent import require_extra

__all__ = ["require_extra"]
