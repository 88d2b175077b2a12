"""Verifiers: binary judges built from JSON specs. See :mod:`rrr_agent.verifiers._base`."""

from ._base import (
    Verifier,
    build_verifier,
    import_dotted,
    load_spec,
    register_verifier,
    registered_verifiers,
)
from .basic import ContainsVerifier, ExactVerifier, PythonVerifier, RegexVerifier

__all__ = [
    "ContainsVerifier",
    "ExactVerifier",
    "PythonVerifier",
    "RegexVerifier",
    "Verifier",
    "build_verifier",
    "import_dotted",
    "load_spec",
    "register_verifier",
    "registered_verifiers",
]
