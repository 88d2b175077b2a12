"""BFCL's single-turn AST checking, reimplemented: decoding model output and judging the calls.

The rules follow the public Berkeley Function Calling Leaderboard checker
(``bfcl_eval/eval_checker/ast_eval/ast_checker.py`` and its Java/JavaScript type converters in
ShishirPatil/gorilla). The code here is written from those rules, not copied; where BFCL has a
quirk that changes verdicts, the quirk is reproduced on purpose so scores stay comparable, and it
is named in a comment. Deliberate departures (all about *decoding* text, never about judging):

* Python-call text is parsed with :mod:`ast` and turned into values through a whitelist of literal
  node types; nothing is ever evaluated. BFCL ``eval``\\ s arithmetic (``BinOp``) and lambdas;
  here numeric arithmetic is folded by a small bounded evaluator and everything else that is not a
  literal (calls, attribute access, subscripts, lambdas, comprehensions, f-strings, sets) makes
  the text undecodable (``ast_decoder:decoder_failed``). BFCL turns a nested call without keywords
  into its source text and one with keywords into a nested ``{name: args}`` dict; both are
  rejected here.
* ``+5`` is 5 (BFCL negates the operand of any unary operator).
* A reply that is exactly one Markdown code fence is unwrapped (BFCL fails such replies).
* Java/JavaScript text replies are split by a small scanner and each argument's source text is
  taken verbatim, as BFCL's function-calling (tool-call) mode receives it; BFCL's prompting mode
  rebuilds the text through tree-sitter, which for instance drops ``HashMap`` initialiser bodies.
  All calls in the reply count (BFCL's Java/JS text parser keeps only the first one).
* Java types BFCL cannot convert (``Set``, ``Hashtable``, ``Queue``, ``Stack``: it raises) keep
  the raw string; unknown schema types are checked as ``any`` (BFCL raises ``KeyError``).
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .._types import ModelOutput

__all__ = [
    "Call",
    "CheckResult",
    "DecodeError",
    "Language",
    "check_calls",
    "decode_output",
    "java_type_converter",
    "js_type_converter",
    "openai_tool_name",
    "parse_foreign_calls",
    "parse_python_calls",
    "standardize_string",
]

Language = Literal["python", "java", "javascript"]

#: One decoded call: ``(function name, {argument: value})``.
Call = tuple[str, dict[Any, Any]]

MAX_TEXT_CHARS = 200_000
MAX_AST_NODES = 50_000
MAX_VALUE_DEPTH = 64
_MAX_INT_BITS = 4096


class DecodeError(ValueError):
    """The model output could not be turned into calls. ``error_type`` uses BFCL's names."""

    def __init__(self, message: str, error_type: str = "ast_decoder:decoder_failed"):
        super().__init__(message)
        self.error_type = error_type


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------

_OPENAI_NAME_BAD = re.compile(r"[^a-zA-Z0-9_-]")


def openai_tool_name(name: str) -> str:
    """The name a tool gets in OpenAI format (``^[a-zA-Z0-9_-]{1,64}$``): dots become ``_``.

    BFCL's handlers for OpenAI-style models replace ``.`` with ``_``; any other character outside
    the allowed set is replaced the same way here.
    """
    return _OPENAI_NAME_BAD.sub("_", name)[:64] or "_"


def resolve_names(calls: list[Call], functions: Sequence[dict[str, Any]]) -> list[Call]:
    """Map sanitized names (``math_factorial``) back to the BFCL name (``math.factorial``)."""
    known = {str(f.get("name", "")) for f in functions}
    back: dict[str, str] = {}
    for name in known:
        back.setdefault(openai_tool_name(name), name)
    out: list[Call] = []
    for name, args in calls:
        if name not in known and name in back:
            name = back[name]
        out.append((name, args))
    return out


# --------------------------------------------------------------------------------------------
# Decoding: tool calls, Python-call text, Java/JavaScript-call text
# --------------------------------------------------------------------------------------------

_FENCE = re.compile(r"```[A-Za-z0-9_+.-]*[ \t]*\n?(.*?)\n?[ \t]*```", re.DOTALL)


def _prepare_text(text: str, *, strict: bool = False) -> str:
    if len(text) > MAX_TEXT_CHARS:
        raise DecodeError(f"the reply is too long to decode ({len(text)} characters)")
    s = text.strip()
    fence = None if strict else _FENCE.fullmatch(s)  # BFCL does not unwrap a code fence
    if fence:
        s = fence.group(1)
    # BFCL: strip backticks, newlines and spaces, then make sure the text is a bracketed list.
    s = s.strip("`\n ")
    if not s.startswith("["):
        s = "[" + s
    if not s.endswith("]"):
        s = s + "]"
    return s


def parse_python_calls(text: str, *, strict: bool = False) -> tuple[list[Call], int]:
    """Decode BFCL's Python-call text (``[f(a=1), m.g(b="x")]``) without evaluating anything.

    Returns the calls and how many positional arguments were ignored (BFCL reads keywords only).
    Raises :class:`DecodeError` for anything that is not a list of calls with literal arguments.
    ``strict`` reads signs the way BFCL does (see :func:`_bfcl_unary`).
    """
    src = _prepare_text(text, strict=strict)
    try:
        tree = ast.parse(src, mode="eval")
    except (SyntaxError, ValueError) as exc:
        raise DecodeError(f"not valid function-call syntax: {getattr(exc, 'msg', exc)}") from None
    except (RecursionError, MemoryError):
        raise DecodeError("the reply is nested too deeply to decode") from None
    for count, _ in enumerate(ast.walk(tree)):
        if count >= MAX_AST_NODES:
            raise DecodeError("the reply is too large to decode")
    body = tree.body
    elements: list[ast.expr]
    if isinstance(body, ast.Call):
        elements = [body]
    elif isinstance(body, ast.List | ast.Tuple):
        elements = list(body.elts)
    else:
        raise DecodeError("expected a list of function calls")
    calls: list[Call] = []
    ignored = 0
    for elem in elements:
        if not isinstance(elem, ast.Call):
            raise DecodeError(f"expected a function call, found {_describe(elem)}")
        name = _dotted_name(elem.func)
        args: dict[Any, Any] = {}
        for kw in elem.keywords:
            if kw.arg is None:
                raise DecodeError(f"'**' arguments are not allowed in the call to {name}")
            args[kw.arg] = _literal(kw.value, kw.arg, 0, strict)
        ignored += len(elem.args)
        calls.append((name, args))
    return calls, ignored


