"""Shared fixtures. Every test gets its own data dir (RRR_HOME) and a clean RRR_* environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Offline, quiet and predictable: no hub look-ups, no price-map fetches, no busy-waiting threads.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# One converted embedded model for the whole run, inside the repo (gitignored), never the user's.
os.environ.setdefault("RRR_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".rrr-test-cache"))

from rrr_agent import ScriptedModel, Task

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def rrr_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("RRR_") and key not in ("RRR_DATASETS", "RRR_CACHE_DIR"):
            monkeypatch.delenv(key)
    home = tmp_path / "rrr-home"
    monkeypatch.setenv("RRR_HOME", str(home))
    return home


@pytest.fixture
def scripted() -> Iterator[ScriptedModel]:
    with ScriptedModel() as model:
        yield model


def math_task(answer: str = "42", prompt: str = "What is 17 + 25?", **kw: object) -> Task:
    return Task.from_prompt(prompt, {"type": "exact", "expected": answer}, family="math", **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama with a trained byte-level tokenizer (tests/tiny_model.py), built once
    per test session for the trainer and nightly tests."""
    from .tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")
