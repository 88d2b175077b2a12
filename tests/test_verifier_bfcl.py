"""The ``bfcl`` verifier against BFCL v4's real data and BFCL's AST-checker rules."""

from __future__ import annotations

import builtins
import copy
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rrr_agent._errors import VerifierSpecError
from rrr_agent._types import FunctionCall, Message, ModelOutput, Task, ToolCall, Verdict
from rrr_agent.tasksets import datasets_root
from rrr_agent.tasksets.bfcl import bfcl_tasks
from rrr_agent.verifiers import build_verifier
from rrr_agent.verifiers.bfcl_ast import (
    check_call,
    format_python_calls,
    java_type_converter,
    js_type_converter,
    openai_tool_name,
    parse_python_calls,
    reference_calls,
    standardize_string,
)

# ----------------------------------------------------------------------------------- data


#: Records per BFCL v4 category in the packaged data.
COUNTS = {
    "simple_python": 400,
    "multiple": 200,
    "parallel": 200,
    "parallel_multiple": 200,
    "irrelevance": 240,
    "simple_java": 100,
    "simple_javascript": 50,
}

_CACHE: dict[str, tuple[Task, ...]] = {}  # pure data, read once; tuples so no test can change it


def tasks(category: str) -> tuple[Task, ...]:
    if category not in _CACHE:
        loaded = tuple(bfcl_tasks(datasets_root(), category))
        assert len(loaded) == COUNTS[category], (category, len(loaded))
        _CACHE[category] = loaded
    return _CACHE[category]


ANSWERED = ["simple_python", "multiple", "parallel", "parallel_multiple"]
FOREIGN = ["simple_java", "simple_javascript"]

#: Answers BFCL's own Java converter can never accept: ArrayList<any> items stay strings, while
#: the answer wants ints/bools. Kept as strict xfails so a change in behaviour is noticed.
BFCL_UNPASSABLE = {"simple_java_36", "simple_java_65"}


def spec_of(task: Task) -> dict[str, Any]:
    return task.verifier.params()


def judge(task: Task, output: ModelOutput) -> Verdict:
    result = build_verifier(task.verifier).verify(output, task)
    assert isinstance(result, Verdict)
    return result


def as_tool_calls(calls: list[tuple[str, dict[str, Any]]], *, sanitize: bool = True) -> ModelOutput:
    return ModelOutput(
        tool_calls=[
            ToolCall(
                id=f"call_{i}",
                function=FunctionCall(
                    name=openai_tool_name(name) if sanitize else name, arguments=json.dumps(args)
                ),
            )
            for i, (name, args) in enumerate(calls)
        ]
    )


def reference(task: Task) -> list[tuple[str, dict[str, Any]]]:
    s = spec_of(task)
    return reference_calls(s["functions"], s["ground_truth"], s["language"])


def synthetic(
    category: str,
    functions: list[dict[str, Any]],
    ground_truth: list[dict[str, Any]] | None = None,
    language: str = "python",
) -> Task:
    spec: dict[str, Any] = {
        "type": "bfcl",
        "category": category,
        "functions": functions,
        "language": language,
    }
    if ground_truth is not None:
        spec["ground_truth"] = ground_truth
    return Task(messages=[Message(role="user", content="q")], verifier=spec)  # type: ignore[arg-type]


def fn(name: str, props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "description": "d",
        "parameters": {"type": "dict", "properties": props, "required": required or []},
    }


# ------------------------------------------------------------------ every answer round-trips


@pytest.mark.parametrize("category", ANSWERED)
def test_every_ground_truth_passes_as_tool_calls_and_as_text(category: str) -> None:
    failures = []
    checked = 0
    all_tasks = tasks(category)
    for task in all_tasks:
        calls = reference(task)
        assert calls, task.id
        for label, output in (
            ("tool_calls", as_tool_calls(calls)),
            ("tool_calls_dotted", as_tool_calls(calls, sanitize=False)),
            ("text", ModelOutput(text=format_python_calls(calls))),
            ("text_nobrackets", ModelOutput(text=format_python_calls(calls)[1:-1])),
            ("fence", ModelOutput(text=f"```python\n{format_python_calls(calls)}\n```")),
        ):
            verdict = judge(task, output)
            checked += 1
            if not verdict.passed:
                failures.append((task.id, label, verdict.details))
    assert checked == 5 * COUNTS[category]
    assert not failures, failures[:5]


