"""The checkpoint registry: manifests, the atomic current pointer, rollback, damage, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rrr_agent import ConfigError, DataError, Registry
from rrr_agent.cli import app
from rrr_agent.registry import default_model

runner = CliRunner()


def _folder(tmp_path: Path, name: str, payload: str = "weights") -> Path:
    folder = tmp_path / "src" / name
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "b"}))
    (folder / "adapter_model.safetensors").write_text(payload)
    return folder


def test_add_promote_rollback_and_history(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    assert reg.names() == [] and reg.current() is None
    a = reg.add(_folder(tmp_path, "a"), "a", kind="adapter", base_model="b")
    assert a.manifest["files"]["adapter_model.safetensors"]["size"] == len("weights")
    assert len(a.manifest["files"]["adapter_model.safetensors"]["sha256"]) == 64
    reg.promote("a", reason="first")
    b = reg.add(_folder(tmp_path, "b", "better"), "b", kind="adapter", base_model="b",
                parent="a", watermark={"log": 10}, metrics={"x": 1})  # fmt: skip
    assert reg.promote("b") == "a" and reg.current_name() == "b"
    assert b.parent == "a" and reg.get("b").manifest["watermark"] == {"log": 10}
    assert reg.rollback() == "a" and reg.current_name() == "a"
    assert [h["action"] for h in reg.history()] == ["promote", "promote", "promote", "rollback"]
    assert reg.names() == ["a", "b"]  # b stays addressable by name
    with pytest.raises(ConfigError, match="already exists"):
        reg.add(_folder(tmp_path, "a2"), "a", kind="adapter", base_model="b")
    with pytest.raises(ConfigError, match="no checkpoint named 'zz'"):
        reg.promote("zz")


def test_half_written_checkpoints_are_never_visible(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    reg.add(_folder(tmp_path, "a"), "a", kind="adapter", base_model="b")
    # What a killed add leaves: a folder without the final name, and one without a manifest.
    (reg.root / ".incoming-b-123").mkdir()
    (reg.root / "c").mkdir()
    assert reg.names() == ["a"]
    with pytest.raises(DataError, match="no manifest"):
        reg.promote("c")
    assert reg.cleanup() == [".incoming-b-123"] and not (reg.root / ".incoming-b-123").exists()
    # A damaged checkpoint is refused as current.
    (reg.root / "a" / "adapter_model.safetensors").write_text("truncated")
    assert reg.problems("a") and reg.current_name() is None
    with pytest.raises(DataError, match="not intact"):
        reg.promote("a")


def test_corrupted_registry_files_are_named(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    reg.add(_folder(tmp_path, "a"), "a", kind="adapter", base_model="b")
    (reg.root / "a" / "manifest.json").write_text("{nope")
    with pytest.raises(DataError, match=r"a/manifest.json:1: checkpoint manifest is not valid"):
        reg.get("a")
    (reg.root / "CURRENT").write_text("../../etc\n")
    with pytest.raises(DataError, match="CURRENT: the current pointer holds"):
        reg.current()
    (reg.root / "history.jsonl").write_text('{"ok": 1}\n{broken\n')
    with pytest.raises(DataError, match=r"history.jsonl:2: not valid JSON"):
        reg.history()


def test_runtime_default_model_follows_current(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RRR_CHECKPOINTS", str(tmp_path / "reg"))
    assert default_model(None) == "local/gemma-3-270m"
    assert default_model("hosted_vllm/x") == "hosted_vllm/x"
    reg = Registry()
    reg.add(_folder(tmp_path, "a"), "a", kind="adapter", base_model="b")
    reg.promote("a")
    assert default_model(None) == f"local/{reg.root / 'a'}"
    (reg.root / "CURRENT").write_text("!!\n")
    with pytest.raises(DataError):  # a broken pointer is an error, not a silent fallback
        default_model(None)


def test_checkpoints_cli(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    reg.add(_folder(tmp_path, "a"), "a", kind="adapter", base_model="b")
    reg.add(_folder(tmp_path, "b"), "b", kind="adapter", base_model="b", parent="a")
    root = ["--registry", str(reg.root)]
    assert runner.invoke(app, ["checkpoints", "promote", "b", *root]).exit_code == 0
    listed = runner.invoke(app, ["checkpoints", "list", "--json", *root])
    rows = [json.loads(x) for x in listed.stdout.splitlines()]
    assert [(r["name"], r["current"]) for r in rows] == [("a", False), ("b", True)]
    shown = json.loads(runner.invoke(app, ["checkpoints", "show", "--json", *root]).stdout)
    assert shown["name"] == "b" and shown["parent"] == "a" and shown["problems"] == []
    assert runner.invoke(app, ["checkpoints", "rollback", *root]).exit_code == 0
    assert reg.current_name() == "a"
    bad = runner.invoke(app, ["checkpoints", "promote", "nope", *root])
    assert bad.exit_code == 1 and "no checkpoint named 'nope'" in bad.output