def _dotted_name(node: ast.expr) -> str:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise DecodeError("a function name must be a plain or dotted name")
    parts.append(node.id)
    return ".".join(reversed(parts))


def _describe(node: ast.AST) -> str:
    return {
        ast.Call: "a function call",
        ast.Attribute: "attribute access",
        ast.Subscript: "a subscript",
        ast.Lambda: "a lambda",
        ast.JoinedStr: "an f-string",
        ast.Set: "a set",
        ast.Starred: "a starred expression",
        ast.NamedExpr: "an assignment expression",
    }.get(type(node), f"a {type(node).__name__} expression")


def _literal(node: ast.expr, param: str, depth: int, strict: bool = False) -> Any:
    """A value node, as BFCL's decoder reads it, without evaluating anything."""
    if depth > MAX_VALUE_DEPTH:
        raise DecodeError(f"the value of {param!r} is nested too deeply")
    if isinstance(node, ast.Constant):
        v = node.value
        if v is Ellipsis:
            return "..."  # BFCL's reading of `...`
        if v is None or isinstance(v, str | bool | int | float):
            return v
        raise DecodeError(f"unsupported constant of type {type(v).__name__} in {param!r}")
    if isinstance(node, ast.Name):
        return node.id  # BFCL reads a bare variable name as its name, a string
    if isinstance(node, ast.List):
        return [_literal(e, param, depth + 1, strict) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_literal(e, param, depth + 1, strict) for e in node.elts)
    if isinstance(node, ast.Dict):
        out: dict[Any, Any] = {}
        for key_node, value_node in zip(node.keys, node.values, strict=True):
            if key_node is None:
                raise DecodeError(f"'**' inside a dict is not allowed in {param!r}")
            key = _literal(key_node, param, depth + 1, strict)
            if isinstance(key, list | dict):
                raise DecodeError(f"unhashable dict key in {param!r}")
            out[key] = _literal(value_node, param, depth + 1, strict)
        return out
    if isinstance(node, ast.UnaryOp):
        if strict:
            return _bfcl_unary(node, param)
        value = _fold(node, param, depth)
        if not isinstance(value, int | float):
            raise DecodeError(f"a sign on a non-number in {param!r}")
        return value
    if isinstance(node, ast.BinOp):
        return _fold(node, param, depth)  # BFCL: eval(ast.unparse(node)); here: folded
    raise DecodeError(f"unsupported expression in {param!r}: {_describe(node)} is not a literal")


def _bfcl_unary(node: ast.UnaryOp, param: str) -> Any:
    """Strict mode, BFCL's own reading: ``-operand.value`` whatever the operator, so ``+5`` is
    -5, ``not True`` is -1, and ``--20`` (no ``.value`` on a unary operand) cannot be decoded."""
    operand = node.operand
    if not isinstance(operand, ast.Constant):
        raise DecodeError(f"BFCL cannot decode a sign on {_describe(operand)} in {param!r}")
    value = operand.value
    if isinstance(value, bool | int | float):
        return -value
    raise DecodeError(f"a sign on a non-number in {param!r}")


def _check_size(value: Any, param: str) -> Any:
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value.bit_length() > _MAX_INT_BITS
    ):
        raise DecodeError(f"number too large in {param!r}")
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        raise DecodeError(f"the arithmetic in {param!r} does not give a finite number")
    if isinstance(value, str | list | tuple) and len(value) > MAX_TEXT_CHARS:
        raise DecodeError(f"the value of {param!r} is too large")
    return value


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float)  # bool is an int, as in Python


def _pow(left: Any, right: Any, param: str) -> Any:
    if not (_is_number(left) and _is_number(right)):
        raise TypeError("** needs numbers")
    if isinstance(left, int) and isinstance(right, int) and right >= 0:
        # Bound the result's size before computing it (1617176400000 ** 1 is fine).
        if left not in (-1, 0, 1) and max(left.bit_length(), 1) * right > _MAX_INT_BITS:
            raise DecodeError(f"number too large in {param!r}")
        return left**right
    try:
        result = math.pow(left, right)
    except OverflowError:
        raise DecodeError(f"number too large in {param!r}") from None
    if isinstance(left, int) and isinstance(right, int) and left < 0 and right < 0:
        result = left**right  # exact sign for negative integer bases
    return result


def _shift(left: Any, right: Any, param: str, op: type[ast.operator]) -> Any:
    if not (isinstance(left, int) and isinstance(right, int)):
        raise TypeError("shifts need integers")
    if op is ast.LShift:
        if right > _MAX_INT_BITS:
            raise DecodeError(f"number too large in {param!r}")
        return left << right
    return left >> right


def _repeat(seq: Any, times: Any, param: str) -> Any:
    if not isinstance(times, int):
        raise TypeError("repeat count must be an integer")
    if len(seq) * max(times, 0) > MAX_TEXT_CHARS:
        raise DecodeError(f"the value of {param!r} is too large")
    return seq * times