def _overlapping(task: Task, calls: list[tuple[str, dict[str, Any]]]) -> bool:
    """True when an answer also accepts the call built for another answer.

    BFCL matches answers greedily in answer order without backtracking, so with such overlaps
    some orders of a correct answer fail (e.g. parallel_178: "Microsoft or Apple" listed first).
    """
    s = spec_of(task)
    answers = s["ground_truth"]
    for i, answer in enumerate(answers):
        doc = next(f for f in s["functions"] if f["name"] == next(iter(answer)))
        for j, call in enumerate(calls):
            if i != j and check_call(doc, call, answer).valid:
                return True
    return False


@pytest.mark.parametrize("category", ["parallel", "parallel_multiple"])
def test_parallel_answers_pass_in_any_order(category: str) -> None:
    rng = random.Random(1234)
    shuffled = 0
    checked = 0
    failures = []
    for task in tasks(category):
        calls = reference(task)
        mixed = list(calls)
        rng.shuffle(mixed)
        for variant in (list(reversed(calls)), mixed):
            shuffled += variant != calls
            for output in (as_tool_calls(variant), ModelOutput(text=format_python_calls(variant))):
                verdict = judge(task, output)
                checked += 1
                if not verdict.passed:
                    assert verdict.details["error_type"] == (
                        "parallel_function_checker_no_order:cannot_find_match"
                    )
                    failures.append(task.id)
                    assert _overlapping(task, calls), task.id
    assert checked == 4 * COUNTS[category]
    assert shuffled > 100
    assert len(set(failures)) <= 2, failures


def _foreign_text(calls: list[tuple[str, dict[str, Any]]]) -> str:
    parts = []
    for name, args in calls:
        inner = ", ".join(f"{k}={v}" for k, v in args.items())
        parts.append(f"{name}({inner})")
    return "[" + ", ".join(parts) + "]"


def _foreign_cases() -> Iterator[Any]:
    for category in FOREIGN:
        for task in tasks(category):
            marks = (
                [pytest.mark.xfail(strict=True, reason="BFCL's Java converter cannot accept it")]
                if task.id in BFCL_UNPASSABLE
                else []
            )
            yield pytest.param(task, id=task.id, marks=marks)


#: Built eagerly at collection; an empty list would make pytest skip the test silently, so
#: test_foreign_cases_cover_every_record checks it holds every Java and JavaScript record.
FOREIGN_CASES = list(_foreign_cases())


def test_foreign_cases_cover_every_record() -> None:
    assert len(FOREIGN_CASES) == sum(COUNTS[c] for c in FOREIGN) == 150
    assert [c.id for c in FOREIGN_CASES] == [t.id for c in FOREIGN for t in tasks(c)]
    xfails = {c.id for c in FOREIGN_CASES if c.marks}
    assert xfails == BFCL_UNPASSABLE


@pytest.mark.parametrize("task", FOREIGN_CASES)
def test_java_and_javascript_answers_pass_as_source_strings(task: Task) -> None:
    calls = reference(task)
    assert calls and all(args for _, args in calls), task.id
    for args in (a for _, a in calls):
        assert all(isinstance(v, str) for v in args.values())
    verdict = judge(task, as_tool_calls(calls))
    assert verdict.passed, verdict.details
    # The same values written as Java/JavaScript call text.
    verdict = judge(task, ModelOutput(text=_foreign_text(calls)))
    assert verdict.passed, verdict.details


def test_unpassable_java_answers_are_exactly_the_known_ones() -> None:
    java = tasks("simple_java")
    assert len(java) == COUNTS["simple_java"]
    failing = {t.id for t in java if not judge(t, as_tool_calls(reference(t))).passed}
    assert failing == BFCL_UNPASSABLE


# ------------------------------------------------------------------ systematic mutations


def _single_python_cases() -> list[tuple[Task, str, dict[str, Any], dict[str, Any]]]:
    """(task, name, args, schema properties) for every simple/multiple task."""
    out = []
    for category in ("simple_python", "multiple"):
        for task in tasks(category):
            [(name, args)] = reference(task)
            doc = next(f for f in spec_of(task)["functions"] if f["name"] == name)
            out.append((task, name, args, doc["parameters"]["properties"]))
    assert len(out) == COUNTS["simple_python"] + COUNTS["multiple"]
    return out


