"""The checkpoint registry: named checkpoints, each with a manifest, and an atomic ``current``.

Layout under the root (``$RRR_CHECKPOINTS``, else ``<data dir>/checkpoints``)::

    <name>/                     one checkpoint: its files, and manifest.json, written last
    .incoming-<name>-<pid>/     a checkpoint being written (never listed; cleaned up)
    CURRENT                     the promoted checkpoint's name, replaced atomically
    history.jsonl               every promotion and rollback

A checkpoint enters under its final name only by renaming a complete folder (manifest included),
and ``CURRENT`` names only checkpoints whose manifest and file sizes check out, so ``current``
never points at a half-written checkpoint. The manifest records the parent, the data watermark the
checkpoint was trained up to, its evaluation metrics, and every file's sha256 and size. Earlier
checkpoints stay addressable by name (``local/<path>`` runs one in-process; ``rrr serve`` serves
one). The runtime's default model follows ``current`` (:func:`default_model`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ._errors import ConfigError, DataError
from ._files import sha256_file, write_text_atomic
from ._settings import data_dir

__all__ = ["Checkpoint", "Registry", "default_model", "registry_root"]

MANIFEST = "manifest.json"
CURRENT = "CURRENT"
HISTORY = "history.jsonl"
FORMAT = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def registry_root() -> Path:
    env = os.environ.get("RRR_CHECKPOINTS")
    return Path(env).expanduser() if env else data_dir() / "checkpoints"


@dataclass(frozen=True)
class Checkpoint:
    name: str
    path: Path
    manifest: dict[str, Any]

    @property
    def kind(self) -> Literal["adapter", "full"]:
        kind = self.manifest.get("kind", "full")
        return "adapter" if kind == "adapter" else "full"

    @property
    def parent(self) -> str | None:
        parent = self.manifest.get("parent")
        return str(parent) if parent else None

    @property
    def model_string(self) -> str:
        """Runs it in-process (an adapter loads over its base model)."""
        return f"local/{self.path}"

    def summary(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "name": self.name,
            "kind": self.kind,
            "parent": self.parent,
            "created_at": m.get("created_at"),
            "base_model": m.get("base_model"),
            "watermark": m.get("watermark"),
            "metrics": m.get("metrics", {}),
            "path": str(self.path),
            "files": len(m.get("files", {})),
        }


class Registry:
    """See the module docstring."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else registry_root()

    # ------------------------------------------------------------------ reading

    def _manifest(self, folder: Path) -> dict[str, Any]:
        path = folder / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError("checkpoint has no manifest (half-written?)", path=path) from None
        except json.JSONDecodeError as exc:
            raise DataError(
                f"checkpoint manifest is not valid JSON: {exc.msg} (column {exc.colno})",
                path=path,
                line=exc.lineno,
            ) from None
        except OSError as exc:
            raise DataError(f"unreadable checkpoint manifest: {exc.strerror}", path=path) from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or "files" not in data:
            raise DataError(f"not a checkpoint manifest of format {FORMAT}", path=path)
        return data

    def names(self) -> list[str]:
        """Complete checkpoints (those with a manifest), oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for folder in self.root.iterdir():
            if (
                folder.is_dir()
                and not folder.name.startswith(".")
                and (folder / MANIFEST).is_file()
            ):
                found.append(folder)
        return [f.name for f in sorted(found, key=lambda f: (f / MANIFEST).stat().st_mtime_ns)]

    def get(self, name: str) -> Checkpoint:
        folder = self.root / name
        if not _NAME.match(name) or not folder.is_dir():
            known = ", ".join(self.names()) or "none"
            raise ConfigError(f"no checkpoint named {name!r} in {self.root} (known: {known})")
        return Checkpoint(name, folder, self._manifest(folder))

    def problems(self, name: str, *, full: bool = False) -> list[str]:
        """What is wrong with a checkpoint's files: missing, other sizes (or hashes, ``full``)."""
        checkpoint = self.get(name)
        out = []
        for rel, info in checkpoint.manifest["files"].items():
            path = checkpoint.path / rel
            if not path.is_file():
                out.append(f"{path}: missing")
            elif path.stat().st_size != info.get("size"):
                out.append(f"{path}: size {path.stat().st_size}, manifest says {info.get('size')}")
            elif full and sha256_file(path) != info.get("sha256"):
                out.append(f"{path}: sha256 differs from the manifest")
        return out

    def current_name(self) -> str | None:
        path = self.root / CURRENT
        if not path.is_file():
            return None
        name = path.read_text(encoding="utf-8").strip()
        if not _NAME.match(name):
            raise DataError(f"the current pointer holds {name!r}, not a checkpoint name", path=path)
        return name

    def current(self) -> Checkpoint | None:
        name = self.current_name()
        return self.get(name) if name else None

    def history(self) -> list[dict[str, Any]]:
        path = self.root / HISTORY
        if not path.is_file():
            return []
        rows = []
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"not valid JSON: {exc.msg}", path=path, line=lineno) from None
        return rows

    # ------------------------------------------------------------------ writing

    def add(
        self,
        source: str | Path,
        name: str,
        *,
        kind: Literal["adapter", "full"],
        base_model: str,
        parent: str | None = None,
        watermark: Any = None,
        metrics: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Checkpoint:
        """Copy ``source`` in as checkpoint ``name``: files first, the manifest last, then one
        rename makes it visible. An interrupted add leaves only an ``.incoming-*`` folder."""
        if not _NAME.match(name):
            raise ConfigError(f"{name!r} is not a valid checkpoint name (letters, digits, _ . -)")
        if (self.root / name).exists():
            raise ConfigError(f"a checkpoint named {name!r} already exists in {self.root}")
        src = Path(source)
        if not src.is_dir():
            raise ConfigError(f"{src} is not a folder")
        self.root.mkdir(parents=True, exist_ok=True)
        incoming = self.root / f".incoming-{name}-{os.getpid()}"
        shutil.rmtree(incoming, ignore_errors=True)
        try:
            shutil.copytree(src, incoming)
            files = {
                str(p.relative_to(incoming)): {"sha256": sha256_file(p), "size": p.stat().st_size}
                for p in sorted(incoming.rglob("*"))
                if p.is_file() and p.name != MANIFEST
            }
            manifest = {
                "format": FORMAT,
                "name": name,
                "kind": kind,
                "base_model": base_model,
                "parent": parent,
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "watermark": watermark,
                "metrics": metrics or {},
                "files": files,
                **(extra or {}),
            }
            write_text_atomic(incoming / MANIFEST, json.dumps(manifest, indent=2), fsync=True)
            os.rename(incoming, self.root / name)
        except BaseException:
            shutil.rmtree(incoming, ignore_errors=True)
            raise
        return self.get(name)

    def update_metrics(self, name: str, metrics: dict[str, Any]) -> Checkpoint:
        """Add evaluation figures to a checkpoint's manifest (rewritten atomically)."""
        checkpoint = self.get(name)
        manifest = {**checkpoint.manifest, "metrics": {**checkpoint.manifest.get("metrics", {}),
                                                       **metrics}}  # fmt: skip
        write_text_atomic(checkpoint.path / MANIFEST, json.dumps(manifest, indent=2))
        return self.get(name)

    def promote(self, name: str, *, reason: str = "") -> str | None:
        """Make ``name`` current (atomically); return the previous current name."""
        problems = self.problems(name)
        if problems:
            raise DataError(f"checkpoint {name!r} is not intact: {'; '.join(problems[:3])}")
        previous = self.current_name()
        write_text_atomic(self.root / CURRENT, name + "\n", fsync=True)
        self._log({"action": "promote", "from": previous, "to": name, "reason": reason})
        return previous

    def rollback(self, to: str | None = None, *, reason: str = "") -> str:
        """Make ``to`` (default: the current checkpoint's parent) current again."""
        current = self.current()
        if to is None:
            if current is None or current.parent is None:
                raise ConfigError("nothing to roll back to: no current checkpoint with a parent")
            to = current.parent
        self.promote(to, reason=reason or "rollback")
        self._log({"action": "rollback", "from": current.name if current else None, "to": to,
                   "reason": reason})  # fmt: skip
        return to

    def cleanup(self) -> list[str]:
        """Remove what interrupted adds left behind; return what was removed."""
        removed = []
        if self.root.is_dir():
            for folder in self.root.glob(".incoming-*"):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder.name)
        return removed

    def _log(self, row: dict[str, Any]) -> None:
        from ._store import JsonlAppender

        with JsonlAppender(self.root / HISTORY, fsync=True) as log:
            log.append({"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **row})


def default_model(configured: str | None) -> str:
    """The model a runtime without a configured one uses: the promoted checkpoint when the
    registry has one (in-process), else the embedded model."""
    if configured:
        return configured
    current = Registry().current()  # a broken registry is an error, never a silent fallback
    if current is not None:
        return current.model_string
    from .embedded import EMBEDDED_MODEL_STRING

    return EMBEDDED_MODEL_STRING
