"""Functions referenced by dotted path from verifier specs in tests."""

from __future__ import annotations

from typing import Any


def called_with_city_paris(text: str, output: Any) -> tuple[bool, str]:
    calls = output.tool_calls or []
    ok = len(calls) == 1 and calls[0].parsed_arguments().get("city") == "Paris"
    return ok, "" if ok else "wrong city"


def crashes(text: str) -> bool:
    return bool(1 / 0)


def is_upper(text: str) -> bool:
    return text.isupper()


async def async_is_upper(text: str, **kwargs: Any) -> dict[str, Any]:
    return {
        "passed": text.isupper(),
        "feedback": "" if text.isupper() else "not upper",
        "details": {"suffix": kwargs.get("suffix")},
    }


def hash_parity(text: str) -> bool:
    """Passes for about half of all texts, deterministically: gives GRPO groups reward variance."""
    import hashlib

    return hashlib.sha256(text.encode()).digest()[0] % 2 == 0
