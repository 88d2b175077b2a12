"""Simple verifiers: exact match, regular expression, substring, a Python callable, every one of
several verifiers (``all``), and ``accept`` (no check)."""

from __future__ import annotations

import inspect
import re
import unicodedata
from typing import Any, ClassVar, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from .._errors import VerifierSpecError
from .._types import ModelOutput, Task, Verdict, VerifierSpec
from ._base import Verifier, build_verifier, call_signature_kwargs, import_dotted, register_verifier

__all__ = [
    "AcceptVerifier",
    "AllVerifier",
    "ContainsVerifier",
    "ExactVerifier",
    "PythonVerifier",
    "RegexVerifier",
]


def _normalize(text: str, *, case_sensitive: bool, collapse_whitespace: bool) -> str:
    text = unicodedata.normalize("NFC", text).strip()
    if collapse_whitespace:
        text = " ".join(text.split())
    if not case_sensitive:
        text = text.casefold()
    return text


def _output_text(output: ModelOutput) -> str:
    return output.text or ""


@register_verifier
class ExactVerifier(Verifier):
    """Passes when the answer equals ``expected`` (after trimming; optionally case-insensitive).

    ``answer`` chooses what is compared: the whole text, or only its last non-empty line.
    """

    type: ClassVar[str] = "exact"

    expected: str
    case_sensitive: bool = True
    collapse_whitespace: bool = True
    answer: Literal["full", "last_line"] = "full"

    def verify(self, output: ModelOutput, task: Task) -> Verdict:
        text = _output_text(output)
        if self.answer == "last_line":
            lines = [ln for ln in text.splitlines() if ln.strip()]
            text = lines[-1] if lines else ""
        got = _normalize(
            text,
            case_sensitive=self.case_sensitive,
            collapse_whitespace=self.collapse_whitespace,
        )
        want = _normalize(
            self.expected,
            case_sensitive=self.case_sensitive,
            collapse_whitespace=self.collapse_whitespace,
        )
        passed = got == want
        return Verdict(
            passed=passed,
            feedback="" if passed else "The answer does not match the expected answer.",
            details={"expected": self.expected, "got": text},
        )


_FLAG_LETTERS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}


