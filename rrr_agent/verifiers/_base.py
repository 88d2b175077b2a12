"""The verifier protocol and the registry that builds verifiers from their JSON specs.

A verifier is a pydantic model whose fields are its spec's parameters: ``{"type": "regex",
"pattern": "..."}`` builds ``RegexVerifier(pattern="...")`` and ``to_spec()`` gives the same object
back, so a trajectory log alone is enough to rebuild the judge. Unknown fields are rejected, so a
typo in a spec fails loudly instead of silently changing what is checked.

Where a type name is looked up, in order:
1. verifiers registered in this process (``@register_verifier``; the built-in ones);
2. the ``rrr_agent.verifiers`` entry-point group of installed packages (name → ``module:Class``);
3. a dotted path used as the type itself: ``{"type": "mypkg.checks:MyVerifier", ...}``.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .._errors import InfrastructureError, VerifierError, VerifierSpecError
from .._types import ModelOutput, Task, Verdict, VerifierSpec

__all__ = [
    "Verifier",
    "build_verifier",
    "import_dotted",
    "load_spec",
    "register_verifier",
    "registered_verifiers",
]

ENTRY_POINT_GROUP = "rrr_agent.verifiers"

_REGISTRY: dict[str, type[Verifier]] = {}


class Verifier(BaseModel, ABC):
    """Judges one model output. Pure: no model calls (except an LLM judge), no global state.

    Subclasses set ``type`` (the spec's type name) and implement :meth:`verify`, sync or async.
    Set ``blocking = True`` when a sync ``verify`` may take long (it then runs in a worker thread so
    it never stalls the event loop).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: ClassVar[str]
    blocking: ClassVar[bool] = False

    @abstractmethod
    def verify(self, output: ModelOutput, task: Task) -> Verdict | Awaitable[Verdict]:
        """Return a :class:`Verdict` for ``output`` (a response to ``task``).

        Model output is untrusted: never ``eval`` it, never let it crash the verifier. Raise only
        for bugs; a wrong or unparsable answer is a failing verdict with feedback.
        """

    async def judge(self, output: ModelOutput, task: Task) -> Verdict:
        """The one way to run a verifier: the engine, ``rrr verify``, the GRPO reward and the
        evaluation metrics all come through here.

        A sync :meth:`verify` runs inline, or in a worker thread when ``blocking`` is set; an async
        one is awaited. A crash (or anything that is not a :class:`Verdict`) becomes
        :class:`VerifierError`: a bug in the verifier, never a failed attempt. An
        :class:`InfrastructureError` (an LLM judge that cannot reach its model) passes through as
        it is.
        """
        try:
            if self.blocking:
                result: Any = await asyncio.to_thread(self.verify, output, task)
            else:
                result = self.verify(output, task)
            if inspect.isawaitable(result):
                result = await result
        except (asyncio.CancelledError, InfrastructureError, VerifierError):
            raise
        except Exception as exc:
            raise VerifierError(
                f"verifier {self.type!r} crashed on task {task.id}: {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(result, Verdict):
            raise VerifierError(
                f"verifier {self.type!r} returned {type(result).__name__}, not a Verdict"
            )
        return result

    def judge_sync(self, output: ModelOutput, task: Task) -> Verdict:
        """Blocking form of :meth:`judge`. Callable from inside a running event loop too (it then
        judges on a helper thread with a loop of its own)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.judge(output, task))
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["verdict"] = asyncio.run(self.judge(output, task))
            except BaseException as exc:  # re-raised in the caller's thread
                box["error"] = exc

        worker = threading.Thread(target=run, name=f"rrr-judge-{self.type}")
        worker.start()
        worker.join()
        if "error" in box:
            raise box["error"]
        verdict: Verdict = box["verdict"]
        return verdict

    def to_spec(self) -> VerifierSpec:
        return VerifierSpec(type=self.type, **self.model_dump(mode="json"))


V = TypeVar("V", bound=type[Verifier])


def register_verifier(cls: V) -> V:
    """Class decorator: make ``cls`` buildable from specs whose ``type`` is ``cls.type``."""
    name = getattr(cls, "type", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} must set a class attribute `type: ClassVar[str]`")
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not cls:
        raise VerifierSpecError(
            f"verifier type {name!r} is already registered by "
            f"{existing.__module__}.{existing.__qualname__}"
        )
    _REGISTRY[name] = cls
    return cls


def registered_verifiers() -> dict[str, type[Verifier]]:
    _load_builtins()
    return dict(_REGISTRY)


def import_dotted(path: str) -> Any:
    """Import ``package.module:attr`` (or ``package.module.attr``)."""
    if ":" in path:
        module_name, _, attr = path.partition(":")
    else:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise VerifierSpecError(f"{path!r} is not a dotted path like 'package.module:name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise VerifierSpecError(
            f"cannot import module {module_name!r} for {path!r}: {exc}"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise VerifierSpecError(f"module {module_name!r} has no attribute {attr!r}") from exc
    return obj


_BUILTINS_LOADED = False


def _load_builtins() -> None:
    """Import every public module of this package once: importing registers their verifiers.

    Discovery instead of a hand-kept list, so adding a verifier family is adding one module.
    Kept lazy so ``import rrr_agent`` stays cheap.
    """
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    import pkgutil

    from .. import verifiers as package

    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")
    _BUILTINS_LOADED = True


def _from_entry_points(name: str) -> type[Verifier] | None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            try:
                cls = ep.load()
            except Exception as exc:
                raise VerifierSpecError(
                    f"verifier entry point {name!r} ({ep.value}) failed to load: {exc}"
                ) from exc
            if not (inspect.isclass(cls) and issubclass(cls, Verifier)):
                raise VerifierSpecError(f"entry point {name!r} ({ep.value}) is not a Verifier")
            return cls
    return None


def _lookup(name: str) -> type[Verifier]:
    _load_builtins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    cls = _from_entry_points(name)
    if cls is not None:
        return cls
    if ":" in name or "." in name:
        obj = import_dotted(name)
        if inspect.isclass(obj) and issubclass(obj, Verifier):
            return obj
        raise VerifierSpecError(f"{name!r} is not a Verifier subclass")
    known = ", ".join(sorted(_REGISTRY))
    raise VerifierSpecError(
        f"unknown verifier type {name!r} (known: {known}; or install a package that provides it "
        f"through the '{ENTRY_POINT_GROUP}' entry-point group, or use a dotted path)"
    )


def build_verifier(spec: VerifierSpec | dict[str, Any]) -> Verifier:
    """Build the verifier a spec describes. Raises :class:`VerifierSpecError` with the reason."""
    if isinstance(spec, dict):
        try:
            spec = VerifierSpec(**spec)
        except ValidationError as exc:
            raise VerifierSpecError(f"invalid verifier spec {spec!r}: {_first_error(exc)}") from exc
    cls = _lookup(spec.type)
    try:
        return cls(**spec.params())
    except ValidationError as exc:
        raise VerifierSpecError(
            f"invalid spec for verifier {spec.type!r}: {_first_error(exc)}"
        ) from exc


def load_spec(spec: str | dict[str, Any] | VerifierSpec) -> VerifierSpec:
    """A verifier spec from an object, from JSON text, or from a file holding JSON: what a user
    types (``rrr run --verifier``, ``rrr verify --spec``, the chat's verifier picker). Raises
    :class:`VerifierSpecError` naming what is wrong; the verifier itself is not built."""
    if isinstance(spec, VerifierSpec):
        return spec
    obj: Any = spec
    if isinstance(spec, str):
        text, where = spec, "the spec"
        if not spec.lstrip().startswith("{"):
            path = Path(spec).expanduser()
            if not path.is_file():
                raise VerifierSpecError(
                    f"a verifier spec must be JSON text or a file holding it; got {spec!r}"
                )
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise VerifierSpecError(f"{path}: cannot read the spec: {exc}") from exc
            where = str(path)
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            if where == "the spec":
                message = f"the spec is not valid JSON: {exc.msg} (column {exc.colno})"
            else:  # a file: file:line, like every other data error
                message = f"{where}:{exc.lineno}: not valid JSON: {exc.msg} (column {exc.colno})"
            raise VerifierSpecError(message) from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise VerifierSpecError('a verifier spec is a JSON object with a "type" string')
    try:
        return VerifierSpec(**obj)
    except ValidationError as exc:
        raise VerifierSpecError(f"invalid verifier spec: {_first_error(exc)}") from exc


def _first_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(spec)"
        parts.append(f"{loc}: {err.get('msg')}")
    return "; ".join(parts)


def call_signature_kwargs(fn: Callable[..., Any], available: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``available`` keyword arguments that ``fn`` declares (or all, for **kwargs)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(available)
    return {k: v for k, v in available.items() if k in params}
