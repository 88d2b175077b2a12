"""A trained model's forgetting on every two-digit sum, not only the learning benchmark's 200.

``benchmarks/learning.py`` checks forgetting on the first 200 sums of ``arithmetic-test``. A
trained model that changes a third of its sum answers and keeps the skill can lose or gain a few
points there by the draw of the 200 (learning run 53: its guard's 400 other sums lost 0.25 points
while the 200 lost 3.0). This script measures the base model and one trained model on all 1,300
sums the project carries (``arithmetic-test``, 300, and ``arithmetic-train``, 1,000; no training
reads either: the learning runs train on Countdown) and prints each slice's paired change with its
95 % interval: the goal's 200, all of ``arithmetic-test``, ``arithmetic-train``, and all 1,300.

It uses the forgetting check's own path (``evaluate(forgetting=…)``, greedy first tries, one
request at a time so that the same weights give the same answers) on a vLLM server on 127.0.0.1,
started once for each model. The trained model is a merged checkpoint: the learning benchmark
leaves each round's under ``.rrr-learning-work/rounds/round-NN/train/final/merged`` until the
next run clears it.

Usage: ``python benchmarks/probe_all_sums.py TRAINED_DIR [--json] [--limit N]``. Needs the
``model`` and ``serve-cpu`` (or ``serve``) extras; about 15 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

#: The sum sets, measured in this order.
SETS = ("arithmetic-test", "arithmetic-train")


def _slices(sizes: dict[str, int]) -> list[tuple[str, int, int]]:
    """(label, first index, end index) of each reported slice of the measured sums."""
    test, train = sizes["arithmetic-test"], sizes["arithmetic-train"]
    goal = min(200, test)
    return [
        (f"arithmetic-test, first {goal} (the learning benchmark's probe)", 0, goal),
        (f"arithmetic-test, all {test}", 0, test),
        (f"arithmetic-train, all {train}", test, test + train),
        (f"both, all {test + train}", 0, test + train),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trained", type=Path, help="the trained model's merged checkpoint folder")
    parser.add_argument("--limit", type=int, default=None, help="sums of each set (default: all)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if not (args.trained / "config.json").is_file():
        raise SystemExit(f"{args.trained}: not a model checkpoint folder (no config.json)")
    if args.limit is not None and args.limit < 1:
        raise SystemExit(f"--limit must be at least 1, not {args.limit}")

    from rrr_agent import embedded, load_settings
    from rrr_agent.evaluation import evaluate, paired_mean_ci
    from rrr_agent.local import COMPLETION_STOP
    from rrr_agent.serving import VLLMServer, free_port
    from rrr_agent.tasksets import get_taskset

    sums = {name: list(get_taskset(name).load())[: args.limit] for name in SETS}
    probe = [t for name in SETS for t in sums[name]]
    # evaluate() wants held-out work; one Countdown problem keeps that part negligible
    heldout = list(get_taskset("countdown2-test").load())[:1]
    firsts: dict[str, list[bool | None]] = {}
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, weights in (("base", Path(embedded.prepare())), ("trained", args.trained)):
            server = VLLMServer(weights, name="gemma", port=free_port(),
                                log_path=Path(tmp) / f"vllm-{label}.log")  # fmt: skip
            server.start(progress=None if args.json else print)
            try:
                started = time.perf_counter()
                report = evaluate(
                    heldout, [server.model_string],
                    settings=load_settings(api_base=server.base_url,
                                           log_path=Path(tmp) / f"{label}.jsonl"),
                    taskset="countdown2-test", concurrency=1, temperature=0.0, seed=0,
                    max_tokens=32, stop=list(COMPLETION_STOP),
                    forgetting=("arithmetic", probe), forgetting_concurrency=1,
                )  # fmt: skip
                seconds[label] = time.perf_counter() - started
            finally:
                server.stop()
            measured = report.models[0].forgetting_first
            assert measured is not None
            if (errors := sum(x is None for x in measured)) > 0:
                raise SystemExit(f"{errors} sums of the {label} model failed on infrastructure")
            firsts[label] = measured

    rows: list[dict[str, Any]] = []
    for name, lo, hi in _slices({k: len(v) for k, v in sums.items()}):
        pairs = [
            (bool(b), bool(t))
            for b, t in zip(firsts["base"][lo:hi], firsts["trained"][lo:hi], strict=True)
        ]
        mean, low, high = paired_mean_ci([float(t) - b for b, t in pairs])
        rows.append({
            "slice": name, "n": hi - lo,
            "base": 100 * sum(b for b, _ in pairs) / (hi - lo),
            "trained": 100 * sum(t for _, t in pairs) / (hi - lo),
            "delta_pp": 100 * mean, "ci95_pp": [100 * low, 100 * high],
            "lost": sum(b and not t for b, t in pairs),
            "won": sum(t and not b for b, t in pairs),
        })  # fmt: skip
    if args.json:
        print(json.dumps({"trained": str(args.trained), "rows": rows, "seconds": seconds}))
        return
    print("\n| sums | n | base % | trained % | Δ (pp) [95 % CI] | lost | won |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        low, high = r["ci95_pp"]
        interval = f"{r['delta_pp']:+.2f} [{low:+.2f}, {high:+.2f}]"
        print(f"| {r['slice']} | {r['n']} | {r['base']:.2f} | {r['trained']:.2f} | {interval} | "
              f"{r['lost']} | {r['won']} |")  # fmt: skip


if __name__ == "__main__":
    main()