@register_verifier
class RegexVerifier(Verifier):
    """Passes when ``pattern`` matches the answer (``search`` anywhere, or ``fullmatch``).

    ``flags`` is a string of letters: ``i`` ignore case, ``m`` multiline, ``s`` dot matches newline,
    ``x`` verbose. ``negate`` inverts the result (pass when it does NOT match).
    """

    type: ClassVar[str] = "regex"

    pattern: str
    flags: str = ""
    mode: Literal["search", "fullmatch"] = "search"
    negate: bool = False

    @field_validator("flags")
    @classmethod
    def _check_flags(cls, v: str) -> str:
        bad = set(v) - set(_FLAG_LETTERS)
        if bad:
            raise ValueError(f"unknown regex flag letters {sorted(bad)} (allowed: i, m, s, x)")
        return v

    @field_validator("pattern")
    @classmethod
    def _check_pattern(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from exc
        return v

    def _compiled(self) -> re.Pattern[str]:
        flags = 0
        for letter in self.flags:
            flags |= _FLAG_LETTERS[letter]
        return re.compile(self.pattern, flags)

    def verify(self, output: ModelOutput, task: Task) -> Verdict:
        text = _output_text(output).strip()
        rx = self._compiled()
        match = rx.fullmatch(text) if self.mode == "fullmatch" else rx.search(text)
        passed = (match is not None) != self.negate
        return Verdict(
            passed=passed,
            feedback="" if passed else "The answer does not have the required form.",
            details={"pattern": self.pattern, "matched": match.group(0) if match else None},
        )


@register_verifier
class ContainsVerifier(Verifier):
    """Passes when the answer contains the given substrings (``all`` of them or ``any``)."""

    type: ClassVar[str] = "contains"

    substrings: list[str] = Field(min_length=1)
    mode: Literal["all", "any"] = "all"
    case_sensitive: bool = True

    def verify(self, output: ModelOutput, task: Task) -> Verdict:
        text = _output_text(output)
        hay = text if self.case_sensitive else text.casefold()
        found = [s for s in self.substrings if (s if self.case_sensitive else s.casefold()) in hay]
        passed = len(found) == len(self.substrings) if self.mode == "all" else bool(found)
        return Verdict(
            passed=passed,
            feedback="" if passed else "The answer is missing required content.",
            details={"found": found, "mode": self.mode},
        )


@register_verifier
class PythonVerifier(Verifier):
    """Calls a Python function named by dotted path: ``{"type": "python", "path": "pkg.mod:fn"}``.

    The function is called as ``fn(text, **kwargs)``; it may also declare ``output`` (the full
    :class:`ModelOutput`, with tool calls) and ``task``. It may be async. It returns a ``bool``, a
    ``(bool, feedback)`` pair, a :class:`Verdict`, or a dict with ``passed`` (and optionally
    ``feedback``, ``details``). The function is imported from the path recorded in the log, so only
    rebuild specs from logs you trust.
    """

    type: ClassVar[str] = "python"
    blocking: ClassVar[bool] = True

    path: str
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("path")
    @classmethod
    def _importable(cls, v: str) -> str:
        fn = import_dotted(v)
        if not callable(fn):
            raise ValueError(f"{v!r} is not callable")
        return v

    def verify(self, output: ModelOutput, task: Task) -> Any:
        fn = import_dotted(self.path)
        extra = call_signature_kwargs(fn, {"output": output, "task": task})
        result = fn(output.text or "", **self.kwargs, **extra)
        if inspect.isawaitable(result):

            async def _finish() -> Verdict:
                return _coerce(await result, self.path)

            return _finish()
        return _coerce(result, self.path)


def _coerce(result: Any, path: str) -> Verdict:
    if isinstance(result, Verdict):
        return result
    if isinstance(result, bool):
        return Verdict(passed=result, feedback="" if result else "The answer was rejected.")
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], bool):
        return Verdict(passed=result[0], feedback=str(result[1]))
    if isinstance(result, dict) and isinstance(result.get("passed"), bool):
        return Verdict(
            passed=result["passed"],
            feedback=str(result.get("feedback", "")),
            details=dict(result.get("details", {})),
        )
    raise VerifierSpecError(
        f"verifier function {path} returned {type(result).__name__}; expected bool, "
        "(bool, feedback), Verdict or a dict with 'passed'"
    )


@register_verifier
class AcceptVerifier(Verifier):
    """Passes every output: no check (a chat turn with nothing to verify). Nothing is ever
    retried, and such trajectories give the trainer no failures."""

    type: ClassVar[str] = "accept"

    def verify(self, output: ModelOutput, task: Task) -> Verdict:
        return Verdict(passed=True)


@register_verifier
class AllVerifier(Verifier):
    """Passes when every verifier in ``verifiers`` passes; they are judged in order and the first
    failure's feedback is the verdict's (``details.failed`` names it). ``{"type": "all",
    "verifiers": [{"type": "tool_schema"}, {"type": "python", "path": "app.checks:ok"}]}``."""

    type: ClassVar[str] = "all"

    verifiers: list[dict[str, Any]] = Field(min_length=1)
    _built: list[Verifier] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _build(self) -> AllVerifier:
        self._built = [build_verifier(VerifierSpec(**spec)) for spec in self.verifiers]
        return self

    async def verify(self, output: ModelOutput, task: Task) -> Verdict:
        details: dict[str, Any] = {"passed": []}
        for i, verifier in enumerate(self._built):
            verdict = await verifier.judge(output, task)
            if not verdict.passed:
                failed = {"failed": verifier.type, "index": i}
                return Verdict(
                    passed=False, feedback=verdict.feedback, details={**verdict.details, **failed}
                )
            details["passed"].append(verifier.type)
            details.update({k: v for k, v in verdict.details.items() if k not in details})
        return Verdict(passed=True, details=details)