def _expect(task: Task, output: ModelOutput, error_type: str) -> Verdict:
    verdict = judge(task, output)
    assert not verdict.passed, (task.id, output)
    assert verdict.details["error_type"] == error_type, (task.id, verdict.details)
    assert verdict.feedback
    return verdict


def _assert_no_leak(task: Task, verdict: Verdict) -> int:
    """No allowed string value of the answer is in the feedback; returns how many were checked."""
    visible = " ".join(
        [f["name"] for f in spec_of(task)["functions"]]
        + [p for f in spec_of(task)["functions"] for p in f["parameters"]["properties"]]
    ).lower()
    checked = 0
    for answer in spec_of(task).get("ground_truth", []):
        for params in answer.values():
            for options in params.values():
                for v in options:
                    if isinstance(v, str) and len(v) > 3 and v.lower() not in visible:
                        leaked = re.search(rf"(?<!\w){re.escape(v)}(?!\w)", verdict.feedback)
                        assert not leaked, (task.id, v, verdict.feedback)
                        checked += 1
    return checked


def test_wrong_function_name_is_rejected() -> None:
    n = values = 0
    for task, name, args, _ in _single_python_cases():
        v = _expect(
            task, as_tool_calls([(name + "_v2", args)]), "simple_function_checker:wrong_func_name"
        )
        values += _assert_no_leak(task, v)
        n += 1
    assert n == COUNTS["simple_python"] + COUNTS["multiple"]
    assert values > 1000  # answer strings checked for leaks


def test_missing_required_parameter_is_rejected() -> None:
    n = 0
    for task, name, args, _ in _single_python_cases():
        doc = next(f for f in spec_of(task)["functions"] if f["name"] == name)
        required = [p for p in doc["parameters"].get("required", []) if p in args]
        if not required:
            continue
        mutated = {k: v for k, v in args.items() if k != required[0]}
        v = _expect(
            task, as_tool_calls([(name, mutated)]), "simple_function_checker:missing_required"
        )
        assert repr(required[0]) in v.feedback
        n += 1
    assert n > 500


def test_extra_parameter_is_rejected() -> None:
    n = 0
    for task, name, args, _ in _single_python_cases():
        mutated = {**args, "zz_extra": 1}
        _expect(task, as_tool_calls([(name, mutated)]), "simple_function_checker:unexpected_param")
        n += 1
    assert n == COUNTS["simple_python"] + COUNTS["multiple"]


def test_schema_parameter_absent_from_answer_is_rejected() -> None:
    # The answer decides which parameters may appear, not only the schema.
    f = fn("f", {"a": {"type": "integer"}, "b": {"type": "string"}}, ["a"])
    task = synthetic("simple", [f], [{"f": {"a": [1]}}])
    assert judge(task, as_tool_calls([("f", {"a": 1})])).passed
    _expect(
        task, as_tool_calls([("f", {"a": 1, "b": "x"})]), "simple_function_checker:unexpected_param"
    )


def _plain_typed(task: Task, props: dict[str, Any], args: dict[str, Any], t: type) -> list[str]:
    """Params whose schema type and every allowed answer value are of Python type ``t``."""
    gt = next(iter(spec_of(task)["ground_truth"][0].values()))
    names = {int: "integer", str: "string", float: "float", bool: "boolean"}
    return [
        p
        for p in args
        if props[p].get("type") == names[t]
        and all(type(x) is t for x in gt[p] if x != "" or type(x) is not str)
    ]


def test_wrong_type_is_rejected_without_leaking_the_answer() -> None:
    n = 0
    for task, name, args, props in _single_python_cases():
        for p in _plain_typed(task, props, args, int):
            v = _expect(task, as_tool_calls([(name, {**args, p: "abc"})]), "type_error:simple")
            expected = f"wrong type for parameter {p!r}: expected integer, got string."
            assert v.feedback.lower() == expected.lower()
            n += 1
        for p in _plain_typed(task, props, args, str):
            _expect(task, as_tool_calls([(name, {**args, p: 12345})]), "type_error:simple")
            n += 1
    assert n > 1000


