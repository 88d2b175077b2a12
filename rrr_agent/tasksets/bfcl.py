"""Berkeley Function Calling Leaderboard (v4, single-turn AST categories) as rrr task sets.

One set per category in ``bfcl/``: ``bfcl-simple_python``, ``bfcl-multiple``, ``bfcl-parallel``,
``bfcl-parallel_multiple``, ``bfcl-irrelevance``, ``bfcl-simple_java``, ``bfcl-simple_javascript``,
and the live (user-contributed) ones, ``bfcl-live_simple``, ``bfcl-live_multiple``,
``bfcl-live_parallel``, ``bfcl-live_parallel_multiple``, ``bfcl-live_irrelevance`` and
``bfcl-live_relevance``. Each task keeps BFCL's id, the question messages, the functions as OpenAI
tools, and a ``bfcl`` verifier spec holding the record's function docs and ground truth.

Tools are converted the way BFCL's handlers for OpenAI-style models do it: ``dict`` → ``object``,
``float`` → ``number``, ``tuple`` → ``array``; ``any`` loses its type (no constraint; BFCL itself
sends ``string``). Dots in names become underscores (OpenAI allows ``^[a-zA-Z0-9_-]{1,64}$``); the
map back to BFCL's names is in ``metadata["tool_names"]`` and the verifier reads either form.
Each function description gets BFCL's language hint. For Java and JavaScript, as in BFCL, every
parameter becomes a ``string`` whose description says which Java/JavaScript type it must hold
(item types and dict schemas move into the description), because BFCL expects those values as
source text in that language.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._errors import DataError, VerifierSpecError
from .._types import FunctionCall, Message, ModelOutput, Task, ToolCall, VerifierSpec
from ..verifiers import build_verifier
from ..verifiers.bfcl_ast import openai_tool_name
from . import register_taskset

__all__ = [
    "BFCL_CATEGORIES",
    "bfcl_tasks",
    "bfcl_to_openai_tool",
    "load_bfcl_jsonl",
    "prediction_output",
    "score_predictions",
]

#: BFCL category → (verifier category, language, record count in v4).
BFCL_CATEGORIES: dict[str, tuple[str, str, int]] = {
    "simple_python": ("simple", "python", 400),
    "multiple": ("multiple", "python", 200),
    "parallel": ("parallel", "python", 200),
    "parallel_multiple": ("parallel_multiple", "python", 200),
    "irrelevance": ("irrelevance", "python", 240),
    "simple_java": ("simple", "java", 100),
    "simple_javascript": ("simple", "javascript", 50),
    # Live (user-contributed) categories, judged by the same rules as their non-live twins;
    # live_relevance passes on any well-formed call.
    "live_simple": ("simple", "python", 258),
    "live_multiple": ("multiple", "python", 1053),
    "live_parallel": ("parallel", "python", 16),
    "live_parallel_multiple": ("parallel_multiple", "python", 24),
    "live_irrelevance": ("irrelevance", "python", 884),
    "live_relevance": ("relevance", "python", 16),
}

#: Verifier categories judged without an answer file.
NO_ANSWER = ("irrelevance", "relevance")

_TYPE_TO_OPENAI = {"dict": "object", "float": "number", "tuple": "array"}

_LANGUAGE_HINT = {
    "python": " Note that the provided function is in Python 3 syntax.",
    "java": " Note that the provided function is in Java 8 SDK syntax.",
    "javascript": " Note that the provided function is in JavaScript syntax.",
}


def _openai_schema(schema: Any) -> Any:
    """BFCL parameter schema → JSON schema, recursively (properties, items)."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    t = out.get("type")
    if t == "any":
        del out["type"]
    elif isinstance(t, str):
        out["type"] = _TYPE_TO_OPENAI.get(t, t)
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _openai_schema(v) for k, v in out["properties"].items()}
    if isinstance(out.get("items"), dict):
        out["items"] = _openai_schema(out["items"])
    return out


def _foreign_parameters(params: dict[str, Any], language: str) -> dict[str, Any]:
    """BFCL's Java/JavaScript preprocessing: every parameter is a string in that language."""
    lang = "Java" if language == "java" else "JavaScript"
    props: dict[str, Any] = {}
    for name, spec in (params.get("properties") or {}).items():
        spec = dict(spec)
        t = spec.get("type", "any")
        desc = str(spec.get("description", ""))
        if t == "any":
            desc += f" This parameter can be of any type of {lang} object in string representation."
        else:
            desc += f" This is {lang} {t} type parameter in string representation."
        if t in (("ArrayList", "Array") if language == "java" else ("array",)) and isinstance(
            spec.get("items"), dict
        ):
            desc += (
                f" The list elements are of type {spec['items'].get('type')}; "
                "they are not in string representation."
            )
            del spec["items"]
        if language == "javascript" and t == "dict" and "properties" in spec:
            desc += (
                " The dictionary entries have the following schema; they are not in string "
                f"representation. {json.dumps(spec['properties'])}"
            )
            del spec["properties"]
        spec["description"] = desc
        spec["type"] = "string"
        props[name] = spec
    out = {k: v for k, v in params.items() if k != "properties"}
    out["type"] = "object"
    out["properties"] = props
    return out