def _fold_binop(op: ast.operator, left: Any, right: Any, param: str) -> Any:
    """One binary operation with Python's meaning, on the types a literal can hold."""
    kind = type(op)
    if kind is ast.Add:
        if _is_number(left) and _is_number(right):
            return left + right
        if type(left) is type(right) and isinstance(left, str | list | tuple):
            return _check_size(left + right, param)
        raise TypeError("+ needs two numbers, strings, lists or tuples")
    if kind is ast.Mult:
        if _is_number(left) and _is_number(right):
            return left * right
        if isinstance(left, str | list | tuple) and isinstance(right, int):
            return _repeat(left, right, param)
        if isinstance(right, str | list | tuple) and isinstance(left, int):
            return _repeat(right, left, param)
        raise TypeError("* needs numbers, or a sequence and an integer")
    if kind is ast.Pow:
        return _pow(left, right, param)
    if kind in (ast.LShift, ast.RShift):
        return _shift(left, right, param, kind)
    if kind in (ast.BitOr, ast.BitAnd, ast.BitXor):
        if isinstance(left, int) and isinstance(right, int):
            return {ast.BitOr: left | right, ast.BitAnd: left & right,
                    ast.BitXor: left ^ right}[kind]  # fmt: skip
        if kind is ast.BitOr and isinstance(left, dict) and isinstance(right, dict):
            return left | right
        raise TypeError("bitwise operators need integers")
    if not (_is_number(left) and _is_number(right)):
        raise TypeError("arithmetic needs numbers")
    if kind in _BINOPS:
        return _BINOPS[kind](left, right)
    raise DecodeError(f"unsupported operator in {param!r}")


_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Sub: lambda a, b: a - b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
}


