"""json_schema and pydantic verifiers: JSON extraction, drafts, and non-leaking feedback."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import BaseModel

from rrr_agent._errors import VerifierSpecError
from rrr_agent._types import ModelOutput, Task
from rrr_agent.verifiers import build_verifier
from rrr_agent.verifiers.schema import extract_json

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "color": {"enum": ["teal-secret", "mauve-secret"]},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


class Person(BaseModel):
    name: str
    age: int
    color: Literal["teal-secret", "mauve-secret"] = "teal-secret"


def _verify(spec: dict[str, Any], text: str) -> Any:
    v = build_verifier(spec)
    return v.verify(ModelOutput(text=text), Task.from_prompt("json please", v.to_spec()))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"a": 1}', {"a": 1}),
        ("  [1, 2]\n", [1, 2]),
        ('Sure:\n```json\n{"a": 1}\n```\nand later\n```json\n{"a": 2}\n```', {"a": 2}),
        ('```\n{"a": 3}\n```', {"a": 3}),
        ('The data is {"a": {"b": [1, "}"]}} as requested {"c": 1}', {"a": {"b": [1, "}"]}}),
        ('first {not json} then [1, {"x": 2}]', [1, {"x": 2}]),
    ],
)
def test_extract_json(text: str, value: Any) -> None:
    assert extract_json(text) == value


@pytest.mark.parametrize("text", ["", "no json", "{broken", "```json\n{bad}\n```"])
def test_no_json(text: str) -> None:
    with pytest.raises(ValueError, match="no JSON"):
        extract_json(text)
    verdict = _verify({"type": "json_schema", "schema": SCHEMA}, text)
    assert not verdict.passed
    assert verdict.feedback == "The answer contains no valid JSON."


@pytest.mark.parametrize(
    ("doc", "fragments"),
    [
        ('{"name": "Ann", "age": 3}', []),
        ('{"name": "Ann"}', ["$.age: required property is missing"]),
        ('{"name": "Ann", "age": -1}', ["$.age: the value is too small"]),
        ('{"name": "Ann", "age": "3"}', ["$.age: the value has the wrong type"]),
        ('{"name": "Ann", "age": 3, "color": "red"}', ["$.color", "not one of the allowed"]),
        ('{"name": "Ann", "age": 3, "tags": ["a", 5]}', ["$.tags[1]"]),
        ('{"name": "Ann", "age": 3, "extra": 1}', ["$", "not allowed"]),
    ],
)
def test_json_schema_feedback_names_path_not_values(doc: str, fragments: list[str]) -> None:
    verdict = _verify({"type": "json_schema", "schema": SCHEMA}, f"Here:\n```json\n{doc}\n```")
    assert verdict.passed is (not fragments)
    for fragment in fragments:
        assert fragment in verdict.feedback
    assert "secret" not in verdict.feedback


def test_drafts_and_default() -> None:
    # Draft 4 exclusiveMaximum is a boolean; 2020-12 (the default) needs a number.
    draft4 = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "number",
        "maximum": 5,
        "exclusiveMaximum": True,
    }
    assert not _verify({"type": "json_schema", "schema": draft4}, "5").passed
    assert _verify({"type": "json_schema", "schema": draft4}, "4").passed
    with pytest.raises(VerifierSpecError, match="invalid JSON Schema"):
        build_verifier({"type": "json_schema", "schema": {"exclusiveMaximum": True}})
    # prefixItems exists only from 2020-12 on: honoured without $schema.
    tuple_schema = {"type": "array", "prefixItems": [{"type": "integer"}], "items": False}
    assert _verify({"type": "json_schema", "schema": tuple_schema}, "[1]").passed
    assert not _verify({"type": "json_schema", "schema": tuple_schema}, "[1, 2]").passed


def test_json_schema_spec_round_trip_uses_schema_key() -> None:
    v = build_verifier({"type": "json_schema", "schema": SCHEMA})
    spec = v.to_spec()
    assert spec.to_dict() == {"type": "json_schema", "schema": SCHEMA}
    assert build_verifier(spec) == v


def test_pydantic_model() -> None:
    spec = {"type": "pydantic", "model": f"{__name__}:Person"}
    assert _verify(spec, '{"name": "Ann", "age": 3}').passed
    missing = _verify(spec, '{"name": "Ann"}')
    assert not missing.passed
    assert "$.age: required field is missing" in missing.feedback
    wrong = _verify(spec, '{"name": "Ann", "age": 3, "color": "red"}')
    assert "$.color: is not one of the allowed values" in wrong.feedback
    assert "secret" not in wrong.feedback
    assert "The JSON does not match" in _verify(spec, "[1]").feedback
    with pytest.raises(VerifierSpecError):
        build_verifier({"type": "pydantic", "model": "nowhere.at.all:Model"})


def test_deeply_nested_json_does_not_crash() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    verdict = _verify({"type": "json_schema", "schema": SCHEMA}, deep)
    assert not verdict.passed
