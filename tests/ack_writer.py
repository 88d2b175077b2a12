"""A writer process for the log-durability test: appends trajectories ``start``..``stop-1`` to the
log and, after each append returns, the record's number to its own acknowledgement file. An
acknowledged record is a committed one: it must be read back whatever happens later."""

from __future__ import annotations

import os
import random
import sys

from rrr_agent import Trajectory, TrajectoryStore

from .conftest import math_task


def main() -> None:
    log, acks, writer, start, stop = sys.argv[1:6]
    store = TrajectoryStore(log)
    ack = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    rng = random.Random(f"{writer}-{start}")
    for i in range(int(start), int(stop)):
        pad = "x" * rng.choice((10, 200, 2_000, 20_000, 120_000))  # some records take a while
        task = math_task(prompt=f"{writer}-{i}", metadata={"pad": pad, "writer": writer})
        store.append(Trajectory(task=task, model=f"writer-{writer}"))
        os.write(ack, f"{i}\n".encode())


if __name__ == "__main__":
    main()
