"""A writer process for the store durability tests: appends records until told to stop."""

from __future__ import annotations

import sys

from rrr_agent import TrajectoryStore

from .conftest import math_task


def main() -> None:
    path, writer_id, count, pad = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    store = TrajectoryStore(path)
    from rrr_agent import Trajectory

    for i in range(count if count > 0 else 10**9):
        task = math_task(
            prompt=f"{writer_id}-{i}", metadata={"pad": "x" * pad, "writer": writer_id}
        )
        store.append(Trajectory(task=task, model=f"writer-{writer_id}"))
        if i == 0:
            print("started", flush=True)


if __name__ == "__main__":
    main()
