"""Weight-space blends of a base model and its trained copy (WiSE-FT: Wortsman et al., 2022).

``base + weight * (trained - base)``, tensor by tensor, written as a full-weights folder that vLLM
(or ``local/``) serves directly. ``weight`` 1 is the trained model, 0 the base. Training a LoRA
changes every token's computation while RRR's reward reaches only reflections; a blend keeps part
of the trained change and gives back part of what the rest of the model lost (the learning
benchmark's ``--blend`` measures how much of each, on the held-out set and the untouched probe).
On Countdown (learning run 50) it did not: blends at 0.75 and 0.5 gave back the first-try gain
(+7.0 → +3.0, +1.0), not the probe's loss (−2.5 → −4.0, −2.0).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rrr_agent import ConfigError, DataError

__all__ = ["blend_weights"]


def blend_weights(base: str | Path, trained: str | Path, out: str | Path, weight: float) -> Path:
    """Write ``base + weight * (trained - base)`` to ``out`` (a new folder) and return it.

    Both folders hold full weights of one architecture (``*.safetensors`` files of the same
    names, tensors of the same names and shapes), e.g. the embedded checkpoint and a round's
    merged model (``RoundResult.merged``). Everything else in ``out`` (config, tokenizer,
    generation settings) is the trained folder's. Tensors are blended in float32 and stored in
    the trained model's dtype. ``out`` appears whole or not at all: it is written beside itself
    and renamed at the end.
    """
    if not 0.0 <= weight <= 1.0:
        raise ConfigError(f"blend weight {weight!r} must be between 0 (the base) and 1 (trained)")
    base, trained, out = Path(base), Path(trained), Path(out)
    if out.exists():
        raise ConfigError(f"{out}: the blend's folder already exists; pick a new one")
    files = _weight_files(trained)
    names, base_names = [p.name for p in files], [p.name for p in _weight_files(base)]
    if base_names != names:  # both sorted by _weight_files
        raise DataError(
            f"the base's weight files ({', '.join(base_names)}) are not the trained model's "
            f"({', '.join(names)})",
            path=base,
        )
    import torch
    from safetensors.torch import load_file, save_file

    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(trained, tmp, ignore=shutil.ignore_patterns("*.safetensors"))
    try:
        for file in files:
            tuned, start = load_file(str(file)), load_file(str(base / file.name))
            if set(tuned) != set(start):
                odd = sorted(set(tuned) ^ set(start))[:3]
                raise DataError(f"tensors differ between base and trained: {odd}", path=file)
            blended = {}
            for name, t in tuned.items():
                b = start[name]
                if b.shape != t.shape:
                    raise DataError(
                        f"tensor {name}: shape {tuple(t.shape)} here, {tuple(b.shape)} in the base",
                        path=file,
                    )
                if weight in (0.0, 1.0):  # the ends are the models themselves, bit for bit
                    blended[name] = (t if weight else b).to(t.dtype)
                    continue
                delta = t.to(torch.float32) - b.to(torch.float32)
                blended[name] = (b.to(torch.float32) + weight * delta).to(t.dtype)
            save_file(blended, str(tmp / file.name), metadata={"format": "pt"})
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _weight_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files:
        raise DataError("no *.safetensors weights here: blend full-weights folders", path=folder)
    return files
