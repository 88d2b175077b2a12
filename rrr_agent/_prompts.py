"""Loads prompt files from ``rrr_prompts`` (or a user folder that overrides them)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from string import Template

from ._errors import ConfigError

__all__ = ["Prompt", "PromptLibrary"]


@dataclass(frozen=True, slots=True)
class Prompt:
    name: str  # e.g. "reflection/math"
    text: str
    version: str  # "sha256:<12 hex>" of the text: changes whenever the wording does

    def render(self, **values: str) -> str:
        try:
            return Template(self.text).substitute(values)
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"prompt {self.name}: cannot fill placeholder {exc}") from exc


class PromptLibrary:
    """Prompt files by name, with per-family fallback to ``default``.

    ``override_dir`` (e.g. the ``prompts_dir`` setting) is searched first, so a user can change the
    wording without touching the package; the content hash recorded in each trajectory tells the
    versions apart.
    """

    def __init__(self, override_dir: str | Path | None = None):
        # The shipped files, found through the package (a wheel, an editable install or a zip).
        shipped = resources.files("rrr_prompts")
        self._dirs: list[Path | Traversable] = [Path(override_dir)] if override_dir else []
        self._dirs.append(shipped)
        self._cache: dict[str, Prompt | None] = {}

    def _load(self, name: str) -> Prompt | None:
        if name in self._cache:
            return self._cache[name]
        found: Prompt | None = None
        for d in self._dirs:
            path = d / f"{name}.txt"
            if path.is_file():
                text = path.read_text(encoding="utf-8").strip()
                digest = hashlib.sha256(text.encode()).hexdigest()[:12]
                found = Prompt(name=name, text=text, version=f"sha256:{digest}")
                break
        self._cache[name] = found
        return found

    def get(self, kind: str, family: str = "default") -> Prompt:
        """``kind/family``, falling back to ``kind/default``."""
        for name in (f"{kind}/{family}", f"{kind}/default"):
            prompt = self._load(name)
            if prompt is not None:
                return prompt
        raise ConfigError(
            f"no prompt file {kind}/{family}.txt or {kind}/default.txt in "
            + ", ".join(str(d) for d in self._dirs)
        )