def test_bool_is_not_an_integer() -> None:
    n = 0
    for task, name, args, props in _single_python_cases():
        for p in _plain_typed(task, props, args, int):
            _expect(task, as_tool_calls([(name, {**args, p: True})]), "type_error:simple")
            n += 1
    assert n > 300


def test_integer_is_accepted_for_float() -> None:
    n = 0
    for task, name, args, props in _single_python_cases():
        for p in _plain_typed(task, props, args, float):
            if float(args[p]).is_integer() and abs(args[p]) < 1e15:
                for out in (
                    as_tool_calls([(name, {**args, p: int(args[p])})]),
                    ModelOutput(text=format_python_calls([(name, {**args, p: int(args[p])})])),
                ):
                    assert judge(task, out).passed, (task.id, p)
                n += 1
    assert n > 10


def test_string_normalisation() -> None:
    n = values = 0
    for task, name, args, props in _single_python_cases():
        for p in _plain_typed(task, props, args, str):
            value = args[p]
            if not any(c.isalpha() for c in value):
                continue
            # Case, spaces and ,./-_*^ do not matter; ' and " are the same.
            noisy = " " + value.upper().replace(" ", " _ ") + ".,"
            assert judge(task, as_tool_calls([(name, {**args, p: noisy})])).passed, (task.id, p)
            # A different word does.
            wrong = value + "zq"
            v = _expect(task, as_tool_calls([(name, {**args, p: wrong})]), "value_error:string")
            values += _assert_no_leak(task, v)
            n += 1
    assert n > 500
    assert values > 2000


def test_omitting_a_parameter_marked_optional_is_accepted() -> None:
    n = 0
    for task, name, args, _ in _single_python_cases():
        doc = next(f for f in spec_of(task)["functions"] if f["name"] == name)
        required = set(doc["parameters"].get("required", []))
        gt = next(iter(spec_of(task)["ground_truth"][0].values()))
        for p, options in gt.items():
            # (A few answers mark a schema-required parameter optional; BFCL checks required first.)
            if "" in options and p in args and p not in required:
                rest = {k: v for k, v in args.items() if k != p}
                assert judge(task, as_tool_calls([(name, rest)])).passed, (task.id, p)
                n += 1
    assert n > 200


def test_omitting_an_answer_parameter_not_marked_optional_is_rejected() -> None:
    n = 0
    for task, name, args, _ in _single_python_cases():
        doc = next(f for f in spec_of(task)["functions"] if f["name"] == name)
        required = set(doc["parameters"].get("required", []))
        gt = next(iter(spec_of(task)["ground_truth"][0].values()))
        for p, options in gt.items():
            if "" not in options and p in args and p not in required:
                rest = {k: v for k, v in args.items() if k != p}
                _expect(
                    task, as_tool_calls([(name, rest)]), "simple_function_checker:missing_optional"
                )
                n += 1
    assert n > 10


def test_wrong_count() -> None:
    n = 0
    for task in tasks("simple_python")[:50]:
        calls = reference(task)
        v = _expect(task, as_tool_calls(calls * 2), "simple_function_checker:wrong_count")
        assert v.feedback == "Expected 1 call, got 2."
        _expect(task, ModelOutput(text="[]"), "simple_function_checker:wrong_count")
        n += 1
    for task in tasks("multiple")[:50]:
        _expect(task, as_tool_calls(reference(task) * 2), "multiple_function_checker:wrong_count")
        n += 1
    for category in ("parallel", "parallel_multiple"):
        for task in tasks(category):
            calls = reference(task)
            v = _expect(
                task, as_tool_calls(calls[:-1]), "parallel_function_checker_no_order:wrong_count"
            )
            assert v.feedback == f"Expected {len(calls)} calls, got {len(calls) - 1}."
            n += 1
    assert n == 50 + 50 + COUNTS["parallel"] + COUNTS["parallel_multiple"]


def test_parallel_wrong_value_cannot_find_match() -> None:
    n = values = 0
    for task in tasks("parallel"):
        calls = reference(task)
        name, args = calls[-1]
        ints = [p for p, v in args.items() if type(v) is int and not isinstance(v, bool)]
        if not ints:
            continue
        mutated = [*calls[:-1], (name, {**args, ints[0]: args[ints[0]] + 1000003})]
        v = _expect(
            task, as_tool_calls(mutated), "parallel_function_checker_no_order:cannot_find_match"
        )
        values += _assert_no_leak(task, v)
        n += 1
    assert n > 50
    assert values > 300


