"""Keys never reach a log: one place that knows the secrets in play and blanks them out.

Every text rrr writes or shows that can carry a provider's words (model-error messages, the error
log, CLI errors, the proxy's error bodies, nightly reports) goes through :func:`redact`. It blanks

* every value registered with :func:`register_secret` (the API key a client was built with, the
  proxy's bearer token),
* the values of environment variables whose names end in ``_API_KEY``, ``_TOKEN``, ``_SECRET`` or
  ``_PASSWORD`` (read at call time, so a key set after import is covered),
* anything shaped like a bearer credential or an OpenAI-style key (``Bearer xyz...``, ``sk-...``),
  for keys rrr was never told about (a provider echoing back a key it rejected).
"""

from __future__ import annotations

import os
import re
import threading

__all__ = ["MASK", "redact", "register_secret"]

MASK = "***"
_MIN_LEN = 6  # shorter values would blank ordinary words
_lock = threading.Lock()
_known: set[str] = set()
_ENV_NAME = re.compile(r"(_API_KEY|_APIKEY|_TOKEN|_SECRET|_PASSWORD)$", re.IGNORECASE)
_SHAPES = [
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=\-]{8,}"), r"\1" + MASK),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"), "sk-" + MASK),
]


def register_secret(value: str | None) -> None:
    """Remember a secret so :func:`redact` blanks it wherever it appears."""
    if value and len(value) >= _MIN_LEN:
        with _lock:
            _known.add(value)


def _secrets() -> list[str]:
    with _lock:
        values = set(_known)
    values |= {v for k, v in os.environ.items() if _ENV_NAME.search(k) and v and len(v) >= _MIN_LEN}
    return sorted(values, key=len, reverse=True)  # longest first: no partial blanks


def redact(text: str) -> str:
    """``text`` with every known secret and credential-shaped string replaced by ``***``."""
    for secret in _secrets():
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text
