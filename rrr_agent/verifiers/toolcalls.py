"""Tool-call verifiers: BFCL's AST checker, a JSON-schema check, and xLAM's exact-call match.

``{"type": "bfcl", "category": ..., "functions": [...], "ground_truth": [...], "language": ...}``
judges calls the way the Berkeley Function Calling Leaderboard does (see :mod:`.bfcl_ast` for the
rules and the few documented departures in decoding). Calls are read from the output's
``tool_calls`` (OpenAI format; a sanitized name such as ``math_factorial`` is read back as
``math.factorial``) or, when there are none, from its text written as BFCL's Python-call list
``[f(a=1), g(b="x")]`` (brackets optional, optionally inside one Markdown code fence). Text is
parsed, never evaluated.

``{"type": "tool_schema"}`` needs no answer: every call must name a tool in ``task.tools`` and
its arguments must validate against that tool's JSON schema (``require_call``, ``max_calls``).

``{"type": "xlam", "expected": [{"name": ..., "arguments": {...}}]}`` is the reward NeMo Gym uses
for its xLAM function-calling sample: as many calls as expected, each expected call matched (in
any order) by a call of the same name whose arguments include every expected argument with an
equal value (extra arguments allowed).

Feedback never contains reference values; ``details`` (never shown to the model) carry BFCL's
``error_type`` and messages.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .._errors import VerifierSpecError
from .._types import ModelOutput, Task, Verdict
from ._base import Verifier, register_verifier
from .bfcl_ast import Call, Decoded, DecodeError, check_calls, decode_output

__all__ = [
    "BfclVerifier",
    "ExpectedCall",
    "ToolSchemaVerifier",
    "XlamVerifier",
    "offered_tools",
]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def _calls_json(calls: list[Call]) -> list[dict[str, Any]]:
    return [{"name": name, "arguments": _jsonable(args)} for name, args in calls]


@register_verifier
class BfclVerifier(Verifier):
    """BFCL's single-turn AST check (simple, multiple, parallel, parallel_multiple, irrelevance,
    relevance).

    ``functions`` are BFCL function docs (``parameters.type == "dict"``); ``ground_truth`` is the
    BFCL answer list ``[{name: {param: [allowed values]}}]`` (``""`` in a list: may be omitted).
    ``language`` selects the Java/JavaScript rules: every argument is then a string in that
    language's syntax, converted by BFCL's type converters before the check.
    """

    type: ClassVar[str] = "bfcl"

    category: Literal[
        "simple", "multiple", "parallel", "parallel_multiple", "irrelevance", "relevance"
    ]
    #: May be empty only for irrelevance (BFCL's live_irrelevance has 4 such questions).
    functions: list[dict[str, Any]] = Field(default_factory=list)
    ground_truth: list[dict[str, Any]] = Field(default_factory=list)
    language: Literal["python", "java", "javascript"] = "python"
    #: Match BFCL's own verdicts wherever that needs no eval (see docs/bfcl.md): exact names in
    #: text, BFCL's reading of signs, no code-fence unwrapping.
    strict: bool = False

    @model_validator(mode="after")
    def _check(self) -> BfclVerifier:
        for f in self.functions:
            if not isinstance(f.get("name"), str) or not isinstance(f.get("parameters"), dict):
                raise ValueError("each function needs a string 'name' and a 'parameters' object")
        if not self.functions and self.category != "irrelevance":
            raise ValueError(f"category {self.category!r} needs at least one function")
        if self.category in ("irrelevance", "relevance"):
            if self.ground_truth:
                raise ValueError(f"the {self.category} category takes no ground_truth")
            return self
        if not self.ground_truth:
            raise ValueError(f"category {self.category!r} needs a non-empty ground_truth")
        for item in self.ground_truth:
            if len(item) != 1 or not isinstance(next(iter(item.values())), dict):
                raise ValueError("each ground_truth item is {function_name: {param: [values]}}")
        if self.category in ("simple", "multiple") and len(self.ground_truth) != 1:
            raise ValueError(f"category {self.category!r} expects exactly one ground_truth call")
        return self

    def verify(self, output: ModelOutput, task: Task) -> Verdict:
        language = "python" if self.category == "irrelevance" else self.language
        try:
            decoded = decode_output(output, language, self.functions, strict=self.strict)
        except DecodeError as exc:
            if self.category == "irrelevance":
                # BFCL: a reply that does not decode contains no call, which is what is wanted.
                return Verdict(passed=True, details={"error_type": None, "source": "text"})
            if self.category == "relevance":  # BFCL: no decodable call, whatever the reason
                return self._relevance(Decoded([], "text"))
            return Verdict(
                passed=False,
                feedback=f"The function calls could not be read: {exc}",
                details={"error_type": exc.error_type, "errors": [str(exc)]},
            )
        if self.category == "irrelevance":
            return self._irrelevance(decoded)
        if self.category == "relevance":
            return self._relevance(decoded)
        # An empty reply decodes to no calls, as in BFCL ("[]"): the checker reports the count.
        result = check_calls(
            self.category,
            self.functions,
            decoded.calls,
            self.ground_truth,
            self.language,
            ignored_positional=decoded.ignored_positional,
        )
        details: dict[str, Any] = {
            "error_type": None if result.valid else result.error_type,
            "source": decoded.source,
            "calls": _calls_json(decoded.calls),
        }
        if not result.valid:
            details["errors"] = result.errors
        if decoded.ignored_positional:
            details["ignored_positional_args"] = decoded.ignored_positional
        details.update(result.extra)
        feedback = "" if result.valid else _sentence(result.feedback)
        return Verdict(passed=result.valid, feedback=feedback, details=details)

    def _relevance(self, decoded: Decoded) -> Verdict:
        """BFCL's live_relevance: any well-formed call passes (the values are not checked)."""
        if decoded.calls:
            return Verdict(passed=True, details={"error_type": None, "source": decoded.source,
                                                 "calls": _calls_json(decoded.calls)})  # fmt: skip
        return Verdict(
            passed=False,
            feedback="One of the available functions fits this request: call it.",
            details={"error_type": "relevance_error:decoder_failed",
                     "errors": ["No function call was made when one was expected."],
                     "source": decoded.source},
        )  # fmt: skip

    def _irrelevance(self, decoded: Decoded) -> Verdict:
        if not decoded.calls:
            return Verdict(passed=True, details={"error_type": None, "source": decoded.source})
        return Verdict(
            passed=False,
            feedback="None of the available functions fits this request, so no function "
            "should be called.",
            details={
                "error_type": "irrelevance_error:decoder_success",
                "errors": ["Valid syntax. Successfully decode AST when it should not."],
                "source": decoded.source,
                "calls": _calls_json(decoded.calls),
            },
        )


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return "The function calls are not correct."
    text = text[0].upper() + text[1:]
    return text if text.endswith(".") else text + "."