def test_no_output_at_all_fails_for_answer_categories() -> None:
    # BFCL decodes an empty reply to no calls ("[]") and its checker reports the count.
    task = tasks("simple_python")[0]
    _expect(task, ModelOutput(), "simple_function_checker:wrong_count")
    _expect(task, ModelOutput(text="  "), "simple_function_checker:wrong_count")
    parallel = tasks("parallel")[0]
    _expect(parallel, ModelOutput(), "parallel_function_checker_no_order:wrong_count")
    _expect(task, ModelOutput(text="The area is 25."), "ast_decoder:decoder_failed")


# ------------------------------------------------------------------ finer BFCL rules


POINT = fn(
    "geo.point",
    {
        "coords": {"type": "array", "items": {"type": "float"}},
        "tags": {"type": "array", "items": {"type": "string"}},
        "meta": {"type": "dict", "properties": {"k": {"type": "string"}}},
        "rows": {"type": "array", "items": {"type": "dict"}},
        "pair": {"type": "tuple", "items": {"type": "integer"}},
        "ref": {"type": "integer"},
    },
    ["coords"],
)


def _point(gt: dict[str, Any]) -> Task:
    return synthetic("simple", [POINT], [{"geo.point": gt}])


def _call(task: Task, **args: Any) -> Verdict:
    return judge(task, as_tool_calls([("geo.point", args)]))


def test_array_items_are_type_checked_one_level() -> None:
    task = _point({"coords": [[1.5, 2.5]]})
    assert _call(task, coords=[1.5, 2.5]).passed
    v = _call(task, coords=[1.5, "2.5"])
    assert v.details["error_type"] == "type_error:nested"
    # Items are not converted from int to float (only top-level values are).
    assert _call(task, coords=[1.5, 2]).details["error_type"] == "type_error:nested"
    # Lists are compared element-wise in order.
    assert _call(task, coords=[2.5, 1.5]).details["error_type"] == "value_error:list/tuple"


def test_string_lists_are_normalised_element_wise() -> None:
    task = _point({"coords": [[1.0]], "tags": [["New York", "san-jose"]]})
    assert _call(task, coords=[1.0], tags=["new york", "SAN JOSE"]).passed
    assert not _call(task, coords=[1.0], tags=["san jose", "new york"]).passed


def test_dicts_keys_and_values() -> None:
    task = _point({"coords": [[1.0]], "meta": [{"k": ["Alpha"], "opt": ["x", ""]}]})
    assert _call(task, coords=[1.0], meta={"k": "alpha"}).passed
    assert _call(task, coords=[1.0], meta={"k": "alpha", "opt": "X"}).passed
    assert _call(task, coords=[1.0], meta={"k": "beta"}).details["error_type"] == (
        "value_error:dict_value"
    )
    assert _call(task, coords=[1.0], meta={"k": "alpha", "z": 1}).details["error_type"] == (
        "value_error:dict_key"
    )
    assert _call(task, coords=[1.0], meta={}).details["error_type"] == "value_error:dict_key"


def test_list_of_dicts() -> None:
    task = _point({"coords": [[1.0]], "rows": [[{"a": [1]}, {"a": [2]}]]})
    assert _call(task, coords=[1.0], rows=[{"a": 1}, {"a": 2}]).passed
    assert _call(task, coords=[1.0], rows=[{"a": 1}]).details["error_type"] == (
        "value_error:list_dict_count"
    )
    assert _call(task, coords=[1.0], rows=[{"a": 2}, {"a": 1}]).details["error_type"] == (
        "value_error:dict_value"
    )


def test_tuple_values_and_variables() -> None:
    task = _point({"coords": [[1.0]], "pair": [[1, 2]], "ref": ["x_var"]})
    assert judge(task, ModelOutput(text="[geo.point(coords=[1.0], pair=(1, 2), ref=x_var)]")).passed
    # "is_variable": the answer holds a name where the schema wants an integer.
    assert _call(task, coords=[1.0], pair=[1, 2], ref="x_var").passed
    assert not _call(task, coords=[1.0], pair=[1, 2], ref="X_VAR").passed  # compared exactly


