"""Guards for optional dependencies: a clear message naming the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from ._errors import MissingExtraError

__all__ = ["EXTRAS", "require_extra"]

#: Import name → extra that provides it.
EXTRAS: dict[str, str] = {
    "torch": "train",
    "transformers": "train",
    "trl": "train",
    "peft": "train",
    "datasets": "train",
    "accelerate": "train",
    "textual": "tui",
    "vllm": "serve",
    "gguf": "model",
}


def require_extra(module: str, what: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise MissingExtraError(EXTRAS.get(top, "dev"), top, what) from exc
