"""Scale and figures of the reliability tests (issue 14).

CI runs them at a bounded scale. ``make reliability`` runs the full counts and writes each test's
figures as JSON under ``docs/reliability/`` (the numbers quoted in ``docs/reliability.md``)::

    RRR_RELIABILITY_SCALE=full RRR_RELIABILITY_OUT=docs/reliability pytest -m reliability

Both variables are read once, at import, before the suite's fixtures clear the ``RRR_*``
environment of each test.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

FULL = os.environ.get("RRR_RELIABILITY_SCALE", "ci") == "full"
OUT = os.environ.get("RRR_RELIABILITY_OUT")


def scale(ci: int, full: int) -> int:
    """The count to use: ``full`` under ``RRR_RELIABILITY_SCALE=full``, else ``ci``."""
    return full if FULL else ci


def record(name: str, figures: dict[str, Any]) -> None:
    """Print a test's figures (visible with ``-s``) and, with ``RRR_RELIABILITY_OUT``, write
    them to ``<out>/<name>.json`` with the scale and the machine they came from."""
    doc = {
        "scale": "full" if FULL else "ci",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        **figures,
    }
    print(f"\n[{name}] {json.dumps(doc)}")
    if OUT:
        out = Path(OUT)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
