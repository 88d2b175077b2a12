"""Repeatability of the learning benchmark's probe: the same model, evaluated again, one run.

The embedded model (gemma-3-270m, base) is served by vLLM on 127.0.0.1 and the probe (first try on
``--probe``, 200 two-digit sums by default) is evaluated five times on the one server: twice mixed
with the held-out Countdown evaluation at ``--concurrency`` requests in flight (as
``benchmarks/learning.py`` measured it in runs 1-51), once alone at that concurrency, and twice one
request at a time. It prints each evaluation's score and, for each pair, how many of the greedy
answers differ. Identical weights and greedy decoding should give identical answers; where they
do not, the probe's difference between two models carries that much noise.

Usage: ``python benchmarks/probe_repeatability.py [--json]``. Needs the ``model`` and
``serve-cpu`` (or ``serve``) extras; about five minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--probe", default="arithmetic-test", help="the probe's task set")
    parser.add_argument("--heldout", default="countdown2-test", help="evaluated beside it")
    parser.add_argument("--limit", type=int, default=200, help="problems of each set")
    parser.add_argument("--concurrency", type=int, default=16, help="the batched evaluations'")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    from rrr_agent import TrajectoryStore, embedded, load_settings
    from rrr_agent.evaluation import evaluate
    from rrr_agent.local import COMPLETION_STOP
    from rrr_agent.serving import VLLMServer, free_port
    from rrr_agent.tasksets import get_taskset

    probe = list(get_taskset(args.probe).load())[: args.limit]
    heldout = list(get_taskset(args.heldout).load())[: args.limit]
    probe_ids = {t.id for t in probe}
    runs = [  # label, requests in flight, held-out tasks evaluated with the probe
        ("mixed, batched (a)", args.concurrency, heldout),
        ("mixed, batched (b)", args.concurrency, heldout),
        ("alone, batched", args.concurrency, heldout[:1]),
        ("one at a time (a)", 1, heldout[:1]),
        ("one at a time (b)", 1, heldout[:1]),
    ]
    answers: dict[str, dict[str, str]] = {}
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        server = VLLMServer(
            embedded.prepare(), name="gemma", port=free_port(), log_path=work / "vllm.log"
        ).start(progress=print)
        try:
            for i, (label, concurrency, tasks) in enumerate(runs):
                log = work / f"eval-{i}.jsonl"
                t = time.perf_counter()
                report = evaluate(
                    tasks, [server.model_string], taskset=args.heldout, concurrency=concurrency,
                    settings=load_settings(api_base=server.base_url, log_path=log),
                    max_tokens=32, stop=list(COMPLETION_STOP),
                    forgetting=(args.probe, probe), forgetting_concurrency=concurrency,
                )  # fmt: skip
                seconds = time.perf_counter() - t
                answers[label] = {
                    traj.task.id: traj.attempts[0].text or ""
                    for traj in TrajectoryStore(log).read()
                    if traj.task.id in probe_ids
                }
                rate = report.forgetting()[0]["first_try"]["rate"]
                figures[label] = {"first_try": rate, "seconds": round(seconds, 1)}
                if not args.json:
                    print(f"{label}: probe first try {100 * rate:.1f} % ({seconds:.0f} s)")
        finally:
            server.stop()
    pairs = {
        f"{a} | {b}": sum(answers[a][k] != answers[b].get(k) for k in answers[a])
        for a, b in itertools.combinations(answers, 2)
    }
    if args.json:
        print(json.dumps({"evaluations": figures, "answers_differ": pairs}, indent=2))
        return
    print(f"\nanswers that differ, of {len(probe)}:")
    for pair, n in pairs.items():
        print(f"  {pair}: {n}")


if __name__ == "__main__":
    main()
