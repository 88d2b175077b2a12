"""Structured output: JSON that validates against a JSON Schema or a pydantic model.

``{"type": "json_schema", "schema": {...}}`` validates with ``jsonschema``. The draft is whatever
``jsonschema.validators.validator_for`` picks from the schema's ``$schema`` (Draft 3, 4, 6, 7,
2019-09 and 2020-12 with the jsonschema releases this project allows); without ``$schema`` it is
Draft 2020-12. ``format`` is annotation only (not asserted), as the drafts specify by default. The
schema itself is checked when the verifier is built, so a broken schema fails as a spec error.

``{"type": "pydantic", "model": "pkg.mod:Model"}`` validates with a pydantic model (or any type a
``pydantic.TypeAdapter`` accepts), imported from the dotted path: only rebuild such specs from
logs you trust.

The JSON is the whole text when it parses; else the last ```json (or unlabeled) fence that parses;
else the first ``{...}`` or ``[...]`` in the text that parses as JSON. Feedback names the failing
location (``$.items[2].price``) and the kind of rule broken, never the allowed values.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

import jsonschema  # type: ignore[import-untyped]
from jsonschema.exceptions import (  # type: ignore[import-untyped]
    SchemaError,
    ValidationError,
    best_match,
)
from pydantic import ConfigDict, Field, PrivateAttr, TypeAdapter, field_validator
from pydantic import ValidationError as PydanticValidationError

from .._types import ModelOutput, Task, Verdict, VerifierSpec
from ._base import Verifier, import_dotted, register_verifier

__all__ = ["JsonSchemaVerifier", "PydanticVerifier", "extract_json"]

MAX_TEXT_CHARS = 1_000_000
#: How many ``{`` / ``[`` positions are tried before giving up.
MAX_DECODE_TRIES = 200

_FENCE = re.compile(r"```[ \t]*(json|JSON|jsonc|)[ \t]*\n(.*?)```", re.DOTALL)
_NO_JSON = object()


def extract_json(text: str) -> Any:
    """The JSON value in ``text`` (see the module doc). Raises ``ValueError`` when there is none."""
    text = text[:MAX_TEXT_CHARS]
    stripped = text.strip()
    if stripped:
        try:
            return json.loads(stripped)
        except (ValueError, RecursionError):
            pass
    for m in reversed(list(_FENCE.finditer(text))):
        try:
            return json.loads(m.group(2))
        except (ValueError, RecursionError):
            continue
    decoder = json.JSONDecoder()
    tries = 0
    for i, ch in enumerate(text):
        if ch in "{[":
            tries += 1
            if tries > MAX_DECODE_TRIES:
                break
            try:
                value, _ = decoder.raw_decode(text, i)
            except (ValueError, RecursionError):
                continue
            return value
    raise ValueError("no JSON object or array found")


def _json_path(path: Any) -> str:
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            out += f".{part}"
        else:
            out += f"[{json.dumps(str(part))}]"
    return out


_RULES = {
    "type": "has the wrong type",
    "enum": "is not one of the allowed values",
    "const": "is not the required value",
    "pattern": "does not match the required pattern",
    "format": "does not have the required format",
    "additionalProperties": "has properties that are not allowed",
    "unevaluatedProperties": "has properties that are not allowed",
    "propertyNames": "has a property name that is not allowed",
    "minimum": "is too small",
    "exclusiveMinimum": "is too small",
    "maximum": "is too large",
    "exclusiveMaximum": "is too large",
    "multipleOf": "is not a multiple of the required number",
    "minLength": "is too short",
    "maxLength": "is too long",
    "minItems": "has too few items",
    "maxItems": "has too many items",
    "uniqueItems": "has duplicate items",
    "minProperties": "has too few properties",
    "maxProperties": "has too many properties",
    "contains": "does not contain a required item",
    "anyOf": "matches none of the allowed shapes",
    "oneOf": "does not match exactly one of the allowed shapes",
    "not": "matches a shape that is not allowed",
}


def _describe(error: ValidationError) -> str:
    where = _json_path(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [p for p in error.validator_value if p not in error.instance]
        if missing:
            return f"{_json_path([*error.absolute_path, missing[0]])}: required property is missing"
    if error.validator == "dependentRequired" or error.validator == "dependencies":
        return f"{where}: a property that another property requires is missing"
    rule = _RULES.get(str(error.validator), f"breaks the schema rule '{error.validator}'")
    return f"{where}: the value {rule}"


@register_verifier
class JsonSchemaVerifier(Verifier):
    """Passes when the output holds JSON that validates against ``schema``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    type: ClassVar[str] = "json_schema"

    json_schema: dict[str, Any] | bool = Field(alias="schema")
    _validator: Any = PrivateAttr(default=None)

    @field_validator("json_schema")
    @classmethod
    def _check_schema(cls, v: dict[str, Any] | bool) -> dict[str, Any] | bool:
        validator_cls = jsonschema.validators.validator_for(
            v, default=jsonschema.Draft202012Validator
        )
        try:
            validator_cls.check_schema(v)
        except SchemaError as exc:
            raise ValueError(f"invalid JSON Schema: {exc.message}") from exc
        return v

    def model_post_init(self, __context: Any) -> None:
        validator_cls = jsonschema.validators.validator_for(
            self.json_schema, default=jsonschema.Draft202012Validator
        )
        self._validator = validator_cls(self.json_schema)

    def to_spec(self) -> VerifierSpec:
        return VerifierSpec(type=self.type, **self.model_dump(mode="json", by_alias=True))

    def verify(self, output: ModelOutput, task: Task) -> Verdict:
        try:
            data = extract_json(output.text or "")
        except ValueError:
            return Verdict(
                passed=False,
                feedback="The answer contains no valid JSON.",
                details={"reason": "no_json"},
            )
        try:
            errors = list(self._validator.iter_errors(data))
        except RecursionError:
            return Verdict(
                passed=False, feedback="The JSON is nested too deeply.", details={"reason": "deep"}
            )
        if not errors:
            return Verdict(passed=True, details={"json": data})
        first = best_match(errors)
        assert first is not None
        problems = [_describe(first), *[_describe(e) for e in errors if e is not first][:4]]
        unique = list(dict.fromkeys(problems))
        return Verdict(
            passed=False,
            feedback="The JSON does not match the schema: " + "; ".join(unique) + ".",
            details={
                "reason": "invalid",
                "errors": [e.message[:500] for e in errors[:20]],
                "error_count": len(errors),
            },
        )