def test_parallel_matching_is_order_free_but_greedy_like_bfcl() -> None:
    add = fn("add", {"a": {"type": "integer"}, "b": {"type": "integer"}}, ["a"])
    gt = [{"add": {"a": [1], "b": [2, ""]}}, {"add": {"a": [1], "b": [3]}}]
    task = synthetic("parallel", [add], gt)
    assert judge(task, as_tool_calls([("add", {"a": 1, "b": 3}), ("add", {"a": 1, "b": 2})])).passed
    # BFCL matches answers one by one to the first call that fits, without backtracking:
    # the first answer takes the call without b, so the second answer finds nothing.
    verdict = judge(task, as_tool_calls([("add", {"a": 1}), ("add", {"a": 1, "b": 2})]))
    assert verdict.details["error_type"] == "parallel_function_checker_no_order:cannot_find_match"


def test_sanitized_and_original_names_are_both_read() -> None:
    task = _point({"coords": [[1.0]]})
    for name in ("geo.point", "geo_point"):
        assert judge(task, as_tool_calls([(name, {"coords": [1.0]})], sanitize=False)).passed
    assert not judge(task, as_tool_calls([("geo-point", {"coords": [1.0]})], sanitize=False)).passed


def test_positional_arguments_are_ignored_like_bfcl() -> None:
    task = _point({"coords": [[1.0]], "ref": ["", 3]})
    assert judge(task, ModelOutput(text="geo.point(7, coords=[1.0])")).passed
    v = judge(task, ModelOutput(text="geo.point([1.0])"))
    assert v.details["error_type"] == "simple_function_checker:missing_required"
    assert "keyword" in v.feedback


def test_invalid_json_arguments() -> None:
    task = _point({"coords": [[1.0]]})
    out = ModelOutput(
        tool_calls=[ToolCall(id="c", function=FunctionCall(name="geo_point", arguments="{x"))]
    )
    assert judge(task, out).details["error_type"] == "ast_decoder:decoder_failed"
    out = ModelOutput(
        tool_calls=[ToolCall(id="c", function=FunctionCall(name="geo_point", arguments="[1]"))]
    )
    assert judge(task, out).details["error_type"] == "ast_decoder:decoder_wrong_output_format"


def test_standardize_string() -> None:
    assert standardize_string("April 1, 2024") == standardize_string("april 1 2024")
    assert standardize_string("a-b_c.d/e*f^g") == "abcdefg"
    assert standardize_string("it's") == 'it"s'


# ------------------------------------------------------------------ irrelevance


def test_irrelevance_passes_without_a_call_and_fails_with_one() -> None:
    all_tasks = tasks("irrelevance")
    assert len(all_tasks) == 240
    n = 0
    for task in all_tasks:
        for output in (
            ModelOutput(text="None of the functions can answer this."),
            ModelOutput(text="[]"),
            ModelOutput(),
        ):
            assert judge(task, output).passed, task.id
        first = spec_of(task)["functions"][0]
        for output in (
            as_tool_calls([(first["name"], {})]),
            ModelOutput(text=f"[{first['name']}(x=1)]"),
        ):
            v = judge(task, output)
            assert not v.passed
            assert v.details["error_type"] == "irrelevance_error:decoder_success"
        n += 1
    assert n == 240


# ------------------------------------------------------------------ hostile text


HOSTILE = [
    "[f(a=__import__('os').system('touch MARKER'))]",
    "[__import__('os').system('touch MARKER')]",
    "[f(a=(lambda: open('MARKER', 'w'))())]",
    "[f(a=open('MARKER', 'w').close())]",
    "[f(a=x.y)]",
    "[f(a=x[0])]",
    "[f(a=[c for c in 'ab'])]",
    "[f(a=f'{1}')]",
    "[f(a={1, 2})]",
    "[f(a=9**9**9)]",
    "[f(a=[1]*10**9)]",
    "[f(**{'a': 1})]",
    "[f(a=1 if True else 2)]",
    "[f(a=(b:=1))]",
    "[" * 5000 + "]" * 5000,
    "[f(a=" + "[" * 3000 + "]" * 3000 + ")]",
    "[f(a=" + "-" * 100000 + "1)]",
    "[f(a=1)] + [g(b=2)]",
    "x" * 300_000,
]


