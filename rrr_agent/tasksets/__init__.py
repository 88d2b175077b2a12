"""Task sets: loaders that turn real data sets into rrr tasks with verifier specs.

Each public module of this package registers its sets with :func:`register_taskset`; discovery is
automatic, so a new data set is one new module. ``rrr tasks list`` and ``rrr tasks export NAME``
use this registry.

Data sets are read from :func:`datasets_root`: ``$RRR_DATASETS``, else the data that ships inside
the package (``rrr_agent/data``; its ``SOURCES.md`` names every upstream file, commit and license).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .._errors import DataError
from .._types import Task

__all__ = [
    "GENERATED",
    "PACKAGED_DATA",
    "TaskSet",
    "datasets_root",
    "get_taskset",
    "register_taskset",
    "tasksets",
]

Loader = Callable[[Path], Iterator[Task]]

#: ``source`` of task sets generated from a seed (no data file needed).
GENERATED = "(generated)"


@dataclass(frozen=True, slots=True)
class TaskSet:
    name: str  # e.g. "countdown-test", "bfcl-simple_python"
    description: str
    family: str  # task family of its tasks (selects the reflection prompt)
    source: str  # path under the datasets root it reads, for messages and `rrr tasks list`
    loader: Loader

    @property
    def generated(self) -> bool:
        return self.source == GENERATED

    def count(self, root: Path | None = None) -> int:
        """How many tasks the set holds (reads the data once)."""
        return sum(1 for _ in self.load(root))

    def load(self, root: Path | None = None) -> Iterator[Task]:
        if self.source == GENERATED:
            return self.loader(root or Path("."))
        base = root if root is not None else datasets_root()
        path = base / self.source
        if not path.exists():
            raise DataError(f"task set {self.name!r} needs {path}, which does not exist", path=path)
        return self.loader(base)


_TASKSETS: dict[str, TaskSet] = {}
_LOADED = False


def register_taskset(
    name: str, *, description: str, family: str, source: str
) -> Callable[[Loader], Loader]:
    """Decorator for ``loader(datasets_root) -> Iterator[Task]``."""

    def deco(fn: Loader) -> Loader:
        if name in _TASKSETS:
            raise ValueError(f"task set {name!r} is registered twice")
        _TASKSETS[name] = TaskSet(name, description, family, source, fn)
        return fn

    return deco


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    _LOADED = True


def tasksets() -> dict[str, TaskSet]:
    _load_all()
    return dict(sorted(_TASKSETS.items()))


def get_taskset(name: str) -> TaskSet:
    sets = tasksets()
    if name not in sets:
        raise DataError(f"unknown task set {name!r} (known: {', '.join(sets) or 'none'})")
    return sets[name]


#: The data that ships with the package (package data; see its SOURCES.md).
PACKAGED_DATA = Path(__file__).resolve().parent.parent / "data"


def datasets_root() -> Path:
    """``$RRR_DATASETS`` when set, else the data packaged with rrr."""
    env = os.environ.get("RRR_DATASETS")
    if env:
        root = Path(env).expanduser()
        if not root.is_dir():
            raise DataError(f"RRR_DATASETS names {root}, which is not a folder", path=root)
        return root
    return PACKAGED_DATA