def _fold(node: ast.expr, param: str, depth: int) -> Any:
    """Evaluate what BFCL hands to ``eval`` (a ``BinOp`` and what it contains) by folding the
    tree: numbers with every arithmetic and bitwise operator, ``+`` and ``*`` on strings, lists
    and tuples, ``|`` on dicts, signs; bounded in size, and never ``eval``. Anything else (names,
    calls, attributes, ``%`` formatting of strings) cannot be decoded."""
    if depth > MAX_VALUE_DEPTH:
        raise DecodeError(f"the value of {param!r} is nested too deeply")
    if isinstance(node, ast.Constant):
        if node.value is None or isinstance(node.value, str | bool | int | float):
            return node.value
        raise DecodeError(f"unsupported constant in {param!r}")
    if isinstance(node, ast.List | ast.Tuple):
        items = [_fold(e, param, depth + 1) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise DecodeError(f"'**' inside a dict is not allowed in {param!r}")
        keys = [_fold(k, param, depth + 1) for k in node.keys if k is not None]
        if any(isinstance(k, list | dict) for k in keys):
            raise DecodeError(f"unhashable dict key in {param!r}")
        return dict(zip(keys, [_fold(v, param, depth + 1) for v in node.values], strict=True))
    if isinstance(node, ast.UnaryOp):
        value = _fold(node.operand, param, depth + 1)
        if isinstance(node.op, ast.Not):
            return not value
        if not _is_number(value):
            raise DecodeError(f"a sign on a non-number in {param!r}")
        if isinstance(node.op, ast.USub):
            return -value
        if isinstance(node.op, ast.UAdd):
            return +value
        if isinstance(value, float):
            raise DecodeError(f"~ on a float in {param!r}")
        return ~value
    if isinstance(node, ast.BinOp):
        left = _fold(node.left, param, depth + 1)
        right = _fold(node.right, param, depth + 1)
        try:
            return _check_size(_fold_binop(node.op, left, right, param), param)
        except ZeroDivisionError:
            raise DecodeError(f"division by zero in {param!r}") from None
        except OverflowError:
            raise DecodeError(f"number too large in {param!r}") from None
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise DecodeError(f"cannot compute the value of {param!r}: {exc}") from None
    raise DecodeError(
        f"unsupported expression in {param!r}: {_describe(node)} cannot be computed without eval"
    )


_IDENT = r"[A-Za-z_$][\w$]*"
_CALL_HEAD = re.compile(rf"\s*({_IDENT}(?:\s*\.\s*{_IDENT})*)\s*\(", re.DOTALL)
_KEYWORD = re.compile(rf"\s*({_IDENT})\s*=(?!=)", re.DOTALL)
_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = {")", "]", "}"}
POSITIONAL = "<positional>"


def _split_top(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside brackets and quotes. Raises on unbalanced brackets or quotes."""
    parts: list[str] = []
    stack: list[str] = []
    start = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch in "\"'`":
            j = i + 1
            while j < n and text[j] != ch:
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                raise DecodeError("unterminated string literal")
            i = j + 1
            continue
        if ch in _OPEN:
            stack.append(_OPEN[ch])
        elif ch in _CLOSE:
            if not stack or stack.pop() != ch:
                raise DecodeError("unbalanced brackets")
        elif ch == sep and not stack:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if stack:
        raise DecodeError("unbalanced brackets")
    parts.append(text[start:])
    return parts


def _whole_literal(value: str, quote: str) -> bool:
    """True when ``value`` is exactly one quoted literal (no concatenation)."""
    if len(value) < 2 or value[0] != quote or value[-1] != quote:
        return False
    j = 1
    while j < len(value) - 1:
        if value[j] == "\\":
            j += 2
            continue
        if value[j] == quote:
            return False
        j += 1
    return j == len(value) - 1


def parse_foreign_calls(text: str, language: Language) -> list[Call]:
    """Decode ``[Cls.method(a=new int[]{1, 2}, b="x")]`` for the Java/JavaScript categories.

    Every argument value is the source text of the value (a string), the way BFCL's type
    converters expect it; a whole string literal loses its quotes, as in BFCL's parsers.
    """
    src = _prepare_text(text)[1:-1]
    calls: list[Call] = []
    for segment in _split_top(src):
        if not segment.strip():
            continue
        head = _CALL_HEAD.match(segment)
        body = segment.rstrip()
        if not head or not body.endswith(")"):
            raise DecodeError("expected a list of function calls")
        name = re.sub(r"\s+", "", head.group(1))
        inner = body[head.end() : -1]
        args: dict[Any, Any] = {}
        pieces = [p for p in _split_top(inner)] if inner.strip() else []
        merged: list[str] = []
        for piece in pieces:
            # A comma inside generics (HashMap<String, Object>) splits a value: glue it back.
            if merged and not _KEYWORD.match(piece):
                merged[-1] += "," + piece
            else:
                merged.append(piece)
        for piece in merged:
            kw = _KEYWORD.match(piece)
            if kw:
                key = kw.group(1)
                raw = piece[kw.end() :].strip()
            else:
                key, raw = POSITIONAL, piece.strip()
            if key in args:
                raise DecodeError(f"argument {key!r} is given twice in the call to {name}")
            args[key] = _foreign_value(raw, language)
        calls.append((name, args))
    return calls


def _foreign_value(raw: str, language: Language) -> str:
    if language == "java":
        if _whole_literal(raw, '"') or _whole_literal(raw, "'"):
            return raw[1:-1]
        return raw
    if len(raw) >= 2 and ((raw[0] == '"' and raw[-1] == '"') or (raw[0] == "'" and raw[-1] == "'")):
        return raw[1:-1]
    return raw


@dataclass
class Decoded:
    calls: list[Call]
    source: Literal["tool_calls", "text", "none"]
    ignored_positional: int = 0


def decode_output(
    output: ModelOutput,
    language: Language = "python",
    functions: Sequence[dict[str, Any]] = (),
    *,
    strict: bool = False,
) -> Decoded:
    """The calls in ``output``: its ``tool_calls`` when present, else its text.

    Raises :class:`DecodeError` when the calls cannot be read. An output with neither tool calls
    nor text decodes to no calls (``source == "none"``). ``strict`` decodes text the way BFCL
    does wherever that needs no ``eval``: names must be written exactly (``math_factorial`` is not
    ``math.factorial``; only tool calls, whose names OpenAI restricts, are mapped back, as BFCL
    does for function-calling models), signs follow BFCL's reading, and a code fence is not
    unwrapped.
    """
    if output.tool_calls:
        calls: list[Call] = []
        for tc in output.tool_calls:
            raw = tc.function.arguments
            try:
                args = json.loads(raw) if raw and raw.strip() else {}
            except (ValueError, RecursionError):
                raise DecodeError(
                    f"the arguments of the call to {tc.function.name!r} are not valid JSON"
                ) from None
            if not isinstance(args, dict):
                raise DecodeError(
                    f"the arguments of the call to {tc.function.name!r} are not a JSON object",
                    "ast_decoder:decoder_wrong_output_format",
                )
            calls.append((tc.function.name, args))
        return Decoded(resolve_names(calls, functions), "tool_calls")
    text = output.text or ""
    if not text.strip():
        return Decoded([], "none")
    if language == "python":
        calls, ignored = parse_python_calls(text, strict=strict)
        return Decoded(calls if strict else resolve_names(calls, functions), "text", ignored)
    foreign = parse_foreign_calls(text, language)
    return Decoded(foreign if strict else resolve_names(foreign, functions), "text")


# --------------------------------------------------------------------------------------------
# Java / JavaScript string-to-value conversion (BFCL's type converters)
# --------------------------------------------------------------------------------------------

JAVA_TYPES: dict[str, type] = {
    "byte": int,
    "short": int,
    "integer": int,
    "float": float,
    "double": float,
    "long": int,
    "boolean": bool,
    "char": str,
    "Array": list,
    "ArrayList": list,
    "Set": set,
    "HashMap": dict,
    "Hashtable": dict,
    "Queue": list,
    "Stack": list,
    "String": str,
    "any": str,
}

JS_TYPES: dict[str, type] = {
    "String": str,
    "integer": int,
    "float": float,
    "Bigint": int,
    "Boolean": bool,
    "dict": dict,
    "array": list,
    "any": str,
}

PYTHON_TYPES: dict[str, type] = {
    "string": str,
    "integer": int,
    "float": float,
    "boolean": bool,
    "array": list,
    "tuple": list,
    "dict": dict,
    "any": str,
    # Not BFCL type names, accepted as the obvious aliases (BFCL would raise KeyError).
    "number": float,
    "object": dict,
    "list": list,
    "bool": bool,
}

#: Types whose items BFCL converts (Java/JS) or type-checks one level deep (Python).
_NESTED_CONVERTED = {"Array", "ArrayList", "array"}
_NESTED_CHECKED_PY = {"array", "tuple"}

_INT_RE = re.compile(r"^-?\d+$")
_JAVA_FLOAT_RE = re.compile(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?[fF]$")
_JAVA_DOUBLE_RE = re.compile(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?$")
_JAVA_LONG_RE = re.compile(r"^-?\d+[lL]$")
_JS_FLOAT_RE = re.compile(r"^-?\d+(\.\d+)?$")
_JS_BIGINT_RE = re.compile(r"^-?\d+n$")


def java_type_converter(value: str, expected: str, nested: str | None = None) -> Any:
    """A Java-syntax string to the Python value BFCL compares with the answer.

    A string that does not fit the type stays a string (so the type check then fails, unless
    the answer itself is a variable name).
    """
    if expected in ("byte", "short", "integer"):
        return int(value) if _INT_RE.match(value) else value
    if expected == "float":
        return float(value[:-1]) if _JAVA_FLOAT_RE.match(value) else value
    if expected == "double":
        return float(value) if _JAVA_DOUBLE_RE.match(value) else value
    if expected == "long":
        return int(value[:-1]) if _JAVA_LONG_RE.match(value) else value
    if expected == "boolean":
        return value == "true" if value in ("true", "false") else value
    if expected == "ArrayList":
        return _java_arraylist(value, nested)
    if expected == "Array":
        return _java_array(value, nested)
    if expected == "HashMap":
        return _java_hashmap(value)
    # String, any, and char (BFCL's char pattern can never match, so chars stay as written);
    # Set/Hashtable/Queue/Stack are not converted by BFCL either (it raises).
    return value


def _java_element(text: str, nested: str | None) -> Any:
    """An ArrayList item: char and String items lose their quotes, others are converted."""
    if nested in ("char", "String"):
        return text[1:-1]
    if nested:
        return java_type_converter(text, nested)
    return _java_scalar(text)


def _java_arraylist(value: str, nested: str | None) -> Any:
    m = re.search(r"new\s+ArrayList<\w*>\(Arrays\.asList\((.+?)\)\)", value)
    if m:
        return [_java_element(e.strip(), nested) for e in m.group(1).split(",")]
    m = re.search(r"new\s+ArrayList<\w*>\(\)\s*\{\{\s*(.+?)\s*\}\}", value, re.DOTALL)
    if m:
        return [_java_element(e.strip(), nested) for e in re.findall(r"add\((.+?)\)", m.group(1))]
    if re.search(r"new\s+ArrayList<\w*>\(\)", value):
        return []
    return value


def _java_array(value: str, nested: str | None) -> Any:
    m = re.search(r"new\s+\w+\[\]\s*\{(.*?)\}", value)
    if not m:
        return value
    items = [x.strip() for x in m.group(1).split(",") if x.strip()]
    # BFCL converts Array items with the item type directly: a quoted String item keeps its quotes.
    return [java_type_converter(x, nested) if nested else _java_scalar(x) for x in items]


def _java_hashmap(value: str) -> Any:
    m = re.search(r"new\s+HashMap<.*?>\s*\(\)\s*\{\s*\{?\s*(.*?)\s*\}?\s*\}", value, re.DOTALL)
    if m:
        out: dict[str, Any] = {}
        if m.group(1).strip():
            for key, val in re.findall(r"put\(\"(.*?)\",\s*(.*?)\)", m.group(1)):
                out[key] = _java_scalar(val.strip())
        return out
    if re.search(r"new\s+HashMap<.*?>\s*\(\)", value):
        return {}
    return value


def _java_scalar(text: str) -> Any:
    if text == "true":
        return True
    if text == "false":
        return False
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    if _JAVA_LONG_RE.match(text):
        return int(text[:-1])
    if _JAVA_FLOAT_RE.match(text):
        return float(text[:-1])
    return _number_or_text(text)


def _number_or_text(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def js_type_converter(value: str, expected: str, nested: str | None = None) -> Any:
    """A JavaScript-syntax string to the Python value BFCL compares with the answer."""
    if expected == "String":
        if (value.startswith('"') and value.endswith('"')) or (
            value.startswith("'") and value.endswith("'")
        ):
            return value[1:-1]
        return value
    if expected == "integer":
        return int(value) if _INT_RE.match(value) else value
    if expected == "float":
        return float(value) if _JS_FLOAT_RE.match(value) else value
    if expected == "Bigint":
        return int(value[:-1]) if _JS_BIGINT_RE.match(value) else value
    if expected == "Boolean":
        return value == "true" if value in ("true", "false") else value
    if expected == "dict":
        return _js_dict(value)
    if expected == "array":
        return _js_array(value, nested)
    return value  # any (and types BFCL does not know)


_JS_2D = re.compile(
    r"\[\s*\[.*?\]\s*(,\s*\[.*?\]\s*)*\]|\bnew\s+Array\(\s*\[.*?\]\s*(,\s*\[.*?\]\s*)*\)"
)
_JS_1D = re.compile(r"\[(.*?)\]|\bnew\s+Array\((.*?)\)")


def _js_array(code: str, nested: str | None) -> Any:
    code = code.strip()
    try:
        m2 = _JS_2D.match(code)
        if m2:
            rows = []
            for idx, inner in enumerate(re.findall(r"\[(.*?)\]", m2.group(0))):
                inner = inner.strip()
                if idx == 0 and inner.startswith("["):
                    inner = inner[1:]
                rows.append([_js_scalar(e.strip()) for e in inner.split(",")])
            return rows
        m1 = _JS_1D.match(code)
        if not m1:
            return code
        body = m1.group(1) if m1.group(1) is not None else m1.group(2)
        body = (body or "").strip()
        elements = body.split(",") if body else []
        if nested:
            if nested not in JS_TYPES:
                return code  # BFCL raises inside its try block and keeps the text
            out = []
            for e in elements:
                e = e.strip()
                quoted = e[:1] in ("'", '"')
                out.append(js_type_converter(e, nested, "String" if quoted else None))
            return out
        return [_js_scalar(e.strip()) for e in elements]
    except (ValueError, IndexError, RecursionError):
        return code


def _js_dict(code: str) -> Any:
    code = code.strip()
    if code == "{}":
        return {}
    m = re.match(r"\{(.*?)\}", code)
    if not m:
        return code
    try:
        out: dict[str, Any] = {}
        for key, val in re.findall(r"([^:]+):\s*(.*?)(?:,\s*(?=[^,]+:)|$)", m.group(1)):
            key = key.strip().strip("'\"")
            val = val.strip()
            if val.startswith("[") and val.endswith("]"):
                out[key] = _js_array(val, None)
            elif val.startswith("{") and val.endswith("}"):
                out[key] = _js_dict(val)
            else:
                out[key] = _js_scalar(val.strip("'\""))
        return out
    except (ValueError, IndexError, RecursionError):
        return code


def _js_scalar(text: str) -> Any:
    text = text.strip()
    if text == "true":
        return True
    if text == "false":
        return False
    if (text.startswith('"') and text.endswith('"')) or (
        text.startswith("'") and text.endswith("'")
    ):
        return text[1:-1]
    return _number_or_text(text)


# --------------------------------------------------------------------------------------------
# Checking (BFCL's ast_checker rules)
# --------------------------------------------------------------------------------------------


@dataclass
class CheckResult:
    valid: bool
    error_type: str = ""
    #: BFCL-style messages (may name the allowed values: never show them to the model).
    errors: list[str] = field(default_factory=list)
    #: A short message for the model; never names an allowed value.
    feedback: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


_OK = CheckResult(valid=True)

_STANDARDIZE = re.compile(r"[ ,./\-_*^]")


def standardize_string(s: str) -> str:
    """BFCL's string normalisation: drop spaces and ``,./-_*^``, lowercase, ``'`` → ``"``."""
    return _STANDARDIZE.sub("", s).lower().replace("'", '"')


def _type_name(v: Any) -> str:
    return {
        str: "string",
        int: "integer",
        float: "float",
        bool: "boolean",
        list: "array",
        tuple: "tuple",
        dict: "dict",
        type(None): "null",
    }.get(type(v), type(v).__name__)


def _answer_type(allowed: Sequence[Any]) -> type | None:
    for a in allowed:
        if a != "" or type(a) is not str:
            return type(a)
    return None


def _fail(error_type: str, error: str, feedback: str, **extra: Any) -> CheckResult:
    return CheckResult(False, error_type, [error], feedback, dict(extra))


def _type_check(
    param: str,
    value: Any,
    allowed: Sequence[Any],
    type_desc: str,
    expected: type,
    nested: type | None,
) -> tuple[CheckResult, bool]:
    """BFCL's type_checker: returns (result, is_variable).

    "is_variable": the answer's values have another type than the schema says (the answer is a
    variable name, written as a string); then a value of the answer's type is accepted.
    """
    answer_type = _answer_type(allowed)
    is_variable = answer_type is not None and answer_type is not expected
    nested_failed = False
    if type(value) is expected:
        if nested is None:
            return _OK, is_variable
        elements: Any = value
        for item in allowed:
            ok = True
            if type(item) is list:
                for element in elements:
                    sub, _ = _type_check(param, element, item, _type_label(nested), nested, None)
                    if not sub.valid:
                        ok = False
                        break
            if ok:
                return _OK, is_variable
        nested_failed = True
    if answer_type is not None and type(value) is answer_type:
        if nested_failed:
            return _nested_error(param, type_desc, nested), True
        return _OK, True
    return (
        _fail(
            "type_error:simple",
            f"Incorrect type for parameter {param!r}. Expected type {type_desc}, "
            f"got {type(value).__name__}.",
            f"wrong type for parameter {param!r}: expected {type_desc}, got {_type_name(value)}",
        ),
        is_variable,
    )


def _type_label(t: type | None) -> str:
    return {str: "string", int: "integer", float: "float", bool: "boolean", list: "array",
            dict: "dict"}.get(t, "any") if t is not None else "any"  # fmt: skip


def _nested_error(param: str, type_desc: str, nested: type | None) -> CheckResult:
    inner = _type_label(nested)
    return _fail(
        "type_error:nested",
        f"Nested type checking failed for parameter {param!r}. Expected outer type {type_desc} "
        f"with inner type {inner}.",
        f"wrong item type in parameter {param!r}: expected {type_desc} of {inner}",
    )


def _string_check(param: str, value: str, allowed: Sequence[Any]) -> CheckResult:
    norm = [standardize_string(a) for a in allowed if type(a) is str]
    if standardize_string(value) not in norm:
        return _fail(
            "value_error:string",
            f"Invalid value for parameter {param!r}: {value!r}. Expected one of {list(allowed)}. "
            "Case insensitive.",
            f"wrong value for parameter {param!r}",
        )
    return _OK


def _std_list(items: Iterable[Any]) -> list[Any]:
    return [standardize_string(x) if type(x) is str else x for x in items]


def _list_check(param: str, value: list[Any], allowed: Sequence[Any]) -> CheckResult:
    got = _std_list(value)
    # BFCL standardizes every allowed entry as a sequence: "" (omit) becomes [], so an empty
    # list is accepted wherever the parameter may be omitted.
    options = [_std_list(a) for a in allowed if isinstance(a, list | str)]
    if got not in options:
        return _fail(
            "value_error:list/tuple",
            f"Invalid value for parameter {param!r}: {value!r}. Expected one of {list(allowed)}.",
            f"wrong value for parameter {param!r}",
        )
    return _OK


def _as_options(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def _dict_check(param: str, value: dict[Any, Any], allowed: Sequence[Any]) -> CheckResult:
    result = _fail("dict_checker:unclear", "No allowed dictionary to compare with.",
                   f"wrong value for parameter {param!r}")  # fmt: skip
    for answer in allowed:
        if type(answer) is str and answer == "":
            continue
        if not isinstance(answer, dict):
            continue
        result = CheckResult(
            False, "dict_checker:unclear", [], f"wrong value for parameter {param!r}"
        )
        ok = True
        for key, v in value.items():
            if key not in answer:
                result.errors.append(f"Unexpected dict key parameter: {key!r}.")
                result.error_type = "value_error:dict_key"
                result.feedback = f"unexpected key {key!r} in parameter {param!r}"
                ok = False
                break
            std_v = standardize_string(v) if type(v) is str else v
            if std_v not in _std_list(_as_options(answer[key])):
                result.errors.append(
                    f"Invalid value for parameter {key!r}: {v!r}. Expected one of "
                    f"{_as_options(answer[key])}."
                )
                result.error_type = "value_error:dict_value"
                result.feedback = f"wrong value for key {key!r} in parameter {param!r}"
                ok = False
                break
        for key, options in answer.items():
            if key not in value and "" not in _as_options(options):
                result.errors.append(f"Missing dict key parameter: {key!r}.")
                result.error_type = "value_error:dict_key"
                result.feedback = f"missing key {key!r} in parameter {param!r}"
                ok = False
                break
        if ok:
            return _OK
    return result


def _list_dict_check(param: str, value: list[Any], allowed: Sequence[Any]) -> CheckResult:
    result = _fail("list_dict_checker:unclear", "No allowed list of dictionaries.",
                   f"wrong value for parameter {param!r}")  # fmt: skip
    for answer in allowed:
        ok = True
        if not isinstance(answer, list | str) or len(value) != len(answer):
            result = _fail(
                "value_error:list_dict_count",
                "Wrong number of dictionaries in the list.",
                f"wrong number of items in parameter {param!r}",
            )
            continue
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                result = _fail("value_error:dict_value", f"Item {i} is not a dictionary.",
                               f"item {i} of parameter {param!r} is not an object")  # fmt: skip
            else:
                result = _dict_check(param, item, [answer[i]])
            if not result.valid:
                ok = False
                break
        if ok:
            return _OK
    return result


def _convert_foreign(
    param: str, value: Any, spec: dict[str, Any], language: Language
) -> tuple[Any, type, type | None, CheckResult | None]:
    table = JAVA_TYPES if language == "java" else JS_TYPES
    type_desc = str(spec.get("type", "any"))
    if type_desc not in table:
        type_desc = "any"
    expected = table[type_desc]
    if type(value) is not str:
        tag = "type_error:java" if language == "java" else "type_error:js"
        lang = "Java" if language == "java" else "JavaScript"
        return (
            value,
            expected,
            None,
            _fail(
                tag,
                f"Incorrect type for parameter {param!r}. Expected type String, "
                f"got {type(value).__name__}.",
                f"wrong type for parameter {param!r}: expected a string holding a {lang} "
                f"{spec.get('type', 'any')} value, got {_type_name(value)}",
            ),
        )
    converter = java_type_converter if language == "java" else js_type_converter
    nested: type | None = None
    if type_desc in _NESTED_CONVERTED:
        item_type = str((spec.get("items") or {}).get("type", "any"))
        nested = table.get(item_type, str)
        value = converter(value, type_desc, item_type)
    else:
        value = converter(value, type_desc)
    return value, expected, nested, None


def check_call(
    func_doc: dict[str, Any] | None,
    call: Call,
    answer: dict[str, Any],
    language: Language = "python",
    *,
    ignored_positional: int = 0,
) -> CheckResult:
    """BFCL's simple_function_checker: one decoded call against one answer ``{name: params}``."""
    expected_params: dict[str, Any] = next(iter(answer.values()))
    if func_doc is None:
        func_doc = {"name": next(iter(answer)), "parameters": {"properties": {}, "required": []}}
    func_name = str(func_doc["name"])
    params_schema = func_doc.get("parameters") or {}
    props: dict[str, Any] = params_schema.get("properties") or {}
    required: list[str] = params_schema.get("required") or []
    name, args = call
    if name != func_name:
        return _fail(
            "simple_function_checker:wrong_func_name",
            f"Function name {func_name!r} not found in model output.",
            f"the call to {name!r} is not the right function for this request",
        )
    for p in required:
        if p not in args:
            hint = (
                " (positional arguments are ignored: pass arguments by keyword)"
                if (ignored_positional)
                else ""
            )
            return _fail(
                "simple_function_checker:missing_required",
                f"Missing required parameter: {p!r}.",
                f"missing required parameter {p!r}{hint}",
            )
    for p, value in args.items():
        if p not in props or p not in expected_params:
            label = "positional argument" if p == POSITIONAL else f"parameter {p!r}"
            return _fail(
                "simple_function_checker:unexpected_param",
                f"Unexpected parameter: {p!r}.",
                f"unexpected {label} in the call to {name!r}",
            )
        spec = props[p] if isinstance(props[p], dict) else {}
        allowed = _as_options(expected_params[p])
        type_desc = str(spec.get("type", "any"))
        nested: type | None = None
        if language == "python":
            expected = PYTHON_TYPES.get(type_desc, str)
            if type_desc in _NESTED_CHECKED_PY:
                items = spec.get("items")
                if isinstance(items, dict) and "type" in items:
                    nested = PYTHON_TYPES.get(str(items["type"]), str)
        else:
            value, expected, nested, err = _convert_foreign(p, value, spec, language)
            if err is not None:
                return err
        if type_desc == "tuple" and type(value) is tuple:
            value = list(value)
        if language == "python" and type_desc == "float" and type(value) is int:
            value = float(value)
        result, is_variable = _type_check(p, value, allowed, type_desc, expected, nested)
        if not result.valid:
            return result
        if not is_variable:
            if expected is dict:
                result = _dict_check(p, value, allowed)
                if not result.valid:
                    return result
                continue
            if expected is list and nested is dict:
                result = _list_dict_check(p, value, allowed)
                if not result.valid:
                    return result
                continue
            if expected is str:
                result = _string_check(p, value, allowed)
                if not result.valid:
                    return result
                continue
            if expected is list:
                result = _list_check(p, value, allowed)
                if not result.valid:
                    return result
                continue
        if not _contains(allowed, value):
            return _fail(
                "value_error:others",
                f"Invalid value for parameter {p!r}: {value!r}. Expected one of {allowed}.",
                f"wrong value for parameter {p!r}",
            )
    for p, options in expected_params.items():
        if p not in args and "" not in _as_options(options):
            return _fail(
                "simple_function_checker:missing_optional",
                f"Optional parameter {p!r} not provided and not marked as optional.",
                f"missing parameter {p!r}, which this request needs",
            )
    return _OK


def _contains(allowed: Sequence[Any], value: Any) -> bool:
    try:
        return value in allowed
    except Exception:  # a comparison that raises is not a match
        return False


def _find_doc(functions: Sequence[dict[str, Any]], name: str) -> dict[str, Any] | None:
    for f in functions:
        if f.get("name") == name:
            return f
    return None


def _plural(n: int) -> str:
    return f"{n} call" if n == 1 else f"{n} calls"


def check_calls(
    category: str,
    functions: Sequence[dict[str, Any]],
    calls: list[Call],
    answers: Sequence[dict[str, Any]],
    language: Language = "python",
    *,
    ignored_positional: int = 0,
) -> CheckResult:
    """BFCL's ast_checker: route by category (parallel → order-free, multiple, else simple)."""
    kw = {"ignored_positional": ignored_positional}
    if "parallel" in category:
        if len(calls) != len(answers):
            return _fail(
                "parallel_function_checker_no_order:wrong_count",
                "Wrong number of functions.",
                f"expected {_plural(len(answers))}, got {len(calls)}",
            )
        matched: set[int] = set()
        for i, answer in enumerate(answers):
            expected_name = next(iter(answer))
            doc = _find_doc(functions, expected_name)
            last: CheckResult | None = None
            sub_errors: list[tuple[int, CheckResult]] = []
            for idx, call in enumerate(calls):
                if idx in matched:
                    continue
                last = check_call(doc, call, answer, language, **kw)
                if last.valid:
                    matched.add(idx)
                    break
                sub_errors.append((idx, last))
            if last is None or not last.valid:
                # Feedback: when exactly one unmatched call names this function, its problem.
                same_name = [(idx, r) for idx, r in sub_errors if calls[idx][0] == expected_name]
                if len(same_name) == 1:
                    idx, r = same_name[0]
                    feedback = f"call #{idx + 1} ({calls[idx][0]}): {r.feedback}"
                else:
                    feedback = (
                        f"{len(answers) - len(matched)} of {len(answers)} required calls "
                        "are not matched by any call"
                    )
                return CheckResult(
                    False,
                    "parallel_function_checker_no_order:cannot_find_match",
                    [
                        f"Could not find a matching function among index "
                        f"{[k for k in range(len(calls)) if k not in matched]} of model output "
                        f"for index {i} of possible answers.",
                        *(
                            f"Model Result Index {idx}: {r.error_type}: {r.errors}"
                            for idx, r in sub_errors
                        ),
                    ],
                    feedback,
                    {"sub_error_types": [r.error_type for _, r in sub_errors]},
                )
        return _OK
    if "multiple" in category:
        if len(calls) != len(answers):
            return _fail(
                "multiple_function_checker:wrong_count",
                "Wrong number of functions.",
                f"expected {_plural(len(answers))}, got {len(calls)}",
            )
        doc = _find_doc(functions, next(iter(answers[0])))
        return check_call(doc, calls[0], answers[0], language, **kw)
    if len(calls) != 1:
        return _fail(
            "simple_function_checker:wrong_count",
            "Wrong number of functions.",
            f"expected 1 call, got {len(calls)}",
        )
    return check_call(functions[0] if functions else None, calls[0], answers[0], language, **kw)


# --------------------------------------------------------------------------------------------
# Reference answers: one call list the checker accepts (for tests, demos and SFT targets)
# --------------------------------------------------------------------------------------------


def _first_allowed(options: Any) -> tuple[bool, Any]:
    """(present, value): the first allowed value that is not the "may be omitted" marker."""
    for v in _as_options(options):
        if not (type(v) is str and v == ""):
            return True, v
    return False, None


def _pattern_dict(pattern: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, options in pattern.items():
        present, v = _first_allowed(options)
        if present:
            out[key] = v
    return out


def reference_calls(
    functions: Sequence[dict[str, Any]],
    ground_truth: Sequence[dict[str, Any]],
    language: Language = "python",
) -> list[Call]:
    """One answer per ground-truth call, built from the first allowed value of each parameter.

    For Java/JavaScript every value is rendered as source text in that language, the form the
    checker converts back. Parameters whose only allowed value is ``""`` are omitted.
    """
    calls: list[Call] = []
    for answer in ground_truth:
        name, params = next(iter(answer.items()))
        doc = _find_doc(functions, name) or {}
        props = (doc.get("parameters") or {}).get("properties") or {}
        args: dict[Any, Any] = {}
        for p, options in params.items():
            present, v = _first_allowed(options)
            if not present or (doc and p not in props):
                continue  # omitted, or an answer key the schema lacks (BFCL would reject it)
            raw_spec = props.get(p)
            spec: dict[str, Any] = raw_spec if isinstance(raw_spec, dict) else {}
            t = str(spec.get("type", "any"))
            item_type = str((spec.get("items") or {}).get("type", "any"))
            if t == "dict" and isinstance(v, dict):
                v = _pattern_dict(v)
            elif item_type == "dict" and isinstance(v, list):
                v = [_pattern_dict(x) if isinstance(x, dict) else x for x in v]
            elif t == "HashMap" and isinstance(v, dict):
                v = _pattern_dict(v)
            if language == "java":
                v = java_source(v, t, item_type)
            elif language == "javascript":
                v = js_source(v, t, item_type)
            args[p] = v
        calls.append((name, args))
    return calls


def _java_plain(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    return repr(v)


def java_source(value: Any, type_desc: str, item_type: str = "any") -> str:
    """A Java-syntax string that BFCL's Java converter turns back into ``value``."""
    if isinstance(value, str):
        return value  # String/any/char, and variable names, are taken as written
    if type_desc == "long" and isinstance(value, int):
        return f"{value}L"
    if type_desc == "float" and isinstance(value, int | float):
        return f"{float(value)!r}f"
    if type_desc == "double" and isinstance(value, int | float):
        return repr(float(value))
    if type_desc == "Array" and isinstance(value, list):
        # Array items are converted with the item type as written: Strings go unquoted.
        items = [java_source(x, item_type) if not isinstance(x, str) else x for x in value]
        return (
            "new "
            + {"String": "String", "integer": "int", "long": "long"}.get(item_type, "Object")
            + "[]{"
            + ", ".join(items)
            + "}"
        )
    if type_desc == "ArrayList" and isinstance(value, list):
        if not value:
            return "new ArrayList<>()"
        items = []
        for x in value:
            if item_type == "String":
                items.append(f'"{x}"')
            elif item_type == "char":
                items.append(f"'{x}'")
            elif item_type in JAVA_TYPES and item_type != "any":
                items.append(java_source(x, item_type))
            else:
                items.append(_java_plain(x) if not isinstance(x, str) else x)
        return "new ArrayList<>(Arrays.asList(" + ", ".join(items) + "))"
    if type_desc == "HashMap" and isinstance(value, dict):
        puts = " ".join(f'put("{k}", {_java_plain(v)});' for k, v in value.items())
        return "new HashMap<String, Object>() {{ " + puts + " }}"
    return _java_plain(value)


def _js_plain(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(_js_plain(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_js_plain(x)}" for k, x in v.items()) + "}"
    return repr(v)


def js_source(value: Any, type_desc: str, item_type: str = "any") -> str:
    """A JavaScript-syntax string that BFCL's JavaScript converter turns back into ``value``."""
    if isinstance(value, str):
        return value
    if type_desc == "Bigint" and isinstance(value, int):
        return f"{value}n"
    if type_desc == "array" and isinstance(value, list):
        return _js_plain(value)
    if type_desc == "dict" and isinstance(value, dict):
        return _js_plain(value)
    return _js_plain(value)


def format_python_calls(calls: Sequence[Call]) -> str:
    """BFCL's Python-call text for ``calls``: ``[f(a=1), m.g(b='x')]``."""
    parts = []
    for name, args in calls:
        inner = ", ".join(f"{k}={v!r}" for k, v in args.items())
        parts.append(f"{name}({inner})")
    return "[" + ", ".join(parts) + "]"