@pytest.mark.parametrize("template", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_text_is_rejected_without_execution(
    template: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "executed"

    def forbidden(*_: object, **__: object) -> None:
        raise AssertionError("model output was executed")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    f = fn("f", {"a": {"type": "integer"}}, ["a"])
    task = synthetic("simple", [f], [{"f": {"a": [1]}}])
    verdict = judge(task, ModelOutput(text=template.replace("MARKER", str(marker))))
    assert not verdict.passed
    assert verdict.details["error_type"] == "ast_decoder:decoder_failed", verdict.details
    assert not marker.exists()


def test_parser_accepts_literals_only() -> None:
    calls, ignored = parse_python_calls(
        "[m.f(a=-1, b=2.5e-3, c='x', d=[1, (2, 3)], e={'k': None}, g=True, h=..., i=1/4, j=name)]"
    )
    assert ignored == 0
    assert calls == [
        (
            "m.f",
            {
                "a": -1,
                "b": 2.5e-3,
                "c": "x",
                "d": [1, (2, 3)],
                "e": {"k": None},
                "g": True,
                "h": "...",
                "i": 0.25,
                "j": "name",
            },
        )
    ]


# ------------------------------------------------------------------ Java / JavaScript


def test_java_converter_follows_bfcl() -> None:
    assert java_type_converter("123", "integer") == 123
    assert java_type_converter("123L", "long") == 123
    assert java_type_converter("123", "long") == "123"
    assert java_type_converter("3.5f", "float") == 3.5
    assert java_type_converter("3.5", "double") == 3.5
    assert java_type_converter("true", "boolean") is True
    assert java_type_converter("new int[]{1, 2, 3}", "Array", "integer") == [1, 2, 3]
    assert java_type_converter(
        'new ArrayList<>(Arrays.asList("a", "b"))', "ArrayList", "String"
    ) == [
        "a",
        "b",
    ]
    assert java_type_converter(
        'new HashMap<String, Object>() {{ put("k", 1); put("s", "v"); }}', "HashMap"
    ) == {"k": 1, "s": "v"}
    assert java_type_converter("new HashMap<>()", "HashMap") == {}


def test_js_converter_follows_bfcl() -> None:
    assert js_type_converter("'abc'", "String") == "abc"
    assert js_type_converter("12n", "Bigint") == 12
    assert js_type_converter("[1, 2, 3]", "array", "integer") == [1, 2, 3]
    assert js_type_converter('["a", "b"]', "array", "String") == ["a", "b"]
    assert js_type_converter("[[1, 2], [3, 4]]", "array") == [[1, 2], [3, 4]]
    assert js_type_converter("{'a': 1, 'b': true}", "dict") == {"a": 1, "b": True}


def test_java_values_must_be_strings() -> None:
    task = tasks("simple_java")[6]  # SpreadsheetPresentation.refreshData(booleans)
    [(name, args)] = reference(task)
    assert judge(task, as_tool_calls([(name, args)])).passed
    typed = {k: v == "true" for k, v in args.items()}
    v = judge(task, as_tool_calls([(name, typed)]))
    assert v.details["error_type"] == "type_error:java"
    wrong = {k: "yes" for k in args}
    assert judge(task, as_tool_calls([(name, wrong)])).details["error_type"] == "type_error:simple"


def test_javascript_values_must_be_strings() -> None:
    task = tasks("simple_javascript")[0]
    [(name, args)] = reference(task)
    typed = {**args, "isComplete": True}
    assert judge(task, as_tool_calls([(name, typed)])).details["error_type"] == "type_error:js"


# ------------------------------------------------------------------ spec


def test_spec_round_trip_and_validation() -> None:
    task = tasks("parallel")[0]
    verifier = build_verifier(task.verifier)
    # The spec it gives back holds every field (defaults too) and rebuilds the same verifier.
    assert verifier.to_spec().to_dict() == {**task.verifier.to_dict(), "strict": False}
    assert build_verifier(verifier.to_spec()) == verifier
    bad = copy.deepcopy(task.verifier.to_dict())
    bad["category"] = "parallel_python"
    with pytest.raises(VerifierSpecError):
        build_verifier(bad)
    bad = copy.deepcopy(task.verifier.to_dict())
    del bad["ground_truth"]
    with pytest.raises(VerifierSpecError):
        build_verifier(bad)
