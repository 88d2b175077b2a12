"""One settings object, merged from (highest first): flags → ``RRR_*`` env vars → TOML file →
defaults.

The TOML file is the one named by ``--config``, else ``$RRR_CONFIG``, else
``<data dir>/config.toml`` when it exists. Keys are the field names below, at the top level::

    model = "hosted_vllm/gemma"
    api_base = "http://127.0.0.1:8000/v1"
    max_retries = 1
    concurrency = 16

The data dir is ``$RRR_HOME``, else ``$XDG_DATA_HOME/rrr``, else ``~/.local/share/rrr``.
"""

from __future__ import annotations

import os
import re
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ._errors import ConfigError
from ._types import LoopOptions, SamplingParams

__all__ = ["Settings", "config_path", "data_dir", "key_line", "load_settings", "read_toml"]


def data_dir() -> Path:
    """Where logs and caches live: ``$RRR_HOME`` (like llm's ``LLM_USER_PATH``), else XDG's."""
    env = os.environ.get("RRR_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "rrr"


def config_path(explicit: str | Path | None = None) -> Path | None:
    """The TOML file to read, or None. An explicitly named file must exist."""
    if explicit is not None:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        return p
    env = os.environ.get("RRR_CONFIG")
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise ConfigError(f"config file {p} (from RRR_CONFIG) does not exist")
        return p
    default = data_dir() / "config.toml"
    return default if default.is_file() else None


class _TomlSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]):
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


class Settings(BaseSettings):
    """Every user-facing setting of the runtime and CLI."""

    model_config = SettingsConfigDict(env_prefix="RRR_", extra="forbid", validate_default=True)

    # model access
    model: str | None = Field(None, description="litellm model string, e.g. hosted_vllm/gemma")
    api_base: str | None = Field(None, description="base URL of an OpenAI-compatible server")
    api_key: SecretStr | None = Field(None, description="API key (prefer the provider's env var)")
    model_revision: str | None = Field(None, description="revision recorded with each trajectory")
    timeout_s: float = Field(120.0, gt=0, description="timeout of one model call, seconds")
    transport_tries: int = Field(4, ge=1, description="requests per call on infrastructure errors")

    # sampling
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    reflection_max_tokens: int | None = Field(None, ge=1)
    reflection_temperature: float | None = Field(
        None, ge=0, description="temperature of reflections (default: temperature)"
    )
    reflection_greedy_branch: bool = Field(
        False,
        description="write branch 0 of each reflection group greedily (temperature 0); the "
        "others at reflection_temperature",
    )
    seed: int | None = None
    stop: list[str] | None = Field(
        None, description='stop strings, e.g. ["\\nUser:"] for a base model served by vLLM'
    )

    # loop
    max_retries: int = Field(1, ge=0, description="retries after the first attempt")
    show_feedback: bool = Field(False, description="show verifier feedback before reflecting")
    reflections: int = Field(1, ge=1, description="k reflections sampled per failure")
    cancel_on_success: bool = Field(False, description="with k > 1, stop other branches on a pass")
    reflect: bool = Field(True, description="False: plain-retry control, no reflection")

    # batch and logging
    concurrency: int = Field(8, ge=1, description="tasks in flight at once")
    log: bool = Field(True, description="append trajectories to the log")
    log_path: Path | None = Field(None, description="trajectory log (default: data dir)")
    fsync: bool = Field(False, description="fsync after every record (survives power loss)")
    prompts_dir: Path | None = Field(None, description="folder whose prompt files override ours")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls, _TOML_VALUES.get({})))

    @property
    def trajectory_log(self) -> Path:
        return self.log_path or data_dir() / "trajectories.jsonl"

    @property
    def error_log(self) -> Path:
        return self.trajectory_log.with_name(self.trajectory_log.stem + ".errors.jsonl")

    def loop_options(self) -> LoopOptions:
        return LoopOptions(
            max_retries=self.max_retries,
            show_feedback=self.show_feedback,
            reflections=self.reflections,
            cancel_on_success=self.cancel_on_success,
            reflect=self.reflect,
        )

    def sampling(self) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            reflection_max_tokens=self.reflection_max_tokens,
            reflection_temperature=self.reflection_temperature,
            reflection_greedy_branch=self.reflection_greedy_branch,
            seed=self.seed,
            stop=self.stop,
        )


# The TOML values for the Settings being built right now (settings sources are class-level).
_TOML_VALUES: ContextVar[dict[str, Any]] = ContextVar("rrr_toml_values")


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file's table. Unreadable or invalid TOML is a :class:`ConfigError` naming the file
    and the line (``rrr.toml:3: invalid TOML: ...``). Every TOML file rrr reads comes through here
    (runtime settings, ``[train]``, ``[nightly]``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc.reason}") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = re.search(r"\(at line (\d+), column (\d+)\)", message)
        if where:
            line, col = where.groups()
            message = message[: where.start()].strip() + f" (column {col})"
        else:  # "(at end of document)"
            line = str(max(1, text.count("\n") + (0 if text.endswith("\n") else 1)))
        raise ConfigError(f"{path}:{line}: invalid TOML: {message}") from exc


def key_line(path: str | Path, key: str) -> str:
    """``path:line`` of the first ``key = ...`` line in a TOML file (``path`` when not found)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return str(path)
    pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
    for n, line in enumerate(lines, start=1):
        if pattern.match(line):
            return f"{path}:{n}"
    return str(path)


def _read_toml(path: Path) -> dict[str, Any]:
    data = read_toml(path)
    unknown = sorted(set(data) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(
            f"{key_line(path, unknown[0])}: unknown setting(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(Settings.model_fields))})"
        )
    return data


def load_settings(config: str | Path | None = None, **flags: Any) -> Settings:
    """Build the merged settings. ``flags`` whose value is None are treated as not given."""
    path = config_path(config)
    toml_values = _read_toml(path) if path else {}
    given = {k: v for k, v in flags.items() if v is not None}
    token = _TOML_VALUES.set(toml_values)
    try:
        return Settings(**given)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = ".".join(str(x) for x in err.get("loc", ()))
            origin = (
                "flag"
                if name in given
                else f"env RRR_{name.upper()}"
                if f"RRR_{name.upper()}" in os.environ
                else f"{path}"
                if name in toml_values
                else "default"
            )
            lines.append(f"setting {name!r} ({origin}): {err.get('msg')}")
        raise ConfigError("; ".join(lines)) from exc
    finally:
        _TOML_VALUES.reset(token)
