"""Scale-out on an existing engine: the trainer under ``accelerate launch`` with two CPU processes
(gloo), on the tiny model. Two processes train one model (the gradient is averaged across them),
the main process alone writes the checkpoint, and the checkpoint loads and generates."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .test_trainer import failures_log

pytestmark = [pytest.mark.slow, pytest.mark.reliability]


def test_two_cpu_processes_train_and_the_checkpoint_loads(tmp_path: Path, tiny: Path) -> None:
    accelerate = Path(sys.executable).with_name("accelerate")
    assert accelerate.exists() or shutil.which("accelerate"), "accelerate (the 'train' extra)"
    log = failures_log(tmp_path, n=8)
    cfg = tmp_path / "train.toml"
    cfg.write_text(
        "[train]\n"
        f'model = "{tiny}"\n'
        "max_steps = 2\nnum_generations = 4\nper_device_train_batch_size = 4\n"
        "max_reflection_tokens = 8\nmax_retry_tokens = 6\nretry_temperature = 1.0\n"
        "holdout_fraction = 0.0\nsave_steps = 1\nlearning_rate = 0.01\nmerge = true\n"
        "seed = 3\nthreads = 1\n"
    )
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        # accelerate's ``--cpu`` runs one process unless mpirun is set up; its torch.distributed
        # launcher (``--multi_gpu``) starts the processes, and the trainer (``use_cpu`` where
        # there is no CUDA) joins them over gloo.
        [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no",
         "-m", "rrr_trainer", "run", str(log), "--config", str(cfg), "--output-dir", str(out),
         "--fresh", "--json"],
        env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-5000:]
    # Both ranks ran: torch.distributed started a world of 2 (rank 0 recorded it).
    assert json.loads((out / "rrr_train_config.json").read_text())["world_size"] == 2
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in metrics if "loss" in m]
    assert [m["step"] for m in steps] == [1, 2]
    summary = json.loads(done.stdout[done.stdout.index("{") :])
    assert summary["steps"] == 2 and summary["merged"]
    # The checkpoint loads and generates.
    check = (
        "import sys\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "tok = AutoTokenizer.from_pretrained(sys.argv[1])\n"
        "model = AutoModelForCausalLM.from_pretrained(sys.argv[1])\n"
        "ids = tok('What is 2 + 2?', return_tensors='pt').input_ids\n"
        "out = model.generate(ids, max_new_tokens=4, do_sample=False)\n"
        "assert out.shape[1] > ids.shape[1]\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", check, summary["merged"]], capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-3000:]