# --------------------------------------------------------------------------------------------
# Schema-only check
# --------------------------------------------------------------------------------------------


def offered_tools(tools: list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Tool name → JSON schema of its arguments, from OpenAI (chat or responses) tool lists."""
    out: dict[str, dict[str, Any]] = {}
    for tool in tools or []:
        inner = tool.get("function")
        fn: dict[str, Any] = inner if isinstance(inner, dict) else tool
        name = fn.get("name")
        if not isinstance(name, str):
            continue
        schema = fn.get("parameters")
        out[name] = schema if isinstance(schema, dict) else {"type": "object"}
    return out


@register_verifier
class ToolSchemaVerifier(Verifier):
    """Every call names an offered tool and its arguments validate against the tool's schema.

    Calls come from ``tool_calls`` or, when there are none, from Python-call text. With
    ``require_call`` an answer without a call fails; ``max_calls`` caps how many calls are allowed.
    """

    type: ClassVar[str] = "tool_schema"

    require_call: bool = False
    max_calls: int | None = Field(default=None, ge=1)

    def verify(self, output: ModelOutput, task: Task) -> Verdict:
        jsonschema: Any = importlib.import_module("jsonschema")  # untyped: no stubs installed

        tools = offered_tools(task.tools)
        try:
            decoded = decode_output(output, "python", [{"name": n} for n in tools])
        except DecodeError as exc:
            if output.tool_calls:
                return _schema_fail(
                    "tool_schema:invalid_arguments", f"The tool call could not be read: {exc}"
                )
            decoded = Decoded([], "text")  # prose, not a call
        calls = decoded.calls
        if not calls:
            if self.require_call:
                return _schema_fail("tool_schema:no_call", "A tool call is required.")
            return Verdict(passed=True, details={"error_type": None, "calls": []})
        if self.max_calls is not None and len(calls) > self.max_calls:
            return _schema_fail(
                "tool_schema:too_many_calls",
                f"Too many tool calls: at most {self.max_calls} allowed, got {len(calls)}.",
            )
        for i, (name, args) in enumerate(calls, 1):
            schema = tools.get(name)
            if schema is None:
                return _schema_fail(
                    "tool_schema:unknown_tool", f"Call #{i} names {name!r}, which is not offered."
                )
            cls = jsonschema.validators.validator_for(schema)
            try:
                cls.check_schema(schema)
            except jsonschema.exceptions.SchemaError as exc:
                raise VerifierSpecError(
                    f"tool {name!r} of task {task.id} has an invalid JSON schema: {exc.message}"
                ) from exc
            error = jsonschema.exceptions.best_match(cls(schema).iter_errors(_jsonable(args)))
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "(arguments)"
                return _schema_fail(
                    "tool_schema:schema_violation",
                    f"Call #{i} to {name!r}: {where}: {error.message}",
                )
        return Verdict(passed=True, details={"error_type": None, "calls": _calls_json(calls)})


def _schema_fail(error_type: str, message: str) -> Verdict:
    return Verdict(passed=False, feedback=message, details={"error_type": error_type})


# --------------------------------------------------------------------------------------------
# xLAM (NeMo Gym's xlam_fc reward)
# --------------------------------------------------------------------------------------------


class ExpectedCall(BaseModel):
    """One call an xlam row expects."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


@register_verifier
class XlamVerifier(Verifier):
    """Exact call match, order-free: NeMo Gym's reward for xLAM function-calling rows."""

    type: ClassVar[str] = "xlam"

    expected: list[ExpectedCall]

    def verify(self, output: ModelOutput, task: Task) -> Verdict:
        try:
            decoded = decode_output(output, "python", [{"name": e.name} for e in self.expected])
        except DecodeError as exc:
            return Verdict(
                passed=False,
                feedback=f"The function calls could not be read: {exc}",
                details={"error_type": exc.error_type},
            )
        calls = decoded.calls
        if not self.expected:
            ok = not calls
            return Verdict(
                passed=ok,
                feedback="" if ok else "No function should be called.",
                details={"error_type": None if ok else "xlam:unexpected_call"},
            )
        matched: set[int] = set()
        for exp in self.expected:
            for i, (name, args) in enumerate(calls):
                if i not in matched and name == exp.name and _includes(args, exp.arguments):
                    matched.add(i)
                    break
        ok = len(matched) == len(self.expected) == len(calls)
        details: dict[str, Any] = {
            "error_type": None,
            "num_expected": len(self.expected),
            "num_predicted": len(calls),
            "num_correct": len(matched),
            "calls": _calls_json(calls),
        }
        if ok:
            return Verdict(passed=True, details=details)
        if len(calls) != len(self.expected):
            details["error_type"] = "xlam:wrong_count"
            feedback = f"Expected {len(self.expected)} call(s), got {len(calls)}."
        else:
            details["error_type"] = "xlam:cannot_find_match"
            feedback = (
                f"{len(self.expected) - len(matched)} of {len(self.expected)} required calls "
                "are not matched (wrong function or wrong arguments)."
            )
        return Verdict(passed=False, feedback=feedback, details=details)


def _includes(args: dict[Any, Any], expected: dict[str, Any]) -> bool:
    for key, want in expected.items():
        if key not in args:
            return False
        try:
            if args[key] != want:
                return False
        except Exception:
            return False
    return True