_PYDANTIC_TYPES = {
    "missing": "required field is missing",
    "extra_forbidden": "unexpected field",
    "model_type": "must be an object",
    "dict_type": "must be an object",
    "list_type": "must be a list",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be a boolean",
    "bool_parsing": "must be a boolean",
    "literal_error": "is not one of the allowed values",
    "enum": "is not one of the allowed values",
}


@register_verifier
class PydanticVerifier(Verifier):
    """Passes when the output holds JSON that the pydantic model ``model`` accepts."""

    type: ClassVar[str] = "pydantic"

    model: str = Field(min_length=1)
    _adapter: Any = PrivateAttr(default=None)

    @field_validator("model")
    @classmethod
    def _importable(cls, v: str) -> str:
        target = import_dotted(v)
        try:
            TypeAdapter(target)
        except Exception as exc:
            raise ValueError(f"{v!r} is not a type pydantic can validate: {exc}") from exc
        return v

    def model_post_init(self, __context: Any) -> None:
        self._adapter = TypeAdapter(import_dotted(self.model))

    def verify(self, output: ModelOutput, task: Task) -> Verdict:
        try:
            data = extract_json(output.text or "")
        except ValueError:
            return Verdict(
                passed=False,
                feedback="The answer contains no valid JSON.",
                details={"reason": "no_json"},
            )
        try:
            self._adapter.validate_python(data)
        except PydanticValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False)
            problems = []
            for err in errors[:5]:
                where = _json_path(err.get("loc", ()))
                kind = str(err.get("type", "invalid"))
                problems.append(f"{where}: {_PYDANTIC_TYPES.get(kind, f'is invalid ({kind})')}")
            return Verdict(
                passed=False,
                feedback="The JSON does not match the expected structure: "
                + "; ".join(dict.fromkeys(problems))
                + ".",
                details={
                    "reason": "invalid",
                    "errors": [str(e.get("msg", ""))[:300] for e in errors[:20]],
                    "error_count": len(errors),
                },
            )
        except RecursionError:
            return Verdict(
                passed=False, feedback="The JSON is nested too deeply.", details={"reason": "deep"}
            )
        return Verdict(passed=True, details={"json": data})
