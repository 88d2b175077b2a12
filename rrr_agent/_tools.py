"""Tools for the SDK: OpenAI function schemas, plain Python functions, or pydantic models.

:func:`as_tool` turns any of the three into a :class:`Tool` with a JSON schema:

* a **function** gets its schema from its type hints and docstring (through pydantic): the first
  paragraph is the description, ``Args:`` entries (Google style) or ``:param x:`` lines describe
  the parameters, and parameters without a default are required;
* a **pydantic model** is a structured answer: its fields are the arguments, its docstring the
  description, and a call validates into an instance of the model (nothing is run);
* an **OpenAI schema** (``{"type": "function", "function": {...}}`` or the inner object) is used
  as it is; pair it with a function to make it runnable (``Tool.from_schema(schema, fn)``).

:class:`ToolRunner` runs an attempt's calls for the engine (``Engine.run(task, execute=...)``):
arguments are validated against the tool's schema, sync functions run in a worker thread, async
ones are awaited. A :class:`~rrr_agent.ToolError` or any other exception fails the attempt with
the error as feedback; later calls of the same attempt are then not run.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from ._engine import ToolOutcome
from ._errors import ConfigError, ToolError
from ._types import ModelOutput, Task

__all__ = ["Tool", "ToolLike", "ToolRunner", "as_tool"]

ToolLike = Any  # a Tool, a function, a pydantic model class, or an OpenAI tool schema

_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Tool:
    """One tool offered to the model. ``fn`` runs it; ``model`` validates its arguments (and is
    the answer itself when there is no ``fn``: a structured output)."""

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any] | None = field(default=None, compare=False)
    model: type[BaseModel] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(
                f"tool name {self.name!r} is not allowed: use letters, digits, _ or - (1-64)"
            )

    @property
    def runnable(self) -> bool:
        return self.fn is not None

    def schema(self) -> dict[str, Any]:
        """The OpenAI chat-completions tool object."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_function(
        cls, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None
    ) -> Tool:
        """Schema from the signature's type hints and the docstring."""
        summary, param_docs = _parse_docstring(inspect.getdoc(fn) or "")
        try:
            hints = typing.get_type_hints(fn)
        except Exception as exc:
            raise ConfigError(f"tool {fn!r}: cannot read its type hints: {exc}") from exc
        fields: dict[str, Any] = {}
        for pname, param in inspect.signature(fn).parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ConfigError(
                    f"tool {fn.__name__}: *args/**kwargs cannot be described as a schema"
                )
            annotation = hints.get(pname, Any)
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[pname] = (annotation, Field(default, description=param_docs.get(pname)))
        tool_name = name or fn.__name__
        model = create_model(
            f"{tool_name}_arguments", __config__=ConfigDict(extra="forbid"), **fields
        )
        return cls(
            name=tool_name,
            description=description if description is not None else summary,
            parameters=_clean_schema(model.model_json_schema()),
            fn=fn,
            model=model,
        )

    @classmethod
    def from_model(cls, model: type[BaseModel], *, name: str | None = None) -> Tool:
        """A structured answer: the model's fields are the arguments."""
        summary, _ = _parse_docstring(inspect.getdoc(model) or "")
        return cls(
            name=name or model.__name__,
            description=summary,
            parameters=_clean_schema(model.model_json_schema()),
            model=model,
        )

    @classmethod
    def from_schema(cls, schema: dict[str, Any], fn: Callable[..., Any] | None = None) -> Tool:
        """An OpenAI tool schema as it is (optionally runnable by ``fn``)."""
        inner = schema.get("function", schema) if isinstance(schema, dict) else None
        if not isinstance(inner, dict) or not isinstance(inner.get("name"), str):
            raise ConfigError(f"not an OpenAI tool schema (no function name): {schema!r}")
        parameters = inner.get("parameters") or {"type": "object", "properties": {}}
        return cls(
            name=inner["name"],
            description=str(inner.get("description", "")),
            parameters=parameters,
            fn=fn,
        )

    # ------------------------------------------------------------------ running

    def validate(self, arguments: dict[str, Any]) -> Any:
        """The arguments checked (and converted) by the tool's model; ValueError when wrong."""
        if self.model is None:
            return arguments
        try:
            return self.model.model_validate(arguments)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(x) for x in e['loc']) or '(arguments)'}: {e['msg']}"
                for e in exc.errors()[:3]
            )
            raise ValueError(problems) from None

    async def call(self, arguments: dict[str, Any]) -> Any:
        """Run the tool with validated arguments (sync functions in a worker thread)."""
        if self.fn is None:
            raise ConfigError(f"tool {self.name!r} has no function to run")
        checked = self.validate(arguments)
        kwargs = (
            {k: getattr(checked, k) for k in type(checked).model_fields}
            if isinstance(checked, BaseModel)
            else dict(checked)
        )
        if inspect.iscoroutinefunction(self.fn):
            return await self.fn(**kwargs)
        result = await asyncio.to_thread(self.fn, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result


def as_tool(obj: ToolLike) -> Tool:
    """A :class:`Tool` from a Tool, a function, a pydantic model class or an OpenAI schema."""
    if isinstance(obj, Tool):
        return obj
    if isinstance(obj, dict):
        return Tool.from_schema(obj)
    if inspect.isclass(obj) and issubclass(obj, BaseModel):
        return Tool.from_model(obj)
    if callable(obj):
        return Tool.from_function(obj)
    raise ConfigError(
        f"cannot use {obj!r} as a tool: give a function, a pydantic model or an OpenAI schema"
    )


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(summary, parameter descriptions) from a Google-style or reST docstring."""
    paragraphs = doc.strip().split("\n\n")
    summary = " ".join(paragraphs[0].split()) if paragraphs and paragraphs[0] else ""
    if summary.lower().startswith(("args:", "arguments:", "parameters:", ":param")):
        summary = ""
    params: dict[str, str] = {}
    for m in re.finditer(r":param\s+(?:\w+\s+)?(\w+):\s*(.+)", doc):
        params[m.group(1)] = m.group(2).strip()
    block = re.search(r"(?ms)^(?:Args|Arguments|Parameters):\s*\n(.*?)(?:\n\s*\n|\Z)", doc)
    if block:
        current = None
        for line in block.group(1).splitlines():
            entry = re.match(r"\s+(\w+)(?:\s*\([^)]*\))?:\s*(.*)", line)
            if entry and (current is None or len(line) - len(line.lstrip()) <= 8):
                current = entry.group(1)
                params[current] = entry.group(2).strip()
            elif current and line.strip():
                params[current] += " " + line.strip()
    return summary, params


def _clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Pydantic's schema without the titles it adds everywhere (noise for a model)."""

    def clean(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: clean(v) for k, v in node.items() if k != "title" or not isinstance(v, str)}
        if isinstance(node, list):
            return [clean(v) for v in node]
        return node

    out: dict[str, Any] = clean(schema)
    out.setdefault("type", "object")
    out.setdefault("properties", {})
    return out


def _result_text(result: Any) -> str:
    if isinstance(result, str):
        return result
    if isinstance(result, BaseModel):
        return result.model_dump_json()
    try:
        return json.dumps(result, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(result)


class ToolRunner:
    """Runs an attempt's calls with the Python tools it knows (an ``Engine.run`` executor)."""

    def __init__(self, tools: Sequence[Tool]):
        self.tools = {t.name: t for t in tools}

    async def __call__(self, output: ModelOutput, task: Task) -> ToolOutcome:
        results: list[str] = []
        calls = output.tool_calls or []
        for i, call in enumerate(calls):
            name = call.function.name
            tool = self.tools.get(name)
            failure: str | None = None
            if tool is None or not tool.runnable:
                results.append("Not run: no function for this tool in the SDK.")
                continue
            try:
                arguments = json.loads(call.function.arguments or "{}")
                if not isinstance(arguments, dict):
                    raise ValueError("the arguments are not a JSON object")
                result = await tool.call(arguments)
            except ToolError as exc:
                failure = f"The call to {name} failed: {exc}"
            except ValueError as exc:  # bad JSON or arguments the tool's types refuse
                failure = f"The call to {name} has invalid arguments: {exc}"
            except Exception as exc:  # the tool crashed: the attempt fails, the run goes on
                failure = f"The call to {name} raised {type(exc).__name__}: {exc}"
            if failure is not None:
                results.append(f"Error: {failure}")
                results += ["Not run: an earlier call failed."] * (len(calls) - i - 1)
                return ToolOutcome(results=results, error=failure, tool=name)
            results.append(_result_text(result))
        return ToolOutcome(results=results)