def bfcl_to_openai_tool(function: dict[str, Any], language: str = "python") -> dict[str, Any]:
    """One BFCL function doc as an OpenAI chat-completions tool."""
    fn = copy.deepcopy(function)
    params = fn.get("parameters") or {"type": "dict", "properties": {}}
    if language == "python":
        parameters = _openai_schema(params)
        parameters["type"] = "object"
    else:
        parameters = _foreign_parameters(params, language)
    return {
        "type": "function",
        "function": {
            "name": openai_tool_name(str(fn["name"])),
            "description": str(fn.get("description", "")) + _LANGUAGE_HINT[language],
            "parameters": parameters,
        },
    }


def load_bfcl_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each line of a BFCL ``.json`` file (JSON Lines)."""
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror}", path=path) from None
    with handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"not valid JSON: {exc.msg}", path=path, line=lineno) from None
            if not isinstance(record, dict) or not isinstance(record.get("id"), str):
                raise DataError("expected a JSON object with a string 'id'", path=path, line=lineno)
            yield lineno, record


def _messages(record: dict[str, Any], path: Path, lineno: int) -> list[Message]:
    question = record.get("question")
    if not isinstance(question, list) or not question or not isinstance(question[0], list):
        raise DataError("'question' must be a list of turns", path=path, line=lineno)
    try:
        return [Message(role=m["role"], content=m["content"]) for m in question[0]]
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"bad question message: {exc}", path=path, line=lineno) from None


def _spec(
    category: str,
    functions: list[dict[str, Any]],
    ground_truth: list[dict[str, Any]] | None,
    strict: bool = False,
) -> VerifierSpec:
    """The ``bfcl`` verifier spec of one record (no ground truth for (ir)relevance)."""
    verifier_category, language, _ = BFCL_CATEGORIES[category]
    spec: dict[str, Any] = {
        "type": "bfcl",
        "category": verifier_category,
        "functions": functions,
        "language": language,
    }
    if verifier_category not in NO_ANSWER:
        spec["ground_truth"] = ground_truth
    if strict:
        spec["strict"] = True
    return VerifierSpec(**spec)


def bfcl_tasks(root: Path, category: str) -> Iterator[Task]:
    """The tasks of one BFCL category, read from ``root / "bfcl"``."""
    verifier_category, language, _ = BFCL_CATEGORIES[category]
    base = root / "bfcl"
    qpath = base / f"BFCL_v4_{category}.json"
    answers: dict[str, list[dict[str, Any]]] = {}
    apath = base / "possible_answer" / f"BFCL_v4_{category}.json"
    if verifier_category not in NO_ANSWER:
        for lineno, record in load_bfcl_jsonl(apath):
            gt = record.get("ground_truth")
            if not isinstance(gt, list) or not gt:
                raise DataError("'ground_truth' must be a non-empty list", path=apath, line=lineno)
            answers[record["id"]] = gt
    for lineno, record in load_bfcl_jsonl(qpath):
        functions = record.get("function")
        if not isinstance(functions, list) or (
            not functions and verifier_category != "irrelevance"
        ):
            raise DataError("'function' must be a non-empty list", path=qpath, line=lineno)
        if verifier_category not in NO_ANSWER and record["id"] not in answers:
            raise DataError(f"no answer for {record['id']!r} in {apath}", path=qpath, line=lineno)
        spec = _spec(category, functions, answers.get(record["id"]))
        try:
            tools = [bfcl_to_openai_tool(f, language) for f in functions]
        except (KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"bad function doc: {exc!r}", path=qpath, line=lineno) from None
        names = {t["function"]["name"]: f["name"] for t, f in zip(tools, functions, strict=True)}
        yield Task(
            id=record["id"],
            family="tool_call",
            messages=_messages(record, qpath, lineno),
            tools=tools or None,
            verifier=spec,
            metadata={
                "source": "bfcl-v4",
                "bfcl_category": category,
                "language": language,
                "tool_names": names,
            },
        )


def prediction_output(result: Any, where: str) -> ModelOutput:
    """A BFCL prediction (Python-call text, or a list of ``{name: {args}}``) as a model output."""
    if isinstance(result, str):
        return ModelOutput(text=result)
    if isinstance(result, list):
        calls = []
        for i, item in enumerate(result):
            if not isinstance(item, dict) or len(item) != 1:
                raise ValueError(f"{where}: result[{i}] must be an object {{name: {{args}}}}")
            name, args = next(iter(item.items()))
            text = args if isinstance(args, str) else json.dumps(args)
            calls.append(
                ToolCall(id=f"call_{i}", function=FunctionCall(name=str(name), arguments=text))
            )
        return ModelOutput(tool_calls=calls) if calls else ModelOutput(text="[]")
    raise ValueError(f"{where}: 'result' must be a string or a list of {{name: {{args}}}}")


def score_predictions(
    questions: Path,
    answers: Path | None,
    predictions: Path,
    category: str | None = None,
    *,
    strict: bool = False,
) -> list[dict[str, Any]]:
    """Judge a BFCL prediction file the way BFCL's AST checker does: one row per question, in
    question order (``id``, ``category``, ``valid``, ``error_type``, ``feedback``). ``strict``
    decodes text exactly as BFCL does wherever that needs no eval (docs/bfcl.md).

    Raises :class:`DataError` (with path and line) for unreadable or malformed files, unknown
    categories, predictions for unknown ids, duplicate ids, or questions without an answer.
    """

    def category_of(qid: str, path: Path, line: int) -> str:
        name = category or qid.rsplit("_", 1)[0]
        if name not in BFCL_CATEGORIES:
            known = ", ".join(BFCL_CATEGORIES)
            raise DataError(
                f"cannot tell the BFCL category of {qid!r} (got {name!r}; known: {known}); "
                "pass --category",
                path=path,
                line=line,
            )
        return name

    qrows: list[tuple[str, str, dict[str, Any]]] = []
    seen: set[str] = set()
    for line, record in load_bfcl_jsonl(questions):
        qid = record["id"]
        if qid in seen:
            raise DataError(f"duplicate question id {qid!r}", path=questions, line=line)
        seen.add(qid)
        cat = category_of(qid, questions, line)
        functions = record.get("function")
        if not isinstance(functions, list) or (
            not functions and BFCL_CATEGORIES[cat][0] != "irrelevance"
        ):
            raise DataError("'function' must be a non-empty list", path=questions, line=line)
        qrows.append((qid, cat, record))

    gts: dict[str, list[dict[str, Any]]] = {}
    if answers is not None:
        for line, record in load_bfcl_jsonl(answers):
            gt = record.get("ground_truth")
            if not isinstance(gt, list):
                raise DataError("'ground_truth' must be a list", path=answers, line=line)
            gts[record["id"]] = gt

    preds: dict[str, tuple[int, Any]] = {}
    for line, record in load_bfcl_jsonl(predictions):
        pid = record["id"]
        if pid not in seen:
            raise DataError(f"prediction for unknown id {pid!r}", path=predictions, line=line)
        if pid in preds:
            raise DataError(f"duplicate prediction for {pid!r}", path=predictions, line=line)
        if "result" not in record:
            raise DataError("a prediction needs a 'result'", path=predictions, line=line)
        preds[pid] = (line, record["result"])

    rows: list[dict[str, Any]] = []
    for qid, cat, record in qrows:
        if BFCL_CATEGORIES[cat][0] not in NO_ANSWER and qid not in gts:
            where = answers if answers is not None else questions
            raise DataError(f"no ground truth for {qid!r} (use --answers)", path=where)
        row: dict[str, Any] = {"id": qid, "category": cat}
        if qid not in preds:
            rows.append({**row, "valid": False, "error_type": "missing_prediction",
                         "feedback": "No prediction was given for this question."})  # fmt: skip
            continue
        line, result = preds[qid]
        try:
            output = prediction_output(result, f"id {qid!r}")
        except ValueError as exc:
            raise DataError(str(exc), path=predictions, line=line) from None
        task = Task.from_prompt(
            f"(BFCL {qid})", _spec(cat, record["function"], gts.get(qid), strict)
        )
        try:
            verdict = build_verifier(task.verifier).judge_sync(output, task)
        except VerifierSpecError as exc:
            raise DataError(f"bad BFCL record {qid!r}: {exc}", path=questions) from None
        rows.append(
            {
                **row,
                "valid": verdict.passed,
                "error_type": verdict.details.get("error_type"),
                "feedback": verdict.feedback,
            }
        )
    return rows


def _register(category: str) -> None:
    _, language, count = BFCL_CATEGORIES[category]

    def loader(root: Path) -> Iterator[Task]:
        return bfcl_tasks(root, category)

    register_taskset(
        f"bfcl-{category}",
        description=f"BFCL v4 {category} ({count} tasks, {language}; AST-checked like BFCL)",
        family="tool_call",
        source=f"bfcl/BFCL_v4_{category}.json",
    )(loader)


for _category in BFCL_CATEGORIES:
    _register(_category)
